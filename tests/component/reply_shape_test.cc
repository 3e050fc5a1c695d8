// Replies that do not fit the requests on a shared connection (a push, an extra reply), and
// the streaming clients for which out-of-band messages are the point.
#include <catch2/catch.hpp>

#include <string>

#include "tests/component/rig.h"

namespace component {
namespace {

Action answer_field(Conn&, const Args& a) { return reply(bulk("value-" + a[2])); }

RigOptions no_cache() {
  RigOptions o;
  o.cache = false;
  return o;
}

std::string message(std::string_view ch, std::string_view payload) {
  return "*3\r\n" + bulk("message") + bulk(ch) + bulk(payload);
}

const std::string kViolation = "-ERR upstream unavailable (protocol violation: unexpected reply)\r\n";

}  // namespace

TEST_CASE("reply shape: a push on the shared connection fails what it owes", "[component]") {
  Rig rig(no_cache());
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  // The first HGET's reply comes with a push behind it; the second is never answered.
  up.on("HGET", reply(bulk("a") + push({"message", "ch", "stray"})), 1);
  up.on("HGET", never(), 1);
  up.on("HGET", answer_field);
  TestClient& c = rig.client();

  c.send(command({"HGET", "h", "a"}) + command({"HGET", "h", "b"}));
  REQUIRE(rig.wait_replies(c, 2));
  CHECK(c.reply(0) == bulk("a"));
  CHECK(c.reply(1) == kViolation);  // the request still owed is failed, not fed the push
  CHECK(rig.srv().stats().upstream_protocol_violations.get() == 1);
  Conn* first = up.conns(Role::Shared).at(0);
  REQUIRE(rig.run_until([&] { return first->closed_by_peer(); }));  // respite closed it

  c.command({"HGET", "h", "c"});
  REQUIRE(rig.wait_replies(c, 3));
  CHECK(c.reply(2) == bulk("value-c"));
  REQUIRE(up.conns(Role::Shared).size() == 2);
  CHECK(up.conns(Role::Shared)[1]->count("HGET") == 1);
  CHECK(c.count() == 3);
  rig.teardown();
}

TEST_CASE("reply shape: an extra reply on the shared connection and a subscriber's stream",
          "[component]") {
  Rig rig(no_cache());
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  up.on("HGET", reply(bulk("x") + integer(666)), 1);  // one reply too many
  up.on("HGET", answer_field);
  TestClient& sub = rig.client();
  TestClient& pub = rig.client();
  TestClient& c = rig.client();

  // A subscriber: its pinned connection's out-of-band messages are its stream.
  sub.command({"SUBSCRIBE", "ch"});
  REQUIRE(rig.wait_replies(sub, 1));
  CHECK(sub.reply(0) == "*3\r\n" + bulk("subscribe") + bulk("ch") + integer(1));
  pub.command({"PUBLISH", "ch", "one"});
  REQUIRE(rig.wait_replies(pub, 1));
  CHECK(pub.reply(0) == integer(1));
  REQUIRE(rig.wait_replies(sub, 2));
  CHECK(sub.reply(1) == message("ch", "one"));
  Conn* pinned = up.last(Role::Pinned);
  REQUIRE(pinned);
  CHECK(pinned->count("SUBSCRIBE") == 1);

  // The shared connection gets a reply nobody asked for: respite closes it and counts it.
  c.command({"HGET", "h", "x"});
  REQUIRE(rig.wait_replies(c, 1));
  CHECK(c.reply(0) == bulk("x"));
  Conn* first = up.conns(Role::Shared).at(0);
  REQUIRE(rig.run_until([&] { return first->closed_by_peer(); }));
  CHECK(rig.srv().stats().upstream_protocol_violations.get() == 1);

  // The next request works, on a new shared connection.
  c.command({"HGET", "h", "y"});
  REQUIRE(rig.wait_replies(c, 2));
  CHECK(c.reply(1) == bulk("value-y"));
  CHECK(c.count() == 2);
  CHECK(up.conns(Role::Shared).size() == 2);

  // The subscriber was not touched: a message straight from its connection, and one
  // published through the new shared connection, both reach it.
  pinned->send(message("ch", "two"));
  REQUIRE(rig.wait_replies(sub, 3));
  CHECK(sub.reply(2) == message("ch", "two"));
  pub.command({"PUBLISH", "ch", "three"});
  REQUIRE(rig.wait_replies(sub, 4));
  CHECK(sub.reply(3) == message("ch", "three"));
  REQUIRE(rig.wait_replies(pub, 2));
  CHECK(pub.reply(1) == integer(1));
  CHECK_FALSE(pinned->closed());
  CHECK(rig.srv().stats().upstream_protocol_violations.get() == 1);
  rig.teardown();
}

}  // namespace component
