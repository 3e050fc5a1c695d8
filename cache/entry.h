// One cache entry: a 40-byte header followed in the same allocation by the key bytes and then
// the value bytes (the bulk payload). Shared by the store and the eviction policies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cache {

// Times are the injected clock's: microseconds for `now` arguments (monotonic, any origin),
// milliseconds (now / 1000, rounded down) for stored expiries.
using Micros = int64_t;

// Stored expiry meaning "no configured TTL and no upstream TTL". Also the largest storable one.
inline constexpr uint64_t kNoExpiry = (uint64_t{1} << 48) - 1;
// Largest db number and key length an entry can hold; larger ones are simply not cached.
inline constexpr uint32_t kMaxEntryDb = 0xffff;
inline constexpr uint32_t kMaxEntryKey = (1u << 24) - 1;

// Doubly-linked list links. Which list an entry is on belongs to the eviction policy.
struct Links {
  Links* prev;
  Links* next;
};

struct Entry : Links {
  enum Flag : uint8_t {
    kNegative = 1,  // the key was missing upstream; no value bytes
    kVolatile = 2,  // the upstream key had a TTL (what volatile-* policies may evict)
  };

  uint64_t expiry_ms : 48;  // absolute; expired once now_ms >= expiry_ms
  uint64_t db : 16;
  uint32_t value_len;
  uint32_t key_len : 24;
  uint32_t flags : 8;
  uint16_t fetch;           // last fetch duration, see encode_fetch_us()
  // Policy metadata (the policy that owns the entry decides the meaning):
  uint16_t meta16;          // LFU: last decrement time in minutes mod 2^16
  uint8_t meta8a;           // LFU: logarithmic access counter
  uint8_t meta8b;           // W-TinyLFU: segment

  char* key_data() { return reinterpret_cast<char*>(this + 1); }
  const char* key_data() const { return reinterpret_cast<const char*>(this + 1); }
  std::string_view key() const { return {key_data(), key_len}; }
  std::string_view value() const { return {key_data() + key_len, value_len}; }
  bool negative() const { return flags & kNegative; }
  bool is_volatile() const { return flags & kVolatile; }
};

// 40 bytes: two links, then 24 bytes of packed fields. The 64-bytes-per-entry budget of issue 4
// depends on it; see entry_charge().
static_assert(sizeof(Entry) == 40, "Entry header grew");

// What the allocator really hands out for an n-byte request: glibc malloc on 64-bit has an
// 8-byte chunk header, rounds chunks to 16 bytes and never makes one smaller than 32. Other
// allocators round differently; this is the estimate byte accounting uses.
constexpr size_t alloc_estimate(size_t n) {
  size_t chunk = (n + 8 + 15) & ~size_t{15};
  return chunk < 32 ? 32 : chunk;
}

// Bytes charged for one entry: header, key, value and allocator overhead. The hash-table slot is
// charged separately (the table's real size, see Store::bytes()).
constexpr size_t entry_charge(size_t key_len, size_t value_len) {
  return alloc_estimate(sizeof(Entry) + key_len + value_len);
}

// Fetch durations in 16 bits: exact microseconds below 32768 us, then units of 1024 us up to
// about 33.5 s (saturating). XFetch needs the order of magnitude, not the last microsecond.
constexpr uint16_t encode_fetch_us(uint64_t us) {
  if (us < 0x8000) return static_cast<uint16_t>(us);
  uint64_t units = us >> 10;
  return static_cast<uint16_t>(0x8000 | (units > 0x7fff ? 0x7fff : units));
}
constexpr uint64_t decode_fetch_us(uint16_t v) {
  return (v & 0x8000) ? uint64_t{v & 0x7fffu} << 10 : v;
}

}  // namespace cache
