// The router's Cluster side: this loop's slot table, rebuilt from the shared map when its
// version moves, and the nodes it meets on the way (router.h).
#include "proxy/upstream/router.h"

#include <algorithm>

#include "proxy/ops/text.h"

namespace respite {

Node* Router::find_or_make(std::string_view name) {
  if (Node* n = find(name)) return n;
  if (!make_node_) return nullptr;
  // "host:port", or "[v6]:port".
  size_t colon = name.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return nullptr;
  std::string_view host = name.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  long long port;
  if (!parse_ll(name.substr(colon + 1), port) || port <= 0 || port > 65535) return nullptr;
  return make_node_(std::string(host), static_cast<int>(port));
}

void Router::sync() {
  seen_version_ = cluster_->version();
  std::shared_ptr<const ClusterMap> map = cluster_->get();
  if (!map) return;
  // Nodes by shard, made as needed.
  std::vector<Node*> by_shard(map->shards.size(), nullptr);
  masters_.clear();
  for (size_t s = 0; s < map->shards.size(); ++s) {
    by_shard[s] = find_or_make(map->shards[s].master.name());
    if (by_shard[s]) masters_.push_back(by_shard[s]);
  }
  moving_ = map->moving;
  if (cluster_reads_) sync_replicas(*map, by_shard);
  std::vector<uint16_t> moved;
  std::vector<uint16_t> gained;  // node indices that were given slots
  first_master_ = nullptr;
  for (uint32_t slot = 0; slot < kClusterSlots; ++slot) {
    uint16_t o = map->owner[slot];
    // A slot no master serves now (a failover in progress) keeps its node: requests get that
    // node's answer (CLUSTERDOWN, or a connection error), never a guess.
    if (o == kNoShard || !by_shard[o]) continue;
    Node* n = by_shard[o];
    if (!first_master_) first_master_ = n;
    if (idx_nodes_[slot_idx_[slot]] != n) {
      if (slot_idx_[slot] != 0) moved.push_back(static_cast<uint16_t>(slot));
      slot_idx_[slot] = index_of(n);
      if (cluster_reads_ && std::find(gained.begin(), gained.end(), slot_idx_[slot]) == gained.end())
        gained.push_back(slot_idx_[slot]);
    }
  }
  // The new owners' replicas first apply what their master holds now (a migrated key, a
  // promoted replica's data): ClusterReads's header. Slots given at the first sync need not:
  // a new shard's ledger starts so.
  if (!moved.empty())
    for (uint16_t i : gained) moved_in(i);
  if (!moved.empty() && on_moved_) on_moved_(moved);
}

void Router::sync_replicas(const ClusterMap& map, const std::vector<Node*>& by_shard) {
  ++reads_version_;
  std::vector<ShardReads*> before;
  for (ShardRoute& r : idx_reads_) {
    if (r.reads) before.push_back(r.reads);
    r = ShardRoute{};
  }
  for (size_t s = 0; s < map.shards.size(); ++s) {
    Node* m = by_shard[s];
    if (!m) continue;
    const uint16_t mi = index_of(m);
    if (idx_reads_.size() < idx_nodes_.size()) idx_reads_.resize(idx_nodes_.size());
    ShardRoute& r = idx_reads_[mi];
    r.master = m;
    r.reads = cluster_reads_->shard(m->name());
    // A master back in this loop's map (or met by a MOVED first, its writes then recorded
    // nowhere): as a new shard, its replicas first apply what it holds now.
    if (std::find(before.begin(), before.end(), r.reads) == before.end()) r.reads->ledger.wrote_all();
    m->role = Node::Role::Primary;
    for (const ClusterNodeAddr& a : map.shards[s].replicas) {
      Node* n = find_or_make(a.name());
      if (!n || n == m) continue;
      const int k = cluster_reads_->replica_index(r.reads, n->name());
      if (k < 0) continue;  // past ShardReads::kMaxReplicas: takes no reads
      if (r.by_index.size() <= static_cast<size_t>(k)) r.by_index.resize(static_cast<size_t>(k) + 1);
      r.by_index[static_cast<size_t>(k)] = n;
      n->role = Node::Role::Replica;
    }
  }
  if (idx_reads_.size() < idx_nodes_.size()) idx_reads_.resize(idx_nodes_.size());
}

void Router::redirected(uint16_t slot, const Node* target) {
  if (!cluster_reads_ || slot >= kClusterSlots) return;
  std::shared_ptr<const ClusterMap> map = cluster_->get();
  const ShardReads* owner = nullptr;
  if (map && map->owner[slot] < map->shards.size()) {
    const std::string name = map->shards[map->owner[slot]].master.name();
    // The map names the target already: its replicas were held back when it gained the slot.
    if (target && target->name() == name) return;
    owner = cluster_reads_->shard(name);
  }
  cluster_reads_->redirected(slot, owner, cluster_->version());
}

// A healthy replica of the slot's master that has applied the writes the read needs (the
// fewest requests in flight on this loop); else the master. Slots being migrated, and slots
// redirected away from their map master, read from masters.
Node* Router::cluster_read_node(uint16_t slot, const RouteRequest& rr) {
  Node* m = slot_node(slot);  // syncs first when the map moved
  const uint16_t i = slot_idx_[slot];
  // Being migrated (the masters say so), or redirected and not yet given to another master.
  if (moving_.test(slot) || i >= idx_reads_.size() || idx_nodes_[i] != m) return m;
  const ShardRoute& r = idx_reads_[i];
  if (!r.reads || !cluster_reads_->settled(slot, r.reads, seen_version_)) return m;
  Node* best = nullptr;
  for (size_t k = 0; k < r.by_index.size(); ++k) {
    Node* n = r.by_index[k];
    if (!n || !r.reads->ledger.health(k).healthy.load(std::memory_order_relaxed)) continue;
    if (best && n->stats.inflight.get() >= best->stats.inflight.get()) continue;
    if (!r.reads->ledger.may_read(k, rr.db, rr.keys, rr.keys_known)) continue;
    best = n;
  }
  return best ? best : m;
}

bool Router::any_replica_healthy() const {
  if (cluster_) {
    for (const ShardRoute& r : idx_reads_)
      for (size_t k = 0; r.reads && k < r.by_index.size(); ++k)
        if (r.by_index[k] && r.reads->ledger.health(k).healthy.load(std::memory_order_relaxed))
          return true;
    return false;
  }
  for (size_t i = 0; i < replicas_.size(); ++i)
    if (ledger_->health(i).healthy.load(std::memory_order_relaxed)) return true;
  return false;
}

std::vector<const Router::ShardRoute*> Router::shard_routes() const {
  std::vector<const ShardRoute*> out;
  for (const ShardRoute& r : idx_reads_)
    if (r.reads) out.push_back(&r);
  return out;
}

}  // namespace respite
