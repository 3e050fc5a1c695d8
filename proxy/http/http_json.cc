// Bytes to JSON for the HTTP endpoint: string literals (one pass over the input, a byte-class
// table, output written through a pointer), UTF-8 validation, base64. No I/O. See http.h.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "proxy/http/http.h"

namespace respite::http {

namespace {

// What a byte needs inside a JSON string literal.
enum ByteClass : uint8_t {
  kPlain = 0,    // copied as is
  kEscape = 1,   // control character, '"' or '\\': a short or \u00XX escape
  kNonAscii = 2, // starts (or is stray in) a multi-byte sequence: validated
};

constexpr std::array<uint8_t, 256> kClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c)
    t[c] = c < 0x20 || c == '"' || c == '\\' ? kEscape : c >= 0x80 ? kNonAscii : kPlain;
  return t;
}();

// The escape of every kEscape byte: at most 6 characters, its length in `n`.
struct Escape {
  char s[6];
  uint8_t n;
};

constexpr std::array<Escape, 128> kEscapes = [] {
  std::array<Escape, 128> t{};
  constexpr char kHex[] = "0123456789abcdef";
  for (int c = 0; c < 0x20; ++c)
    t[c] = {{'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]}, 6};
  t['\n'] = {{'\\', 'n'}, 2};
  t['\r'] = {{'\\', 'r'}, 2};
  t['\t'] = {{'\\', 't'}, 2};
  t['\b'] = {{'\\', 'b'}, 2};
  t['\f'] = {{'\\', 'f'}, 2};
  t['"'] = {{'\\', '"'}, 2};
  t['\\'] = {{'\\', '\\'}, 2};
  return t;
}();

constexpr size_t kMaxOutPerByte = 6;  // "\u001f" and "\ufffd" both take 6
constexpr size_t kBlock = 4096;       // input bytes per output-room check

// Length of the valid UTF-8 sequence at s[i], or 0 when the byte there does not start one
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  return n;
}

}  // namespace

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

bool append_json_string(std::string& out, std::string_view s) {
  bool valid = true;
  // `out` is grown a block at a time (room for the worst case of the block's bytes) and
  // written through `w`; trimmed to what was written at the end.
  size_t pos = out.size();
  out.reserve(pos + s.size() + 2);  // all it takes when nothing needs escaping
  out.resize(pos + 1);
  out[pos++] = '"';
  const auto* in = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    size_t block_end = std::min(s.size(), i + kBlock);
    // A multi-byte sequence may run up to 3 bytes past the block's end.
    size_t room = (block_end - i) * kMaxOutPerByte + 4;
    if (out.size() < pos + room) out.resize(pos + room);  // zero-fills only the new tail
    char* w = out.data() + pos;
    while (i < block_end) {
      size_t run = i;
      while (run < block_end && kClass[in[run]] == kPlain) ++run;
      if (run > i) {
        std::memcpy(w, in + i, run - i);
        w += run - i;
        i = run;
        if (i == block_end) break;
      }
      unsigned char c = in[i];
      if (kClass[c] == kEscape) {
        const Escape& e = kEscapes[c];
        std::memcpy(w, e.s, sizeof e.s);  // fixed size: the room is there; `n` of it counts
        w += e.n;
        ++i;
      } else {
        size_t n = utf8_sequence_length(s, i);
        if (n == 0) {
          std::memcpy(w, "\\ufffd", 6);
          w += 6;
          valid = false;
          ++i;
        } else {
          std::memcpy(w, in + i, n);
          w += n;
          i += n;
        }
      }
    }
    pos = static_cast<size_t>(w - out.data());
  }
  out.resize(pos + 1);
  out[pos] = '"';
  return valid;
}

void append_base64(std::string& out, std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t pos = out.size();
  out.resize(pos + (bytes.size() + 2) / 3 * 4);
  char* w = out.data() + pos;
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
    *w++ = kAlphabet[v >> 18];
    *w++ = kAlphabet[(v >> 12) & 63];
    *w++ = kAlphabet[(v >> 6) & 63];
    *w++ = kAlphabet[v & 63];
  }
  size_t rest = bytes.size() - i;
  if (rest == 0) return;
  uint32_t v = at(i) << 16 | (rest == 2 ? at(i + 1) << 8 : 0);
  *w++ = kAlphabet[v >> 18];
  *w++ = kAlphabet[(v >> 12) & 63];
  *w++ = rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
  *w++ = '=';
}

bool base64_decode(std::string_view in, std::string& out) {
  static constexpr std::array<int8_t, 256> kValue = [] {
    std::array<int8_t, 256> t{};
    for (auto& v : t) v = -1;
    constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
    return t;
  }();
  out.clear();
  size_t n = in.size();
  if (n % 4 == 0 && n >= 1 && in[n - 1] == '=') --n;
  if (n % 4 == 3 && n >= 1 && in[n - 1] == '=') --n;  // the second '=' of "xx=="
  if (n % 4 == 1) return false;                        // no byte ends after one character
  if (in.size() % 4 != 0 && n != in.size()) return false;  // '=' only in a complete quad
  out.reserve(n / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    int v = kValue[static_cast<unsigned char>(in[i])];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return true;
}

void append_json_bytes_field(std::string& out, std::string_view name, std::string_view bytes) {
  out += '"';
  out.append(name);
  out += "\": ";
  if (append_json_string(out, bytes)) return;
  out += ", \"";
  out.append(name);
  out += "_base64\": \"";
  append_base64(out, bytes);
  out += '"';
}

}  // namespace respite::http
