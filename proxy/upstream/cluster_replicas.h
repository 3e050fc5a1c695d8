// Reads from a Redis Cluster's replicas (--cluster with --read-from replica|prefer-replica):
// the one-primary mechanism of replication.h, once per master.
//
// Each master of the slot map has a ShardReads: a WriteLedger (the writes it acknowledged,
// marked by the polls of its offset) and the names of its replicas, each with a fixed index in
// that ledger. Shards are kept for the life of the process, keyed by the master's address, and
// never rebuilt: a map that drops and brings back a master, or changes its replicas, finds the
// same ledger with every write it recorded (a replica's index stays its own; one no longer
// listed is simply not polled nor read from).
//
// What a ledger cannot know is data that reached its master by other ways than respite's
// writes to it: slots moved in (resharding: MIGRATE), a replica promoted (failover). So every
// loop, when it starts sending a slot to another master than before, records a write of
// unknown keys in that master's ledger (moved_in): its replicas answer nothing more until they
// have applied everything the master had at the next poll after that. A new shard starts so.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/upstream/cluster_map.h"
#include "proxy/upstream/replication.h"

namespace respite {

struct ShardReads {
  // More replicas than this per master take no reads (each costs a ReplicaHealth, and the
  // ledger's size is fixed at its making).
  static constexpr size_t kMaxReplicas = 16;
  explicit ShardReads(std::string m) : master(std::move(m)), ledger(kMaxReplicas) {}
  const std::string master;  // "host:port", as the map names it
  WriteLedger ledger;
};

class ClusterReads {
 public:
  // The shard of master `name`, made on first use (its ledger then holds one write of unknown
  // keys: nothing is read from its replicas before a poll made after this). The pointer stays
  // valid until the ClusterReads is destroyed. Any thread.
  ShardReads* shard(std::string_view master);
  // Replica `name`'s index in `s`'s ledger, given on first use; -1 when the shard has
  // kMaxReplicas already. Any thread.
  int replica_index(ShardReads* s, std::string_view name);
  // Replicas named so far in `s` (indices below this are given).
  size_t replicas_named(const ShardReads* s) const;

  // A -MOVED or -ASK reply for `slot` to another node than the map's master of it, `owner`
  // (nullptr: the map gives the slot to no one), on any loop: the node that acknowledges its
  // writes is not the one the map names (a slot being migrated, a map behind a failover), so
  // the replicas of `owner` may lack them. Reads of the slot go to masters, on every loop, until
  // the map gives the slot to another master than `owner` (whose replicas then apply everything
  // it holds first: Router::moved_in) -- not merely until the map changes.
  // `version`: the map's version when it was seen.
  void redirected(uint16_t slot, const ShardReads* owner, uint64_t version) {
    std::atomic<uint64_t>& a = held_at_[slot];
    uint64_t cur = a.load();
    while (cur < version && !a.compare_exchange_weak(cur, version)) {
    }
    held_[slot].store(owner ? owner : unowned(), std::memory_order_seq_cst);
  }
  // Reads of `slot`, whose master in this loop's map (of version `version`) has `owner`, may go
  // to replicas. The first loop to see another owner releases the hold, for maps of its version
  // on: a loop still on an older map keeps reading from the master.
  bool settled(uint16_t slot, const ShardReads* owner, uint64_t version) {
    const ShardReads* h = held_[slot].load(std::memory_order_seq_cst);
    if (h == owner) return false;
    if (h != nullptr) {
      // Another owner in a map no newer than the redirect's: not the change that settles it.
      if (version <= held_at_[slot].load(std::memory_order_seq_cst)) return false;
      std::atomic<uint64_t>& c = cleared_[slot];
      uint64_t cur = c.load();
      while (cur < version && !c.compare_exchange_weak(cur, version)) {
      }
      held_[slot].compare_exchange_strong(h, nullptr, std::memory_order_seq_cst);
      return true;
    }
    return version >= cleared_[slot].load(std::memory_order_seq_cst);
  }

 private:
  static const ShardReads* unowned() { return reinterpret_cast<const ShardReads*>(uintptr_t{1}); }
  // Per slot: the map's master of it when a redirect was seen (unowned(): none), or nullptr;
  // and the map version from which a released hold no longer applies.
  std::unique_ptr<std::atomic<const ShardReads*>[]> held_{
      new std::atomic<const ShardReads*>[kClusterSlots]()};
  std::unique_ptr<std::atomic<uint64_t>[]> held_at_{new std::atomic<uint64_t>[kClusterSlots]()};
  std::unique_ptr<std::atomic<uint64_t>[]> cleared_{new std::atomic<uint64_t>[kClusterSlots]()};
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<ShardReads>> shards_;
  std::vector<std::vector<std::string>> names_;  // per shard, by ledger index
  size_t index_of(const ShardReads* s) const;
};

}  // namespace respite
