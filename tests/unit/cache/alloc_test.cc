// The hit path must not allocate (issue 4). Global operator new is replaced in this test binary
// to count allocations; everything else behaves as usual.
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "cache/cache.h"
#include "helpers.h"

namespace {
std::atomic<uint64_t> g_allocations{0};
}

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return ::operator new(n, std::nothrow);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace cache;
using namespace cache_test;

TEST_CASE("alloc: cache hits (GET and MGET-style batches) allocate nothing") {
  const PolicyKind kind = GENERATE(PolicyKind::kAllKeysLru, PolicyKind::kAllKeysLfu,
                                   PolicyKind::kVolatileTtl, PolicyKind::kTinyLfu);
  INFO(policy_name(kind));
  FakeClock clk;
  Settings s;
  s.seed = 1;
  s.shards = 4;
  s.policy = kind;
  Cache<int> c(s);
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; i++) keys.push_back(key_n(i));
  for (const std::string& k : keys) {
    Join j = c.join(0, k, 0, clk.now);
    clk.advance_us(200);
    REQUIRE(c.land(j.id, value("0123456789abcdef0123456789abcdef", 60000), clk.now).filled);
  }
  Join j = c.join(0, "nil", 0, clk.now);
  REQUIRE(c.land(j.id, missing(), clk.now).filled);

  const uint64_t before = g_allocations.load();
  uint64_t bytes = 0;
  for (int round = 0; round < 20; round++) {
    for (size_t i = 0; i < keys.size(); i += 10) {
      // One MGET of ten keys.
      for (size_t k = i; k < i + 10; k++) {
        Lookup r = c.get(0, keys[k], clk.now);
        bytes += r.value.size();
      }
    }
    bytes += c.get(0, "nil", clk.now).kind == LookupKind::kNegative ? 1 : 0;
  }
  const uint64_t after = g_allocations.load();
  CHECK(bytes == 20 * (1000 * 32 + 1));
  CHECK(after - before == 0);
}
