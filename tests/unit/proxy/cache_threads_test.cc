// The cache as `respite --threads N` builds and drives it: configure_cache_threads() on the
// settings main() makes, one Cache<CacheWaiter> shared by the loops, and the calls of
// proxy/cachepath/cached_reads.cc (get_with, join, and land/abandon into a Landing the landing
// loop reuses, as CachePath::fetch_landed does). Two std::threads stand for two loops; a waiter's
// `index` names its loop here (the proxy sets `owner`, the loop deliver_waiter posts it to).
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "cache/cache.h"
#include "proxy/front/server.h"

using cache::LookupKind;
using cache::Micros;
using respite::CacheWaiter;

namespace {

constexpr Micros kNow = 1'000'000'000;

// main()'s settings for the cache, before the loops start.
cache::Settings proxy_settings(int threads) {
  cache::Settings s;
  s.max_memory = 64ull << 20;
  s.ttl_ms = 10000;
  respite::configure_cache_threads(s, threads);
  return s;
}

CacheWaiter waiter(uint32_t loop, uint64_t seq) {
  CacheWaiter w;
  w.index = loop;
  w.seq = seq;
  return w;
}

cache::Fetched value(std::string_view v) {
  cache::Fetched f;
  f.value = v;
  return f;
}

// CachePath::get's lookup: a hit is copied out under the shard lock.
cache::Lookup lookup(cache::Cache<CacheWaiter>& c, std::string_view key, std::string* out) {
  return c.get_with(0, key, kNow, [&](const cache::Lookup& v) { out->assign(v.value); });
}

}  // namespace

TEST_CASE("cache threads: one loop gets a lock-free cache, several a sharded, locked one") {
  cache::Cache<CacheWaiter> one(proxy_settings(1));
  CHECK_FALSE(one.thread_safe());
  CHECK(one.shard_count() == 1);
  for (int n : {2, 4, 16}) {
    INFO("--threads " << n);
    cache::Cache<CacheWaiter> c(proxy_settings(n));
    CHECK(c.thread_safe());
    CHECK(c.shard_count() == cache::kThreadSafeShards);
    // The rest of main()'s settings are kept; the budget is split over the shards.
    CHECK(c.settings().max_memory == 64ull << 20);
    CHECK(c.settings().ttl_ms == 10000);
  }
}

TEST_CASE("cache threads: a key missed on two loops is fetched once, its landing answers both") {
  cache::Cache<CacheWaiter> c(proxy_settings(2));
  std::string got;
  // Loop 0 misses and starts the fetch; loop 1 misses the same key before it lands and joins.
  // (Assertions stay on the test's thread: Catch2's are not thread-safe.)
  cache::Join j0, j1;
  LookupKind k0 = LookupKind::kHit, k1 = LookupKind::kHit;
  std::thread([&] {
    k0 = lookup(c, "k", &got).kind;
    j0 = c.join(0, "k", waiter(0, 1), kNow);
  }).join();
  std::thread([&] {
    k1 = lookup(c, "k", &got).kind;
    j1 = c.join(0, "k", waiter(1, 7), kNow);
  }).join();
  CHECK(k0 == LookupKind::kMiss);
  CHECK(k1 == LookupKind::kMiss);
  CHECK(j0.started);
  CHECK_FALSE(j1.started);
  CHECK(j1.id == j0.id);
  CHECK(c.stats().upstream_fetches == 1);
  CHECK(c.stats().singleflight_joined == 1);

  // The reply arrives on loop 0 (its fetch connection): one Landing, reused as the loop does.
  cache::Landing<CacheWaiter> landing;
  landing.waiters.push_back(waiter(9, 9));  // what an earlier landing left: cleared
  std::thread([&] { c.land(j0.id, value("v1"), kNow, landing); }).join();
  CHECK(landing.found);
  CHECK(landing.filled);
  REQUIRE(landing.waiters.size() == 2);  // in join order, each with its own loop
  CHECK(landing.waiters[0].index == 0);
  CHECK(landing.waiters[0].seq == 1);
  CHECK(landing.waiters[1].index == 1);
  CHECK(landing.waiters[1].seq == 7);

  // Both loops hit now, without a fetch.
  for (int loop = 0; loop < 2; ++loop) {
    LookupKind k = LookupKind::kMiss;
    got.clear();
    std::thread([&] { k = lookup(c, "k", &got).kind; }).join();
    CHECK(k == LookupKind::kHit);
    CHECK(got == "v1");
  }
  CHECK(c.stats().upstream_fetches == 1);
  // A late second reply for the same id finds nothing.
  c.land(j0.id, value("late"), kNow, landing);
  CHECK_FALSE(landing.found);
  CHECK(landing.waiters.empty());
}

