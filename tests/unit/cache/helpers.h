// Shared by the cache unit tests: a fake clock and store/cache shorthands.
#pragma once

#include <string>

#include "cache/cache.h"
#include "cache/store.h"

namespace cache_test {

using cache::Micros;

// Time only moves when a test says so. Starts away from 0 so "started before" has room.
struct FakeClock {
  Micros now = 1'000'000'000;  // 1000 s
  void advance_ms(int64_t ms) { now += ms * 1000; }
  void advance_us(int64_t us) { now += us; }
  uint64_t now_ms() const { return static_cast<uint64_t>(now / 1000); }
};

inline cache::Fill fill(uint32_t db, std::string_view key, std::string_view value,
                        uint64_t expiry_ms) {
  cache::Fill f;
  f.db = db;
  f.key = key;
  f.value = value;
  f.expiry_ms = expiry_ms;
  return f;
}

inline bool put(cache::Store& s, const cache::Fill& f, Micros now) {
  return s.put(f, s.hash(f.key), now);
}

inline cache::Lookup get(cache::Store& s, uint32_t db, std::string_view key, Micros now) {
  return s.get(db, key, s.hash(key), now);
}

inline cache::Fetched value(std::string_view v, int64_t pttl_ms = -1) {
  cache::Fetched f;
  f.value = v;
  f.pttl_ms = pttl_ms;
  return f;
}

inline cache::Fetched missing() {
  cache::Fetched f;
  f.missing = true;
  f.pttl_ms = -2;
  return f;
}

// A fixed-width key like the benchmark's: "key:" then the number zero-padded to `width`.
inline std::string key_n(uint64_t n, size_t width = 16) {
  std::string digits = std::to_string(n);
  std::string k = "key:";
  if (k.size() + digits.size() < width) k.append(width - k.size() - digits.size(), '0');
  return k + digits;
}

}  // namespace cache_test
