// Every PROXY INFO field in one list: its name, INFO section, kind, where its value comes from
// and its help text. The per-loop counters (Stats), the field enum, the INFO text
// (proxy/ops/info.h) and the Prometheus text of /metrics (proxy/ops/metrics.h) all follow from
// it. To add a field, add one row; a per-loop counter is then `stats().name++` on its loop.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string_view>

#include "cache/stats.h"

namespace respite {

// A counter written by one loop thread and read by any (PROXY INFO sums the loops): the
// increment is a plain load and store, no locked instruction.
class Counter {
 public:
  void operator++(int) { v_.store(v_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// A level (up and down) written by one loop thread and read by any, as Counter.
class Level {
 public:
  void operator++(int) { v_.store(v_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
  void operator--(int) { v_.store(v_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed); }
  int64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// One row per field, in INFO order (sections are contiguous):
//   X(name, section, kind, source, help)
//   kind:   kCounter (only grows; in /metrics <name>_total, a leading "total_" moved to the end),
//           kGauge (a level), kText (not a number: INFO only, left out of /metrics)
//   source: loops (a Counter in Stats, one per loop, INFO shows the sum) or set (filled in by
//           Server::info_snapshot)
// The cache's own stats (cache/stats.h, one list of its own) come in as CACHE(name, kind, help),
// all in section cache.
#define RESPITE_INFO_FIELDS(X, CACHE)                                                              \
  X(respite_version, server, kText, set, "respite's version")                                      \
  X(process_id, server, kGauge, set, "Process id of respite")                                      \
  X(tcp_port, server, kGauge, set, "TCP port respite listens on for Redis clients")                \
  X(bind, server, kText, set, "Address respite listens on for Redis clients")                      \
  X(tls_port, server, kGauge, set, "TLS port respite listens on for Redis clients (0: none)")      \
  X(uptime_in_seconds, server, kGauge, set, "Seconds since respite started")                       \
  X(threads, server, kGauge, set, "Event-loop threads")                                            \
  X(connected_clients, clients, kGauge, set, "Connected Redis-protocol clients")                   \
  X(maxclients, clients, kGauge, set, "Most clients accepted at once (per protocol front end)")    \
  X(pinned_clients, clients, kGauge, set, "Clients holding a dedicated upstream connection")       \
  X(total_connections_received, stats, kCounter, loops, "Client connections accepted")             \
  X(total_commands_processed, stats, kCounter, loops, "Commands received from clients")            \
  X(rejected_connections, stats, kCounter, loops, "Connections refused by maxclients")             \
  X(tls_connections_received, stats, kCounter, loops, "Client connections accepted on the TLS port") \
  X(tls_handshake_errors, stats, kCounter, loops,                                                  \
    "TLS client connections closed because their handshake failed (not TLS, wrong certificate, too slow)") \
  X(forwarded_commands, stats, kCounter, loops, "Commands forwarded to the upstream")              \
  X(pinned_connections_opened, stats, kCounter, loops,                                             \
    "Dedicated upstream connections opened for clients")                                           \
  X(rate_limited, stats, kCounter, loops, "Requests refused by rate-limit")                        \
  X(idle_timeouts, stats, kCounter, loops, "Clients closed after being idle for timeout seconds")  \
  X(upstream, upstream, kText, set, "The upstream Redis, host:port")                               \
  X(upstream_connected, upstream, kGauge, set, "1 when a shared upstream connection is ready")     \
  X(upstream_version, upstream, kText, set, "The upstream's redis_version")                        \
  X(upstream_errors, upstream, kCounter, loops, "Upstream connections lost or refused")            \
  X(upstream_timeouts, upstream, kCounter, loops, "Upstream requests that timed out")              \
  X(upstream_connects, upstream, kCounter, loops, "Upstream connections opened")                   \
  X(read_from, upstream, kText, set, "Where reads may go: primary, replica or prefer-replica")      \
  X(replicas, upstream, kGauge, set, "Replicas configured (--replica)")                            \
  X(replicas_healthy, upstream, kGauge, set,                                                       \
    "Replicas taking reads: answering, not loading, linked to their primary")                      \
  X(replica_reads, upstream, kCounter, loops, "Reads forwarded to a replica")                      \
  X(sentinel_master, upstream, kText, set, "The master name followed through Sentinel, or none")   \
  X(sentinels_reachable, upstream, kGauge, set, "Sentinels respite is subscribed to")             \
  X(sentinel_switches, upstream, kCounter, set, "Primary changes followed (Sentinel failovers)")  \
  X(sentinel_connects, upstream, kCounter, set,                                                    \
    "Connections opened to the Sentinels (not in upstream_connects)")                              \
  X(sentinel_errors, upstream, kCounter, set,                                                      \
    "Connections to the Sentinels lost or refused (not in upstream_errors)")                       \
  X(replica_pending_keys, upstream, kGauge, set,                                                   \
    "Keys written through respite that some replica has not applied yet (their reads go to the "   \
    "primary)")                                                                                    \
  X(upstream_protocol_violations, upstream, kCounter, loops,                                       \
    "Upstream connections closed for a reply nobody was waiting for")                              \
  X(tracking_barriers, upstream, kCounter, loops,                                                  \
    "Replies held until the invalidation link caught up (writes with unknown keys)")               \
  X(swapdb_flushes, upstream, kCounter, loops,                                                     \
    "Cache flushes after a SWAPDB seen in the upstream's stats")                                   \
  X(upstream_rtt_p50_us, latency, kGauge, set,                                                     \
    "Upstream round trip, 50th percentile (microseconds, upper bound of its power-of-two bucket)") \
  X(upstream_rtt_p90_us, latency, kGauge, set,                                                     \
    "Upstream round trip, 90th percentile (microseconds, upper bound of its power-of-two bucket)") \
  X(upstream_rtt_p99_us, latency, kGauge, set,                                                     \
    "Upstream round trip, 99th percentile (microseconds, upper bound of its power-of-two bucket)") \
  X(upstream_rtt_p999_us, latency, kGauge, set,                                                    \
    "Upstream round trip, 99.9th percentile (microseconds, upper bound of its power-of-two "       \
    "bucket)")                                                                                     \
  RESPITE_CACHE_STATS(CACHE)                                                                       \
  X(cache_enabled, cache, kGauge, set, "1 when the cache is on")                                   \
  X(cache_coherence, cache, kText, set,                                                            \
    "tracking or ttl: how writes made behind respite's back reach the cache")                      \
  X(cache_serving, cache, kGauge, set,                                                             \
    "1 when the cache answers reads: it is on, and its invalidation link is up or "                \
    "cache-coherence is ttl")                                                                      \
  X(tracking_link, cache, kText, set,                                                              \
    "up or down: the invalidation link to the upstream (off: cache-coherence ttl, no link)")       \
  X(tracking_refused, cache, kGauge, set,                                                          \
    "1 when the upstream refuses CLIENT TRACKING: with cache-coherence tracking the cache is "     \
    "off and reads are forwarded")

// The per-loop counters: the rows whose source is `loops`.
struct Stats {
#define RESPITE_STATS_MEMBER_loops(name) Counter name;
#define RESPITE_STATS_MEMBER_set(name)
#define RESPITE_STATS_MEMBER(name, section, kind, source, help) RESPITE_STATS_MEMBER_##source(name)
#define RESPITE_STATS_MEMBER_CACHE(name, kind, help)
  RESPITE_INFO_FIELDS(RESPITE_STATS_MEMBER, RESPITE_STATS_MEMBER_CACHE)
#undef RESPITE_STATS_MEMBER_CACHE
#undef RESPITE_STATS_MEMBER
#undef RESPITE_STATS_MEMBER_set
#undef RESPITE_STATS_MEMBER_loops
};

// Sections in INFO order.
enum class InfoSection : uint8_t { server, clients, stats, upstream, latency, cache };

// The section's name for PROXY INFO <section> and its title for `# Title` lines.
constexpr std::string_view info_section_name(InfoSection s) {
  constexpr std::string_view kNames[] = {"server",   "clients", "stats",
                                         "upstream", "latency", "cache"};
  return kNames[static_cast<size_t>(s)];
}
constexpr std::string_view info_section_title(InfoSection s) {
  constexpr std::string_view kTitles[] = {"Server",   "Clients", "Stats",
                                          "Upstream", "Latency", "Cache"};
  return kTitles[static_cast<size_t>(s)];
}

enum class InfoKind : uint8_t { kCounter, kGauge, kText };

// Every field, by its row's position.
enum class InfoField : uint16_t {
#define RESPITE_INFO_ENUM(name, ...) name,
  RESPITE_INFO_FIELDS(RESPITE_INFO_ENUM, RESPITE_INFO_ENUM)
#undef RESPITE_INFO_ENUM
};

struct InfoFieldDef {
  std::string_view name;
  InfoSection section;
  InfoKind kind;
  std::string_view help;
  Counter Stats::*loops;           // source `loops`: the per-loop counter, else null
  uint64_t cache::Stats::*cache;   // a cache stat: its field, else null
};

inline constexpr InfoFieldDef kInfoFields[] = {
#define RESPITE_INFO_SOURCE_loops(name) &Stats::name
#define RESPITE_INFO_SOURCE_set(name) nullptr
#define RESPITE_INFO_ROW(name, section, kind, source, help) \
  {#name, InfoSection::section, InfoKind::kind, help, RESPITE_INFO_SOURCE_##source(name), nullptr},
#define RESPITE_INFO_ROW_CACHE(name, kind, help) \
  {#name, InfoSection::cache, InfoKind::kind, help, nullptr, &cache::Stats::name},
    RESPITE_INFO_FIELDS(RESPITE_INFO_ROW, RESPITE_INFO_ROW_CACHE)
#undef RESPITE_INFO_ROW_CACHE
#undef RESPITE_INFO_ROW
#undef RESPITE_INFO_SOURCE_set
#undef RESPITE_INFO_SOURCE_loops
};

inline constexpr size_t kInfoFieldCount = std::size(kInfoFields);

constexpr const InfoFieldDef& info_field(InfoField f) {
  return kInfoFields[static_cast<size_t>(f)];
}

}  // namespace respite
