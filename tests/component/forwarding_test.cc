// Forwarded commands on the shared connection when the upstream is slow or goes away.
#include <catch2/catch.hpp>

#include <deque>
#include <string>

#include "tests/component/rig.h"

namespace component {
namespace {

Action answer_field(Conn&, const Args& a) { return reply(bulk("value-" + a[2])); }

RigOptions no_cache(int timeout_ms = 2000) {
  RigOptions o;
  o.cache = false;
  o.upstream_timeout_ms = timeout_ms;
  return o;
}

}  // namespace

TEST_CASE("timeout: an unanswered command gets the timeout error and its late reply goes to nobody",
          "[component]") {
  Rig rig(no_cache(400));
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  up.on("HGET", hold(bulk("late")), 1);  // the first HGET: no answer until released
  up.on("HGET", answer_field);
  TestClient& c = rig.client();

  uint64_t t0 = uv_now(rig.loop());
  c.command({"HGET", "h", "slow"});
  REQUIRE(rig.run_until([&] { return up.count(Role::Shared, "HGET") == 1; }));
  // Half a timeout later the client pipelines a second command (the first is still owed).
  rig.run_for(200);
  c.command({"HGET", "h", "next"});
  REQUIRE(rig.run_until([&] { return up.count(Role::Shared, "HGET") == 2; }));
  CHECK(c.count() == 0);

  // The first one's deadline passes: the client gets respite's timeout error for it, and
  // nothing for the second yet (the upstream answers in order; it is behind the first).
  REQUIRE(rig.wait_replies(c, 1));
  CHECK(c.reply(0) == "-ERR upstream unavailable (timeout: no reply within 400 ms)\r\n");
  CHECK(uv_now(rig.loop()) - t0 >= 400);
  CHECK(rig.srv().stats().upstream_timeouts.get() == 1);
  CHECK(c.count() == 1);

  // Now the upstream answers both: the late reply belongs to the command that timed out and
  // is dropped; the second command gets its own reply, not the late one.
  Conn* shared = up.last(Role::Shared);
  REQUIRE(shared);
  shared->release();
  REQUIRE(rig.wait_replies(c, 2));
  CHECK(c.reply(1) == bulk("value-next"));

  // The connection stays in step: a later command gets its own reply too.
  c.command({"HGET", "h", "after"});
  REQUIRE(rig.wait_replies(c, 3));
  CHECK(c.reply(2) == bulk("value-after"));
  CHECK(c.count() == 3);
  CHECK(up.conns(Role::Shared).size() == 1);
  CHECK(rig.srv().stats().upstream_timeouts.get() == 1);
  rig.teardown();
}

TEST_CASE("failure: the upstream answers 3 of 6 pipelined commands and closes", "[component]") {
  Rig rig(no_cache());
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  up.on("HGET", answer_field, 3);
  up.on("HGET", close_connection(), 1);  // at the 4th: the replies before it go, then FIN
  up.on("HGET", answer_field);
  TestClient& c = rig.client();

  std::string pipeline;
  for (int i = 1; i <= 6; ++i) pipeline += command({"HGET", "h", "f" + std::to_string(i)});
  c.send(pipeline);
  REQUIRE(rig.wait_replies(c, 6));
  CHECK(c.reply(0) == bulk("value-f1"));
  CHECK(c.reply(1) == bulk("value-f2"));
  CHECK(c.reply(2) == bulk("value-f3"));
  for (size_t i = 3; i < 6; ++i)
    CHECK(c.reply(i) == "-ERR upstream unavailable (connection closed by upstream)\r\n");
  CHECK(c.count() == 6);
  CHECK_FALSE(c.eof());  // the client itself stays

  std::vector<Conn*> shared = up.conns(Role::Shared);
  REQUIRE(shared.size() >= 1);
  CHECK(shared[0]->count("HGET") == 6);
  REQUIRE(rig.run_until([&] { return shared[0]->gone(); }));
  CHECK(rig.srv().stats().upstream_errors.get() == 1);

  // The next request goes out on a new connection and is answered.
  c.command({"HGET", "h", "f7"});
  REQUIRE(rig.wait_replies(c, 7));
  CHECK(c.reply(6) == bulk("value-f7"));
  shared = up.conns(Role::Shared);
  REQUIRE(shared.size() == 2);
  CHECK(shared[1]->count("HGET") == 1);
  CHECK_FALSE(shared[1]->closed());
  rig.teardown();
}

TEST_CASE("order: connections written in one turn go in the order of their latest request",
          "[component]") {
  Rig rig(no_cache());
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  TestClient& a = rig.client();
  TestClient& b = rig.client();
  TestClient& c = rig.client();
  a.command({"WATCH", "w"});  // a is pinned: its commands go on a connection of its own
  REQUIRE(rig.wait_replies(a, 1));
  REQUIRE(up.conns(Role::Pinned).size() == 1);
  REQUIRE(rig.run_until([&] { return b.connected() && c.connected() && rig.shared_idle(); }));

  // Written before the loop runs again, so respite reads all three in one turn: b's on the
  // shared connection, then a's on the pinned one, then c's on the shared one again. (This is
  // Redis's own "BRPOPLPUSH does not affect WATCH while still blocked": EXEC on a pinned
  // connection, then a write on the shared one that a poll had already made dirty.)
  b.command({"SET", "b", "1"});
  a.command({"SET", "a", "1"});
  c.command({"SET", "c", "1"});
  REQUIRE(rig.wait_replies(a, 2));
  REQUIRE(rig.wait_replies(b, 1));
  REQUIRE(rig.wait_replies(c, 1));
  auto at = [&](std::string_view key) {
    const auto& log = up.arrivals();
    for (size_t i = 0; i < log.size(); ++i)
      if (log[i].second.size() == 3 && log[i].second[0] == "SET" && log[i].second[1] == key) return i;
    return log.size();
  };
  REQUIRE(at("a") < up.arrivals().size());
  REQUIRE(at("c") < up.arrivals().size());
  // The pinned connection is written before the shared one, whose latest request (c's) came
  // after a's: a's SET arrives before c's. (b's goes with c's: one write per connection per
  // turn, so b's arrives after a's; no reply had been seen yet, so no client can tell.)
  CHECK(at("a") < at("c"));
  rig.teardown();
}

TEST_CASE("redirect: a request answered MOVED or ASK is sent again where the reply says",
          "[component]") {
  Rig rig(no_cache());
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  const std::string self = "127.0.0.1:" + std::to_string(up.port());  // the node respite knows
  respite::Node* node = rig.srv().router().primary();
  REQUIRE(node->name() == self);
  up.on("ASKING", reply(simple("OK")));
  // HGET answers the redirections queued here first ("": its value; "hold": an answer held until released), then
  // its field's value.
  std::deque<std::string> redirects;
  up.on("HGET", [&](Conn& conn, const Args& a) {
    if (redirects.empty()) return answer_field(conn, a);
    std::string r = redirects.front();
    redirects.pop_front();
    if (r.empty()) return answer_field(conn, a);
    if (r == "hold") return hold(bulk("late"));
    return reply(error(r));
  });
  TestClient& c = rig.client();
  size_t n = 0;  // the client's replies so far
  auto hgets = [&] { return up.count(Role::Shared, "HGET"); };

  // Off (one node, as respite runs today): the request is not kept, the reply is relayed.
  redirects.push_back("MOVED 866 " + self);
  c.command({"HGET", "h", "a"});
  REQUIRE(rig.wait_replies(c, ++n));
  CHECK(c.reply(n - 1) == error("MOVED 866 " + self));
  CHECK(hgets() == 1);
  CHECK(node->stats.redirects.get() == 0);

  rig.srv().router().set_follow_redirects(true);
  SECTION("MOVED: sent again to the node named; the client sees only the answer") {
    redirects.push_back("MOVED 866 " + self);
    c.command({"HGET", "h", "b"});
    c.command({"HGET", "h", "c"});  // pipelined behind it: its reply stays second
    REQUIRE(rig.wait_replies(c, n + 2));
    CHECK(c.reply(n) == bulk("value-b"));
    CHECK(c.reply(n + 1) == bulk("value-c"));
    CHECK(hgets() == 4);
    CHECK(node->stats.redirects.get() == 1);
    CHECK(up.count(Role::Shared, "ASKING") == 0);
  }
  SECTION("the second of two pipelined requests is moved: its own bytes are sent again") {
    redirects.push_back("");
    redirects.push_back("MOVED 866 " + self);
    c.command({"HGET", "h", "b"});
    c.command({"HGET", "h", "c"});
    REQUIRE(rig.wait_replies(c, n + 2));
    CHECK(c.reply(n) == bulk("value-b"));
    CHECK(c.reply(n + 1) == bulk("value-c"));
    REQUIRE(!up.arrivals().empty());
    CHECK(up.arrivals().back().second == Args{"HGET", "h", "c"});
    CHECK(hgets() == 4);
  }
  SECTION("a request sent again keeps the client's deadline") {
    redirects.push_back("MOVED 866 " + self);
    redirects.push_back("hold");
    c.command({"HGET", "h", "b"});
    REQUIRE(rig.wait_replies(c, n + 1));
    CHECK(c.reply(n) == "-ERR upstream unavailable (timeout: no reply within 2000 ms)\r\n");
    CHECK(node->stats.inflight.get() == 1);  // still owed by the upstream...
    up.last(Role::Shared)->release();  // ...until it answers (the late reply goes to nobody)
    REQUIRE(rig.run_until([&] { return node->stats.inflight.get() == 0; }));
    CHECK(c.count() == n + 1);
  }
  SECTION("sent again with the protocol it was sent with, after the client's HELLO 3") {
    redirects.push_back("MOVED 866 " + self);
    c.command({"HGET", "h", "b"});
    c.command({"HELLO", "3"});
    REQUIRE(rig.wait_replies(c, n + 2));
    CHECK(c.reply(n) == bulk("value-b"));
    REQUIRE(up.arrivals().size() >= 2);
    const auto& last = up.arrivals().back();
    CHECK(last.second == Args{"HGET", "h", "b"});
    REQUIRE(up.by_id(last.first));
    CHECK(up.by_id(last.first)->proto() == 2);
  }
  SECTION("ASK: ASKING goes just before the request sent again") {
    redirects.push_back("ASK 866 " + self);
    c.command({"HGET", "h", "b"});
    REQUIRE(rig.wait_replies(c, n + 1));
    CHECK(c.reply(n) == bulk("value-b"));
    Conn* shared = up.last(Role::Shared);
    REQUIRE(shared);
    const auto& got = shared->received();
    REQUIRE(got.size() >= 2);
    CHECK(got[got.size() - 2] == Args{"ASKING"});
    CHECK(got.back() == Args{"HGET", "h", "b"});
  }
  SECTION("a node respite does not know: the client gets the reply") {
    redirects.push_back("MOVED 866 127.0.0.2:1");
    c.command({"HGET", "h", "b"});
    REQUIRE(rig.wait_replies(c, n + 1));
    CHECK(c.reply(n) == error("MOVED 866 127.0.0.2:1"));
    CHECK(hgets() == 2);
  }
  SECTION("redirected for ever: the client gets the last MOVED after 1 + kMaxRedirects sends") {
    for (int i = 0; i < 100; ++i) redirects.push_back("MOVED 866 " + self);
    c.command({"HGET", "h", "b"});
    REQUIRE(rig.wait_replies(c, n + 1));
    CHECK(c.reply(n) == error("MOVED 866 " + self));
    CHECK(hgets() == 1 + 1 + respite::kMaxRedirects);
  }
  // Whatever happened, the client is not left waiting on a request that moved: it may use
  // another connection (a pinned one) at once, and the node owes nothing.
  size_t before = c.count();
  c.command({"WATCH", "w"});
  REQUIRE(rig.wait_replies(c, before + 1));
  CHECK(up.conns(Role::Pinned).size() == 1);
  CHECK(node->stats.inflight.get() == 0);
  rig.teardown();
}

}  // namespace component
