// Cache fills from replicas (--read-from replica, prefer-replica): which node a fill reads from,
// a tracking service per replica, and a barrier's wait for the replicas to apply a write.
//
// Why fills from a replica stay coherent with respite's own writes:
//  - a write's keys are recorded in the WriteLedger when its reply arrives, before the cache
//    drops them (Server::invalidate_after_write), so a fill chosen after that reads a replica
//    only once it has applied the write; a fill already sent is detached by that invalidation;
//  - writes whose keys respite cannot know (scripts) are recorded for every key, and their
//    reply waits until every replica the cache reads from has applied them and its link has
//    answered a PING (coherence_ping): the invalidations the replica made for them are in;
//  - writes made directly on the primary reach the cache when the replica applies them (its
//    link reports them), as any read from that replica would see them.
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <string>

#include "proxy/cachepath/cache_path.h"
#include "proxy/ops/log.h"

namespace respite {

void CachePath::add_replica(Node* n, int i, WriteLedger* ledger) {
  ledger_ = ledger;
  replica_tracking_.push_back(
      std::make_unique<Tracking>(shared_, loop_, host_, router_, n, i, ledger));
}

Tracking* CachePath::tracking_for(const Node* n) {
  for (auto& t : cluster_tracking_)
    if (&t->node() == n) return t.get();
  if (router_->cluster()) return nullptr;  // the seed's own tracking is not used
  if (n == &tracking_.node()) return &tracking_;
  for (auto& t : replica_tracking_)
    if (&t->node() == n) return t.get();
  return nullptr;
}

void CachePath::tick(uint64_t now) {
  if (router_->cluster()) return cluster_tick(now);
  tracking_.tick(now);
  for (auto& t : replica_tracking_) t->tick(now);
  if (!replica_waits_.empty()) check_replica_waits(now);
}

void CachePath::stop_tracking() {
  tracking_.stop();
  for (auto& t : cluster_tracking_) t->stop();
  for (auto& t : replica_tracking_) t->stop();
  // Barrier parts still waiting answer now, and later ones do not wait (coherence_ping): the
  // loop may stop before a wait would end. The cache goes first: what a replica said may be
  // older than those writes.
  waits_stopped_ = true;
  if (replica_waits_.empty()) return;
  shared_->cache->flush_all(cache::Source::kLocal);
  auto waits = std::move(replica_waits_);
  replica_waits_.clear();
  for (auto& w : waits) w.done();
}

void CachePath::close_links() {
  tracking_.close_link();
  for (auto& t : cluster_tracking_) t->close_link();
  for (auto& t : replica_tracking_) t->close_link();
}

Tracking* CachePath::fill_tracking(uint32_t db, std::span<const std::string_view> keys) {
  Tracking* best = nullptr;
  size_t best_pending = 0;
  for (auto& t : replica_tracking_) {
    if (!t->serving()) continue;  // link down, or the replica not healthy (Tracking::tick)
    if (!ledger_->health(t->replica()).healthy.load(std::memory_order_relaxed)) continue;
    UpstreamConn* f = t->fetch_conn();  // reopened here after it was lost, like the primary's
    if (!f || !f->ready()) continue;
    const size_t pending = f->pending();
    if (best && pending >= best_pending) continue;
    if (!ledger_->may_read(t->replica(), db, keys, true)) continue;
    best = t.get();
    best_pending = pending;
  }
  return best ? best : &tracking_;
}

void CachePath::coherence_ping(uint64_t mark, std::function<void()> done) {
  if (router_->cluster()) {
    // Every master's link answers a PING sent after the write (the script's keys may be on
    // any of them).
    auto left = std::make_shared<std::pair<size_t, std::function<void()>>>(1, std::move(done));
    auto part = [left] {
      if (--left->first == 0) left->second();
    };
    for (auto& t : cluster_tracking_) {
      left->first++;
      t->link_ping(part);
    }
    return part();
  }
  if (replica_tracking_.empty()) return tracking_.link_ping(std::move(done));
  if (waits_stopped_) {  // shutting down (stop_tracking): no waiting, no replica's word kept
    shared_->cache->flush_all(cache::Source::kLocal);
    return tracking_.link_ping(std::move(done));
  }
  struct Parts {
    size_t left;
    std::function<void()> done;
  };
  auto parts = std::make_shared<Parts>(Parts{1, std::move(done)});
  auto part_done = [parts] {
    if (--parts->left == 0) parts->done();
  };
  for (auto& t : replica_tracking_) {
    if (!t->up()) continue;  // nothing is cached from it
    parts->left++;
    replica_waits_.push_back({t.get(), mark, loop_->now() + kReplicaApplyWaitMs, part_done});
  }
  tracking_.link_ping(part_done);
  if (!replica_waits_.empty()) check_replica_waits(loop_->now());
}

void CachePath::check_replica_waits(uint64_t now) {
  // Parts taken out before they run: done() may complete a reply, which may start a new
  // barrier on this loop (appending here).
  std::vector<ReplicaWait> ready;
  for (size_t i = 0; i < replica_waits_.size();) {
    ReplicaWait& w = replica_waits_[i];
    const ReplicaHealth& h = ledger_->health(w.t->replica());
    const bool applied = h.applied.load(std::memory_order_relaxed) >= w.mark;
    if (applied || !w.t->up() || now >= w.give_up_ms ||
        !h.healthy.load(std::memory_order_relaxed)) {
      ready.push_back(std::move(w));
      replica_waits_[i] = std::move(replica_waits_.back());
      replica_waits_.pop_back();
    } else {
      ++i;
    }
  }
  for (ReplicaWait& w : ready) {
    const ReplicaHealth& h = ledger_->health(w.t->replica());
    if (!w.t->up()) {
      w.done();  // its link went, and the cache with it
    } else if (h.applied.load(std::memory_order_relaxed) >= w.mark) {
      w.t->link_ping(std::move(w.done));
    } else {
      // Too slow, or no longer trusted: what was read from it may be older than the write. The
      // cache goes (and the link; the tick starts it again, fills waiting in the ledger until
      // it has caught up).
      log(LogLevel::Notice,
          "replica {} has not applied a script's write ({}): cache flushed", w.t->node().name(),
          h.healthy.load(std::memory_order_relaxed)
              ? fmt::format("within {} ms", kReplicaApplyWaitMs)
              : std::string("it takes no reads"));
      w.t->close_link();
      shared_->cache->flush_all(cache::Source::kLocal);
      w.done();
    }
  }
}

}  // namespace respite
