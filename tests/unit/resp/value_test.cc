// decode(): the control-plane decoder gives the tree the bytes describe, and has the scanner's
// NeedMore / Error contract.
#include "resp/value.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "resp/reply_writer.h"

using namespace std::string_literals;
using resp::decode;
using resp::Value;
using St = resp::ScanResult::Status;

namespace {

Value must_decode(const std::string& bytes) {
  Value v;
  resp::DecodeResult r = decode(bytes, v);
  INFO(bytes);
  REQUIRE(r.status == St::Ok);
  CHECK(r.consumed == bytes.size());
  return v;
}

}  // namespace

TEST_CASE("decode scalars", "[value]") {
  Value v = must_decode("+OK\r\n");
  CHECK(v.type == '+');
  CHECK(v.str == "OK");
  CHECK(v.is_string());

  v = must_decode("-ERR bad\r\n");
  CHECK(v.is_error());
  CHECK(v.str == "ERR bad");

  v = must_decode(":-9223372036854775808\r\n");
  CHECK(v.integer == INT64_MIN);

  v = must_decode("$5\r\na\r\n\0b\r\n"s);
  CHECK(v.type == '$');
  CHECK(v.str == "a\r\n\0b"s);

  v = must_decode("$-1\r\n");
  CHECK(v.type == '$');
  CHECK(v.is_null());
  CHECK_FALSE(v.is_string());

  v = must_decode("*-1\r\n");
  CHECK(v.type == '*');
  CHECK(v.is_null());
  CHECK_FALSE(v.is_aggregate());

  v = must_decode("_\r\n");
  CHECK(v.is_null());

  v = must_decode(",-1.25\r\n");
  CHECK(v.dbl == -1.25);
  v = must_decode(",inf\r\n");
  CHECK(std::isinf(v.dbl));

  v = must_decode("#t\r\n");
  CHECK(v.integer == 1);
  v = must_decode("#f\r\n");
  CHECK(v.integer == 0);

  v = must_decode("!8\r\nERR x\r\ny\r\n");
  CHECK(v.is_error());
  CHECK(v.str == "ERR x\r\ny");

  v = must_decode("=8\r\nmkd:# hi\r\n");
  CHECK(v.format == "mkd");
  CHECK(v.str == "# hi");
  CHECK(v.is_string());

  v = must_decode("(-123456789012345678901234567890\r\n");
  CHECK(v.str == "-123456789012345678901234567890");
}

TEST_CASE("decode aggregates and attributes", "[value]") {
  Value v = must_decode("*3\r\n$3\r\nfoo\r\n$-1\r\n*1\r\n:7\r\n");
  REQUIRE(v.elements.size() == 3);
  CHECK(v.elements[0].str == "foo");
  CHECK(v.elements[1].is_null());
  REQUIRE(v.elements[2].elements.size() == 1);
  CHECK(v.elements[2].elements[0].integer == 7);

  // HELLO 3 reply shape: a map, flattened into key, value pairs.
  v = must_decode("%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n");
  CHECK(v.type == '%');
  REQUIRE(v.elements.size() == 4);
  CHECK(v.elements[0].str == "server");
  CHECK(v.elements[3].integer == 3);

  v = must_decode("~2\r\n+a\r\n+b\r\n");
  CHECK(v.type == '~');
  CHECK(v.elements.size() == 2);

  v = must_decode(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n");
  CHECK(v.type == '>');
  CHECK(v.elements[1].elements[0].str == "k");

  v = must_decode("|1\r\n+ttl\r\n:3600\r\n*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n");
  CHECK(v.type == '*');
  REQUIRE(v.attributes.size() == 2);
  CHECK(v.attributes[0].str == "ttl");
  CHECK(v.attributes[1].integer == 3600);
  REQUIRE(v.elements.size() == 2);
  REQUIRE(v.elements[0].attributes.size() == 2);
  CHECK(v.elements[0].integer == 1);
  CHECK(v.elements[1].attributes.empty());
}

TEST_CASE("decode needs the whole reply and rejects garbage", "[value]") {
  Value v;
  CHECK(decode("*2\r\n:1\r\n", v).status == St::NeedMore);
  CHECK(decode("$3\r\nfo", v).status == St::NeedMore);
  CHECK(decode("", v).status == St::NeedMore);
  CHECK(decode("?x\r\n", v).status == St::Error);
  CHECK(decode("*1\r\n*1\r\n*1\r\n:1\r\n", v, 2).status == St::Error);

  // Only the first reply is decoded.
  resp::DecodeResult r = decode(":1\r\n:2\r\n", v);
  CHECK(r.status == St::Ok);
  CHECK(r.consumed == 4);
  CHECK(v.integer == 1);
}

TEST_CASE("decode reads back what the writer wrote", "[value]") {
  for (int proto : {2, 3}) {
    std::string out;
    resp::Writer w(out, proto);
    w.map(2);
    w.bulk("k");
    w.dbl(2.5);
    w.bulk("flag");
    w.boolean(true);
    Value v = must_decode(out);
    REQUIRE(v.elements.size() == 4);
    CHECK(v.elements[0].str == "k");
    if (proto == 3) {
      CHECK(v.type == '%');
      CHECK(v.elements[1].dbl == 2.5);
      CHECK(v.elements[3].integer == 1);
    } else {
      CHECK(v.type == '*');
      CHECK(v.elements[1].str == "2.5");
      CHECK(v.elements[3].integer == 1);
    }
  }
}
