// Incremental parser for client requests: RESP multibulk (`*N\r\n$len\r\n...`) and the inline
// form (`SET a "b c"\r\n`, Redis's quoting with \xHH escapes).
//
// Contract:
//  - parse(buf, frame) looks at the bytes of ONE request at the start of `buf`.
//    NeedMore: the request is incomplete; nothing is consumed; call again with the same bytes
//      plus more (the buffer may have moved in memory; the parser keeps only offsets, so it
//      resumes where it stopped and never rescans bulk payloads).
//    Ok: `frame` describes the request; `consumed` bytes of `buf` belong to it. A request with no
//      arguments (`*0`, `*-1`, an empty inline line) is Ok with argc() == 0: the caller skips it.
//    Error: `error` says which of Redis's protocol errors applies (error_text() gives Redis's exact
//      text); the caller replies with it and closes the connection, as Redis does.
//  - Never allocates from a count the client declared: argument vectors grow as arguments arrive.
//  - Arguments of a multibulk request are spans into `buf`; inline arguments are unescaped into
//    storage owned by the Frame. Frame::arg() is valid until `buf` changes or the next parse().
//  - No I/O, no logging, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace resp {

enum class Status { NeedMore, Ok, Error };

enum class ErrorCode {
  None,
  InvalidMultibulkLength,    // "invalid multibulk length"
  InvalidBulkLength,         // "invalid bulk length"
  ExpectedDollar,            // "expected '$', got 'X'"
  TooBigInline,              // "too big inline request"
  TooBigMultibulk,           // "too big mbulk count string" (header line over the inline limit)
  TooBigBulkCount,           // "too big bulk count string"
  UnbalancedQuotes,          // "unbalanced quotes in request"
  UnauthenticatedMultibulk,  // "unauthenticated multibulk length"
  UnauthenticatedBulk,       // "unauthenticated bulk length"
};

struct Limits {
  size_t max_inline = 64 * 1024;                 // PROTO_INLINE_MAX_SIZE
  int64_t max_bulk = 512LL * 1024 * 1024;        // proto-max-bulk-len
  int64_t max_multibulk = 2147483647LL;          // INT_MAX
  // Applied while the client is not authenticated (Redis 7 limits for unauthenticated clients).
  bool unauthenticated = false;
  int64_t unauth_max_multibulk = 10;
  int64_t unauth_max_bulk = 16384;
};

// Redis's reply for a protocol error, e.g. "-ERR Protocol error: invalid bulk length\r\n".
// `bad` is the offending byte for ExpectedDollar.
std::string error_text(ErrorCode code, char bad = 0);

class Frame {
 public:
  size_t argc() const { return spans_.size(); }
  std::string_view arg(size_t i) const;
  // The request's bytes as received (multibulk: forwardable unchanged; inline: not RESP).
  std::string_view raw() const { return {base_, size_}; }
  bool is_inline() const { return inline_; }

 private:
  friend class RequestParser;
  // 64-bit on purpose: a request may legitimately exceed 4 GB (many bulks of up to max_bulk
  // each; the caller's query-buffer limit is what bounds it), and a truncated offset would
  // silently point at the wrong bytes.
  struct Span {
    uint64_t off;  // offset from base_ (multibulk) or into storage_ (inline)
    uint64_t len;
  };
  std::vector<Span> spans_;
  std::string storage_;  // unescaped inline arguments
  const char* base_ = nullptr;
  size_t size_ = 0;
  bool inline_ = false;
};

struct Result {
  Status status = Status::NeedMore;
  ErrorCode error = ErrorCode::None;
  size_t consumed = 0;
  char bad = 0;  // offending byte for ExpectedDollar
};

class RequestParser {
 public:
  explicit RequestParser(Limits limits = {}) : limits_(limits) {}
  void set_limits(const Limits& l) { limits_ = l; }
  const Limits& limits() const { return limits_; }

  // Resume state lives in the parser, not in `frame`: the caller may pass a different Frame on
  // each call; only the one passed to the call that returns Ok is filled. On NeedMore and Error
  // `frame` is left empty (argc() == 0). The caller must keep the bytes of the request being
  // parsed at the start of `buf` until Ok or Error (or call reset() before giving new bytes).
  Result parse(std::string_view buf, Frame& frame);

  // Forget any partial progress (e.g. after the caller discards its buffer).
  void reset();

  // Bytes the caller should have buffered before calling again (a hint for sizing reads of big
  // bulks; never larger than what the client has already declared and the limits allow).
  size_t want() const { return want_; }

 private:
  Result parse_inline(std::string_view buf, Frame& frame);
  Result parse_multibulk(std::string_view buf, Frame& frame);
  bool split_inline(std::string_view line, Frame& frame);  // false: unbalanced quotes
  Result fail(ErrorCode code, Frame& frame, char bad = 0);
  Result need_more(size_t want, Frame& frame);

  Limits limits_;
  // Resume state for a request in progress (offsets relative to the request start).
  int64_t declared_ = -1;  // -1: multibulk header not parsed yet
  int64_t bulklen_ = -1;   // -1: next bulk header not parsed yet
  size_t pos_ = 0;         // where parsing resumes (start of the next header or payload)
  size_t scan_ = 0;        // where the search for the current line's terminator resumes
  size_t want_ = 0;
  std::vector<Frame::Span> partial_;  // arguments seen so far; swapped into the Frame on Ok
};

}  // namespace resp
