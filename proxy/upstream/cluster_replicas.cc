// ClusterReads: one WriteLedger per cluster master, kept for the life of the process.
#include "proxy/upstream/cluster_replicas.h"

namespace respite {

size_t ClusterReads::index_of(const ShardReads* s) const {
  for (size_t i = 0; i < shards_.size(); ++i)
    if (shards_[i].get() == s) return i;
  return shards_.size();
}

ShardReads* ClusterReads::shard(std::string_view master) {
  std::lock_guard<std::mutex> g(mu_);
  for (const auto& s : shards_)
    if (s->master == master) return s.get();
  shards_.push_back(std::make_unique<ShardReads>(std::string(master)));
  names_.emplace_back();
  // Whatever the master holds now was not written through this ledger (ClusterReads header).
  shards_.back()->ledger.wrote_all();
  return shards_.back().get();
}

int ClusterReads::replica_index(ShardReads* s, std::string_view name) {
  std::lock_guard<std::mutex> g(mu_);
  const size_t k = index_of(s);
  if (k == shards_.size()) return -1;
  std::vector<std::string>& names = names_[k];
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<int>(i);
  if (names.size() >= ShardReads::kMaxReplicas) return -1;
  names.emplace_back(name);
  return static_cast<int>(names.size() - 1);
}

size_t ClusterReads::replicas_named(const ShardReads* s) const {
  std::lock_guard<std::mutex> g(mu_);
  const size_t k = index_of(s);
  return k == shards_.size() ? 0 : names_[k].size();
}

}  // namespace respite
