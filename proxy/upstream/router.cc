// The router's Cluster side: this loop's slot table, rebuilt from the shared map when its
// version moves, and the nodes it meets on the way (router.h).
#include "proxy/upstream/router.h"

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
  std::vector<uint16_t> moved;
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
    }
  }
  if (!moved.empty() && on_moved_) on_moved_(moved);
}

}  // namespace respite
