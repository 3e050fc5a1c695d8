#include "resp/reply_view.h"

#include <cstring>
#include <limits>

#include "resp/reply_scanner.h"

namespace resp {

bool ReplyView::next(ReplyItem& out) {
  if (pos_ >= buf_.size()) return false;
  const char* base = buf_.data();
  const size_t size = buf_.size();
  const void* cr = std::memchr(base + pos_, '\r', size - pos_);
  if (cr == nullptr) return false;
  const size_t eol = static_cast<size_t>(static_cast<const char*>(cr) - base);
  if (eol == pos_ || eol + 1 >= size || base[eol + 1] != '\n') return false;  // no type byte
  const char type = base[pos_];
  const std::string_view line(base + pos_ + 1, eol - pos_ - 1);
  size_t after = eol + 2;

  out = ReplyItem{};
  out.type = type;
  switch (type) {
    case '+':
    case '-':
    case ',':
    case '(':
      out.str = line;
      break;
    case ':':
      if (!parse_int64(line, out.n)) return false;
      break;
    case '#':
      if (line != "t" && line != "f") return false;
      out.n = line == "t";
      break;
    case '_':
      if (!line.empty()) return false;
      out.null = true;
      break;
    case '$':
    case '!':
    case '=': {
      int64_t len;
      if (!parse_int64(line, len)) return false;
      if (len == -1 && type == '$') {
        out.null = true;
        break;
      }
      // The payload and its CRLF must be inside the reply: compare without overflowing.
      if (len < 0 || static_cast<uint64_t>(len) > size - after ||
          size - after - static_cast<size_t>(len) < 2)
        return false;
      out.str = std::string_view(base + after, static_cast<size_t>(len));
      after += static_cast<size_t>(len);
      if (base[after] != '\r' || base[after + 1] != '\n') return false;
      after += 2;
      break;
    }
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
      if (!parse_aggregate_count(type, line, out.n)) return false;
      if (out.n == -1) {
        out.null = true;
        out.n = 0;
      }
      break;
    }
    default:
      return false;
  }
  pos_ = after;
  return true;
}

}  // namespace resp
