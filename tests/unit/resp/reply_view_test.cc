#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "fuzz/reply_view_check.h"
#include "resp/reply_view.h"
#include "resp/value.h"

using namespace std::string_literals;

namespace {

// One of every type, nesting, attributes, nulls and edge lengths.
const std::vector<std::string>& replies() {
  static const std::vector<std::string> r = {
      "+OK\r\n", "-ERR unknown\r\n", ":0\r\n", ":-9223372036854775808\r\n",
      "$0\r\n\r\n", "$5\r\nhe\r\nl\r\n", "$-1\r\n", "*-1\r\n", "*0\r\n", "_\r\n", "#t\r\n",
      "#f\r\n", ",3.14\r\n", ",-inf\r\n", "(3492890328409238509324850943850943825024385\r\n",
      "!21\r\nSYNTAX invalid syntax\r\n", "=15\r\ntxt:Some string\r\n",
      "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*2\r\n$1\r\na\r\n$3\r\nb\rc\r\n",
      "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*-1\r\n",
      ">3\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nfoo\r\n_\r\n",
      "%2\r\n+first\r\n:1\r\n+second\r\n*2\r\n:2\r\n_\r\n",
      "~2\r\n+a\r\n+b\r\n",
      "|1\r\n+ttl\r\n:3600\r\n$3\r\nval\r\n",
      "*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n*1\r\n*1\r\n*0\r\n",
  };
  return r;
}

}  // namespace

TEST_CASE("reply view: walks every reply as decode's tree, in pre-order, to its end",
          "[reply_view]") {
  for (const std::string& r : replies()) {
    INFO(r);
    resp::Value v;
    resp::DecodeResult d = resp::decode(r, v);
    REQUIRE(d.status == resp::ScanResult::Status::Ok);
    REQUIRE(d.consumed == r.size());
    CHECK(reply_view_check::check(r, v) == "");
  }
}

TEST_CASE("reply view: the items of an invalidation message", "[reply_view]") {
  resp::ReplyView view(replies()[17]);
  resp::ReplyItem it;
  REQUIRE(view.next(it));
  CHECK((it.type == '*' && it.n == 3 && it.is_aggregate()));
  REQUIRE(view.next(it));
  CHECK(it.str == "message");
  REQUIRE(view.next(it));
  CHECK(it.str == "__redis__:invalidate");
  REQUIRE(view.next(it));
  CHECK((it.type == '*' && it.n == 2));
  REQUIRE(view.next(it));
  CHECK(it.str == "a");
  REQUIRE(view.next(it));
  CHECK(it.str == "b\rc");  // a bulk is read by its length, CR and all
  CHECK(view.at_end());
  CHECK_FALSE(view.next(it));
}

TEST_CASE("reply view: every truncation stops inside the bytes, never past them",
          "[reply_view]") {
  // Under the sanitizer build (scripts/test runs the unit tests there too) an out-of-bounds
  // read here is a failure of its own; in any build a cut reply must not walk as the whole.
  for (const std::string& r : replies()) {
    resp::Value whole;
    REQUIRE(resp::decode(r, whole).status == resp::ScanResult::Status::Ok);
    for (size_t cut = 0; cut < r.size(); ++cut) {
      const std::string part = r.substr(0, cut);  // a heap copy of exactly `cut` bytes
      INFO(r << " cut at " << cut);
      CHECK(reply_view_check::check(part, whole) != "");
    }
  }
}

TEST_CASE("reply view: malformed headers and lengths are refused", "[reply_view]") {
  for (const std::string& bad : {"$5\r\nabc\r\n"s, "$-2\r\n"s, "$x\r\n\r\n"s, "*-2\r\n"s,
                                "%-1\r\n"s, ":1x\r\n"s, "#x\r\n"s, "_x\r\n"s, "?\r\n"s,
                                "+OK\n"s, "$3\r\nabcXY"s, "$9223372036854775807\r\nab\r\n"s,
                                ":99999999999999999999\r\n"s}) {
    INFO(bad);
    resp::ReplyView view(bad);
    resp::ReplyItem it;
    CHECK_FALSE(view.next(it));
  }
}
