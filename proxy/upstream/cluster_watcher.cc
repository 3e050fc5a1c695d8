#include "proxy/upstream/cluster_watcher.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>

#include "proxy/ops/log.h"

namespace respite {

namespace {
bool same_map(const ClusterMap& a, const ClusterMap& b) {
  if (a.owner != b.owner || a.moving != b.moving || a.shards.size() != b.shards.size())
    return false;
  for (size_t i = 0; i < a.shards.size(); ++i) {
    const ClusterShard& x = a.shards[i];
    const ClusterShard& y = b.shards[i];
    if (x.master.name() != y.master.name() || x.replicas.size() != y.replicas.size()) return false;
    for (size_t r = 0; r < x.replicas.size(); ++r)
      if (x.replicas[r].name() != y.replicas[r].name()) return false;
  }
  return true;
}
}  // namespace

std::string ClusterWatcher::ask(const std::string& host, int port, ClusterMap& out) {
  if (!conn_ || conn_host_ != host || conn_port_ != port || conn_->err) {
    conn_.reset();
    std::string err;
    conn_ = blocking_open(host, port, cfg_.upstream_user, cfg_.upstream_password, err, 1000,
                          tls_.get());
    if (!conn_) return err;
    conn_host_ = host;
    conn_port_ = port;
  }
  BlockingReply r = blocking_command(conn_.get(), {"CLUSTER", "SHARDS"});
  if (!r) {
    std::string why = conn_->errstr;
    conn_.reset();
    return why;
  }
  std::string err;
  if (r->type == REDIS_REPLY_ERROR) {
    // Before 7.0: CLUSTER SLOTS.
    r = blocking_command(conn_.get(), {"CLUSTER", "SLOTS"});
    if (!r) {
      std::string why = conn_->errstr;
      conn_.reset();
      return why;
    }
    if (r->type == REDIS_REPLY_ERROR) return r->str;
    err = parse_cluster_slots(r.get(), host, out);
  } else {
    err = parse_cluster_shards(r.get(), host, out, tls_ != nullptr);
  }
  if (err.empty() && out.shards.empty()) err = "the node serves no slot (not a cluster yet?)";
  return err;
}

// Reads from replicas: each master's own CLUSTER NODES line says which of its slots are being
// migrated (ClusterMap::moving). A master that does not answer marks nothing.
void ClusterWatcher::ask_masters(ClusterMap& map) {
  std::vector<std::pair<std::string, BlockingConn>> kept;
  for (size_t s = 0; s < map.shards.size(); ++s) {
    const ClusterNodeAddr& m = map.shards[s].master;
    const std::string name = m.name();
    BlockingConn c;
    for (auto& [n, conn] : master_conns_)
      if (n == name && conn && !conn->err) c = std::move(conn);
    if (!c) {
      std::string err;
      c = blocking_open(m.host, m.port, cfg_.upstream_user, cfg_.upstream_password, err, 500,
                        tls_.get());
      if (!c) continue;
    }
    BlockingReply r = blocking_command(c.get(), {"CLUSTER", "NODES"});
    if (!r) continue;
    if (r->type == REDIS_REPLY_STRING)
      mark_moving_slots({r->str, r->len}, map, static_cast<uint16_t>(s), map.moving);
    kept.emplace_back(name, std::move(c));
  }
  master_conns_ = std::move(kept);
}

std::string ClusterWatcher::refresh() {
  // The masters of the map known, then the seeds: the first that answers.
  std::vector<std::pair<std::string, int>> candidates;
  if (auto m = holder_->get()) {
    for (const ClusterShard& s : m->shards) {
      candidates.emplace_back(s.master.host, s.master.port);
      for (const ClusterNodeAddr& r : s.replicas) candidates.emplace_back(r.host, r.port);
    }
  }
  if (!conn_host_.empty()) candidates.insert(candidates.begin(), {conn_host_, conn_port_});
  for (const auto& a : cfg_.upstream_addrs) candidates.push_back(a);
  std::vector<std::string> why;
  for (const auto& [host, port] : candidates) {
    auto map = std::make_shared<ClusterMap>();
    std::string err = ask(host, port, *map);
    if (!err.empty()) {
      why.push_back(fmt::format("{}:{}: {}", host, port, err));
      continue;
    }
    if (cfg_.cluster && cfg_.read_from != "primary") ask_masters(*map);
    refreshes_.fetch_add(1, std::memory_order_relaxed);
    auto old = holder_->get();
    if (!old || !same_map(*old, *map)) {
      if (old)
        log(LogLevel::Notice, "cluster map changed: {} shards, {} slots served (asked {}:{})",
            map->shards.size(), map->slots_covered(), host, port);
      holder_->set(std::move(map));
    }
    return "";
  }
  return fmt::format("no cluster node answered: {}", fmt::join(why, "; "));
}

void ClusterWatcher::start() {
  thread_ = std::thread([this] { run(); });
}

void ClusterWatcher::stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ClusterWatcher::want_refresh() {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (wanted_) return;
    wanted_ = true;
  }
  cv_.notify_all();
}

void ClusterWatcher::run() {
  using clock = std::chrono::steady_clock;
  std::string last_error;
  for (;;) {
    {
      std::unique_lock<std::mutex> g(mu_);
      cv_.wait_for(g, std::chrono::milliseconds(kPeriodMs), [this] { return stopping_ || wanted_; });
      if (stopping_) return;
      wanted_ = false;
    }
    auto began = clock::now();
    std::string err = refresh();
    if (err != last_error) {
      if (!err.empty()) log(LogLevel::Warning, "cluster map not read: {}", err);
      else log(LogLevel::Notice, "cluster map read again");
      last_error = err;
    }
    // Requests for a refresh that arrive meanwhile wait out the gap: a burst of MOVED replies
    // costs one question.
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait_until(g, began + std::chrono::milliseconds(kMinGapMs), [this] { return stopping_; });
    if (stopping_) return;
  }
}

}  // namespace respite
