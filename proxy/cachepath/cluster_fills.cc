// Cache fills with Redis Cluster: a tracking service per master (its invalidation link and
// tracked fetch connection), each miss read from the master serving its key's slot, and fills
// caught by a moving slot (-MOVED, -ASK) read again where the reply says, without caching.
//
// Why the cache stays coherent while slots move:
//  - a key read on master A is reported by A's link when A deletes it, which is what MIGRATE
//    does once the key is on B: the entry goes as the key leaves;
//  - a slot this loop sends elsewhere from now on (a MOVED, a new map) has its entries dropped
//    (Router's on_moved: Server::slots_moved);
//  - a fill during the move that finds the key gone (-ASK) or the slot gone (-MOVED) reads it
//    from the node named without caching it; the next miss fills from the slot's new master,
//    whose link then reports the key;
//  - a master's link lost drops the slots this loop sends to it (Tracking::flush_filled).
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <string>

#include "proxy/cachepath/cache_path.h"
#include "proxy/ops/log.h"
#include "proxy/ops/text.h"
#include "proxy/upstream/forwarded.h"
#include "resp/reply_view.h"
#include "resp/reply_writer.h"

namespace respite {

Tracking* CachePath::cluster_tracking(Node* n) {
  for (auto& t : cluster_tracking_)
    if (&t->node() == n) return t.get();
  cluster_tracking_.push_back(std::make_unique<Tracking>(shared_, loop_, host_, router_, n));
  return cluster_tracking_.back().get();
}

void CachePath::cluster_tick(uint64_t now) {
  const std::vector<Node*>& masters = router_->masters();
  bool any = false;
  for (Node* m : masters) any |= cluster_tracking(m)->serving();
  for (auto& t : cluster_tracking_) {
    if (std::find(masters.begin(), masters.end(), &t->node()) != masters.end()) {
      t->tick(now);
    } else if (t->node().tracking.link) {
      // No longer a master (failed over, or its slots all moved): nothing is filled from it.
      t->close_link();
    }
  }
  // The cache answers while some master's tracking is up; a miss of a key whose master's is
  // not is read without caching it (send_cluster_fetch).
  cluster_serving_ = any;
}

void CachePath::send_cluster_fetch(uint32_t db, std::span<const std::string_view> keys,
                                   std::span<const cache::FlightId> ids) {
  // Keys grouped by master, in order; one batch per master (the common single key: one).
  std::vector<Node*> node_of(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) node_of[i] = router_->slot_node(key_slot(keys[i]));
  std::vector<bool> sent(keys.size(), false);
  std::vector<std::string_view> group_keys;
  std::vector<cache::FlightId> group_ids;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (sent[i]) continue;
    Node* n = node_of[i];
    group_keys.clear();
    group_ids.clear();
    for (size_t j = i; j < keys.size(); ++j) {
      if (sent[j] || node_of[j] != n) continue;
      sent[j] = true;
      group_keys.push_back(keys[j]);
      group_ids.push_back(ids[j]);
    }
    Tracking* t = n ? cluster_tracking(n) : nullptr;
    UpstreamConn* fetch = t && t->serving() ? t->fetch_conn() : nullptr;
    if (fetch) {
      send_batch(fetch, db, group_keys, group_ids);
      continue;
    }
    // This master's tracking is not up (starting, or its link lost): read without caching.
    for (size_t k = 0; k < group_keys.size(); ++k) read_uncached(n, false, group_ids[k], group_keys[k], 0);
  }
}

void CachePath::fill_elsewhere(cache::FlightId id, std::string_view key, std::string_view error) {
  bool ask = false;
  std::string_view slot_text, target;
  Node* n = nullptr;
  if (parse_redirect(error, ask, slot_text, target)) n = router_->find_or_make(target);
  long long slot;
  if (n && !ask && parse_ll(slot_text, slot) && slot >= 0 && slot < kClusterSlots)
    router_->moved(static_cast<uint16_t>(slot), n);
  read_uncached(n, ask, id, key, 1);
}

namespace {
// One uncached read of a key for a flight's waiters: exactly one reply (ASKING, when asked, is
// sent before it with the connection's ignoring sink).
class UncachedRead final : public ReplySink {
 public:
  UncachedRead(CachePath* p, cache::FlightId id, std::string key, int tries,
               std::function<void(UncachedRead*, std::string_view, bool)> done)
      : path_(p), id_(id), key_(std::move(key)), tries_(tries), done_(std::move(done)) {}
  void on_reply(std::string_view reply, bool failed) override {
    auto done = std::move(done_);
    done(this, reply, failed);
    delete this;
  }
  CachePath* path_;
  cache::FlightId id_;
  std::string key_;
  int tries_;
  std::function<void(UncachedRead*, std::string_view, bool)> done_;
};
}  // namespace

void CachePath::read_uncached(Node* n, bool ask, cache::FlightId id, std::string_view key,
                              int tries) {
  auto answer = [this, id](bool missing, std::string_view value, std::string_view error,
                           bool key_error) {
    cache::Landing<CacheWaiter> l = cache_->abandon(id);
    for (CacheWaiter& w : l.waiters) deliver_waiter(w, missing, value, error, key_error);
  };
  UpstreamConn* u = n ? n->shared_conn(2, 0) : nullptr;
  if (!u) return answer(false, {}, upstream_error(kReconnecting), false);
  std::string req = "*2\r\n$3\r\nGET\r\n";
  resp::Writer(req, 2).bulk(key);
  auto on_done = [this, answer](UncachedRead* r, std::string_view reply, bool failed) {
    if (failed) return answer(false, {}, upstream_error(reply), false);
    resp::ReplyItem v;
    if (!resp::ReplyView(reply).next(v) || v.is_aggregate()) return answer(false, {}, upstream_error("fetch failed"), false);
    if (v.is_error()) {
      bool ask2 = false;
      std::string_view slot_text, target;
      if (r->tries_ < kMaxRedirects && parse_redirect(reply, ask2, slot_text, target)) {
        Node* next = router_->find_or_make(target);
        long long slot;
        if (next && !ask2 && parse_ll(slot_text, slot) && slot >= 0 && slot < kClusterSlots)
          router_->moved(static_cast<uint16_t>(slot), next);
        return read_uncached(next, ask2, r->id_, r->key_, r->tries_ + 1);
      }
      return answer(false, {}, reply, true);  // WRONGTYPE and the like: as a fill's error
    }
    if (v.null) return answer(true, {}, {}, false);
    if (v.type != '$') return answer(false, {}, upstream_error("fetch failed"), false);
    answer(false, v.str, {}, false);
  };
  if (ask) u->asking(0);
  u->request(new UncachedRead(this, id, std::string(key), tries, on_done), req, 0);
}

}  // namespace respite
