// Redis Cluster's key space as respite sees it: the slot of a key (CRC16 of the key, or of its
// hash tag, modulo 16384), and the slot map (which master, and which replicas, serve each
// slot), read from CLUSTER SHARDS (Redis 7.0+) or CLUSTER SLOTS (older servers).
//
// One map is shared by every loop (ClusterMapHolder): the watcher replaces it whole, loops read
// a snapshot and rebuild their own slot-to-Node table when the version moves.
#pragma once

#include <hiredis/hiredis.h>

#include <array>
#include <bitset>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace respite {

inline constexpr uint32_t kClusterSlots = 16384;
inline constexpr uint16_t kNoShard = 0xFFFF;

// CRC16-CCITT (XMODEM), as Redis Cluster uses it.
uint16_t crc16(std::string_view s);
// The slot of `key`: of the part between the first '{' and the next '}' when that is non-empty,
// else of the whole key (Redis's keyHashSlot).
uint16_t key_slot(std::string_view key);

struct ClusterNodeAddr {
  std::string host;
  int port = 0;
  std::string id;  // the node's 40-character id ("" when the reply does not give it)
  std::string name() const;  // "host:port" ("[v6]:port" for an IPv6 address), as MOVED says
};

// One shard: a master, its replicas, the slot ranges it serves.
struct ClusterShard {
  ClusterNodeAddr master;
  std::vector<ClusterNodeAddr> replicas;
  std::vector<std::pair<uint16_t, uint16_t>> ranges;  // inclusive
};

struct ClusterMap {
  std::vector<ClusterShard> shards;
  // The shard serving each slot, or kNoShard.
  std::array<uint16_t, kClusterSlots> owner;
  // With reads from replicas: slots being migrated, as the masters themselves say (a migrating
  // or importing marker, or a slot the map gives a master that does not claim it). Replicas know
  // nothing of a migration (a key already MIGRATEd reads nil there): reads of these go to masters.
  std::bitset<kClusterSlots> moving;
  ClusterMap() { owner.fill(kNoShard); }
  // Fills `owner` from the shards' ranges; false when a slot is claimed twice.
  bool index();
  size_t slots_covered() const;
  // The shard whose master is `name` ("host:port"), or kNoShard.
  uint16_t shard_of(std::string_view name) const;
};

// Parse a CLUSTER SHARDS or CLUSTER SLOTS reply (RESP2 or RESP3, as hiredis returns it) into
// `out` (indexed). "" or why it could not be read. `default_host`: the host of the node asked,
// used when a node reports an empty endpoint ('?' or "" as Redis prints an unknown one).
// Masters that are marked failed (SHARDS "health": "fail") or serve no slot are kept out.
// With `tls` (--upstream-tls) a node's "tls-port" is used when SHARDS gives one; CLUSTER SLOTS
// asked over TLS already answers the TLS ports.
std::string parse_cluster_shards(const redisReply* r, const std::string& default_host,
                                 ClusterMap& out, bool tls = false);
std::string parse_cluster_slots(const redisReply* r, const std::string& default_host,
                                ClusterMap& out);
// From a master's CLUSTER NODES reply, its own (`myself`) line: sets in `moving` the slots it
// marks migrating or importing, and those the map gives it (`shard`) that it does not claim.
// False when the reply has no such line.
bool mark_moving_slots(std::string_view cluster_nodes, const ClusterMap& map, uint16_t shard,
                       std::bitset<kClusterSlots>& moving);

// The map every loop reads. set() publishes a new one and moves the version; loops compare
// version() (a relaxed atomic read per request is all a steady state costs) with theirs.
class ClusterMapHolder {
 public:
  std::shared_ptr<const ClusterMap> get() const {
    std::lock_guard<std::mutex> g(mu_);
    return map_;
  }
  void set(std::shared_ptr<const ClusterMap> m) {
    std::lock_guard<std::mutex> g(mu_);
    map_ = std::move(m);
    version_.fetch_add(1, std::memory_order_release);
  }
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ClusterMap> map_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace respite
