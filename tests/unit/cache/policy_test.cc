#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "cache/store.h"
#include "helpers.h"

using namespace cache;
using namespace cache_test;

namespace {

StoreConfig with_policy(PolicyKind kind, uint64_t max_keys) {
  StoreConfig c;
  c.max_memory = 1 << 24;
  c.max_keys = max_keys;
  c.policy = kind;
  c.policy_params.samples = 10;
  return c;
}

Fill entry(std::string_view key, uint64_t expiry_ms, bool upstream_ttl) {
  Fill f = fill(0, key, "value", expiry_ms);
  f.upstream_ttl = upstream_ttl;
  return f;
}

const std::vector<PolicyKind> kAll = {
    PolicyKind::kNoEviction,    PolicyKind::kAllKeysLru,      PolicyKind::kVolatileLru,
    PolicyKind::kAllKeysLfu,    PolicyKind::kVolatileLfu,     PolicyKind::kAllKeysRandom,
    PolicyKind::kVolatileRandom, PolicyKind::kVolatileTtl,    PolicyKind::kTinyLfu};

// Seed 001's experiment: fill the cache, touch a fifth of it, flood with 60% of its capacity in
// new keys; returns the fraction of the touched keys that were evicted.
double hot_evicted_fraction(PolicyKind kind) {
  FakeClock clk;
  const int n = 1000;
  Store s(with_policy(kind, n), 3, 4);
  const uint64_t exp = clk.now_ms() + 10'000'000;
  for (int i = 0; i < n; i++) REQUIRE(put(s, fill(0, key_n(i), "v", exp), clk.now));
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < n / 5; i++) get(s, 0, key_n(i), clk.now);
  }
  for (int i = n; i < n + n * 6 / 10; i++) REQUIRE(put(s, fill(0, key_n(i), "v", exp), clk.now));
  int gone = 0;
  for (int i = 0; i < n / 5; i++) gone += s.contains(0, key_n(i), clk.now) ? 0 : 1;
  return static_cast<double>(gone) / (n / 5);
}

}  // namespace

TEST_CASE("policy: names are Redis's, parsed case-insensitively, round-trip") {
  for (PolicyKind k : kAll) CHECK(parse_policy(policy_name(k)) == k);
  CHECK(parse_policy("ALLKEYS-LRU") == PolicyKind::kAllKeysLru);
  CHECK(parse_policy("volatile-ttl") == PolicyKind::kVolatileTtl);
  CHECK(parse_policy("tinylfu") == PolicyKind::kTinyLfu);
  CHECK_FALSE(parse_policy("lru").has_value());
  CHECK_FALSE(parse_policy("").has_value());
}

TEST_CASE("policy: noeviction refuses new fills when full and evicts nothing") {
  FakeClock clk;
  Store s(with_policy(PolicyKind::kNoEviction, 3), 1, 2);
  const uint64_t exp = clk.now_ms() + 100000;
  for (const char* k : {"a", "b", "c"}) REQUIRE(put(s, entry(k, exp, true), clk.now));
  CHECK_FALSE(put(s, entry("d", exp, true), clk.now));
  CHECK(s.keys() == 3);
  CHECK(s.snapshot().cache_evictions == 0);
  // Replacing an existing key is not growth.
  CHECK(put(s, entry("a", exp, true), clk.now));
  // A smaller bound set at runtime is still enforced.
  StoreConfig c = s.config();
  c.max_keys = 1;
  s.configure(c, clk.now);
  CHECK(s.keys() == 1);
}

TEST_CASE("policy: volatile-lru evicts only entries with an upstream TTL, LRU first") {
  FakeClock clk;
  Store s(with_policy(PolicyKind::kVolatileLru, 4), 1, 2);
  const uint64_t exp = clk.now_ms() + 100000;
  REQUIRE(put(s, entry("p1", exp, false), clk.now));
  REQUIRE(put(s, entry("v1", exp, true), clk.now));
  REQUIRE(put(s, entry("v2", exp, true), clk.now));
  REQUIRE(put(s, entry("p2", exp, false), clk.now));
  get(s, 0, "v1", clk.now);
  REQUIRE(put(s, entry("x", exp, false), clk.now));
  CHECK_FALSE(s.contains(0, "v2", clk.now));
  REQUIRE(put(s, entry("y", exp, false), clk.now));
  CHECK_FALSE(s.contains(0, "v1", clk.now));
  // No volatile entries left: like Redis's OOM, the fill is not admitted.
  CHECK_FALSE(put(s, entry("z", exp, true), clk.now));
  for (const char* k : {"p1", "p2", "x", "y"}) CHECK(s.contains(0, k, clk.now));
}

