#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "cache/cache.h"
#include "helpers.h"

using namespace cache;
using namespace cache_test;

namespace {

Settings settings(unsigned shards = 1) {
  Settings s;
  s.max_memory = 1 << 20;
  s.seed = 99;
  s.shards = shards;
  return s;
}

// A waiter as the proxy might have it: who asked, and where the answer goes.
struct Waiter {
  int client;
  int slot;
  bool operator==(const Waiter& o) const { return client == o.client && slot == o.slot; }
};

}  // namespace

TEST_CASE("cache: a miss starts one flight, later misses join it, landing fills") {
  const unsigned shards = GENERATE(1u, 4u);
  FakeClock clk;
  Cache<Waiter> c(settings(shards));
  REQUIRE(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
  Join a = c.join(0, "k", {1, 0}, clk.now);
  CHECK(a.started);
  CHECK(a.id != kNoFlight);
  // A GET on another connection and two parts of an MGET miss on the same key meanwhile.
  REQUIRE(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
  Join b = c.join(0, "k", {2, 0}, clk.now);
  Join m1 = c.join(0, "k", {3, 1}, clk.now);
  Join m2 = c.join(0, "k", {3, 4}, clk.now);
  CHECK_FALSE(b.started);
  CHECK_FALSE(m1.started);
  CHECK(b.id == a.id);
  CHECK(m2.id == a.id);
  // Another key or another db is another flight.
  CHECK(c.join(0, "other", {4, 0}, clk.now).started);
  CHECK(c.join(1, "k", {5, 0}, clk.now).started);

  clk.advance_ms(2);
  Landing<Waiter> l = c.land(a.id, value("v1"), clk.now);
  CHECK(l.found);
  CHECK(l.filled);
  CHECK_FALSE(l.detached);
  CHECK(l.waiters == std::vector<Waiter>{{1, 0}, {2, 0}, {3, 1}, {3, 4}});
  Lookup r = c.get(0, "k", clk.now);
  CHECK(r.kind == LookupKind::kHit);
  CHECK(r.value == "v1");

  // Landing the same id again: unknown, nothing to do.
  CHECK_FALSE(c.land(a.id, value("v2"), clk.now).found);

  Stats st = c.stats();
  CHECK(st.upstream_fetches == 3);
  CHECK(st.singleflight_joined == 3);
  CHECK(st.cache_misses == 2);
  CHECK(st.cache_hits == 1);
  CHECK(st.cache_fills == 1);
  CHECK(c.flights() == 2);
}

TEST_CASE("cache: an invalidation during the flight detaches it and its fill is dropped") {
  const unsigned shards = GENERATE(1u, 4u);
  FakeClock clk;
  Cache<int> c(settings(shards));
  Join a = c.join(0, "k", 1, clk.now);
  c.invalidate(0, "k", Source::kLocal);  // a write to k went through respite meanwhile

  // A read arriving after the write does not join the old fetch: it starts a new one.
  Join b = c.join(0, "k", 2, clk.now);
  CHECK(b.started);
  CHECK(b.id != a.id);

  // The old fetch lands (it may carry the value from before the write): its waiters get it,
  // the cache does not.
  Landing<int> la = c.land(a.id, value("old"), clk.now);
  CHECK(la.found);
  CHECK(la.detached);
  CHECK_FALSE(la.filled);
  CHECK(la.waiters == std::vector<int>{1});
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kMiss);

  Landing<int> lb = c.land(b.id, value("new"), clk.now);
  CHECK(lb.filled);
  CHECK(lb.waiters == std::vector<int>{2});
  CHECK(c.get(0, "k", clk.now).value == "new");

  Stats st = c.stats();
  CHECK(st.cache_invalidations_local == 1);
  CHECK(st.cache_fills_discarded == 1);
  CHECK(st.upstream_fetches == 2);
  CHECK(st.singleflight_joined == 0);
}

TEST_CASE("cache: invalidation drops the entry, and the write's second invalidation catches a "
          "fetch that ran between the two") {
  FakeClock clk;
  Cache<int> c(settings());
  Join a = c.join(0, "k", 1, clk.now);
  c.land(a.id, value("v0"), clk.now);
  REQUIRE(c.get(0, "k", clk.now).kind == LookupKind::kHit);

  c.invalidate(0, "k", Source::kLocal);  // before forwarding the write
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
  // A read slips in before the write executes upstream and fetches the old value...
  Join b = c.join(0, "k", 2, clk.now);
  REQUIRE(b.started);
  // ...case 1: it lands before the write's reply: it fills, and the second invalidation
  // (on the write's reply) removes it.
  c.land(b.id, value("v0"), clk.now);
  CHECK(c.get(0, "k", clk.now).value == "v0");
  c.invalidate(0, "k", Source::kLocal);  // the write's reply
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kMiss);

  // Case 2: it is still in flight at the write's reply: detached, never fills.
  c.invalidate(0, "k", Source::kLocal);
  Join d = c.join(0, "k", 3, clk.now);
  c.invalidate(0, "k", Source::kLocal);
  CHECK_FALSE(c.land(d.id, value("v0"), clk.now).filled);
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
}

