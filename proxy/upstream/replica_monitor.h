// The replicas' watcher, on one loop (the first): polls `INFO replication` on the primary (its
// offset, numbered as the WriteLedger's marks) and `INFO replication persistence` on every
// replica (applied offset, link to its primary, loading; a replica older than Redis 7 refuses
// two sections in one INFO, and is asked `INFO replication` and `INFO persistence` apart from
// then on), and publishes what it learns in the ledger for every loop's router. It polls every
// kIdleMs, and every kBehindMs while some acknowledged write is not yet known applied by a
// healthy replica, so reads of written keys return to the replicas soon after they catch up.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/upstream/node.h"
#include "proxy/upstream/replication.h"

namespace respite {

class ReplicaMonitor {
 public:
  // `replicas[i]` is the ledger's replica i; nullptr: none at that index now (Cluster: a
  // replica the slot map no longer lists), which takes no reads and is not polled.
  ReplicaMonitor(UpstreamHost* host, WriteLedger* ledger, Node* primary,
                 std::vector<Node*> replicas);
  ReplicaMonitor(const ReplicaMonitor&) = delete;
  ReplicaMonitor& operator=(const ReplicaMonitor&) = delete;

  void tick(uint64_t now);
  void stop() { stopping_ = true; }
  // Cluster: the shard's replicas now (indices as in the constructor; the list only grows).
  // One that left takes no reads from now on.
  void set_replicas(std::vector<Node*> replicas);
  // Cluster: a monitor whose master left the map is not ticked; its replicas take no reads.
  void deactivate();
  // Something waits for the replicas to apply a write (a script's barrier): poll the primary
  // now, and the replicas as soon as its offset is in, instead of at the next tick.
  void kick();
  // Runs (on this loop) when some replica's applied mark moved forward.
  void set_on_applied(std::function<void()> f) { on_applied_ = std::move(f); }

  static constexpr uint64_t kIdleMs = 100;
  static constexpr uint64_t kBehindMs = 5;

 private:
  void poll_primary();
  void poll_replica(size_t i);
  // Replica i's health from its INFO sections (one reply for both, or two), or its poll failed.
  // judge_replica: judge(), then on_applied_ if its applied mark moved, and a poll asked for
  // while this one was out.
  void judge_replica(size_t i, std::string_view replication, std::string_view persistence,
                     bool failed);
  void judge(size_t i, std::string_view replication, std::string_view persistence, bool failed);
  void set_health(size_t i, bool healthy, uint8_t why);

  UpstreamHost* host_;
  WriteLedger* ledger_;
  Node* primary_;
  std::vector<Node*> replicas_;
  bool primary_out_ = false;
  std::vector<uint8_t> replica_out_;
  std::vector<uint8_t> one_section_;            // refused the two-section INFO
  std::vector<std::string> replication_reply_;  // ...so its first reply, awaiting the second
  uint64_t last_poll_ms_ = 0;
  bool primary_again_ = false;        // kicked while a primary poll was out: poll once more
  std::vector<uint8_t> replica_again_;  // the same per replica, after a new primary offset
  std::function<void()> on_applied_;
  bool stopping_ = false;
};

// The value of `field` in an INFO reply ("" when absent).
std::string_view info_value(std::string_view info, std::string_view field);

}  // namespace respite