TEST_CASE("policy: volatile-* never evict entries without an upstream TTL") {
  const PolicyKind kind = GENERATE(PolicyKind::kVolatileLru, PolicyKind::kVolatileLfu,
                                   PolicyKind::kVolatileRandom, PolicyKind::kVolatileTtl);
  INFO(policy_name(kind));
  FakeClock clk;
  Store s(with_policy(kind, 100), 1, 2);
  const uint64_t exp = clk.now_ms() + 100000;
  for (int i = 0; i < 90; i++) REQUIRE(put(s, entry(key_n(i), exp, false), clk.now));
  for (int i = 90; i < 100; i++) REQUIRE(put(s, entry(key_n(i), exp + i, true), clk.now));
  // Ten more fills push out exactly the ten volatile entries (rare among 100: the sampled
  // policies find them through their list).
  for (int i = 100; i < 110; i++) REQUIRE(put(s, entry(key_n(i), exp, false), clk.now));
  for (int i = 0; i < 90; i++) CHECK(s.contains(0, key_n(i), clk.now));
  for (int i = 90; i < 100; i++) CHECK_FALSE(s.contains(0, key_n(i), clk.now));
  CHECK_FALSE(put(s, entry("more", exp, false), clk.now));
  CHECK(s.keys() == 100);
}

TEST_CASE("policy: volatile-ttl evicts the shortest remaining TTL first") {
  FakeClock clk;
  StoreConfig c = with_policy(PolicyKind::kVolatileTtl, 5);
  c.policy_params.samples = 64;
  Store s(c, 1, 2);
  const uint64_t base = clk.now_ms();
  REQUIRE(put(s, entry("t500", base + 500, true), clk.now));
  REQUIRE(put(s, entry("t100", base + 100, true), clk.now));
  REQUIRE(put(s, entry("t900", base + 900, true), clk.now));
  REQUIRE(put(s, entry("t300", base + 300, true), clk.now));
  REQUIRE(put(s, entry("p", base + 50, false), clk.now));  // shortest, but not volatile
  REQUIRE(put(s, entry("n1", base + 1000, true), clk.now));
  CHECK_FALSE(s.contains(0, "t100", clk.now));
  REQUIRE(put(s, entry("n2", base + 1000, true), clk.now));
  CHECK_FALSE(s.contains(0, "t300", clk.now));
  REQUIRE(put(s, entry("n3", base + 1000, true), clk.now));
  CHECK_FALSE(s.contains(0, "t500", clk.now));
  CHECK(s.contains(0, "p", clk.now));
  CHECK(s.contains(0, "t900", clk.now));
}

TEST_CASE("policy: allkeys-lfu keeps frequently read keys through a flood") {
  FakeClock clk;
  StoreConfig c = with_policy(PolicyKind::kAllKeysLfu, 100);
  c.policy_params.lfu_log_factor = 0;  // every hit counts, so the test is exact-ish
  Store s(c, 1, 2);
  const uint64_t exp = clk.now_ms() + 10'000'000;
  for (int i = 0; i < 100; i++) REQUIRE(put(s, fill(0, key_n(i), "v", exp), clk.now));
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 10; i++) get(s, 0, key_n(i), clk.now);
  }
  for (int i = 100; i < 400; i++) REQUIRE(put(s, fill(0, key_n(i), "v", exp), clk.now));
  for (int i = 0; i < 10; i++) CHECK(s.contains(0, key_n(i), clk.now));
}