TEST_CASE("cache: tracking invalidations name no db and cover every db") {
  FakeClock clk;
  Cache<int> c(settings());
  for (uint32_t db : {0u, 3u}) {
    Join j = c.join(db, "k", 1, clk.now);
    c.land(j.id, value("v"), clk.now);
  }
  Join in_flight = c.join(5, "k", 1, clk.now);
  Join other = c.join(5, "other", 1, clk.now);
  c.invalidate(kAllDbs, "k", Source::kTracking);
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
  CHECK(c.get(3, "k", clk.now).kind == LookupKind::kMiss);
  CHECK(c.land(in_flight.id, value("v"), clk.now).detached);
  CHECK(c.land(other.id, value("v"), clk.now).filled);
  CHECK(c.stats().cache_invalidations_tracking == 1);
  CHECK(c.stats().cache_invalidations_local == 0);
}

TEST_CASE("cache: flush_db drops one db's entries and flights, flush_all everything") {
  const unsigned shards = GENERATE(1u, 3u);
  FakeClock clk;
  Cache<int> c(settings(shards));
  for (uint32_t db = 0; db < 3; db++) {
    for (int i = 0; i < 20; i++) {
      Join j = c.join(db, key_n(i), 0, clk.now);
      c.land(j.id, value("v"), clk.now);
    }
  }
  Join f0 = c.join(0, "pending", 0, clk.now);
  Join f1 = c.join(1, "pending", 0, clk.now);
  Join f1b = c.join(1, "pending2", 0, clk.now);
  c.flush_db(1, Source::kLocal);
  CHECK(c.keys() == 40);
  CHECK(c.get(1, key_n(3), clk.now).kind == LookupKind::kMiss);
  CHECK(c.get(0, key_n(3), clk.now).kind == LookupKind::kHit);
  CHECK(c.get(2, key_n(3), clk.now).kind == LookupKind::kHit);
  CHECK(c.land(f1.id, value("v"), clk.now).detached);
  CHECK(c.land(f1b.id, value("v"), clk.now).detached);
  CHECK(c.land(f0.id, value("v"), clk.now).filled);

  Join g = c.join(2, "pending", 0, clk.now);
  c.flush_all(Source::kTracking);
  CHECK(c.keys() == 0);
  CHECK(c.bytes() == 0);
  CHECK(c.get(0, key_n(3), clk.now).kind == LookupKind::kMiss);
  CHECK(c.land(g.id, value("v"), clk.now).detached);
  // After a flush, reads start fresh flights.
  CHECK(c.join(2, "pending", 0, clk.now).started);
  CHECK(c.stats().cache_invalidations_local == 1);
  CHECK(c.stats().cache_invalidations_tracking == 1);
}

