// Which upstream node a request goes to. Dispatch describes the request (what the command
// table says of it, its keys, the client's pin) and the router answers a node: the primary, or
// with --replica and --read-from a replica for a read that replica may answer without missing
// a write respite acknowledged (WriteLedger, replication.h). Sentinel (the primary changes at
// runtime) and Cluster (a node per key slot, MOVED and ASK) decide here too, without dispatch
// changing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "proxy/upstream/cluster_map.h"
#include "proxy/upstream/cluster_replicas.h"
#include "proxy/upstream/node.h"
#include "proxy/upstream/replication.h"

namespace respite {

// Where reads that may go to a replica go (--read-from).
enum class ReadFrom : uint8_t {
  Primary,        // every request to the primary
  Replica,        // reads to a replica; to the primary when none may answer (logged when no
                  // replica takes reads at all)
  PreferReplica,  // the same, the primary being an expected fallback
};

struct RouteRequest {
  bool write = true;       // may write (or the command table cannot tell): the primary
  bool pinned = false;     // goes to a connection pinned to its client: the primary
  uint32_t db = 0;
  int slot = -1;           // Cluster: the slot of every key of the request (-1: no key)
  // A read that may go to a replica (reads_replicas()): every key it reads, or keys_known false
  // when they cannot be told (KEYS, SCAN, DBSIZE): then only a replica that has applied every
  // write respite acknowledged may answer.
  std::span<const std::string_view> keys;
  bool keys_known = false;
};

class Router {
 public:
  void add(Node* n) {
    nodes_.push_back(n);
    if (!primary_) primary_ = n;
  }
  // Replica `n`, the ledger's replica index `replicas().size()` at the call.
  void add_replica(Node* n) {
    nodes_.push_back(n);
    replicas_.push_back(n);
  }
  void set_read_from(ReadFrom rf, WriteLedger* ledger) {
    read_from_ = rf;
    ledger_ = ledger;
  }
  Node* primary() const { return primary_; }
  const std::vector<Node*>& replicas() const { return replicas_; }
  // Reads may go to replicas (dispatch then fills RouteRequest::keys for reads, and writes
  // are recorded in the ledgers).
  bool reads_replicas() const {
    return read_from_ != ReadFrom::Primary && (cluster_reads_ || !replicas_.empty());
  }
  ReadFrom read_from() const { return read_from_; }
  bool any_replica_healthy() const;

  Node* route(const RouteRequest& rr) {
    if (cluster_) {
      if (rr.slot < 0) return any_master();
      if (rr.write || rr.pinned || !cluster_reads_) return slot_node(static_cast<uint16_t>(rr.slot));
      return cluster_read_node(static_cast<uint16_t>(rr.slot), rr);
    }
    if (rr.write || rr.pinned || !reads_replicas()) return primary_;
    return read_node(rr);
  }
  // Whether route() looks at RouteRequest::slot (dispatch computes it only then): Cluster.
  bool routes_by_key() const { return cluster_ != nullptr; }

  // ---- Redis Cluster ----
  // The slot map every loop shares, and how this loop makes a Node for an address it has not
  // met (the factory adds it with add()). Before the loop runs.
  using NodeFactory = std::function<Node*(const std::string& host, int port)>;
  // `on_moved(slots)`: slots this loop now sends to another node than before (the cache drops
  // what it holds of them).
  void set_cluster(ClusterMapHolder* holder, NodeFactory make,
                   std::function<void(const std::vector<uint16_t>&)> on_moved) {
    cluster_ = holder;
    make_node_ = std::move(make);
    on_moved_ = std::move(on_moved);
    follow_redirects_ = true;
    slot_idx_.assign(kClusterSlots, 0);
    idx_nodes_.assign(1, nullptr);
    sync();
  }
  bool cluster() const { return cluster_ != nullptr; }
  // The node serving `slot` as this loop knows it (the shared map, and MOVED replies since).
  Node* slot_node(uint16_t slot) {
    if (cluster_->version() != seen_version_) sync();
    Node* n = idx_nodes_[slot_idx_[slot]];
    return n ? n : any_master();
  }
  // Where a request without keys goes: the master of the lowest served slot (it follows a
  // failover), else the first seed.
  Node* any_master() {
    if (cluster_ && cluster_->version() != seen_version_) sync();
    return first_master_ ? first_master_ : primary_;
  }
  // Every master of the map (fan-out commands: DBSIZE, KEYS, SCAN, FLUSHALL ...), in shard
  // order of the map.
  const std::vector<Node*>& masters() {
    if (cluster_->version() != seen_version_) sync();
    return masters_;
  }
  // A -MOVED reply: `slot` is served by `n` from now on (until the map says otherwise).
  void moved(uint16_t slot, Node* n) {
    if (on_stale_) on_stale_();
    if (slot >= kClusterSlots || idx_nodes_[slot_idx_[slot]] == n) return;
    redirected(slot, n);
    slot_idx_[slot] = index_of(n);
    moved_in(slot_idx_[slot]);
    if (on_moved_) on_moved_({slot});
  }
  // A -MOVED or -ASK reply for `slot` sending it to `target`, on any path: see
  // ClusterReads::redirected (nothing when the map already gives the slot to `target`).
  void redirected(uint16_t slot, const Node* target);

