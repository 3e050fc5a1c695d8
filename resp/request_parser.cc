// Request parser: Redis 7.0's processMultibulkBuffer / processInlineBuffer / sdssplitargs
// behaviour, made incremental and chunking-independent.
//
// Two places where Redis's outcome depends on how the bytes happened to arrive are pinned down
// so that any split of the same bytes gives the same result (the unit tests check exactly that):
//  - Redis reports "too big inline request" / "too big ... count string" only while the line's
//    terminator has not arrived and more than 64 KB are buffered. Here a line whose terminator
//    lies beyond the limit is an error even when it arrives in one read: it is the answer Redis
//    gives whenever it sees a prefix of more than 64 KB without the terminator, and Redis reads
//    16 KB at a time, so it almost always does.
//  - Redis finds line ends with strchr, so a NUL byte before the terminator hides it: the
//    request never completes and the connection waits until the limit error. The same happens
//    here, so that nothing Redis would refuse to run gets run through respite.
//
// Redis does not check the byte after a header's CR nor the two bytes after a bulk payload; it
// skips them. So does this parser, so that what it accepts is what the upstream accepts.
#include "resp/request_parser.h"

#include <cassert>
#include <cstring>

namespace resp {

namespace {

constexpr size_t kNotFound = static_cast<size_t>(-1);

// Redis's string2ll: optional '-', no '+', no leading zeros, no "-0", at most 20 characters,
// must fit in int64. Anything else is not a number.
bool parse_ll(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() >= 21) return false;
  if (s.size() == 1 && s[0] == '0') {
    out = 0;
    return true;
  }
  size_t i = 0;
  bool negative = false;
  if (s[0] == '-') {
    negative = true;
    if (++i == s.size()) return false;
  }
  if (s[i] < '1' || s[i] > '9') return false;
  uint64_t v = 0;
  // Up to 19 digits cannot overflow uint64 (< 10^19 < 2^64): only longer strings need the
  // per-digit check (with its division); counts and lengths are short.
  const bool may_overflow = s.size() - i > 19;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    unsigned d = static_cast<unsigned>(s[i] - '0');
    if (may_overflow && v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (negative) {
    if (v > static_cast<uint64_t>(INT64_MAX) + 1) return false;
    out = static_cast<int64_t>(0 - v);
  } else {
    if (v > static_cast<uint64_t>(INT64_MAX)) return false;
    out = static_cast<int64_t>(v);
  }
  return true;
}

// The common case of a header line ("*3\r\n", "$16\r\n"), read in one pass instead of two
// memchr calls and parse_ll: `from` is the first byte after the type byte. Succeeds only for a
// line that is entirely here and that the general path would accept with the same value: 1 to 18
// digits without a leading zero (or a lone "0"), then CR, then at least one more byte. Anything
// else (a sign, a NUL, a short buffer, a long number) returns false and takes the general path,
// which owns every error and every wait.
bool quick_header(std::string_view buf, size_t from, size_t* cr, int64_t* value) {
  const char* const begin = buf.data() + from;
  const char* const end = buf.data() + buf.size();
  const char* p = begin;
  uint64_t v = 0;
  while (p < end && p - begin < 19) {
    const unsigned d = static_cast<unsigned char>(*p) - static_cast<unsigned>('0');
    if (d > 9) break;
    v = v * 10 + d;
    ++p;
  }
  const size_t digits = static_cast<size_t>(p - begin);
  if (digits == 0 || digits > 18 || (*begin == '0' && digits > 1)) return false;
  if (end - p < 2 || *p != '\r') return false;
  *cr = static_cast<size_t>(p - buf.data());
  *value = static_cast<int64_t>(v);
  return true;
}

// Index of the first `ch` at or after `from`, as strchr would see it: kNotFound when the bytes
// end first or a NUL comes first. `*resume` is where a later search (with more bytes) may start.
size_t find_line_end(std::string_view buf, size_t from, char ch, size_t* resume) {
  const char* base = buf.data();
  size_t n = buf.size() - from;
  const void* hit = std::memchr(base + from, ch, n);
  size_t end = hit ? static_cast<const char*>(hit) - base : buf.size();
  const void* nul = std::memchr(base + from, '\0', end - from);
  if (nul) {
    // Nothing after a NUL is ever looked at: the search stays stuck at it.
    *resume = static_cast<const char*>(nul) - base;
    return kNotFound;
  }
  *resume = end;
  return hit ? end : kNotFound;
}

// C-locale isspace(), which sdssplitargs uses to skip blanks and to check what follows a
// closing quote.
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Bytes that end an unquoted run of an inline argument: terminators and quotes. A plain array
// so that the hot loop is a load and a test even in unoptimised builds.
struct ByteSet {
  bool has[256];
};
constexpr ByteSet make_special() {
  ByteSet s{};
  for (unsigned char c : {' ', '\t', '\r', '\n', '\0', '"', '\''}) s.has[c] = true;
  return s;
}
constexpr ByteSet kSpecial = make_special();

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string error_text(ErrorCode code, char bad) {
  std::string s = "-ERR Protocol error: ";
  switch (code) {
    case ErrorCode::None:
      return {};
    case ErrorCode::InvalidMultibulkLength:
      s += "invalid multibulk length";
      break;
    case ErrorCode::InvalidBulkLength:
      s += "invalid bulk length";
      break;
    case ErrorCode::ExpectedDollar:
      // Redis formats this one with addReplyErrorFormat, which turns CR and LF into spaces.
      s += "expected '$', got '";
      s += (bad == '\r' || bad == '\n') ? ' ' : bad;
      s += '\'';
      break;
    case ErrorCode::TooBigInline:
      s += "too big inline request";
      break;
    case ErrorCode::TooBigMultibulk:
      s += "too big mbulk count string";
      break;
    case ErrorCode::TooBigBulkCount:
      s += "too big bulk count string";
      break;
    case ErrorCode::UnbalancedQuotes:
      s += "unbalanced quotes in request";
      break;
    case ErrorCode::UnauthenticatedMultibulk:
      s += "unauthenticated multibulk length";
      break;
    case ErrorCode::UnauthenticatedBulk:
      s += "unauthenticated bulk length";
      break;
  }
  s += "\r\n";
  return s;
}

std::string_view Frame::arg(size_t i) const {
  assert(i < spans_.size());
  const Span& s = spans_[i];
  const char* base = inline_ ? storage_.data() : base_;
  return {base + s.off, static_cast<size_t>(s.len)};
}

void RequestParser::reset() {
  declared_ = -1;
  bulklen_ = -1;
  pos_ = 0;
  scan_ = 0;
  want_ = 0;
  partial_.clear();
}

Result RequestParser::fail(ErrorCode code, Frame& frame, char bad) {
  reset();
  frame.spans_.clear();
  frame.base_ = nullptr;
  frame.size_ = 0;
  Result r;
  r.status = Status::Error;
  r.error = code;
  r.bad = bad;
  return r;
}

Result RequestParser::need_more(size_t want, Frame& frame) {
  want_ = want;
  frame.spans_.clear();
  frame.base_ = nullptr;
  frame.size_ = 0;
  return {};
}

Result RequestParser::parse(std::string_view buf, Frame& frame) {
  // A caller that shrank the buffer under a request in progress broke the contract; start over
  // rather than index past the end.
  if (buf.size() < pos_ || buf.size() < scan_) reset();
  if (buf.empty()) return need_more(1, frame);
  return buf[0] == '*' ? parse_multibulk(buf, frame) : parse_inline(buf, frame);
}

Result RequestParser::parse_inline(std::string_view buf, Frame& frame) {
  size_t resume = 0;
  size_t nl = find_line_end(buf, scan_, '\n', &resume);
  if (nl == kNotFound) {
    if (buf.size() > limits_.max_inline) return fail(ErrorCode::TooBigInline, frame);
    scan_ = resume;
    return need_more(buf.size() + 1, frame);
  }
  if (nl > limits_.max_inline) return fail(ErrorCode::TooBigInline, frame);

  size_t line_len = nl;
  if (line_len > 0 && buf[line_len - 1] == '\r') --line_len;
  if (!split_inline(buf.substr(0, line_len), frame)) {
    return fail(ErrorCode::UnbalancedQuotes, frame);
  }
  reset();
  frame.inline_ = true;
  frame.base_ = buf.data();
  frame.size_ = nl + 1;
  Result r;
  r.status = Status::Ok;
  r.consumed = nl + 1;
  return r;
}

// sdssplitargs: blanks separate arguments; "..." takes \n \r \t \b \a \\ \" and \xHH escapes
// (any other escaped character stands for itself), '...' takes only \'; a closing quote must
// be followed by a blank or the end of the line. Quotes may start in the middle of an argument
// (a"b c" is `ab c`). Outside quotes only space, tab, CR (and LF, NUL, which cannot occur in a
// line) end an argument, so \v and \f are part of it although they are skipped between
// arguments.
bool RequestParser::split_inline(std::string_view line, Frame& frame) {
  std::string& out = frame.storage_;
  out.resize(line.size());  // unescaping never grows the text; the line is bounded and present
  char* const out_begin = out.data();
  char* w = out_begin;
  const char* p = line.data();
  const char* const end = p + line.size();
  frame.spans_.clear();
  for (;;) {
    while (p < end && is_space(*p)) ++p;
    if (p == end) break;
    char* const arg_begin = w;
    bool arg_done = false;
    while (!arg_done) {
      const char* run = p;
      while (p < end && !kSpecial.has[static_cast<unsigned char>(*p)]) ++p;
      std::memcpy(w, run, static_cast<size_t>(p - run));
      w += p - run;
      if (p == end) break;
      const char c = *p++;
      if (c == '"') {
        for (;;) {
          if (p == end) return false;  // unterminated "
          if (*p == '\\' && end - p >= 4 && p[1] == 'x' && hex_value(p[2]) >= 0 &&
              hex_value(p[3]) >= 0) {
            *w++ = static_cast<char>(hex_value(p[2]) * 16 + hex_value(p[3]));
            p += 4;
          } else if (*p == '\\' && end - p >= 2) {
            switch (p[1]) {
              case 'n': *w++ = '\n'; break;
              case 'r': *w++ = '\r'; break;
              case 't': *w++ = '\t'; break;
              case 'b': *w++ = '\b'; break;
              case 'a': *w++ = '\a'; break;
              default: *w++ = p[1]; break;
            }
            p += 2;
          } else if (*p == '"') {
            ++p;
            if (p < end && !is_space(*p)) return false;
            arg_done = true;
            break;
          } else {
            *w++ = *p++;
          }
        }
      } else if (c == '\'') {
        for (;;) {
          if (p == end) return false;  // unterminated '
          if (*p == '\\' && end - p >= 2 && p[1] == '\'') {
            *w++ = '\'';
            p += 2;
          } else if (*p == '\'') {
            ++p;
            if (p < end && !is_space(*p)) return false;
            arg_done = true;
            break;
          } else {
            *w++ = *p++;
          }
        }
      } else {
        arg_done = true;  // a terminator, consumed
      }
    }
    frame.spans_.push_back({static_cast<uint64_t>(arg_begin - out_begin),
                            static_cast<uint64_t>(w - arg_begin)});
  }
  out.resize(static_cast<size_t>(w - out_begin));
  return true;
}

Result RequestParser::parse_multibulk(std::string_view buf, Frame& frame) {
  size_t resume = 0;
  if (declared_ < 0) {
    size_t cr = 0;
    int64_t count = 0;
    if (!quick_header(buf, 1, &cr, &count) || cr > limits_.max_inline) {
      cr = find_line_end(buf, scan_ > 0 ? scan_ : 1, '\r', &resume);
      if (cr == kNotFound) {
        if (buf.size() > limits_.max_inline) return fail(ErrorCode::TooBigMultibulk, frame);
        scan_ = resume;
        return need_more(buf.size() + 1, frame);
      }
      if (cr > limits_.max_inline) return fail(ErrorCode::TooBigMultibulk, frame);
      if (cr + 1 >= buf.size()) {  // the LF (or whatever Redis would skip) is not here yet
        scan_ = cr;
        return need_more(cr + 2, frame);
      }
      if (!parse_ll(buf.substr(1, cr - 1), count)) {
        return fail(ErrorCode::InvalidMultibulkLength, frame);
      }
    }
    if (count > limits_.max_multibulk) return fail(ErrorCode::InvalidMultibulkLength, frame);
    if (limits_.unauthenticated && count > limits_.unauth_max_multibulk) {
      return fail(ErrorCode::UnauthenticatedMultibulk, frame);
    }
    pos_ = cr + 2;
    scan_ = pos_;
    if (count <= 0) {  // *0, *-1, *-5: an empty request, skipped by the caller
      size_t consumed = pos_;
      reset();
      frame.spans_.clear();
      frame.storage_.clear();
      frame.inline_ = false;
      frame.base_ = buf.data();
      frame.size_ = consumed;
      Result r;
      r.status = Status::Ok;
      r.consumed = consumed;
      return r;
    }
    declared_ = count;
    partial_.clear();
  }

  while (static_cast<int64_t>(partial_.size()) < declared_) {
    if (bulklen_ < 0) {
      size_t cr = 0;
      int64_t len = 0;
      if (pos_ >= buf.size() || buf[pos_] != '$' || !quick_header(buf, pos_ + 1, &cr, &len) ||
          cr - pos_ > limits_.max_inline) {
        cr = find_line_end(buf, scan_, '\r', &resume);
        if (cr == kNotFound) {
          if (buf.size() - pos_ > limits_.max_inline) {
            return fail(ErrorCode::TooBigBulkCount, frame);
          }
          scan_ = resume;
          return need_more(buf.size() + 1, frame);
        }
        if (cr - pos_ > limits_.max_inline) return fail(ErrorCode::TooBigBulkCount, frame);
        if (cr + 1 >= buf.size()) {
          scan_ = cr;
          return need_more(cr + 2, frame);
        }
        if (buf[pos_] != '$') return fail(ErrorCode::ExpectedDollar, frame, buf[pos_]);
        if (!parse_ll(buf.substr(pos_ + 1, cr - pos_ - 1), len) || len < 0) {
          return fail(ErrorCode::InvalidBulkLength, frame);
        }
      }
      if (len > limits_.max_bulk) return fail(ErrorCode::InvalidBulkLength, frame);
      if (limits_.unauthenticated && len > limits_.unauth_max_bulk) {
        return fail(ErrorCode::UnauthenticatedBulk, frame);
      }
      bulklen_ = len;
      pos_ = cr + 2;
      scan_ = pos_;
    }
    // The payload is not scanned: only its length matters, so waiting for a big one costs
    // nothing per call.
    size_t end = pos_ + static_cast<size_t>(bulklen_) + 2;
    if (buf.size() < end) return need_more(end, frame);
    partial_.push_back({pos_, static_cast<uint64_t>(bulklen_)});
    pos_ = end;
    scan_ = pos_;
    bulklen_ = -1;
  }

  size_t consumed = pos_;
  frame.spans_.swap(partial_);  // partial_ inherits the frame's old capacity for the next one
  reset();
  frame.storage_.clear();
  frame.inline_ = false;
  frame.base_ = buf.data();
  frame.size_ = consumed;
  Result r;
  r.status = Status::Ok;
  r.consumed = consumed;
  return r;
}

}  // namespace resp
