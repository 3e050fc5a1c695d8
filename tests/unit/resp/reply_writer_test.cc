// Writer: Redis's encodings for RESP2 and RESP3, and every output scans as exactly one reply.
#include "resp/reply_writer.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "resp/reply_scanner.h"

using namespace std::string_literals;
using resp::Writer;

namespace {

std::string write(int proto, const std::function<void(Writer&)>& f) {
  std::string out;
  Writer w(out, proto);
  f(w);
  return out;
}

// The bytes form exactly one complete reply of the given top-level type.
void check_one_reply(const std::string& bytes, char kind) {
  resp::ReplyScanner s;
  resp::ScanResult r = s.scan(bytes);
  INFO(bytes);
  REQUIRE(r.status == resp::ScanResult::Status::Ok);
  CHECK(r.consumed == bytes.size());
  CHECK(r.kind == kind);
}

struct Case {
  const char* name;
  std::function<void(Writer&)> write;
  std::string resp2;
  std::string resp3;
};

}  // namespace

TEST_CASE("writer encodes like Redis in RESP2 and RESP3", "[reply_writer]") {
  const double inf = std::numeric_limits<double>::infinity();
  const Case cases[] = {
      {"simple", [](Writer& w) { w.simple("OK"); }, "+OK\r\n", "+OK\r\n"},
      {"simple sanitized", [](Writer& w) { w.simple("a\r\nb"); }, "+a  b\r\n", "+a  b\r\n"},
      {"error", [](Writer& w) { w.error("ERR unknown command 'x'"); },
       "-ERR unknown command 'x'\r\n", "-ERR unknown command 'x'\r\n"},
      {"error with dash", [](Writer& w) { w.error("-WRONGTYPE x"); }, "-WRONGTYPE x\r\n",
       "-WRONGTYPE x\r\n"},
      {"error sanitized", [](Writer& w) { w.error("ERR a\nb"); }, "-ERR a b\r\n", "-ERR a b\r\n"},
      {"integer", [](Writer& w) { w.integer(-42); }, ":-42\r\n", ":-42\r\n"},
      {"integer min", [](Writer& w) { w.integer(std::numeric_limits<int64_t>::min()); },
       ":-9223372036854775808\r\n", ":-9223372036854775808\r\n"},
      {"bulk", [](Writer& w) { w.bulk("foo"); }, "$3\r\nfoo\r\n", "$3\r\nfoo\r\n"},
      {"bulk binary", [](Writer& w) { w.bulk("a\r\n\0"s); }, "$4\r\na\r\n\0\r\n"s,
       "$4\r\na\r\n\0\r\n"s},
      {"empty bulk", [](Writer& w) { w.bulk(""); }, "$0\r\n\r\n", "$0\r\n\r\n"},
      {"null", [](Writer& w) { w.null(); }, "$-1\r\n", "_\r\n"},
      {"null array", [](Writer& w) { w.null_array(); }, "*-1\r\n", "_\r\n"},
      {"array", [](Writer& w) { w.array(2); w.integer(1); w.bulk("x"); },
       "*2\r\n:1\r\n$1\r\nx\r\n", "*2\r\n:1\r\n$1\r\nx\r\n"},
      {"empty array", [](Writer& w) { w.array(0); }, "*0\r\n", "*0\r\n"},
      {"map", [](Writer& w) { w.map(1); w.bulk("k"); w.integer(1); },
       "*2\r\n$1\r\nk\r\n:1\r\n", "%1\r\n$1\r\nk\r\n:1\r\n"},
      {"set", [](Writer& w) { w.set(1); w.bulk("m"); }, "*1\r\n$1\r\nm\r\n",
       "~1\r\n$1\r\nm\r\n"},
      {"push", [](Writer& w) { w.push(2); w.bulk("invalidate"); w.null_array(); },
       "*2\r\n$10\r\ninvalidate\r\n*-1\r\n", ">2\r\n$10\r\ninvalidate\r\n_\r\n"},
      {"true", [](Writer& w) { w.boolean(true); }, ":1\r\n", "#t\r\n"},
      {"false", [](Writer& w) { w.boolean(false); }, ":0\r\n", "#f\r\n"},
      {"double", [](Writer& w) { w.dbl(1.5); }, "$3\r\n1.5\r\n", ",1.5\r\n"},
      {"double %.17g", [](Writer& w) { w.dbl(0.1); }, "$19\r\n0.10000000000000001\r\n",
       ",0.10000000000000001\r\n"},
      {"double integral", [](Writer& w) { w.dbl(3); }, "$1\r\n3\r\n", ",3\r\n"},
      {"double exponent", [](Writer& w) { w.dbl(1e21); }, "$5\r\n1e+21\r\n", ",1e+21\r\n"},
      {"double inf", [inf](Writer& w) { w.dbl(inf); }, "$3\r\ninf\r\n", ",inf\r\n"},
      {"double -inf", [inf](Writer& w) { w.dbl(-inf); }, "$4\r\n-inf\r\n", ",-inf\r\n"},
      {"verbatim", [](Writer& w) { w.verbatim("txt", "hello"); }, "$5\r\nhello\r\n",
       "=9\r\ntxt:hello\r\n"},
      {"verbatim short format", [](Writer& w) { w.verbatim("md", "x"); }, "$1\r\nx\r\n",
       "=5\r\nmd :x\r\n"},
      {"verbatim long format", [](Writer& w) { w.verbatim("markdown", "x"); }, "$1\r\nx\r\n",
       "=5\r\nmar:x\r\n"},
      {"big number", [](Writer& w) { w.big_number("12345678901234567890"); },
       "$20\r\n12345678901234567890\r\n", "(12345678901234567890\r\n"},
      {"command", [](Writer& w) { w.command({"GET", "k"}); }, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
       "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"},
      {"command header", [](Writer& w) { w.command_header(1); w.bulk("PING"); },
       "*1\r\n$4\r\nPING\r\n", "*1\r\n$4\r\nPING\r\n"},
      {"raw", [](Writer& w) { w.raw("+PONG\r\n"); }, "+PONG\r\n", "+PONG\r\n"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    std::string two = write(2, c.write);
    std::string three = write(3, c.write);
    CHECK(two == c.resp2);
    CHECK(three == c.resp3);
    check_one_reply(two, two[0]);
    check_one_reply(three, three[0]);
  }
}

TEST_CASE("writer nan follows printf, and scans", "[reply_writer]") {
  std::string out;
  Writer w(out, 3);
  w.dbl(std::nan(""));
  CHECK((out == ",nan\r\n" || out == ",-nan\r\n"));
  check_one_reply(out, ',');
}

TEST_CASE("writer appends to the caller's buffer and reports its protocol", "[reply_writer]") {
  std::string out = "+already\r\n";
  Writer w(out, 3);
  CHECK(w.proto() == 3);
  w.null();
  CHECK(out == "+already\r\n_\r\n");
  CHECK(Writer(out).proto() == 2);
}