TEST_CASE("cache: the entry expires at min(configured TTL, upstream TTL)") {
  FakeClock clk;
  Settings s = settings();
  s.ttl_ms = 10000;
  Cache<int> c(s);

  // Upstream TTL 300 ms: counted from the fetch's start, not from the reply.
  Join a = c.join(0, "short", 0, clk.now);
  clk.advance_ms(50);
  REQUIRE(c.land(a.id, value("v", 300), clk.now).filled);
  clk.advance_ms(249);
  CHECK(c.get(0, "short", clk.now).kind == LookupKind::kHit);
  clk.advance_ms(1);
  CHECK(c.get(0, "short", clk.now).kind == LookupKind::kMiss);
  CHECK(c.stats().cache_expired == 1);

  // Upstream TTL longer than ours: ours.
  Join b = c.join(0, "long", 0, clk.now);
  REQUIRE(c.land(b.id, value("v", 60000), clk.now).filled);
  clk.advance_ms(9999);
  CHECK(c.get(0, "long", clk.now).kind == LookupKind::kHit);
  clk.advance_ms(1);
  CHECK(c.get(0, "long", clk.now).kind == LookupKind::kMiss);

  // No upstream TTL: ours.
  Join d = c.join(0, "none", 0, clk.now);
  REQUIRE(c.land(d.id, value("v", -1), clk.now).filled);
  clk.advance_ms(10000);
  CHECK(c.get(0, "none", clk.now).kind == LookupKind::kMiss);

  // The key expired between GET and PTTL: answer the waiters, do not cache.
  Join e = c.join(0, "gone", 7, clk.now);
  Landing<int> le = c.land(e.id, value("v", -2), clk.now);
  CHECK_FALSE(le.filled);
  CHECK(le.waiters == std::vector<int>{7});
  // PTTL 0: nothing left to cache either.
  Join z = c.join(0, "zero", 7, clk.now);
  CHECK_FALSE(c.land(z.id, value("v", 0), clk.now).filled);

  // A TTL change applies to new fills.
  c.set_ttl_ms(100);
  Join f = c.join(0, "new", 0, clk.now);
  REQUIRE(c.land(f.id, value("v"), clk.now).filled);
  clk.advance_ms(100);
  CHECK(c.get(0, "new", clk.now).kind == LookupKind::kMiss);
}

TEST_CASE("cache: missing keys are cached as negative entries under the same rules") {
  FakeClock clk;
  Cache<int> c(settings());
  Join a = c.join(0, "nokey", 1, clk.now);
  Landing<int> l = c.land(a.id, missing(), clk.now);
  CHECK(l.filled);
  Lookup r = c.get(0, "nokey", clk.now);
  CHECK(r.kind == LookupKind::kNegative);
  CHECK(r.value.empty());
  c.invalidate(0, "nokey", Source::kLocal);  // SET nokey ...
  CHECK(c.get(0, "nokey", clk.now).kind == LookupKind::kMiss);
  Join b = c.join(0, "nokey", 1, clk.now);
  c.land(b.id, missing(), clk.now);
  clk.advance_ms(10000);
  CHECK(c.get(0, "nokey", clk.now).kind == LookupKind::kMiss);
}

TEST_CASE("cache: errors and timeouts release the waiters without caching") {
  FakeClock clk;
  Cache<int> c(settings());
  Join a = c.join(0, "k", 1, clk.now);
  c.join(0, "k", 2, clk.now);
  Landing<int> l = c.abandon(a.id);
  CHECK(l.found);
  CHECK_FALSE(l.filled);
  CHECK(l.waiters == std::vector<int>{1, 2});
  CHECK(c.keys() == 0);
  CHECK_FALSE(c.land(a.id, value("late"), clk.now).found);  // a late reply finds nothing
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
  CHECK(c.join(0, "k", 3, clk.now).started);
}

TEST_CASE("cache: with max_memory 0 every lookup misses and fills are no-ops") {
  FakeClock clk;
  Settings s = settings();
  s.max_memory = 0;
  Cache<int> c(s);
  CHECK_FALSE(c.enabled());
  Join a = c.join(0, "k", 1, clk.now);
  Landing<int> l = c.land(a.id, value("v"), clk.now);
  CHECK(l.found);
  CHECK_FALSE(l.filled);
  CHECK(l.waiters == std::vector<int>{1});
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
  CHECK(c.bytes() == 0);

  // Turned on at runtime, it caches.
  c.set_max_memory(1 << 20, clk.now);
  Join b = c.join(0, "k", 1, clk.now);
  CHECK(c.land(b.id, value("v"), clk.now).filled);
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kHit);
  // And off again: emptied.
  c.set_max_memory(0, clk.now);
  CHECK(c.keys() == 0);
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
}

TEST_CASE("cache: set_max_memory shrinks every shard to its share") {
  const unsigned shards = GENERATE(1u, 4u);
  FakeClock clk;
  Cache<int> c(settings(shards));
  for (int i = 0; i < 3000; i++) {
    Join j = c.join(0, key_n(i), 0, clk.now);
    c.land(j.id, value(std::string(100, 'v')), clk.now);
  }
  const uint64_t before = c.bytes();
  REQUIRE(before <= (1u << 20));
  c.set_max_memory(before / 3, clk.now);
  CHECK(c.bytes() <= before / 3);
  CHECK(c.keys() < 3000);
  CHECK(c.stats().cache_evictions > 0);
  CHECK(c.stats().cache_bytes == c.bytes());
  for (size_t i = 0; i < c.shard_count(); i++) CHECK(c.store(i).bytes() == c.store(i).recount_bytes());
}

