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
#include "proxy/front/client.h"
#include "proxy/net/buffer.h"
#include "proxy/net/loop.h"
#include "proxy/net/ring_queue.h"
#include "proxy/ops/config.h"
#include "proxy/ops/stats.h"
#include "proxy/upstream/requester.h"
#include "proxy/upstream/node.h"
#include "proxy/upstream/router.h"
#include "proxy/upstream/upstream_conn.h"
#include "resp/reply_scanner.h"
#include "resp/request_parser.h"

namespace respite {

class Server;
class UpstreamConn;
struct CommandInfo;

struct MgetAssembly;

// Reads one key for a non-RESP front end (the HTTP lookup): through the cache and its
// single-flight like a GET. Exactly one call per read_key().
class ValueReader {
 public:
  virtual ~ValueReader() = default;
  // `error` non-empty: the upstream failed or refused (a complete RESP error reply, or a short
  // reason); else `missing` or `value`.
  virtual void on_value(bool missing, std::string_view value, std::string_view error) = 0;
};

// Who a cache flight answers: a GET's reply slot, one position of an MGET, or a ValueReader.
struct CacheWaiter {
  Requester* client = nullptr;  // GET: holds a reference
  uint64_t seq = 0;
  MgetAssembly* mget = nullptr;  // MGET: the reply being assembled
  uint32_t index = 0;
  ValueReader* reader = nullptr;
  Server* owner = nullptr;  // the loop the waiter lives on (single-flight spans loops)
};

class FetchBatch;

class Server;

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

struct Shared {
  std::unique_ptr<cache::Cache<CacheWaiter>> cache;
  std::atomic<uint64_t> flights_started{0};  // cache fetches sent, all loops
  std::mutex slowlog_mu;
  std::deque<SlowEntry> slowlog;  // newest first, at most slowlog-max-len
  uint64_t slowlog_next_id = 0;
  std::vector<Server*> servers;          // one per loop; fixed before any loop runs
  std::atomic<int64_t> clients{0};       // connected clients, all loops (maxclients)
  std::atomic<uint64_t> next_client_id{1};
  uint64_t start_ms = 0;
};

// Cache settings that depend on the number of loops (shards, locking).
void configure_cache_threads(cache::Settings& s, int threads);

class HttpServer;

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
  void finish();
  int port() const;  // the RESP port bound (useful with --port 0), -1 before start()
  // Runs `fn` on this server's loop thread (from any thread).
  void post(std::function<void()> fn);
  int index() const { return index_; }
  Shared* shared() { return shared_; }

  uv_loop_t* loop() override { return loop_.uv(); }
  Config& config() { return cfg_; }
  const Config& config() const override { return cfg_; }
  Stats& stats() override { return stats_; }
  uint64_t now() override { return loop_.now(); }

  // The shared upstream connection a client's commands go to (by protocol, spread by id).
  UpstreamConn* shared_conn(int proto, uint64_t client_id);
  // A dedicated connection for `c`, in `db` (-1: the client's).
  UpstreamConn* open_pinned(ClientConn* c, int db = -1);
  bool upstream_connected() const;

  // Dispatch of one parsed request (commands.cc).
  void dispatch(ClientConn* c, const resp::Frame& f);
  // RESET's effect on respite's side: no pin, no transaction, db 0, RESP2, no name.
  void reset_client(ClientConn* c);
  bool rate_allowed(ClientConn* c);
  // Sends a request upstream: on the client's pinned connection, on a new pinned one when the
  // command starts connection state, else on the shared one.
  void forward(ClientConn* c, const resp::Frame& f, const CommandInfo* ci);

  // Cache settings changed at runtime (PROXY CONFIG SET).
  void apply_cache_config();
  void flush_cache();

  // The cache path (cached_reads.cc). True when the GET/MGET was answered or joined a flight.
  bool cached_get(ClientConn* c, const resp::Frame& f);
  bool cached_mget(ClientConn* c, const resp::Frame& f);
  bool cache_usable(const ClientConn* c) const;
  // GET `key` in `db` for a ValueReader: from the cache, joining or starting a flight, or (cache
  // off or link down) with a plain upstream GET.
  void read_key(uint32_t db, std::string_view key, ValueReader* reader);
  // A write about to be forwarded: invalidates its keys now and returns what to invalidate
  // again when its reply arrives (nullptr when nothing is cached or it writes nothing).
  struct WritePlan {
    WriteInvalidation* heap = nullptr;  // several keys, a db or everything
    int key_arg = -1;                   // or the one key at this argv index
    uint32_t db = 0;
    uint64_t flights_at = 0;
  };
  WritePlan invalidate_before_write(ClientConn* c, const resp::Frame& f, const CommandInfo* ci);
  void invalidate_key_after_write(uint32_t db, std::string_view key, uint64_t flights_at) override;
  void invalidate_after_write(WriteInvalidation* inv) override;  // applies and frees `inv`
  void recycle(FetchBatch* b);  // a landed batch goes back to batch_pool_
  void fetch_landed(FetchBatch* b, const std::vector<std::string>& gets,
                    const std::vector<int64_t>& pttls, bool failed, std::string_view why);
  // The clock in microseconds, read once per batch of request work (each check phase, each
  // upstream read, each timer tick, each HTTP lookup) rather than once per request: reading it
  // per request was 5-8% of a pipelined GET or SET profile. Entries expire and round trips are
  // timed with the precision of one such batch, as Redis uses one time snapshot per command.
  cache::Micros micros() const override { return loop_.micros(); }
  cache::Micros tick_micros() override { return loop_.tick_micros(); }
  bool tracking_up() const { return trk().up; }
  // A reply of a write whose keys respite cannot know (EVAL, FCALL, SORT ... STORE): the
  // invalidations Redis made for it are written to the tracking links before the answer to a
  // PING sent there after the reply arrived. `reply` goes to `c`'s slot `seq` once every loop's
  // link has answered that PING (at once when no link is up: the cache is not used then).
  void tracking_barrier(Requester* c, uint64_t seq, std::string_view reply) override;
  // One loop's part of a barrier: `done` runs on this loop once its link answered a PING.
  void link_ping(std::function<void()> done);
  // The number of databases the upstream has (CONFIG GET databases at connect; --databases
  // until it answered or when it refuses CONFIG).
  int databases() const { return databases_; }
  // Whether the upstream told its number of databases; if not, a SELECT beyond the highest one
  // seen to work is tried on a shared connection first (select_by_trying).
  bool databases_known() const { return databases_known_; }
  void select_by_trying(ClientConn* c, int n);
  int verified_db_max_ = 0;
  void ask_databases(UpstreamConn* u);

