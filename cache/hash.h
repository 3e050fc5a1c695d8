// Hashing and pseudo-randomness for the cache. Neither is cryptographic: the hash is seeded per
// process so clients cannot aim keys at one probe run, and the generator only drives sampling
// and XFetch draws.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace cache {

// A 64-bit hash over bytes, 8 at a time. Every output bit depends on every input bit (a final
// avalanche), which matters because the table, the shard choice and the slot tag each take
// different bits of it. No allocation, no std::string.
inline uint64_t hash_bytes(std::string_view s, uint64_t seed) {
  constexpr uint64_t kMul = 0x9fb21c651e98df25ull;
  constexpr uint64_t kFin = 0xd6e8feb86659fd93ull;
  const char* p = s.data();
  size_t n = s.size();
  uint64_t h = seed ^ (static_cast<uint64_t>(n) * kMul);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w ^ (static_cast<uint64_t>(n) << 56)) * kMul;
    h ^= h >> 29;
  }
  h ^= h >> 32;
  h *= kFin;
  h ^= h >> 32;
  h *= kFin;
  h ^= h >> 32;
  return h;
}

// xorshift64*: fast, 64 bits of state, good enough for sampling and coin flips.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 0x853c49e6748fea9bull) {}
  uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545f4914f6cdd1dull;
  }
  // Uniform in (0, 1]: never 0, so ln() of it is finite.
  double unit() { return static_cast<double>((next() >> 11) + 1) * 0x1.0p-53; }
  // Uniform in [0, n) for n > 0 (multiply-shift; the bias is below 2^-32 for table sizes).
  uint64_t below(uint64_t n) { return ((next() >> 32) * n) >> 32; }

 private:
  uint64_t s_;
};

}  // namespace cache
