// Finds where one reply ends, for RESP2 and RESP3, without decoding it.
//
// Types: + - : $ * (RESP2); _ , # ! = ( % ~ | > (RESP3). Aggregates nest to any depth; an
// attribute (`|`) is part of the reply that follows it; push (`>`) is reported as such so a
// caller can tell out-of-band messages from replies.
//
// Contract: scan(buf) examines the reply at the start of `buf`.
//   NeedMore: incomplete, call again with the same bytes plus more (the scanner keeps offsets and
//     a small stack of remaining element counts, so a large aggregate is not rescanned).
//   Ok: `consumed` bytes form one complete reply; `kind` is its top-level type byte (after any
//     attribute), `is_push`/`is_error` are set accordingly. The scanner is reset for the next one.
//   Error: the bytes are not RESP (upstream desync): the caller must drop the connection.
// Never allocates from a declared count; nesting depth is bounded (`max_depth`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace resp {

struct ScanResult {
  enum class Status { NeedMore, Ok, Error } status = Status::NeedMore;
  size_t consumed = 0;
  char kind = 0;
  bool is_push = false;
  bool is_error = false;
};

// A RESP integer line: an optional leading '-' and decimal digits, fitting in int64.
bool parse_int64(std::string_view s, int64_t& out);
// The count of an aggregate header (`type` one of * ~ > % |): -1 for the RESP2 null array
// (`*-1` only), else >= 0, with `%` and `|` counting keys and values (2 per pair). False if
// `text` is no such count.
bool parse_aggregate_count(char type, std::string_view text, int64_t& count);

class ReplyScanner {
 public:
  explicit ReplyScanner(size_t max_depth = 128, int64_t max_bulk = 4LL * 1024 * 1024 * 1024)
      : max_depth_(max_depth), max_bulk_(max_bulk) {}
  ScanResult scan(std::string_view buf);
  void reset();

 private:
  struct Level {
    int64_t remaining;  // elements still to come in this aggregate
    bool attribute;     // an attribute (`|`) does not count as an element of its parent
  };
  bool value_done();  // one value ended at pos_; true when that completes the whole reply
  ScanResult error();

  size_t max_depth_;
  int64_t max_bulk_;
  size_t pos_ = 0;               // resume offset within the current reply (start of an element)
  size_t scan_ = 0;              // where the search for the current element's CR resumes
  std::vector<Level> pending_;   // open aggregates, innermost last (capacity reused)
  char top_kind_ = 0;
};

}  // namespace resp