  // ---- Cluster replicas (--read-from replica|prefer-replica) ----
  // Before set_cluster(): reads may go to the replicas of each shard, their ledgers in `cr`.
  void set_cluster_reads(ClusterReads* cr) { cluster_reads_ = cr; }
  struct ShardRoute {
    Node* master = nullptr;
    ShardReads* reads = nullptr;  // nullptr: no such master in the map (no replica reads)
    std::vector<Node*> by_index;  // the ledger's replicas, nullptr: not listed now
  };
  // Per master of the map this loop syncs to (Router::sync), in no particular order.
  std::vector<const ShardRoute*> shard_routes() const;
  // The ledger recording writes to `slot` (its master's as this loop sends it), or nullptr.
  WriteLedger* slot_ledger(uint16_t slot) {
    if (cluster_->version() != seen_version_) sync();
    const uint16_t i = slot_idx_[slot];
    return i < idx_reads_.size() && idx_reads_[i].reads ? &idx_reads_[i].reads->ledger : nullptr;
  }
  // The master of `replica` in this loop's map (Cluster), or nullptr.
  Node* master_of(const Node* replica) const {
    for (const ShardRoute& r : idx_reads_)
      for (Node* n : r.by_index)
        if (n == replica && r.reads) return r.master;
    return nullptr;
  }
  // Moves when the shard routes change (the first loop's monitors follow it).
  uint64_t reads_version() const { return reads_version_; }
  // Called by moved(): the shared map is behind (the watcher reads it again).
  void set_on_stale(std::function<void()> f) { on_stale_ = std::move(f); }
  // The slots this loop sends to `n` (without reading the map again).
  std::vector<bool> slots_of(const Node* n) const {
    std::vector<bool> out(kClusterSlots, false);
    for (size_t s = 0; s < slot_idx_.size(); ++s) out[s] = idx_nodes_[slot_idx_[s]] == n;
    return out;
  }
  // The node named "host:port" (as MOVED/ASK name it), made when this loop has not met it.
  Node* find_or_make(std::string_view name);
  // Reads the shared map again (sync_if_changed: when it changed; the loop's timer).
  void sync();
  void sync_if_changed() {
    if (cluster_->version() != seen_version_) sync();
  }
  // Whether a -MOVED/-ASK reply may send a request again (Redis Cluster): forwarded requests
  // then keep their bytes until the reply (Forwarded::keep_for_retry). Off with one node, so
  // nothing is copied; on for tests of the retry path (and for Cluster, when it comes).
  bool follows_redirects() const { return follow_redirects_; }
  void set_follow_redirects(bool on) { follow_redirects_ = on; }
  // The node a MOVED/ASK names ("host:port" as Redis prints it), or nullptr if not known.
  Node* find(std::string_view name) const {
    for (Node* n : nodes_)
      if (n->name() == name) return n;
    return nullptr;
  }
  // Where a plain GET for a reader that cannot use the cache goes (CachePath::read_key); cache
  // fills choose their node themselves (CachePath::fill_tracking).
  Node* for_fill(uint32_t, std::string_view key) {
    return cluster_ ? slot_node(key_slot(key)) : primary_;
  }
  const std::vector<Node*>& nodes() const { return nodes_; }

 private:
  Node* cluster_read_node(uint16_t slot, const RouteRequest& rr);
  void sync_replicas(const ClusterMap& map, const std::vector<Node*>& by_shard);
  // Slots newly sent to the master of index `i`: its replicas must first apply what it has.
  void moved_in(uint16_t i) {
    if (i < idx_reads_.size() && idx_reads_[i].reads) idx_reads_[i].reads->ledger.wrote_all();
  }
  // A healthy replica that has applied the writes the read needs, the one with the fewest
  // requests in flight on this loop; else the primary.
  Node* read_node(const RouteRequest& rr) const {
    Node* best = nullptr;
    for (size_t i = 0; i < replicas_.size(); ++i) {
      Node* n = replicas_[i];
      if (!ledger_->health(i).healthy.load(std::memory_order_relaxed)) continue;
      if (best && n->stats.inflight.get() >= best->stats.inflight.get()) continue;
      if (!ledger_->may_read(i, rr.db, rr.keys, rr.keys_known)) continue;
      best = n;
    }
    return best ? best : primary_;
  }

  std::vector<Node*> nodes_;
  std::vector<Node*> replicas_;
  ClusterMapHolder* cluster_ = nullptr;
  NodeFactory make_node_;
  std::function<void(const std::vector<uint16_t>&)> on_moved_;
  std::function<void()> on_stale_;
  uint64_t seen_version_ = ~0ull;
  // The node of each slot, as an index into idx_nodes_ (0: none): 32 KB that stay in the CPU's
  // cache, where 16384 pointers (128 KB) missed it on most requests.
  std::vector<uint16_t> slot_idx_;
  std::vector<Node*> idx_nodes_;
  uint16_t index_of(Node* n) {
    for (size_t i = 1; i < idx_nodes_.size(); ++i)
      if (idx_nodes_[i] == n) return static_cast<uint16_t>(i);
    idx_nodes_.push_back(n);  // nodes a loop meets: far fewer than 65535
    return static_cast<uint16_t>(idx_nodes_.size() - 1);
  }
  std::vector<Node*> masters_;
  ClusterReads* cluster_reads_ = nullptr;
  std::bitset<kClusterSlots> moving_;  // the map's ClusterMap::moving as of the last sync
  std::vector<ShardRoute> idx_reads_;  // by the index of idx_nodes_: the replicas of a master
  uint64_t reads_version_ = 0;
  Node* first_master_ = nullptr;
  Node* primary_ = nullptr;
  ReadFrom read_from_ = ReadFrom::Primary;
  WriteLedger* ledger_ = nullptr;
  bool follow_redirects_ = false;
};

}  // namespace respite
