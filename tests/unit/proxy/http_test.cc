// The HTTP endpoint's pure helpers: query decoding, JSON strings from bytes, base64.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "proxy/http/http.h"

using namespace respite::http;

namespace {

std::string decoded(std::string_view in) {
  std::string out;
  REQUIRE(url_decode(in, out));
  return out;
}

std::string json(std::string_view bytes) {
  std::string out;
  append_json_string(out, bytes);
  return out;
}

std::string b64(std::string_view bytes) {
  std::string out;
  append_base64(out, bytes);
  return out;
}

}  // namespace

TEST_CASE("url_decode: percent escapes and plus", "[http]") {
  CHECK(decoded("abc") == "abc");
  CHECK(decoded("a+b") == "a b");
  CHECK(decoded("a%2Bb") == "a+b");
  CHECK(decoded("%2f%2F") == "//");
  CHECK(decoded("%00x") == std::string("\0x", 2));
  CHECK(decoded("%C3%BC") == "\xC3\xBC");
  CHECK(decoded("") == "");
  std::string out;
  CHECK_FALSE(url_decode("%", out));
  CHECK_FALSE(url_decode("a%2", out));
  CHECK_FALSE(url_decode("%zz", out));
  CHECK_FALSE(url_decode("%g0", out));
}

TEST_CASE("parse_query: pairs, bare names, empty segments", "[http]") {
  std::vector<QueryParam> q;
  REQUIRE(parse_query("key=a%20b&db=2&&flag&x=", q));
  REQUIRE(q.size() == 4);
  CHECK((q[0].name == "key" && q[0].value == "a b"));
  CHECK((q[1].name == "db" && q[1].value == "2"));
  CHECK((q[2].name == "flag" && q[2].value.empty()));
  CHECK((q[3].name == "x" && q[3].value.empty()));
  REQUIRE(parse_query("key=a=b", q));
  CHECK(q[0].value == "a=b");
  REQUIRE(parse_query("", q));
  CHECK(q.empty());
  CHECK_FALSE(parse_query("key=%zz", q));
  CHECK_FALSE(parse_query("k%=1", q));
}

TEST_CASE("json strings: escapes and UTF-8", "[http]") {
  CHECK(json("plain") == "\"plain\"");
  CHECK(json("q\"b\\") == "\"q\\\"b\\\\\"");
  CHECK(json("\n\r\t\b\f") == "\"\\n\\r\\t\\b\\f\"");
  CHECK(json(std::string("\x00\x01\x1f", 3)) == "\"\\u0000\\u0001\\u001f\"");
  CHECK(json("\x7f/") == "\"\x7f/\"");
  CHECK(json("h\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x8E\x89") == "\"h\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x8E\x89\"");
  std::string out;
  CHECK_FALSE(append_json_string(out, "\xff" "a\xc3"));
  CHECK(out == "\"\\ufffda\\ufffd\"");
}

TEST_CASE("valid_utf8 rejects overlongs, surrogates and out-of-range", "[http]") {
  CHECK(valid_utf8(""));
  CHECK(valid_utf8("ascii"));
  CHECK(valid_utf8("\xC2\x80"));              // U+0080
  CHECK(valid_utf8("\xEF\xBF\xBF"));          // U+FFFF
  CHECK(valid_utf8("\xF4\x8F\xBF\xBF"));      // U+10FFFF
  CHECK_FALSE(valid_utf8("\xC0\xAF"));        // overlong '/'
  CHECK_FALSE(valid_utf8("\xC1\xBF"));
  CHECK_FALSE(valid_utf8("\xE0\x80\xAF"));    // overlong
  CHECK_FALSE(valid_utf8("\xED\xA0\x80"));    // surrogate U+D800
  CHECK_FALSE(valid_utf8("\xF0\x80\x80\xAF"));  // overlong
  CHECK_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(valid_utf8("\xF5\x80\x80\x80"));
  CHECK_FALSE(valid_utf8("\x80"));            // lone continuation
  CHECK_FALSE(valid_utf8("\xE6\x97"));        // truncated
  CHECK_FALSE(valid_utf8("\xE6\x97x"));
}

TEST_CASE("base64 and the _base64 companion field", "[http]") {
  CHECK(b64("") == "");
  CHECK(b64("f") == "Zg==");
  CHECK(b64("fo") == "Zm8=");
  CHECK(b64("foo") == "Zm9v");
  CHECK(b64("foobar") == "Zm9vYmFy");
  CHECK(b64("\xff\xfe") == "//4=");
  std::string out;
  append_json_bytes_field(out, "value", "ok");
  CHECK(out == "\"value\": \"ok\"");
  out.clear();
  append_json_bytes_field(out, "value", "\xff");
  CHECK(out == "\"value\": \"\\ufffd\", \"value_base64\": \"/w==\"");
}