  void client_closed(ClientConn* c);
  void add_dirty(ClientConn* c) { dirty_clients_.push_back(c); }
  void add_dirty(UpstreamConn* u) override { dirty_upstreams_.push_back(u); }
  void add_resume(ClientConn* c) { resume_clients_.push_back(c); }
  void add_input(ClientConn* c) { input_clients_.push_back(c); }
  // Input left for the next loop turn (the per-turn command budget ran out).
  void defer_input(ClientConn* c);
  // A relayed reply arrived `us` microseconds after its request was queued.
  void record_round_trip(uint64_t us, const Requester* c, std::string_view name,
                         std::string_view arg) override;
  Counter latency_[kLatencyBuckets];
  uint64_t latency_percentile(double q) const;
  std::vector<uint64_t> latency_histogram() const;  // summed over loops, per bucket
  void upstream_gone(UpstreamConn* u) override;
  // The upstream nodes of this loop and which one a request goes to.
  Router& router() { return router_; }
  Node& node() { return *node_; }
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

 private:
  static void on_connection(uv_stream_t* s, int status);
  void cork();  // once per loop turn: input, resumed clients, then every output written
  void tick();  // the loop's timer: timeouts, reconnects, idle clients, shutdown
  void maybe_finish_shutdown();
  int open_listener();
  // Answers a waiter on the loop it belongs to.
  void deliver_waiter(CacheWaiter& w, bool missing, std::string_view value, std::string_view error,
                      bool key_error, std::shared_ptr<const std::string>* shared_value = nullptr);

  Config cfg_;
  Shared* shared_;
  int index_;
  std::atomic<size_t> pinned_count_{0};  // for other loops' PROXY INFO, refreshed by the timer
  std::atomic<bool> upstream_up_{false};
  Loop loop_;
  uv_tcp_t listener_;
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
  Router router_;
  Node::Tracking& trk() { return node_->tracking; }
  const Node::Tracking& trk() const { return node_->tracking; }
  // NodeObserver
  void on_shared_up(UpstreamConn* u) override;
  void on_link_lost() override;
  void on_fetch_lost() override;

  // Cache and its coherence machinery.
  void start_link();
  void link_down(const char* why);
  void send_fetch(uint32_t db, std::span<const std::string_view> keys,
                  std::span<const cache::FlightId> ids);
  // Landed fetch batches, kept for reuse (FetchBatch::reset); owned, deleted with the server.
  struct BatchPool : std::vector<FetchBatch*> {
    ~BatchPool();
  };
  static constexpr size_t kBatchPoolMax = 4096;
  BatchPool batch_pool_;
  cache::Landing<CacheWaiter> landing_;  // reused by fetch_landed (its waiter list's capacity)
  bool landing_busy_ = false;
  // `error`: a complete error reply; `key_error`: it is the upstream's answer about this key
  // (WRONGTYPE), which an MGET turns into nil.
  void answer_waiter(CacheWaiter& w, bool missing, std::string_view value, std::string_view error,
                     bool key_error);
  void apply_invalidation(const WriteInvalidation& inv, cache::Source src);
  cache::Cache<CacheWaiter>* cache_;  // shared_->cache
  std::unique_ptr<ReplySink> link_id_sink_, link_sub_sink_, link_msg_sink_, version_sink_;
  std::string scratch_;        // reply encoding for flight answers
  static constexpr size_t kKeepScratch = 1 << 20;  // a larger one is not kept after use
  std::string fetch_scratch_;  // fetch request encoding
  std::vector<uint32_t> write_keys_scratch_;
  std::string mget_scratch_, mget_value_scratch_;
  std::vector<std::pair<size_t, size_t>> mget_spans_;
  cache::LookupKind lookup_into(uint32_t db, std::string_view key, cache::Micros now,
                                std::string& out, int proto, size_t* payload, bool* refresh);
  uint64_t next_idle_check_ms_ = 0;
  int databases_ = 16;
  bool databases_known_ = false;
  // SWAPDB made directly on Redis sends no invalidation: its call count in INFO commandstats
  // is polled on the link, and a change flushes the cache.
  // Sends INFO commandstats on `via` (the link before it subscribes: the count to compare
  // with is known before anything is cached), or on the first shared connection.
  void poll_swapdb(UpstreamConn* via = nullptr);
  int64_t swapdb_calls_ = -1;  // -1: not read yet on this link
  bool swapdb_poll_pending_ = false;
  uint64_t next_swapdb_poll_ms_ = 0;
  std::unique_ptr<ReplySink> swapdb_sink_;
  std::unique_ptr<ReplySink> databases_sink_;
  static constexpr uint64_t kSwapdbPollMs = 100;
  std::unique_ptr<HttpServer> http_;  // --http-port: /lookup, /metrics, /healthz (http.cc)
};

}  // namespace respite
