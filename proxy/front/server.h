// The event loop and the objects on it: Server (listener, cork, timers, stats), ClientConn (one
// per client socket, with its ordered reply queue) and UpstreamConn (a connection to the upstream
// Redis, shared by many clients or pinned to one).
//
// Lifetimes follow libuv's rule: an object that owns a handle is freed in the handle's close
// callback, and only once nothing else refers to it (ClientConn is reference counted because
// upstream requests in flight point at it).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/cache.h"
#include "proxy/cachepath/cache_path.h"
#include "proxy/front/client.h"
#include "proxy/front/acl/acl.h"
#include "proxy/front/dispatch.h"
#include "proxy/net/buffer.h"
#include "proxy/net/loop.h"
#include "proxy/net/tls_context.h"
#include "proxy/net/ring_queue.h"
#include "proxy/ops/config.h"
#include "proxy/ops/stats.h"
#include "proxy/upstream/requester.h"
#include "proxy/upstream/node.h"
#include "proxy/upstream/cluster_watcher.h"
#include "proxy/upstream/replica_monitor.h"
#include "proxy/upstream/router.h"
#include "proxy/upstream/sentinel.h"
#include "proxy/upstream/upstream_conn.h"
#include "resp/reply_scanner.h"
#include "resp/request_parser.h"

namespace respite {

// The port `listener` is bound to (a configured 0 picks one), or -1 (server.cc).
int bound_port(const uv_tcp_t& listener);

class Server;
class UpstreamConn;
struct CommandInfo;
class InfoSnapshot;

// Another front end on a loop (the HTTP port): started with the RESP listener, told when shutdown
// begins, waited for while it has connections, closed at the end. main.cc makes them.
class FrontEnd {
 public:
  virtual ~FrontEnd() = default;
  virtual bool start() = 0;  // false (logged) when it cannot listen
  virtual void begin_shutdown() = 0;
  virtual bool idle() const = 0;  // no connection left
  virtual void close() = 0;
};

// What the event loops share: the one cache, and process-wide numbers.
struct SlowEntry {
  uint64_t id;
  int64_t when;          // unix seconds
  uint64_t duration_us;  // upstream round trip
  std::string name, arg;
  std::string peer, client_name;
};

// Upstream round-trip times in power-of-two microsecond buckets: bucket i counts replies that
// took [2^(i-1), 2^i) us (bucket 0: under 1 us).
constexpr int kLatencyBuckets = 32;

// The cache and the per-loop cache paths (CacheShared), the slow log, the loops.
struct Shared : CacheShared {
  // The users (read-only once the loops run; main.cc loads it, else the first Server does).
  Acl acl;
  std::mutex slowlog_mu;
  std::deque<SlowEntry> slowlog;  // newest first, at most slowlog-max-len
  uint64_t slowlog_next_id = 0;
  std::vector<Server*> servers;          // one per loop; fixed before any loop runs
  std::atomic<int64_t> clients{0};       // connected clients, all loops (maxclients)
  std::atomic<uint64_t> next_client_id{1};
  uint64_t start_ms = 0;
  // With --replica: which replica may answer which read (every loop's router asks it; the
  // first loop's ReplicaMonitor feeds it). Made before any loop runs; nullptr without replicas.
  std::unique_ptr<WriteLedger> ledger;
  // With --cluster and --read-from replica|prefer-replica: a ledger per master (the first
  // loop's monitors feed them). Made before any loop runs; nullptr otherwise.
  std::unique_ptr<ClusterReads> cluster_reads;
  // With --cluster: the slot map every loop routes by, and its reader (main.cc starts it).
  ClusterMapHolder cluster_map;
  std::unique_ptr<ClusterWatcher> cluster_watcher;
  // TLS: the clients' context at start (each loop then holds its own, Server::set_tls), and
  // the one every upstream connection is made with (nullptr: plain TCP). main.cc makes them.
  std::shared_ptr<const TlsContext> tls_ctx;
  std::shared_ptr<const TlsContext> upstream_tls_ctx;
  // The clients' TLS settings now, and the context made from them (tls_ctx, replaced on each
  // reload), numbered: reloads from several loops are made one at a time under tls_mu, each
  // from the last one's settings, and a loop adopts a context only if it is newer than its own.
  std::mutex tls_mu;
  TlsSettings tls_settings;  // main.cc sets it with tls_ctx
  uint64_t tls_gen = 0;
};

// Cache settings that depend on the number of loops (shards, locking).
void configure_cache_threads(cache::Settings& s, int threads);


class Server final : public UpstreamHost, public NodeObserver {
 public:
  // `index` 0 is the loop that handles signals; with --threads N there are N servers, each with
  // its own loop, listener (SO_REUSEPORT) and upstream connections, sharing `shared`.
  Server(Config cfg, Shared* shared, int index);
  ~Server();
  // Binds and runs until SIGTERM/SIGINT; returns the process exit code. The same in three
  // steps, for a test that drives the loop itself: start() resolves the upstream, binds and
  // starts the handles (0, or 1 after logging why; then the loop holds nothing to close);
  // the caller runs loop() until begin_shutdown() has stopped it; finish() closes every
  // connection and handle and runs the loop until they are gone.
  int run();
  int start();
  // The HTTP front end of this loop (before start()).
  void set_http(std::unique_ptr<FrontEnd> f) { http_ = std::move(f); }
  void finish();
  int port() const;  // the RESP port bound (useful with --port 0), -1 before start()
  int tls_port() const;  // the TLS port bound, -1 when there is none