TEST_CASE("policy: LFU counters decay with lfu-decay-time") {
  FakeClock clk;
  StoreConfig c = with_policy(PolicyKind::kAllKeysLfu, 20);
  c.policy_params.lfu_log_factor = 0;
  c.policy_params.lfu_decay_time = 1;
  c.policy_params.samples = 64;
  Store s(c, 1, 2);
  const uint64_t exp = clk.now_ms() + 10'000'000;
  REQUIRE(put(s, fill(0, "old-hot", "v", exp), clk.now));
  for (int i = 0; i < 30; i++) get(s, 0, "old-hot", clk.now);
  clk.advance_ms(60 * 60 * 1000);  // an hour: 60 decrements take the counter to 0
  for (int i = 0; i < 19; i++) {
    REQUIRE(put(s, fill(0, key_n(i), "v", exp), clk.now));
    get(s, 0, key_n(i), clk.now);
    get(s, 0, key_n(i), clk.now);
  }
  REQUIRE(put(s, fill(0, "new", "v", exp), clk.now));
  CHECK_FALSE(s.contains(0, "old-hot", clk.now));
}

TEST_CASE("policy: seed 001's experiment: allkeys-lru keeps the touched keys, random does not") {
  CHECK(hot_evicted_fraction(PolicyKind::kAllKeysLru) <= 0.05);
  CHECK(hot_evicted_fraction(PolicyKind::kAllKeysRandom) >= 0.30);
  CHECK(hot_evicted_fraction(PolicyKind::kAllKeysLfu) <= 0.05);
  CHECK(hot_evicted_fraction(PolicyKind::kTinyLfu) <= 0.05);
}

TEST_CASE("policy: tinylfu beats LRU on a skewed workload with a scan") {
  // 500 hot keys read over and over, while a scan of 20000 one-time keys runs through a cache of
  // about 1000 entries. Hit ratios on the hot reads only.
  auto run = [](PolicyKind kind) {
    FakeClock clk;
    StoreConfig c;
    c.policy = kind;
    // Budget for ~1000 small entries.
    c.max_memory = 1000 * (entry_charge(16, 8) + 10);
    Store s(c, 5, 6);
    Rng r(77);
    const uint64_t exp = clk.now_ms() + 10'000'000;
    uint64_t hits = 0, reads = 0, scan = 0;
    for (int step = 0; step < 60000; step++) {
      std::string k;
      bool hot = r.below(3) != 0;
      // Skewed hot set: key i with weight ~ 1/(i+1) approximated by squaring a uniform draw.
      if (hot) {
        uint64_t u = r.below(1000);
        k = key_n(u * u / 2000);
      } else {
        k = key_n(1'000'000 + scan++);
      }
      Lookup l = get(s, 0, k, clk.now);
      if (hot) {
        reads++;
        if (l.kind != LookupKind::kMiss) hits++;
      }
      if (l.kind == LookupKind::kMiss) put(s, fill(0, k, "12345678", exp), clk.now);
      REQUIRE(s.bytes() <= c.max_memory);
    }
    return static_cast<double>(hits) / static_cast<double>(reads);
  };
  double lru = run(PolicyKind::kAllKeysLru);
  double tiny = run(PolicyKind::kTinyLfu);
  INFO("lru " << lru << " tinylfu " << tiny);
  CHECK(tiny >= lru + 0.03);
}

TEST_CASE("policy: changing the policy at runtime keeps every entry") {
  FakeClock clk;
  Store s(with_policy(PolicyKind::kAllKeysLru, 0), 1, 2);
  const uint64_t exp = clk.now_ms() + 100000;
  for (int i = 0; i < 200; i++) REQUIRE(put(s, entry(key_n(i), exp, i % 2 == 0), clk.now));
  for (PolicyKind k : kAll) {
    StoreConfig c = s.config();
    c.policy = k;
    s.configure(c, clk.now);
    CHECK(s.keys() == 200);
    CHECK(s.bytes() == s.recount_bytes());
  }
  // And it evicts under the new one.
  StoreConfig c = s.config();
  c.policy = PolicyKind::kVolatileLru;
  c.max_keys = 150;
  s.configure(c, clk.now);
  CHECK(s.keys() == 150);
  for (int i = 1; i < 200; i += 2) CHECK(s.contains(0, key_n(i), clk.now));
}
