// The HTTP endpoint's one-pass JSON string encoder against a byte-at-a-time reference (the
// previous encoder): the same output for every byte, across the encoder's block boundaries,
// after existing output; base64 round trips.
#include <catch2/catch.hpp>

#include <cstdio>
#include <random>
#include <string>

#include "proxy/http/http.h"

using namespace respite::http;

namespace {

size_t ref_sequence(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : lo, hi = c == 0xED ? 0x9F : hi;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : lo, hi = c == 0xF4 ? 0x8F : hi;
  else return 0;
  if (i + n > s.size() || b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  return n;
}

// The encoder respite had before the one-pass one (its output format is the contract).
bool ref_json(std::string& out, std::string_view s) {
  bool valid = true;
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t n = ref_sequence(s, i);
      if (n == 0) {
        out += "\\ufffd";
        valid = false;
        ++i;
      } else {
        out.append(s.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
  return valid;
}

void same_as_reference(const std::string& in) {
  std::string got = "prefix:", want = "prefix:";
  bool got_valid = append_json_string(got, in);
  bool want_valid = ref_json(want, in);
  REQUIRE(got_valid == want_valid);
  REQUIRE(got == want);
  REQUIRE(got_valid == valid_utf8(in));
}

}  // namespace

TEST_CASE("json encoder: every byte as the reference encodes it", "[http]") {
  for (int c = 0; c < 256; ++c) {
    INFO("byte " << c);
    same_as_reference(std::string(1, static_cast<char>(c)));
    same_as_reference(std::string("a") + static_cast<char>(c) + "z");
  }
  std::string out;
  append_json_string(out, std::string("\x00\x1f\x7f", 3));
  CHECK(out == "\"\\u0000\\u001f\x7f\"");
}

TEST_CASE("json encoder: block boundaries, long inputs, random bytes", "[http]") {
  // Multi-byte sequences (valid and truncated) placed across the 4096-byte input blocks.
  for (size_t at = 4088; at <= 4100; ++at) {
    for (const char* seq : {"\xE6\x97\xA5", "\xF0\x9F\x8E\x89", "\xC3\xA9", "\xE6\x97", "\x01"}) {
      std::string s(at, 'a');
      s += seq;
      s += std::string(10, 'b');
      INFO("at " << at << " seq " << seq);
      same_as_reference(s);
      s.resize(at + std::string_view(seq).size());  // the sequence is last
      same_as_reference(s);
    }
  }
  std::string control(1 << 20, '\0');
  for (size_t i = 0; i < control.size(); ++i) control[i] = static_cast<char>(i % 32);
  same_as_reference(control);
  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    std::string s(rng() % 20000, '\0');
    // Mostly text with some high bytes, or all random.
    bool text = round % 2 == 0;
    for (char& ch : s) {
      unsigned r = rng();
      ch = static_cast<char>(text && r % 8 ? 0x20 + r % 0x5f : r & 0xff);
    }
    same_as_reference(s);
  }
}

TEST_CASE("base64 round trips through base64_decode", "[http]") {
  std::mt19937 rng(7);
  for (size_t n = 0; n < 70; ++n) {
    std::string bytes(n, '\0');
    for (char& ch : bytes) ch = static_cast<char>(rng() & 0xff);
    std::string enc, dec;
    append_base64(enc, bytes);
    REQUIRE(enc.size() == (n + 2) / 3 * 4);
    REQUIRE(base64_decode(enc, dec));
    REQUIRE(dec == bytes);
    // Without padding too.
    while (!enc.empty() && enc.back() == '=') enc.pop_back();
    REQUIRE(base64_decode(enc, dec));
    REQUIRE(dec == bytes);
  }
}