  // TLS for clients (server_tls.cc). The context new TLS connections get: each loop holds its
  // own shared_ptr and swaps it on its own thread, so no lock is taken per accept.
  const std::shared_ptr<const TlsContext>& tls_context() const { return tls_ctx_; }
  // Makes a context from the current settings (Shared::tls_settings) with the fields that
  // differ between `before` and `after` changed (none: the same files read again, SIGHUP),
  // reading the files now (on the calling thread, under Shared::tls_mu), and hands it to every
  // loop (with its settings); connections already open keep theirs. An error text when the
  // files do not load (then every loop keeps its context), or "". Without a TLS port, as in
  // Redis, the settings are only kept (read when TLS starts).
  std::string reload_tls(const TlsSettings& before, const TlsSettings& after);
  // Runs `fn` on this server's loop thread (from any thread).
  void post(std::function<void()> fn);
  int index() const { return index_; }
  Shared* shared() { return shared_; }

  uv_loop_t* loop() override { return loop_.uv(); }
  Config& config() { return cfg_; }
  const Config& config() const override { return cfg_; }
  Stats& stats() override { return stats_; }
  uint64_t now() override { return loop_.now(); }
  const TlsContext* upstream_tls() const override { return shared_->upstream_tls_ctx.get(); }

  // The primary node's shared connection for a protocol, spread by client id (respite's own
  // requests: CLIENT UNBLOCK, the version and databases probes).
  UpstreamConn* shared_conn(int proto, uint64_t client_id);
  // A dedicated connection for `c` on `node`, in `db` (-1: the client's).
  UpstreamConn* open_pinned(ClientConn* c, Node* node, int db = -1);
  bool upstream_connected() const;

  // Dispatch of one parsed request (front/dispatch.h).
  Dispatch& dispatch() { return dispatch_; }

  // Cache settings changed at runtime (PROXY CONFIG SET).
  void apply_cache_config();
  void flush_cache();

