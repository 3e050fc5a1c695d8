// Reads from a Redis Cluster's replicas (--cluster --read-from replica|prefer-replica): the
// router's setup, the first loop's monitors (one per master, following the slot map), and
// where an acknowledged write is recorded. The mechanism: cluster_replicas.h, replication.h.
#include "proxy/front/server.h"

#include <algorithm>

#include "proxy/ops/log.h"

namespace respite {

void Server::cluster_read_setup() {
  router_.set_read_from(cfg_.read_from == "replica"          ? ReadFrom::Replica
                        : cfg_.read_from == "prefer-replica" ? ReadFrom::PreferReplica
                                                             : ReadFrom::Primary,
                        nullptr);
  router_.set_cluster_reads(shared_->cluster_reads.get());
}

// Runs on the first loop's timer: when this loop's shard routes changed (a new map), each
// current master's monitor polls its replicas as the map lists them now; the monitors of
// masters that left stop being ticked and their replicas take no reads. A monitor is never
// destroyed while the loop runs (a poll of it may be out; its ledger lives on anyway).
void Server::follow_cluster_replicas() {
  router_.sync_if_changed();
  if (router_.reads_version() != monitors_version_) {
    monitors_version_ = router_.reads_version();
    std::vector<ReplicaMonitor*> active;
    for (const Router::ShardRoute* r : router_.shard_routes()) {
      ReplicaMonitor* m = nullptr;
      for (auto& [s, mon] : cluster_monitors_)
        if (s == r->reads) m = mon.get();
      // Every index the ledger gave out, nullptr where this map lists no such replica.
      std::vector<Node*> by_index = r->by_index;
      by_index.resize(std::max(by_index.size(), shared_->cluster_reads->replicas_named(r->reads)));
      if (!m) {
        auto mon = std::make_unique<ReplicaMonitor>(this, &r->reads->ledger, r->master, by_index);
        m = mon.get();
        cluster_monitors_.emplace_back(r->reads, std::move(mon));
      }
      m->set_replicas(std::move(by_index));
      active.push_back(m);
    }
    for (ReplicaMonitor* m : active_monitors_)
      if (std::find(active.begin(), active.end(), m) == active.end()) m->deactivate();
    active_monitors_ = std::move(active);
  }
  const uint64_t t = now();
  for (ReplicaMonitor* m : active_monitors_) m->tick(t);
}

void Server::ledger_wrote(uint32_t db, std::string_view key) {
  if (!router_.cluster()) {
    shared_->ledger->wrote(db, key);
    return;
  }
  // The master this loop sends the key's slot to took the write (a MOVED retry updated the
  // slot first; after an ASK the slot reads from masters: ClusterReads::redirected).
  if (WriteLedger* l = router_.slot_ledger(key_slot(key))) l->wrote(db, key);
}

void Server::invalidate_after_write(WriteInvalidation* inv) {
  if (router_.reads_replicas()) {
    if (inv->scope != WriteInvalidation::Scope::Keys) {
      ledger_wrote_all();
    } else {
      for (const auto& [db, key] : inv->keys) {
        if (db == cache::kAllDbs) ledger_wrote_all();  // MOVE, COPY ... DB
        else ledger_wrote(db, key);
      }
    }
  }
  cache_path_.invalidate_after_write(inv);
}

void Server::tracking_barrier(Requester* c, uint64_t seq, std::string_view reply) {
  uint64_t mark = 0;
  if (router_.reads_replicas()) {
    mark = ledger_wrote_all();
    if (cache_path_.fills_from_replicas()) {  // the barrier waits for the replicas: ask now
      Server* first = shared_->servers.front();
      first->post([first] {
        if (first->replica_monitor_) first->replica_monitor_->kick();
      });
    }
  }
  cache_path_.tracking().barrier(c, seq, reply, mark);
}

uint64_t Server::ledger_wrote_all() {
  if (!router_.cluster()) return shared_->ledger->wrote_all();
  for (const Router::ShardRoute* r : router_.shard_routes()) r->reads->ledger.wrote_all();
  return 0;
}

}  // namespace respite
