// Sentinel: where the primary is, and when it moves.
//
// At start (before any loop runs) ask_sentinels() asks each Sentinel in turn
// SENTINEL GET-MASTER-ADDR-BY-NAME (and SENTINEL REPLICAS when reads may go to replicas and none
// were given) and confirms the answer with ROLE on the primary itself. While running, the first
// loop's SentinelWatcher keeps a subscription on every reachable Sentinel (+switch-master: the
// failover is done; +selected-slave: it has begun, writes get an error (not queued: the
// failover may take seconds) until it ends or -failover-abort-* says it was abandoned; +sdown/-sdown, +odown and
// +replica are logged) and asks again every
// kReaskMs and when a node answers -READONLY (a primary that was turned into a replica). A new
// address is handed to `on_switch`, which moves every loop's primary node there
// (Node::retarget: requests in flight fail, pinned clients are closed, the cache read from the
// old primary is flushed with its tracking link).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "proxy/ops/config.h"
#include "proxy/upstream/node.h"

namespace respite {

struct SentinelAnswer {
  std::string host;  // empty: not found (`error` says why)
  int port = 0;
  std::vector<std::pair<std::string, int>> replicas;  // not down, not disconnected
  std::string error;
};

// Blocking (1 s connect and reply timeouts per Sentinel): for start-up only.
// Over TLS in `tls` when it is given (--upstream-tls: the Sentinels too, as redis-cli --tls).
SentinelAnswer ask_sentinels(const Config& cfg, bool with_replicas, const TlsContext* tls = nullptr);

class SentinelWatcher final : private NodeObserver {
 public:
  using SwitchFn = std::function<void(const std::string& host, int port)>;
  // `on_hold(true)`: a failover of the primary has begun (+selected-slave): writes must stop
  // until `on_switch`; `on_hold(false)`: it was abandoned (-failover-abort-*). kHoldMs bounds
  // a hold whose end was never heard.
  SentinelWatcher(UpstreamHost* host, const Config& cfg, std::string primary_host,
                  int primary_port, SwitchFn on_switch, std::function<void(bool)> on_hold);
  ~SentinelWatcher();
  SentinelWatcher(const SentinelWatcher&) = delete;
  SentinelWatcher& operator=(const SentinelWatcher&) = delete;

  // Resolves the Sentinels' addresses; "" or why one failed.
  std::string start(uv_loop_t* loop);
  void tick(uint64_t now);
  // Ask every Sentinel now (a node answered -READONLY).
  void reask() { next_ask_ms_ = 0; }
  void stop();  // closes every connection (shutdown)
  // Failovers followed since start, and Sentinels subscribed to now (PROXY INFO, any loop).
  uint64_t switches() const { return switches_.load(std::memory_order_relaxed); }
  size_t reachable() const { return reachable_.load(std::memory_order_relaxed); }
  // Connections opened to the Sentinels, and lost or refused (PROXY INFO, any loop). They are
  // not the upstream's: upstream_connects/upstream_errors count connections to Redis only.
  uint64_t connects() const { return own_host_.counts.upstream_connects.get(); }
  uint64_t errors() const { return own_host_.counts.upstream_errors.get(); }

  static constexpr uint64_t kReaskMs = 1000;
  // Longer than a failover takes with Sentinel's default failover-timeout (180 s) would be safer
  // still; a minute keeps a hold whose end was lost from refusing writes for long.
  static constexpr uint64_t kHoldMs = 60000;
  static constexpr uint64_t kPreviousMs = 30000;  // the old primary is not taken back this soon

 private:
  struct Sentinel {
    std::unique_ptr<Node> node;
    std::unique_ptr<ReplySink> sub_sink;  // SUBSCRIBE's replies (one per channel)
    bool subscribed = false;
    bool asking = false;
  };
  // NodeObserver: a Sentinel's subscription (its node's tracking.link) dropped.
  void on_shared_up(UpstreamConn*) override {}
  void on_link_lost(Node*) override;
  void on_fetch_lost(Node*) override {}

  void subscribe(Sentinel& s);
  void ask(Sentinel& s);
  void on_message(std::string_view reply);
  // Every answer of an asking round is in: a new primary only when more than half of the
  // Sentinels answered and all of them name it (a Sentinel that missed the failover would
  // otherwise send respite back to the old primary).
  void round_done();
  // The primary is now (host, port).
  void named(const std::string& host, int port, bool announced);

  // The host the Sentinels' nodes and connections are made with: the loop's own for all but
  // the counters, which are the watcher's (`counts`, of which they touch upstream_connects,
  // upstream_errors and upstream_timeouts). last_dirty stays null here, so every request on
  // these connections calls add_dirty, which keeps the loop's own order of connections.
  class OwnCountsHost final : public UpstreamHost {
   public:
    explicit OwnCountsHost(UpstreamHost* loop_host) : h_(loop_host) {}
    Stats counts;
    uv_loop_t* loop() override { return h_->loop(); }
    uint64_t now() override { return h_->now(); }
    cache::Micros micros() const override { return h_->micros(); }
    cache::Micros tick_micros() override { return h_->tick_micros(); }
    const Config& config() const override { return h_->config(); }
    const TlsContext* upstream_tls() const override { return h_->upstream_tls(); }
    Stats& stats() override { return counts; }
    void add_dirty(UpstreamConn* u, bool listed) override { h_->add_dirty(u, listed); }
    void upstream_gone(UpstreamConn* u) override { h_->upstream_gone(u); }
    void record_round_trip(uint64_t us, const Requester* c, std::string_view name,
                           std::string_view arg) override {
      h_->record_round_trip(us, c, name, arg);
    }
    void invalidate_after_write(WriteInvalidation* inv) override { h_->invalidate_after_write(inv); }
    void invalidate_key_after_write(uint32_t db, std::string_view key,
                                    uint64_t flights_at) override {
      h_->invalidate_key_after_write(db, key, flights_at);
    }
    void tracking_barrier(Requester* c, uint64_t seq, std::string_view reply) override {
      h_->tracking_barrier(c, seq, reply);
    }
    bool redirect(const Redirect& r) override { return h_->redirect(r); }

   private:
    UpstreamHost* h_;
  };

  UpstreamHost* host_;
  OwnCountsHost own_host_;
  const Config& cfg_;
  std::string primary_host_;
  int primary_port_;
  SwitchFn on_switch_;
  std::function<void(bool)> on_hold_;
  std::vector<Sentinel> sentinels_;
  std::unique_ptr<ReplySink> msg_sink_;
  uint64_t next_ask_ms_ = 0;
  uint64_t next_sub_ms_ = 0;
  size_t round_outstanding_ = 0;
  std::vector<std::pair<std::string, int>> round_answers_;
  std::pair<std::string, int> previous_;  // the primary before the last switch...
  uint64_t previous_until_ms_ = 0;        // ...not taken back on a round's word before this
  std::atomic<uint64_t> switches_{0};
  std::atomic<size_t> reachable_{0};
  bool stopping_ = false;
};

}  // namespace respite