  // The cache path: GET/MGET from the cache, fills, write invalidation, tracking.
  CachePath& cache_path() { return cache_path_; }
  // The cache may answer `c`: the cache path is usable, and nothing the client has in flight
  // or holds (a pin, a transaction, a barrier) must be seen first.
  bool cache_usable(const ClientConn* c) const;
  // UpstreamHost: the second invalidation of a write, and the barrier (CachePath, Tracking).
  // Both also record the acknowledged write for reads from replicas (WriteLedger).
  void invalidate_key_after_write(uint32_t db, std::string_view key, uint64_t flights_at) override {
    if (router_.reads_replicas()) ledger_wrote(db, key);
    cache_path_.invalidate_key_after_write(db, key, flights_at);
  }
  // An acknowledged write for the replicas' ledger (Cluster: the ledger of the key's master as
  // this loop sends it), of `key` or of unknown keys (every ledger; returns the one-primary
  // ledger's mark, 0 in Cluster). Only while router().reads_replicas().
  void ledger_wrote(uint32_t db, std::string_view key);
  uint64_t ledger_wrote_all();
  void invalidate_after_write(WriteInvalidation* inv) override;
  void tracking_barrier(Requester* c, uint64_t seq, std::string_view reply) override;
  bool redirect(const Redirect& r) override { return dispatch_.redirect(r); }
  // A node answered -READONLY: with Sentinel, ask where the primary is now.
  void upstream_readonly(Node* n) override;
  // Sentinel moved the primary: this loop's primary node goes to `host`:`port`.
  void switch_primary(const std::string& host, int port);
  // Sentinel began a failover: writes (and pinned clients' requests) get an error instead of
  // reaching the old primary, until switch_primary() or `until_ms`.
  void hold_writes(uint64_t until_ms) { writes_held_until_ = until_ms; }
  bool writes_held() { return writes_held_until_ != 0 && now() < writes_held_until_; }
  // The batch clock (Loop::micros).
  cache::Micros micros() const override { return loop_.micros(); }
  cache::Micros tick_micros() override { return loop_.tick_micros(); }
  bool tracking_up() const { return node_ && node_->tracking.up; }
  // The number of databases the upstream has (CONFIG GET databases at connect; --databases
  // until it answered or when it refuses CONFIG).
  int databases() const { return databases_; }
  // Whether the upstream told its number of databases; if not, a SELECT beyond the highest one
  // seen to work is tried on a shared connection first (select_by_trying).
  bool databases_known() const { return databases_known_; }
  void ask_databases(UpstreamConn* u);

  void client_closed(ClientConn* c);
  void add_dirty(ClientConn* c) { dirty_clients_.push_back(c); }
  void add_dirty(UpstreamConn* u, bool listed) override;
  void add_resume(ClientConn* c) { resume_clients_.push_back(c); }
  void add_input(ClientConn* c) { input_clients_.push_back(c); }
  // Input left for the next loop turn (the per-turn command budget ran out).
  void defer_input(ClientConn* c);
  // A relayed reply arrived `us` microseconds after its request was queued.
  void record_round_trip(uint64_t us, const Requester* c, std::string_view name,
                         std::string_view arg) override;
  Counter latency_[kLatencyBuckets];
  uint64_t latency_percentile(double q) const;
  void upstream_gone(UpstreamConn* u) override;
  // The upstream nodes of this loop and which one a request goes to.
  Router& router() { return router_; }
  std::string upstream_version = "7.0.0";
  // INFO server's redis_version into upstream_version, on a shared connection that has just
  // connected (every reconnect: the upstream may have been restarted as another version); and
  // CLIENT ID on a new pinned connection (client_commands.cc).
  void read_upstream_version(UpstreamConn* u);
  void learn_upstream_client_id(UpstreamConn* u);

  size_t connected_clients() const { return clients_.size(); }
  // This loop's clients (CLIENT LIST/KILL/UNBLOCK; only on this loop's thread).
  const std::vector<ClientConn*>& clients() const { return clients_; }
  bool shutting_down() const { return shutting_down_; }
  void begin_shutdown();

  std::string info_text(const std::string& section);  // PROXY INFO
  // Every PROXY INFO field's value now, for PROXY INFO and /metrics (server_info.cc).
  InfoSnapshot info_snapshot();

