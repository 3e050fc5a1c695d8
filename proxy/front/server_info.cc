// PROXY INFO and /metrics: the values of every field of the list (proxy/ops/stats.h), read once
// from the server and the loops it shares the process with; rendering is proxy/ops's.
#include <unistd.h>

#include "proxy/ops/info.h"
#include "proxy/front/server.h"

#include <algorithm>

namespace respite {

InfoSnapshot Server::info_snapshot() {
  using F = InfoField;
  InfoSnapshot snap;
  // Other loops' levels are read from their atomics (refreshed by their timers), this loop's
  // directly; counters are per loop, INFO shows their sums.
  size_t pinned = 0;
  bool connected = false;
  for (Server* s : shared_->servers) {
    snap.add_loop_stats(s->stats());
    pinned += s == this ? node_->pinned_count() : s->pinned_count_.load(std::memory_order_relaxed);
    connected |= s == this ? upstream_connected() : s->upstream_up_.load(std::memory_order_relaxed);
  }
  snap.set_text(F::respite_version, RESPITE_VERSION);
  snap.set_number(F::process_id, getpid());
  snap.set_number(F::tcp_port, cfg_.port);
  snap.set_number(F::tls_port, cfg_.tls_port);
  snap.set_text(F::bind, cfg_.bind);
  snap.set_number(F::uptime_in_seconds, static_cast<int64_t>((now() - shared_->start_ms) / 1000));
  snap.set_number(F::threads, cfg_.threads);
  snap.set_number(F::connected_clients, shared_->clients.load());
  snap.set_number(F::maxclients, cfg_.maxclients);
  snap.set_number(F::pinned_clients, static_cast<int64_t>(pinned));
  snap.set_text(F::upstream, cfg_.upstream);
  snap.set_number(F::upstream_connected, connected ? 1 : 0);
  snap.set_text(F::upstream_version, upstream_version);
  snap.set_number(F::upstream_rtt_p50_us, static_cast<int64_t>(latency_percentile(0.5)));
  snap.set_number(F::upstream_rtt_p90_us, static_cast<int64_t>(latency_percentile(0.9)));
  snap.set_number(F::upstream_rtt_p99_us, static_cast<int64_t>(latency_percentile(0.99)));
  snap.set_number(F::upstream_rtt_p999_us, static_cast<int64_t>(latency_percentile(0.999)));
  snap.set_cache_stats(cache_path_.cache().stats());
  snap.set_number(F::cache_enabled, cache_path_.cache().enabled() ? 1 : 0);
  const Tracking& tracking = cache_path_.tracking();
  snap.set_text(F::cache_coherence, cache_coherence_name(cfg_.cache_coherence));
  snap.set_number(F::cache_serving, cache_path_.usable() ? 1 : 0);
  snap.set_text(F::tracking_link, tracking.ttl() ? "off" : tracking_up() ? "up" : "down");
  snap.set_number(F::tracking_refused, tracking.refused() ? 1 : 0);
  node_lines(snap, connected);
  return snap;
}

void Server::node_lines(InfoSnapshot& snap, bool primary_up) {
  using F = InfoField;
  WriteLedger* ledger = shared_->ledger.get();
  const bool cluster_reads = router_.cluster() && router_.reads_replicas();
  snap.set_text(F::read_from, ledger || cluster_reads ? cfg_.read_from : std::string("primary"));
  int64_t replicas = static_cast<int64_t>(router_.replicas().size()), healthy = 0;
  for (size_t i = 0; ledger && i < ledger->replicas(); ++i) healthy += ledger->health(i).healthy.load();
  // Cluster: the replicas of the map's masters as this loop knows them (Router::shard_routes).
  std::vector<const Router::ShardRoute*> shards;
  if (cluster_reads) shards = router_.shard_routes();
  for (const Router::ShardRoute* r : shards)
    for (size_t k = 0; k < r->by_index.size(); ++k)
      if (r->by_index[k]) {
        replicas++;
        healthy += r->reads->ledger.health(k).healthy.load();
      }
  snap.set_number(F::replicas, replicas);
  snap.set_number(F::replicas_healthy, healthy);
  Server* first = shared_->servers.front();
  const SentinelWatcher* sw =
      first == this || first->started_.load(std::memory_order_acquire) ? first->sentinel_.get() : nullptr;
  snap.set_text(F::sentinel_master, cfg_.sentinel_master.empty() ? std::string("none")
                                                                  : cfg_.sentinel_master);
  snap.set_number(F::sentinels_reachable, sw ? static_cast<int64_t>(sw->reachable()) : 0);
  snap.set_number(F::sentinel_switches, sw ? static_cast<int64_t>(sw->switches()) : 0);
  snap.set_number(F::sentinel_connects, sw ? static_cast<int64_t>(sw->connects()) : 0);
  snap.set_number(F::sentinel_errors, sw ? static_cast<int64_t>(sw->errors()) : 0);
  snap.set_number(F::replica_pending_keys,
                  ledger ? static_cast<int64_t>(ledger->pending_slots()) : 0);
  // Every loop has the same nodes in the same order; their counts are summed over the loops
  // that have started (a loop still starting has no nodes yet).
  const auto& mine = router_.nodes();
  if (router_.cluster()) {
    // Each loop meets the cluster's nodes in its own order and adds them while it runs: its
    // node list is not read from other threads. The lines are this loop's (the one answering).
    const std::vector<Node*>& masters = router_.masters();
    for (Node* n : mine) {
      InfoSnapshot::NodeLine line;
      line.addr = n->name();
      const bool master = std::find(masters.begin(), masters.end(), n) != masters.end();
      line.role = master ? "master" : n->role == Node::Role::Replica ? "replica" : "node";
      for (const Router::ShardRoute* r : shards)
        for (size_t k = 0; !master && k < r->by_index.size(); ++k)
          if (r->by_index[k] == n) {
            const ReplicaHealth& h = r->reads->ledger.health(k);
            line.offset = h.offset.load();
            line.lag = h.lag.load();
          }
      line.requests = static_cast<int64_t>(n->stats.requests.get());
      line.inflight = n->stats.inflight.get();
      line.errors = static_cast<int64_t>(n->stats.errors.get());
      line.redirects = static_cast<int64_t>(n->stats.redirects.get());
      if (const Tracking* t = cache_path_.tracking_for(n); t && !t->ttl() && cache_path_.cache().enabled())
        line.tracking = t->up() ? "up" : "down";
      line.state = n->connected() ? "up" : "down";
      snap.nodes.push_back(std::move(line));
    }
    return;
  }
  for (size_t k = 0; k < mine.size(); ++k) {
    InfoSnapshot::NodeLine line;
    line.addr = mine[k]->name();
    const bool primary = mine[k] == router_.primary();
    line.role = primary ? "primary" : "replica";
    for (Server* s : shared_->servers) {
      if (s != this && !s->started_.load(std::memory_order_acquire)) continue;
      const Node::NodeStats& st = s->router_.nodes()[k]->stats;
      line.requests += static_cast<int64_t>(st.requests.get());
      line.inflight += st.inflight.get();
      line.errors += static_cast<int64_t>(st.errors.get());
      line.redirects += static_cast<int64_t>(st.redirects.get());
    }
    if (const Tracking* t = cache_path_.tracking_for(mine[k]); t && !t->ttl() && cache_path_.cache().enabled())
      line.tracking = t->up() ? "up" : "down";
    if (primary) {
      line.state = primary_up ? "up" : "down";
    } else {
      const ReplicaHealth& h = ledger->health(k - 1);
      line.state = h.healthy.load() ? "up" : ReplicaHealth::why_text(h.why.load());
      line.offset = h.offset.load();
      line.lag = h.lag.load();
    }
    snap.nodes.push_back(std::move(line));
  }
}

// PROXY INFO [section]: INFO-format text, `# Section` headers and `name:value` lines.
std::string Server::info_text(const std::string& section) {
  return render_info(info_snapshot(), section);
}

}  // namespace respite
