// Reply encodings follow Redis 7.0's addReply* family for the client's protocol.
#include "resp/reply_writer.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "resp/request_parser.h"

namespace resp {

namespace {
// "<type><n>\r\n" into `buf` (at least 24 bytes); returns its length.
size_t format_header(char* buf, char type, int64_t n) {
  buf[0] = type;
  char* p = std::to_chars(buf + 1, buf + 22, n).ptr;  // int64 takes at most 20 characters
  p[0] = '\r';
  p[1] = '\n';
  return static_cast<size_t>(p + 2 - buf);
}
}  // namespace

void Writer::header(char type, int64_t n) {
  char buf[24];
  out_.append(buf, format_header(buf, type, n));
}

void Writer::line(char type, std::string_view s) {
  size_t start = out_.size();
  out_ += type;
  out_.append(s);
  for (size_t i = start + 1; i < out_.size(); ++i) {
    if (out_[i] == '\r' || out_[i] == '\n') out_[i] = ' ';
  }
  out_.append("\r\n", 2);
}

void Writer::simple(std::string_view s) { line('+', s); }

void Writer::error(std::string_view s) {
  if (!s.empty() && s[0] == '-') s.remove_prefix(1);
  line('-', s);
}

void Writer::integer(int64_t v) { header(':', v); }

void Writer::bulk(std::string_view s) {
  // Cached hits are mostly small values: one append for header, payload and CRLF.
  char buf[128];
  size_t h = format_header(buf, '$', static_cast<int64_t>(s.size()));
  if (s.size() <= sizeof(buf) - 2 - h) {
    std::memcpy(buf + h, s.data(), s.size());
    std::memcpy(buf + h + s.size(), "\r\n", 2);
    out_.append(buf, h + s.size() + 2);
    return;
  }
  out_.append(buf, h);
  out_.append(s);
  out_.append("\r\n", 2);
}

void Writer::null() {
  if (proto_ >= 3) {
    out_.append("_\r\n", 3);
  } else {
    out_.append("$-1\r\n", 5);
  }
}

void Writer::null_array() {
  if (proto_ >= 3) {
    out_.append("_\r\n", 3);
  } else {
    out_.append("*-1\r\n", 5);
  }
}

void Writer::array(size_t n) { header('*', static_cast<int64_t>(n)); }

void Writer::map(size_t pairs) {
  if (proto_ >= 3) {
    header('%', static_cast<int64_t>(pairs));
  } else {
    header('*', static_cast<int64_t>(pairs * 2));
  }
}

void Writer::set(size_t n) { header(proto_ >= 3 ? '~' : '*', static_cast<int64_t>(n)); }

void Writer::push(size_t n) { header(proto_ >= 3 ? '>' : '*', static_cast<int64_t>(n)); }

void Writer::boolean(bool b) {
  if (proto_ >= 3) {
    out_.append(b ? "#t\r\n" : "#f\r\n", 4);
  } else {
    out_.append(b ? ":1\r\n" : ":0\r\n", 4);
  }
}

void Writer::dbl(double d) {
  char buf[64];
  int n;
  if (std::isinf(d)) {
    // Spelled out rather than left to printf, as Redis does.
    n = std::snprintf(buf, sizeof(buf), "%s", d > 0 ? "inf" : "-inf");
  } else {
    n = std::snprintf(buf, sizeof(buf), "%.17g", d);
  }
  std::string_view text(buf, static_cast<size_t>(n));
  if (proto_ >= 3) {
    out_ += ',';
    out_.append(text);
    out_.append("\r\n", 2);
  } else {
    bulk(text);
  }
}

void Writer::verbatim(std::string_view fmt3, std::string_view s) {
  if (proto_ < 3) {
    bulk(s);
    return;
  }
  header('=', static_cast<int64_t>(s.size() + 4));
  for (size_t i = 0; i < 3; ++i) out_ += i < fmt3.size() ? fmt3[i] : ' ';
  out_ += ':';
  out_.append(s);
  out_.append("\r\n", 2);
}

void Writer::big_number(std::string_view digits) {
  if (proto_ < 3) {
    bulk(digits);
    return;
  }
  out_ += '(';
  out_.append(digits);
  out_.append("\r\n", 2);
}

void Writer::command(std::initializer_list<std::string_view> args) {
  array(args.size());
  for (std::string_view a : args) bulk(a);
}

void Writer::command(const Frame& frame) {
  array(frame.argc());
  for (size_t i = 0; i < frame.argc(); ++i) bulk(frame.arg(i));
}

}  // namespace resp