TEST_CASE("cache threads: a write on the other loop detaches the flight, a failure abandons it") {
  cache::Cache<CacheWaiter> c(proxy_settings(2));
  std::string got;
  cache::Landing<CacheWaiter> landing;

  // Loop 1 writes the key while loop 0's fetch is out: the reply is delivered, never stored.
  cache::Join j = c.join(0, "w", waiter(0, 1), kNow);
  REQUIRE(j.started);
  CHECK_FALSE(c.join(0, "w", waiter(1, 2), kNow).started);
  std::thread([&] { c.invalidate(0, "w", cache::Source::kLocal); }).join();
  c.land(j.id, value("old"), kNow, landing);
  CHECK(landing.found);
  CHECK(landing.detached);
  CHECK_FALSE(landing.filled);
  CHECK(landing.waiters.size() == 2);
  CHECK(lookup(c, "w", &got).kind == LookupKind::kMiss);

  // The fetch connection fails (error, timeout, lost): every loop's waiter gets the error.
  cache::Join f = c.join(0, "f", waiter(0, 3), kNow);
  cache::Join other;
  std::thread([&] { other = c.join(0, "f", waiter(1, 4), kNow); }).join();
  CHECK_FALSE(other.started);
  c.abandon(f.id, landing);
  CHECK(landing.found);
  CHECK_FALSE(landing.filled);
  REQUIRE(landing.waiters.size() == 2);
  CHECK(landing.waiters[1].index == 1);
  CHECK(lookup(c, "f", &got).kind == LookupKind::kMiss);
  CHECK(c.join(0, "f", waiter(0, 5), kNow).started);  // the next read fetches again
}

TEST_CASE("cache threads: two loops miss the same 2000 keys at once: one fetch per key") {
  constexpr int kKeys = 2000;
  cache::Cache<CacheWaiter> c(proxy_settings(2));
  std::vector<std::string> keys;
  for (int i = 0; i < kKeys; ++i) keys.push_back("key:" + std::to_string(i * 7919));
  struct LoopLog {
    std::vector<cache::FlightId> started;
    size_t misses = 0, hits = 0, wrong = 0;
    std::vector<std::vector<CacheWaiter>> landed;  // per started flight: its waiters
  };
  LoopLog logs[2];
  std::atomic<int> ready{0};
  auto loop = [&](uint32_t me) {
    LoopLog& log = logs[me];
    auto barrier = [&](int n) {
      ready.fetch_add(1);
      while (ready.load() < n) std::this_thread::yield();
    };
    barrier(2);
    // Both loops read every key before either lands anything: all miss, one join starts.
    std::string got;
    for (int i = 0; i < kKeys; ++i) {
      if (lookup(c, keys[i], &got).kind != LookupKind::kMiss) continue;
      log.misses++;
      cache::Join j = c.join(0, keys[i], waiter(me, static_cast<uint64_t>(i)), kNow);
      if (j.started) log.started.push_back(j.id);
    }
    barrier(4);
    // Each loop lands the fetches it sent, into its one reused Landing.
    cache::Landing<CacheWaiter> landing;
    for (cache::FlightId id : log.started) {
      const uint64_t n = (id / cache::kThreadSafeShards) % 1000;  // any value will do
      std::string v = "v" + std::to_string(n);
      c.land(id, value(v), kNow, landing);
      log.landed.push_back(landing.waiters);
    }
    barrier(6);
    for (int i = 0; i < kKeys; ++i) {
      if (lookup(c, keys[i], &got).kind == LookupKind::kHit) log.hits++;
      else log.wrong++;
    }
  };
  std::thread t0(loop, 0), t1(loop, 1);
  t0.join();
  t1.join();

  CHECK(logs[0].misses == kKeys);
  CHECK(logs[1].misses == kKeys);
  CHECK(logs[0].started.size() + logs[1].started.size() == kKeys);
  CHECK(c.stats().upstream_fetches == kKeys);
  CHECK(c.stats().singleflight_joined == kKeys);
  // Every landing answered one waiter of each loop for the same key.
  size_t bad = 0;
  for (const LoopLog& l : logs)
    for (const auto& w : l.landed)
      bad += w.size() == 2 && w[0].index != w[1].index && w[0].seq == w[1].seq ? 0 : 1;
  CHECK(bad == 0);
  CHECK(logs[0].hits == kKeys);
  CHECK(logs[1].hits == kKeys);
  CHECK(c.keys() == kKeys);
  CHECK(c.flights() == 0);
}