TEST_CASE("cache: max_keys holds across shards") {
  FakeClock clk;
  Settings s = settings(4);
  s.max_keys = 10;
  Cache<int> c(s);
  for (int i = 0; i < 200; i++) {
    Join j = c.join(0, key_n(i), 0, clk.now);
    c.land(j.id, value("v"), clk.now);
  }
  CHECK(c.keys() <= 10);
  CHECK(c.keys() >= 8);
}

TEST_CASE("cache: with single-flight off every miss fetches, invalidation still detaches all") {
  FakeClock clk;
  Settings s = settings();
  s.single_flight = false;
  Cache<int> c(s);
  Join a = c.join(0, "k", 1, clk.now);
  Join b = c.join(0, "k", 2, clk.now);
  CHECK(a.started);
  CHECK(b.started);
  CHECK(a.id != b.id);
  c.invalidate(0, "k", Source::kLocal);
  CHECK(c.land(a.id, value("v"), clk.now).detached);
  CHECK(c.land(b.id, value("v"), clk.now).detached);
  CHECK(c.stats().upstream_fetches == 2);
  CHECK(c.stats().singleflight_joined == 0);
}

TEST_CASE("cache: XFetch asks for an early refresh near expiry, single-flighted") {
  FakeClock clk;
  Settings s = settings();
  s.ttl_ms = 10000;
  s.xfetch_beta = 1.0;
  Cache<int> c(s);
  Join a = c.join(0, "hot", 0, clk.now);
  clk.advance_ms(100);  // the fetch took 100 ms: delta
  REQUIRE(c.land(a.id, value("v1"), clk.now).filled);
  // Far from expiry (expiry - now >> delta): never.
  for (int i = 0; i < 1000; i++) CHECK_FALSE(c.get(0, "hot", clk.now).refresh);
  // 1 ms before expiry with delta 100 ms: P(refresh) = 1 - e^-0.01 per read... and 10 ms before
  // it, with a 100 ms delta, most reads over a few hundred ask.
  clk.advance_ms(10000 - 10);
  int asked = 0;
  for (int i = 0; i < 400; i++) asked += c.get(0, "hot", clk.now).refresh ? 1 : 0;
  CHECK(asked > 300);  // expected 400 * e^-0.1 = 362

  FlightId r = c.start_refresh(0, "hot", clk.now);
  CHECK(r != kNoFlight);
  CHECK(c.start_refresh(0, "hot", clk.now) == kNoFlight);  // already in flight
  // Readers keep the current value meanwhile.
  CHECK(c.get(0, "hot", clk.now).value == "v1");
  clk.advance_ms(5);
  Landing<int> l = c.land(r, value("v2"), clk.now);
  CHECK(l.filled);
  CHECK(l.waiters.empty());
  CHECK(c.get(0, "hot", clk.now).value == "v2");
  Stats st = c.stats();
  CHECK(st.cache_early_refreshes == 1);
  CHECK(st.upstream_fetches == 2);
  CHECK(st.cache_misses == 0);  // no reader ever saw it missing
}

