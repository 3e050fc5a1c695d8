// The scripted upstream itself, talked to directly (not through respite): replies keep the
// connection's order through delays and holds, out-of-order ones jump it, a close writes
// what is before it first; and respite's own connections are told apart.
#include <catch2/catch.hpp>

#include "tests/component/rig.h"

namespace component {

TEST_CASE("scripted upstream: reply order and connection roles", "[component]") {
  Rig rig;
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  up.on("A", delayed(100, bulk("a")));
  up.on("B", reply(bulk("b")));
  up.on("C", out_of_order(bulk("c")));
  up.on("D", hold(bulk("d")));
  up.on("E", reply(bulk("e") + push({"invalidate", "x"})));
  up.on("F", close_connection());
  TestClient& c = rig.client(up.port());

  uint64_t t0 = uv_now(rig.loop());
  c.send(command({"A"}) + command({"B"}) + command({"C"}) + command({"D"}) + command({"E"}));
  REQUIRE(rig.wait_replies(c, 1));
  CHECK(c.reply(0) == bulk("c"));  // at once, ahead of A and B
  REQUIRE(rig.wait_replies(c, 3));
  CHECK(uv_now(rig.loop()) - t0 >= 100);
  CHECK(c.reply(1) == bulk("a"));
  CHECK(c.reply(2) == bulk("b"));  // ready at once, but behind A
  rig.run_for(50);
  CHECK(c.count() == 3);  // D is held, and E behind it

  Conn* direct = up.last(Role::Shared);
  REQUIRE(direct);
  CHECK(direct->count("A") == 1);
  direct->release();
  REQUIRE(rig.wait_replies(c, 6));
  CHECK(c.reply(3) == bulk("d"));
  CHECK(c.reply(4) == bulk("e"));
  CHECK(c.reply(5) == push({"invalidate", "x"}));

  c.send(command({"B"}) + command({"F"}) + command({"B"}));
  REQUIRE(rig.run_until([&] { return c.eof(); }));
  CHECK(c.count() == 7);
  CHECK(c.reply(6) == bulk("b"));
  CHECK(direct->count("B") == 3);  // the B after F was read, not answered

  // respite's own connections, by their first commands.
  Conn* link = up.last(Role::Link);
  REQUIRE(link);
  CHECK(link->count("CLIENT ID") == 1);
  CHECK(link->count("SUBSCRIBE") == 1);
  std::vector<Conn*> shared = up.conns(Role::Shared);
  REQUIRE(shared.size() == 2);  // respite's and the direct one
  CHECK(shared[0]->count("CONFIG GET") == 1);
  CHECK(shared[0]->count("INFO") >= 1);
  up.set("k", "v");
  TestClient& rc = rig.client();
  rc.command({"GET", "k"});
  rc.command({"MULTI"});
  REQUIRE(rig.wait_replies(rc, 2));
  CHECK(rc.reply(0) == bulk("v"));
  CHECK(rc.reply(1) == simple("OK"));
  Conn* fetch = up.last(Role::Fetch);
  Conn* pinned = up.last(Role::Pinned);
  REQUIRE(fetch);
  REQUIRE(pinned);
  CHECK(fetch->redirect() == link->id());
  CHECK(pinned->count("CLIENT ID") == 1);
  CHECK(pinned->count("MULTI") == 1);
  CHECK(up.accepted() == 5);
  rig.teardown();
}

}  // namespace component
