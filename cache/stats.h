// The cache's statistics, generated from one list so the struct, PROXY INFO and /metrics cannot
// drift apart. To add a stat, add one X(...) line; everything else follows.
#pragma once

#include <cstdint>
#include <string_view>

namespace cache {

enum class StatKind : uint8_t { kCounter, kGauge };

// X(name, kind, help). Counters only grow; gauges are current levels.
#define RESPITE_CACHE_STATS(X)                                                                   \
  X(cache_hits, kCounter, "Lookups answered from the cache (MGET counts each key; negative "    \
                          "entries included)")                                                 \
  X(cache_misses, kCounter, "Lookups that found no live entry (expired ones included)")         \
  X(cache_keys, kGauge, "Entries held (negative entries included)")                             \
  X(cache_bytes, kGauge, "Bytes held: keys, values, entry headers, allocator rounding, hash "   \
                         "table and policy structures")                                         \
  X(cache_evictions, kCounter, "Entries evicted to stay within max-memory and max-keys")        \
  X(cache_expired, kCounter, "Entries removed because their TTL ran out")                       \
  X(cache_invalidations_local, kCounter, "Invalidations from writes that went through respite") \
  X(cache_invalidations_tracking, kCounter, "Invalidations received from the upstream")         \
  X(cache_fills, kCounter, "Fetched values stored in the cache")                                \
  X(cache_fills_discarded, kCounter, "Fetched values not stored because an invalidation "       \
                                     "raced the fetch")                                         \
  X(cache_fills_rejected, kCounter, "Fetched values not stored: too large, no room under the "  \
                                    "policy, or already expired")                               \
  X(singleflight_joined, kCounter, "Misses that joined a fetch already in flight")              \
  X(upstream_fetches, kCounter, "Fetches started for the cache (misses and early refreshes)")   \
  X(cache_early_refreshes, kCounter, "Fetches started early by XFetch")

struct Stats {
#define RESPITE_STAT_FIELD(name, kind, help) uint64_t name = 0;
  RESPITE_CACHE_STATS(RESPITE_STAT_FIELD)
#undef RESPITE_STAT_FIELD

  // Adds `o` field by field (gauges too: shards' levels add up to the cache's).
  Stats& operator+=(const Stats& o) {
#define RESPITE_STAT_ADD(name, kind, help) name += o.name;
    RESPITE_CACHE_STATS(RESPITE_STAT_ADD)
#undef RESPITE_STAT_ADD
    return *this;
  }
};

struct StatInfo {
  std::string_view name;
  StatKind kind;
  std::string_view help;
  uint64_t Stats::*field;
};

// Every stat in list order, e.g. for PROXY INFO:
//   for (const auto& s : kStatTable) out += fmt::format("{}:{}\r\n", s.name, stats.*s.field);
inline constexpr StatInfo kStatTable[] = {
#define RESPITE_STAT_INFO(name, kind, help) {#name, StatKind::kind, help, &Stats::name},
    RESPITE_CACHE_STATS(RESPITE_STAT_INFO)
#undef RESPITE_STAT_INFO
};

// Calls f(name, value, kind, help) for every stat, in list order.
template <class F>
void for_each_stat(const Stats& s, F&& f) {
  for (const StatInfo& i : kStatTable) f(i.name, s.*i.field, i.kind, i.help);
}

}  // namespace cache
