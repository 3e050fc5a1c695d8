// The cache path against a scripted upstream: the invalidation link, the fetch connection,
// and writes that must reach the cache.
#include <catch2/catch.hpp>

#include "tests/component/rig.h"

namespace component {

TEST_CASE("retire: the link drops while a fetch is outstanding", "[component]") {
  Rig rig;
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  up.set("k", "v1");
  up.set("k2", "v2");
  up.on("GET", hold(bulk("v1")), 1, Role::Fetch);  // the first fetch waits for release()
  TestClient& c = rig.client();

  c.command({"GET", "k"});
  REQUIRE(rig.run_until([&] {
    Conn* f = up.last(Role::Fetch);
    return f && f->count("PTTL") == 1;
  }));
  Conn* link = up.last(Role::Link);
  Conn* fetch = up.last(Role::Fetch);
  REQUIRE(link);
  CHECK(fetch->redirect() == link->id());
  CHECK(fetch->count("GET") == 1);

  // The link goes while the fetch is owed.
  link->close();
  REQUIRE(rig.run_until([&] { return !rig.srv().tracking_up(); }));
  CHECK(c.count() == 0);
  CHECK_FALSE(fetch->closed());

  // The fetch still completes to its waiter, then the old connection closes, drained.
  fetch->release();
  REQUIRE(rig.wait_replies(c, 1));
  CHECK(c.reply(0) == bulk("v1"));
  REQUIRE(rig.run_until([&] { return fetch->closed_by_peer(); }));

  // A new link comes up with a new fetch connection redirected to it (opened at once: its
  // CLIENT TRACKING answer decides whether the cache may be used).
  REQUIRE(rig.run_until([&] { return rig.srv().tracking_up(); }));
  std::vector<Conn*> links = up.conns(Role::Link);
  REQUIRE(links.size() == 2);
  c.command({"GET", "k2"});
  REQUIRE(rig.wait_replies(c, 2));
  CHECK(c.reply(1) == bulk("v2"));
  std::vector<Conn*> fetches = up.conns(Role::Fetch);
  REQUIRE(fetches.size() == 2);
  CHECK(fetches[1]->redirect() == links[1]->id());
  CHECK(fetches[1]->count("GET") == 1);
  CHECK(fetch->count("GET") == 1);  // nothing more went to the retired one
  CHECK(c.count() == 2);
  rig.teardown();
}

TEST_CASE("multi: a transaction's write reaches the cache", "[component]") {
  const bool push = GENERATE(true, false);
  INFO("invalidation push from the upstream: " << (push ? "yes" : "no"));
  Rig rig;
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  up.invalidations = push;
  up.set("k", "old");
  TestClient& a = rig.client();
  TestClient& b = rig.client();

  // Cached: the second GET is not fetched.
  a.command({"GET", "k"});
  REQUIRE(rig.wait_replies(a, 1));
  CHECK(a.reply(0) == bulk("old"));
  a.command({"GET", "k"});
  REQUIRE(rig.wait_replies(a, 2));
  CHECK(a.reply(1) == bulk("old"));
  CHECK(up.count(Role::Fetch, "GET") == 1);

  // Another client queues SET k in a transaction: nothing written yet.
  b.command({"MULTI"});
  b.command({"SET", "k", "new"});
  REQUIRE(rig.wait_replies(b, 2));
  CHECK(b.reply(0) == simple("OK"));
  CHECK(b.reply(1) == simple("QUEUED"));
  a.command({"GET", "k"});
  REQUIRE(rig.wait_replies(a, 3));
  CHECK(a.reply(2) == bulk("old"));

  // EXEC writes it: the next GET must not be the cached old value.
  b.command({"EXEC"});
  REQUIRE(rig.wait_replies(b, 3));
  CHECK(b.reply(2) == "*1\r\n" + simple("OK"));
  a.command({"GET", "k"});
  REQUIRE(rig.wait_replies(a, 4));
  CHECK(a.reply(3) == bulk("new"));
  CHECK(up.count(Role::Pinned, "EXEC") == 1);
  CHECK(up.count(Role::Pinned, "SET") == 1);
  rig.teardown();
}

TEST_CASE("refused: CLIENT TRACKING refused, reads are forwarded and no client sees it",
          "[component]") {
  RigOptions o;
  o.wait_link = false;
  o.script = [](ScriptedUpstream& up) {
    up.on("CLIENT TRACKING", hold(error("ERR unknown subcommand 'TRACKING'")));
  };
  Rig rig(o);
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  respite::CachePath& path = rig.srv().cache_path();
  up.set("k", "v");
  TestClient& c = rig.client();
  // The link is subscribed, CLIENT TRACKING not answered yet: the cache is not used, so a read
  // now is forwarded and cannot wait behind (and fail with) the refusal.
  REQUIRE(rig.run_until([&] { return up.count(Role::Fetch, "CLIENT TRACKING") == 1; }));
  CHECK_FALSE(path.usable());
  c.command({"GET", "k"});
  REQUIRE(rig.wait_replies(c, 1));
  CHECK(c.reply(0) == bulk("v"));
  up.last(Role::Fetch)->release();
  REQUIRE(rig.run_until([&] { return path.tracking().refused(); }));
  CHECK_FALSE(path.usable());
  c.command({"GET", "k"});
  c.command({"GET", "nokey"});
  c.command({"GET", "k"});
  REQUIRE(rig.wait_replies(c, 4));
  CHECK(c.reply(1) == bulk("v"));
  CHECK(c.reply(2) == nil());
  CHECK(c.reply(3) == bulk("v"));
  CHECK(up.count(Role::Shared, "GET") == 4);
  CHECK(up.count(Role::Fetch, "GET") == 0);
  // Asked again only after the slow retry: one link, one refused fetch connection so far.
  rig.run_for(300);
  CHECK(up.conns(Role::Link).size() == 1);
  CHECK(up.count(Role::Fetch, "CLIENT TRACKING") == 1);
  CHECK_FALSE(path.usable());
  rig.teardown();
}

TEST_CASE("ttl: no link, fills on a plain connection, writes through respite invalidate",
          "[component]") {
  RigOptions o;
  o.wait_link = false;
  o.configure = [](respite::Config& cfg) { cfg.cache_coherence = respite::CacheCoherence::Ttl; };
  Rig rig(o);
  REQUIRE(rig.ready());
  ScriptedUpstream& up = rig.up();
  respite::CachePath& path = rig.srv().cache_path();
  REQUIRE(rig.run_until([&] { return path.usable(); }));
  up.set("k", "old");
  TestClient& c = rig.client();
  c.command({"GET", "k"});
  REQUIRE(rig.wait_replies(c, 1));
  c.command({"GET", "k"});  // after the fill: from the cache
  REQUIRE(rig.wait_replies(c, 2));
  CHECK(c.reply(0) == bulk("old"));
  CHECK(c.reply(1) == bulk("old"));
  CHECK(path.cache().stats().cache_hits == 1);
  c.command({"SET", "k", "new"});
  c.command({"GET", "k"});
  REQUIRE(rig.wait_replies(c, 4));
  CHECK(c.reply(3) == bulk("new"));
  CHECK(up.conns(Role::Link).empty());
  CHECK(up.conns(Role::Fetch).empty());  // no CLIENT TRACKING
  size_t subscribes = 0;
  for (Role r : {Role::Unknown, Role::Shared, Role::Pinned}) subscribes += up.count(r, "SUBSCRIBE");
  CHECK(subscribes == 0);
  rig.teardown();
}

}  // namespace component
