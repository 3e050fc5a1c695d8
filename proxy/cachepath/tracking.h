// The tracking service of one loop: the connections that keep the cache coherent with writes
// made behind respite's back, on the node the cache reads from. The invalidation link (CLIENT
// ID, then SUBSCRIBE __redis__:invalidate) receives Redis's invalidation messages; the fetch
// connection (CLIENT TRACKING on REDIRECT <link id>) is where cache fills are read, so Redis
// reports every key read there. Both live in the node's Node::Tracking; this class starts them,
// reads the messages, and loses the cache when they go. Beyond what a write's own keys say: the
// barrier for writes respite cannot key (EVAL, FCALL, SORT ... STORE), and SWAPDB made directly
// on Redis, which sends no invalidation (Redis 7.0), seen as a change of its call count in INFO
// commandstats.
//
// With --read-from replica/prefer-replica each replica the cache fills from has its own Tracking
// (replica() >= 0): its link reports a key when the replica applies a write of it. It runs only
// while the replica is healthy (WriteLedger); it stops, and the cache is flushed, when the
// replica is not. The primary's Tracking alone polls SWAPDB and decides whether the cache is
// usable at all.
//
// cache-coherence ttl (proxy/ops/config.h) starts no link: the fetch connection is a plain one,
// the cache serves while it is open, and entries live at most cache-ttl-ms. With tracking, an
// upstream that answers CLIENT ID, SUBSCRIBE or CLIENT TRACKING with an error (ElastiCache 7.1,
// Memorystore, a renamed CLIENT, an ACL) is a known state, refused(): said once, the cache off,
// asked again every kRefusedRetryMs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "proxy/net/loop.h"
#include "proxy/upstream/requester.h"
#include "proxy/upstream/router.h"
#include "proxy/upstream/upstream_conn.h"

namespace respite {

struct CacheShared;

class Tracking {
 public:
  // The primary's (`replica` -1: the router's primary, whichever server that is now), or
  // replica `replica`'s (the ledger's index) on `node`.
  Tracking(CacheShared* shared, Loop* loop, UpstreamHost* host, Router* router,
           Node* node = nullptr, int replica = -1, WriteLedger* ledger = nullptr);
  Tracking(const Tracking&) = delete;
  Tracking& operator=(const Tracking&) = delete;

  // The invalidation link is subscribed and the fetch connection tracked: the cache may be used.
  bool up() const { return node().tracking.up; }
  // The cache may answer reads (tracking: up(); ttl: a fetch connection is open).
  bool serving() const { return ttl_ ? node().tracking.fetch != nullptr : node().tracking.up; }
  bool ttl() const { return ttl_; }
  // The upstream's last answer to the link's setup was an error (tracking mode).
  bool refused() const { return refused_; }
  int replica() const { return replica_; }
  Node& node() const { return node_ ? *node_ : *router_->primary(); }
  // A master of a Redis Cluster (made with `node` and no replica index): its loss drops only
  // the slots this loop sends to it, and there is no SWAPDB to poll (one db).
  bool cluster_node() const { return node_ && replica_ < 0; }
  int64_t link_id() const { return node().tracking.link_id; }
  // The timer: (re)starts the link once the node is up, polls SWAPDB's call count.
  void tick(uint64_t now);
  void stop() { stopping_ = true; }
  // The fetch connection: with tracking opened once the link is subscribed (its CLIENT TRACKING
  // answer decides up()), and again on first use after it was lost; nullptr without a link.
  // With ttl a plain connection, opened by the timer while the node answers.
  UpstreamConn* fetch_conn();
  // The link or the fetch connection closed (NodeObserver, through the server).
  void link_lost(const char* why);
  void fetch_lost();
  // The cache was switched off at runtime: the link goes.
  void close_link();

  // The reply of a write whose keys respite cannot know: the invalidations Redis made for it
  // are written to the tracking links before the answer to a PING sent there after the reply
  // arrived. `reply` goes to `c`'s slot `seq` once every loop's links have answered that PING
  // (at once when no link is up: the cache is not used then); a replica's link once the replica
  // has applied the write, WriteLedger mark `mark` (CachePath::coherence_ping).
  void barrier(Requester* c, uint64_t seq, std::string_view reply, uint64_t mark);
  // `done` runs on this loop once this link answered a PING (at once without a link).
  void link_ping(std::function<void()> done);

 private:
  void start_link();
  // The upstream answered `what` with the error `reply`: refused, unless the error is one that
  // passes (LOADING, BUSY). Logged once per process until tracking is accepted again.
  void refuse(std::string_view what, std::string_view reply);
  // CLIENT TRACKING's answer on fetch connection `f`.
  void on_tracking_reply(UpstreamConn* f, std::string_view reply);
  // Sends INFO commandstats on `via` (the link before it subscribes: the count to compare with
  // is known before anything is cached), or on the node's first shared connection.
  void poll_swapdb(UpstreamConn* via = nullptr);
  // What this node filled goes: every entry, or a cluster master's slots.
  void flush_filled();

  CacheShared* shared_;
  Loop* loop_;
  UpstreamHost* host_;
  Router* router_;
  Node* node_;
  const int replica_;
  WriteLedger* ledger_;
  const bool ttl_;  // cache-coherence ttl
  bool stopping_ = false;
  bool link_subscribed_ = false;  // the link's SUBSCRIBE was answered (this link)
  bool refused_ = false;
  bool replica_refusal_said_ = false;  // a replica's refusal, logged once until it accepts
  std::unique_ptr<ReplySink> link_id_sink_, link_sub_sink_, link_msg_sink_;
  bool swapdb_refused_ = false;  // the upstream refused INFO commandstats (said once)
  bool swapdb_poll_pending_ = false;  // the timer's poll is out
  uint64_t next_swapdb_poll_ms_ = 0;
  static constexpr uint64_t kSwapdbPollMs = 100;
  // A refusing upstream is asked again this often: one that allows tracking later (a changed
  // ACL or parameter group) gets its cache back, without a connection every 500 ms meanwhile.
  static constexpr uint64_t kRefusedRetryMs = 5000;
};

}  // namespace respite
