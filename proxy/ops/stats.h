// Per-loop counters: written by one loop thread, read by any (PROXY INFO sums the loops).
#pragma once

#include <atomic>
#include <cstdint>

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

// Per-loop counters, one list: (name, INFO section, help).
#define RESPITE_PROXY_STATS(X)                                                                    \
  X(total_connections_received, "stats", "Client connections accepted")                         \
  X(total_commands_processed, "stats", "Commands received from clients")                         \
  X(rejected_connections, "stats", "Connections refused by maxclients")                          \
  X(forwarded_commands, "stats", "Commands forwarded to the upstream")                           \
  X(pinned_connections_opened, "stats", "Dedicated upstream connections opened for clients")     \
  X(rate_limited, "stats", "Requests refused by rate-limit")                                     \
  X(idle_timeouts, "stats", "Clients closed after being idle for timeout seconds")               \
  X(upstream_errors, "upstream", "Upstream connections lost or refused")                         \
  X(upstream_timeouts, "upstream", "Upstream requests that timed out")                           \
  X(upstream_connects, "upstream", "Upstream connections opened")                              \
  X(upstream_protocol_violations, "upstream",                                                    \
    "Upstream connections closed for a reply nobody was waiting for")                            \
  X(tracking_barriers, "upstream",                                                               \
    "Replies held until the invalidation link caught up (writes with unknown keys)")             \
  X(swapdb_flushes, "upstream", "Cache flushes after a SWAPDB seen in the upstream's stats")

struct Stats {
#define RESPITE_STAT_MEMBER(name, section, help) Counter name;
  RESPITE_PROXY_STATS(RESPITE_STAT_MEMBER)
#undef RESPITE_STAT_MEMBER
};

}  // namespace respite
