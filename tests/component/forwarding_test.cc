// Forwarded commands on the shared connection when the upstream is slow or goes away.
#include <catch2/catch.hpp>

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

TEST_CASE("order: commands read in one turn reach the upstream connections in the order read",
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
  // The pinned connection was written before the shared one took c's command: a's SET
  // arrives first. (b's goes with c's: one write per connection per turn.)
  CHECK(at("a") < at("c"));
  rig.teardown();
}

}  // namespace component
