// Reply scanner: walks one reply element by element, keeping only the offset of the next
// element and, per open aggregate, how many elements it still owes.
//
// It is stricter than Redis needs to be about what it accepts, because its job is to notice a
// desynchronised upstream early: every line must end in CRLF, every blob must be followed by
// CRLF, numbers must be numbers, `_` must be empty, `#` must be t or f.
#include "resp/reply_scanner.h"

#include <cstring>
#include <limits>

namespace resp {

bool parse_int64(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  size_t i = 0;
  bool negative = s[0] == '-';
  if (negative && ++i == s.size()) return false;
  uint64_t v = 0;
  const uint64_t limit = negative ? static_cast<uint64_t>(INT64_MAX) + 1 : INT64_MAX;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    unsigned d = static_cast<unsigned>(s[i] - '0');
    if (v > (limit - d) / 10) return false;
    v = v * 10 + d;
  }
  out = negative ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
  return true;
}

bool parse_aggregate_count(char type, std::string_view text, int64_t& count) {
  if (!parse_int64(text, count)) return false;  // also rejects streamed `*?`
  if (count == -1 && type == '*') return true;   // RESP2 null array
  if (count < 0) return false;
  if (type == '%' || type == '|') {
    if (count > std::numeric_limits<int64_t>::max() / 2) return false;
    count *= 2;
  }
  return true;
}

namespace {

// `(`: an optional '-' and at least one digit, of any length.
bool valid_big_number(std::string_view s) {
  size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

// `,`: what Redis and other servers write for a double: digits with sign, point and exponent,
// or inf / -inf / nan in any case. The exact grammar is the client's business; this only rules
// out bytes that cannot be a number.
bool valid_double(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' ||
              c == 'E' || c == 'i' || c == 'I' || c == 'n' || c == 'N' || c == 'f' ||
              c == 'F' || c == 'a' || c == 'A';
    if (!ok) return false;
  }
  return true;
}

bool known_type(char t) {
  switch (t) {
    case '+': case '-': case ':': case '$': case '*':
    case '_': case ',': case '#': case '!': case '=': case '(':
    case '%': case '~': case '|': case '>':
      return true;
    default:
      return false;
  }
}

}  // namespace

void ReplyScanner::reset() {
  pos_ = 0;
  scan_ = 0;
  pending_.clear();
  top_kind_ = 0;
}

ScanResult ReplyScanner::error() {
  reset();
  ScanResult r;
  r.status = ScanResult::Status::Error;
  return r;
}

// Called when a value (scalar or whole aggregate) has just ended. Closes every aggregate that
// this completes. A completed attribute does not count as a value: the value it annotates is
// still to come, for its parent or at the top level.
bool ReplyScanner::value_done() {
  while (!pending_.empty()) {
    Level& top = pending_.back();
    if (--top.remaining > 0) return false;
    bool attribute = top.attribute;
    pending_.pop_back();
    if (attribute) return false;
  }
  return true;
}

ScanResult ReplyScanner::scan(std::string_view buf) {
  // The caller must hand back the same bytes plus more; if it shrank them, start over.
  if (buf.size() < pos_ || buf.size() < scan_) reset();

  for (;;) {
    if (pos_ >= buf.size()) return {};
    const char type = buf[pos_];
    if (!known_type(type)) return error();

    // The element's first line: type byte, text or number, CRLF.
    size_t from = scan_ > pos_ ? scan_ : pos_ + 1;
    const void* hit = std::memchr(buf.data() + from, '\r', buf.size() - from);
    if (!hit) {
      scan_ = buf.size();
      return {};
    }
    const size_t cr = static_cast<const char*>(hit) - buf.data();
    if (cr + 1 >= buf.size()) {
      scan_ = cr;
      return {};
    }
    if (buf[cr + 1] != '\n') return error();
    const std::string_view text = buf.substr(pos_ + 1, cr - pos_ - 1);
    size_t next = cr + 2;

    if (pending_.empty() && type != '|') top_kind_ = type;

    bool value_ended = true;  // false when an aggregate was opened instead
    switch (type) {
      case '+':
      case '-':
        break;
      case ':': {
        int64_t v;
        if (!parse_int64(text, v)) return error();
        break;
      }
      case '_':
        if (!text.empty()) return error();
        break;
      case ',':
        if (!valid_double(text)) return error();
        break;
      case '#':
        if (text != "t" && text != "f") return error();
        break;
      case '(':
        if (!valid_big_number(text)) return error();
        break;
      case '$':
      case '!':
      case '=': {
        int64_t len;
        if (!parse_int64(text, len)) return error();  // also rejects streamed `$?`
        if (len == -1 && type == '$') break;         // RESP2 null bulk
        if (len < 0 || len > max_bulk_) return error();
        const size_t end = next + static_cast<size_t>(len);
        if (buf.size() < end + 2) {
          scan_ = cr;  // the header is found again at once; the payload is never scanned
          return {};
        }
        if (buf[end] != '\r' || buf[end + 1] != '\n') return error();
        if (type == '=' && (len < 4 || buf[next + 3] != ':')) return error();
        next = end + 2;
        break;
      }
      case '*':
      case '~':
      case '>':
      case '%':
      case '|': {
        int64_t count;
        if (!parse_aggregate_count(type, text, count)) return error();
        if (count == -1) break;  // RESP2 null array
        if (count == 0) {
          // An empty aggregate is a whole value; an empty attribute annotates the next one.
          value_ended = type != '|';
          break;
        }
        if (pending_.size() >= max_depth_) return error();
        pending_.push_back({count, type == '|'});
        value_ended = false;
        break;
      }
    }

    pos_ = next;
    scan_ = next;
    if (value_ended && value_done()) {
      ScanResult r;
      r.status = ScanResult::Status::Ok;
      r.consumed = pos_;
      r.kind = top_kind_;
      r.is_push = top_kind_ == '>';
      r.is_error = top_kind_ == '-' || top_kind_ == '!';
      reset();
      return r;
    }
  }
}

}  // namespace resp
