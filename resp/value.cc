#include "resp/value.h"

#include <cstdlib>
#include <cstring>

namespace resp {

namespace {

// Decodes bytes the scanner has already accepted, so it checks nothing: every line has its
// CRLF, every number parses, every blob is complete. Recursion depth is the scanner's bound.
class Decoder {
 public:
  explicit Decoder(std::string_view buf) : buf_(buf) {}

  void value(Value& v) {
    v = Value{};
    while (buf_[pos_] == '|') {
      int64_t n = number(line());
      for (int64_t i = 0; i < 2 * n; ++i) value(v.attributes.emplace_back());
    }
    v.type = buf_[pos_];
    std::string_view text = line();
    switch (v.type) {
      case '+':
      case '-':
      case '(':
        v.str.assign(text);
        break;
      case ':':
        v.integer = number(text);
        break;
      case '_':
        v.null = true;
        break;
      case '#':
        v.integer = text == "t" ? 1 : 0;
        break;
      case ',':
        v.str.assign(text);
        v.dbl = std::strtod(v.str.c_str(), nullptr);  // accepts inf, -inf, nan
        break;
      case '$':
      case '!':
      case '=': {
        int64_t len = number(text);
        if (len < 0) {
          v.null = true;
          break;
        }
        std::string_view payload = buf_.substr(pos_, static_cast<size_t>(len));
        pos_ += static_cast<size_t>(len) + 2;
        if (v.type == '=') {
          v.format.assign(payload.substr(0, 3));
          v.str.assign(payload.substr(4));
        } else {
          v.str.assign(payload);
        }
        break;
      }
      default: {  // * ~ > %
        int64_t n = number(text);
        if (n < 0) {
          v.null = true;
          break;
        }
        if (v.type == '%') n *= 2;
        // Safe to size from the count now: the scanner has seen every element in the buffer.
        v.elements.resize(static_cast<size_t>(n));
        for (Value& e : v.elements) value(e);
        break;
      }
    }
  }

  size_t pos() const { return pos_; }

 private:
  // The current element's text between its type byte and CRLF; moves past the CRLF.
  std::string_view line() {
    size_t cr = buf_.find('\r', pos_ + 1);
    std::string_view text = buf_.substr(pos_ + 1, cr - pos_ - 1);
    pos_ = cr + 2;
    return text;
  }

  static int64_t number(std::string_view s) {
    bool negative = !s.empty() && s[0] == '-';
    uint64_t v = 0;
    for (size_t i = negative ? 1 : 0; i < s.size(); ++i) v = v * 10 + (s[i] - '0');
    return negative ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
  }

  std::string_view buf_;
  size_t pos_ = 0;
};

}  // namespace

DecodeResult decode(std::string_view buf, Value& out, size_t max_depth) {
  ReplyScanner scanner(max_depth);
  ScanResult s = scanner.scan(buf);
  DecodeResult r;
  r.status = s.status;
  if (s.status != ScanResult::Status::Ok) return r;
  Decoder d(buf.substr(0, s.consumed));
  d.value(out);
  r.consumed = d.pos();
  return r;
}

}  // namespace resp
