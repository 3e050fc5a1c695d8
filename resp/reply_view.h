// Reads one complete reply element by element, depth first, without allocating or copying:
// for the replies respite consumes itself on the data path (an invalidation message on the
// tracking link, the GET and PTTL of a cache fill), where decode()'s tree of Values cost
// several allocations and two scans per message.
//
// Contract: `reply` should be what ReplyScanner delimited as one reply (Ok). next() yields the
// elements in wire order: an aggregate's header first (its count in `n`), then its elements.
// It returns false at the end of the bytes or on anything malformed, and never reads outside
// `reply`; a declared count is only a number to compare with, never a size to allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace resp {

struct ReplyItem {
  char type = 0;          // the RESP type byte: + - : $ * _ , # ! = ( % ~ | >
  bool null = false;      // `$-1`, `*-1` or `_`
  int64_t n = 0;          // `:` its value; `#` 1 or 0; aggregates their element count, with
                          // `%` and `|` counting keys and values (2 per pair)
  std::string_view str;   // + - ( , the line; $ ! = the payload (`=` with its "txt:" prefix)

  bool is_aggregate() const {
    return !null && (type == '*' || type == '%' || type == '~' || type == '>' || type == '|');
  }
  bool is_string() const { return !null && (type == '+' || type == '$' || type == '='); }
  bool is_error() const { return type == '-' || type == '!'; }
};

class ReplyView {
 public:
  explicit ReplyView(std::string_view reply) : buf_(reply) {}
  bool next(ReplyItem& out);
  bool at_end() const { return pos_ == buf_.size(); }

 private:
  std::string_view buf_;
  size_t pos_ = 0;
};

}  // namespace resp