TEST_CASE("cache: a miss joins an early refresh already in flight") {
  FakeClock clk;
  Cache<int> c(settings());
  Join a = c.join(0, "k", 0, clk.now);
  c.land(a.id, value("v"), clk.now);
  FlightId r = c.start_refresh(0, "k", clk.now);
  // Expired, and past the grace an entry being refreshed gets, before the refresh landed.
  clk.advance_ms(10000 + static_cast<int64_t>(cache::Store::kRefreshGraceMs));
  REQUIRE(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
  Join j = c.join(0, "k", 5, clk.now);
  CHECK_FALSE(j.started);
  CHECK(j.id == r);
  Landing<int> l = c.land(r, value("v2"), clk.now);
  CHECK(l.waiters == std::vector<int>{5});
  CHECK(c.get(0, "k", clk.now).value == "v2");
}

TEST_CASE("cache: beta 0 never asks for early refresh") {
  FakeClock clk;
  Settings s = settings();
  s.xfetch_beta = 0;
  Cache<int> c(s);
  Join a = c.join(0, "k", 0, clk.now);
  clk.advance_ms(1000);
  c.land(a.id, value("v"), clk.now);
  clk.advance_ms(9999);
  for (int i = 0; i < 100; i++) CHECK_FALSE(c.get(0, "k", clk.now).refresh);
}

TEST_CASE("cache: expire_step removes expired entries across shards") {
  FakeClock clk;
  Settings s = settings(4);
  s.ttl_ms = 100;
  Cache<int> c(s);
  for (int i = 0; i < 100; i++) {
    Join j = c.join(0, key_n(i), 0, clk.now);
    c.land(j.id, value("v"), clk.now);
  }
  clk.advance_ms(100);
  size_t removed = 0;
  for (int i = 0; i < 100 && c.keys() > 0; i++) removed += c.expire_step(clk.now, 32);
  CHECK(removed == 100);
  CHECK(c.keys() == 0);
  CHECK(c.stats().cache_expired == 100);
}

TEST_CASE("stats: one list drives the struct, the names and the enumeration") {
  const std::vector<std::string> required = {
      "cache_hits", "cache_misses", "cache_keys", "cache_bytes", "cache_evictions",
      "cache_expired", "cache_invalidations_local", "cache_invalidations_tracking",
      "singleflight_joined", "upstream_fetches", "cache_early_refreshes"};
  std::vector<std::string> names;
  Stats st;
  st.cache_hits = 7;
  st.upstream_fetches = 3;
  for_each_stat(st, [&](std::string_view name, uint64_t v, StatKind kind, std::string_view help) {
    names.emplace_back(name);
    CHECK_FALSE(help.empty());
    if (name == "cache_hits") CHECK(v == 7);
    if (name == "upstream_fetches") CHECK(v == 3);
    if (name == "cache_keys" || name == "cache_bytes") CHECK(kind == StatKind::kGauge);
  });
  CHECK(names.size() == sizeof(kStatTable) / sizeof(kStatTable[0]));
  CHECK(names.size() * sizeof(uint64_t) == sizeof(Stats));
  for (const std::string& r : required) {
    INFO(r);
    CHECK(std::find(names.begin(), names.end(), r) != names.end());
  }
  Stats sum = st;
  sum += st;
  CHECK(sum.cache_hits == 14);
}

TEST_CASE("cache: an entry past respite's own TTL is served while its refresh is in flight") {
  const unsigned shards = GENERATE(1u, 4u);
  FakeClock clk;
  Settings s = settings(shards);
  s.ttl_ms = 500;
  Cache<Waiter> c(s);
  // "k" expires by respite's TTL; "v" by its upstream TTL (300 ms < 500 ms).
  Join a = c.join(0, "k", {1, 0}, clk.now);
  Join b = c.join(0, "v", {1, 1}, clk.now);
  REQUIRE(c.land(a.id, value("old"), clk.now).filled);
  REQUIRE(c.land(b.id, value("vol", 300), clk.now).filled);

  clk.advance_ms(600);  // both expired
  FlightId rk = c.start_refresh(0, "k", clk.now);
  FlightId rv = c.start_refresh(0, "v", clk.now);
  REQUIRE(rk != kNoFlight);
  REQUIRE(rv != kNoFlight);
  c.expire_step(clk.now, 1000);  // active expiry leaves the entry being refreshed alone
  Lookup r = c.get(0, "k", clk.now);
  CHECK(r.kind == LookupKind::kHit);
  CHECK(r.value == "old");
  // Never past the upstream's TTL: the key may be gone upstream.
  CHECK(c.get(0, "v", clk.now).kind == LookupKind::kMiss);

  REQUIRE(c.land(rk, value("new"), clk.now).filled);
  CHECK(c.get(0, "k", clk.now).value == "new");

  // Without a refresh in flight an expired entry is a miss, and the grace is bounded.
  clk.advance_ms(600);
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
  Join again = c.join(0, "k", {2, 0}, clk.now);
  REQUIRE(c.land(again.id, value("x"), clk.now).filled);
  clk.advance_ms(500 + static_cast<int64_t>(cache::Store::kRefreshGraceMs) + 1);
  // Even with a refresh in flight, not beyond the grace.
  REQUIRE(c.start_refresh(0, "k", clk.now) != kNoFlight);
  CHECK(c.get(0, "k", clk.now).kind == LookupKind::kMiss);
}