 private:
  static void on_connection(uv_stream_t* s, int status);
  void set_tls(std::shared_ptr<const TlsContext> ctx, const TlsSettings& s, uint64_t gen);
  // Closes the TLS clients past their handshake deadline (tick, every 100 ms).
  void close_late_handshakes(uint64_t now);
  void close_listeners();
  void cork();  // once per loop turn: input, resumed clients, then every output written
  void tick();  // the loop's timer: timeouts, reconnects, idle clients, shutdown
  void maybe_finish_shutdown();
  // PROXY INFO's replica fields and one line per upstream node (server_info.cc).
  void node_lines(InfoSnapshot& snap, bool primary_up);
  int open_listener();
  // Answers a waiter on the loop it belongs to.
  void deliver_waiter(CacheWaiter& w, bool missing, std::string_view value, std::string_view error,
                      bool key_error, std::shared_ptr<const std::string>* shared_value = nullptr);

  Config cfg_;
  Shared* shared_;
  int index_;
  std::atomic<size_t> pinned_count_{0};  // for other loops' PROXY INFO, refreshed by the timer
  std::atomic<bool> upstream_up_{false};
  std::atomic<bool> started_{false};  // start() made the nodes (other loops' PROXY INFO reads them)
  Loop loop_;
  uv_tcp_t listener_;      // plain: off with --port 0 when a TLS port is given
  uv_tcp_t tls_listener_;  // --tls-port
  std::shared_ptr<const TlsContext> tls_ctx_;
  uint64_t tls_gen_ = 0;  // of tls_ctx_ (Shared::tls_gen)
  Stats stats_;
  bool shutting_down_ = false;
  uint64_t shutdown_deadline_ = 0;
  std::vector<ClientConn*> clients_;
  std::vector<ClientConn*> dirty_clients_;
  std::vector<ClientConn*> resume_clients_;
  std::vector<ClientConn*> input_clients_, input_spare_, deferred_input_;
  std::vector<UpstreamConn*> dirty_upstreams_;
  std::vector<ClientConn*> resume_spare_, client_spare_;
  std::vector<UpstreamConn*> upstream_spare_;
  std::unique_ptr<Node> node_;  // --upstream
  std::vector<std::unique_ptr<Node>> replica_nodes_;  // --replica, in the order given
  std::vector<std::unique_ptr<Node>> cluster_nodes_;  // --cluster: the nodes met (Router::sync)
  Node* make_cluster_node(const std::string& host, int port);
 public:
  // A MOVED reply was seen: the slot map is read again soon.
  void cluster_moved() {
    if (shared_->cluster_watcher) shared_->cluster_watcher->want_refresh();
  }

 private:
  // --cluster: the cache drops what it holds of slots this loop now sends elsewhere.
  void slots_moved(const std::vector<uint16_t>& slots);
  std::unique_ptr<ReplicaMonitor> replica_monitor_;   // the first loop's, with replicas
  // The first loop's, with Cluster replica reads: one per master met, kept (their polls may be
  // out); only those of the map's current masters are ticked (server_replicas.cc).
  std::vector<std::pair<const ShardReads*, std::unique_ptr<ReplicaMonitor>>> cluster_monitors_;
  std::vector<ReplicaMonitor*> active_monitors_;
  uint64_t monitors_version_ = 0;  // Router::reads_version() they follow
  void follow_cluster_replicas();
  void cluster_read_setup();  std::unique_ptr<SentinelWatcher> sentinel_;         // the first loop's, with --sentinel
  uint64_t writes_held_until_ = 0;                    // hold_writes()
  Router router_;
  CachePath cache_path_;
  Dispatch dispatch_{*this};
  // NodeObserver
  void on_shared_up(UpstreamConn* u) override;
  void on_link_lost(Node* n) override;
  void on_fetch_lost(Node* n) override;

  uint64_t next_idle_check_ms_ = 0;
  int databases_ = 16;
  bool databases_known_ = false;
  std::unique_ptr<ReplySink> databases_sink_;
  uint64_t next_token_check_ms_ = 0;
  uint64_t next_handshake_check_ms_ = 0;
  std::unique_ptr<FrontEnd> http_;  // --http-port: /lookup, /metrics, /healthz (proxy/http/)
};

}  // namespace respite
