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
#include "proxy/net/buffer.h"
#include "proxy/ops/config.h"
#include "proxy/ops/stats.h"
#include "proxy/net/ring_queue.h"
#include "resp/reply_scanner.h"
#include "resp/request_parser.h"

namespace respite {

class Server;
class UpstreamConn;
class InfoSnapshot;
struct CommandInfo;

// The cache keys a forwarded write touches, invalidated before it is sent and again when its
// reply arrives (a fill that raced the write is dropped either way).
struct WriteInvalidation {
  enum class Scope : uint8_t { Keys, Db, All } scope = Scope::Keys;
  uint32_t db = 0;  // cache::kAllDbs for keys whose db cannot be known (MOVE, COPY ... DB)
  std::vector<std::pair<uint32_t, std::string>> keys;  // (db, key)
};

uint64_t now_ms(uv_loop_t* loop);

// Sequence number for a request whose replies are streamed (subscribed or MONITOR clients).
constexpr uint64_t kStreamSeq = UINT64_MAX;

// The reply a client gets when the upstream could not answer: "-ERR upstream unavailable (why)".
std::string upstream_error(std::string_view why);
// The reason given when a request got no reply within --upstream-timeout-ms.
std::string timeout_reason(int timeout_ms);

// Receives a reply that respite itself asked for (cache fetches, control commands).
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  // `reply` is one complete RESP reply; with `failed` set (the connection failed or timed out
  // before it arrived) it is the reason instead, e.g. "timeout: no reply within 2000 ms".
  virtual void on_reply(std::string_view reply, bool failed) = 0;
};

class ClientConn {
 public:
  ClientConn(Server* server, uint64_t id);
  void start();  // begins reading; called once the socket is accepted
  uv_tcp_t* handle() { return &tcp_; }

  void ref() { ++refs_; }
  void unref();
  bool closed() const { return closing_ || closed_; }

  // Reply queue. Every request takes a sequence number in arrival order; replies are written in
  // that order whatever order they complete in.
  uint64_t reserve_slot();
  void complete(uint64_t seq, std::string_view reply);
  // Where a reply for a request answered right now should be written: the output itself when
  // nothing is owed before it, else a new ready slot at the back of the queue.
  std::string& immediate_reply();
  std::string& queued_reply();  // the same, whatever CLIENT REPLY says
  // An out-of-band message (pub/sub, MONITOR) on the pinned connection: after everything owed.
  void stream(std::string_view message);
  // A reply respite makes for a streaming client (QUIT, RESET, a rate-limit error): it must
  // follow the replies still owed on the stream, whose number respite cannot know (UNSUBSCRIBE
  // with no arguments answers once per channel). A `PING <token>` goes down the pinned
  // connection; when its answer comes back through the stream, everything sent before it has
  // been answered, and `reply` is written (then QUIT closes, RESET resets). Input waits
  // meanwhile. Without an answer within --upstream-timeout-ms (an error in its place, e.g.
  // -BUSY), the reply is written then.
  enum class StreamAfter : uint8_t { None, Quit, Reset };
  void stream_local(std::string reply, StreamAfter then);
  // Checks a message of the stream against the outstanding token; true when it was the token's
  // answer (consumed, not relayed).
  bool stream_token_answer(std::string_view message);
  void stream_token_expired(uint64_t now);  // from the server's timer
  bool stream_waiting() const { return !stream_locals_.empty(); }
  // A pub/sub notification or message (delivered even under CLIENT REPLY OFF, as Redis 7).
  static bool is_pubsub_push(std::string_view message);

  // Called by an upstream connection when a relayed request of this client was answered.
  void on_forwarded_done(UpstreamConn* conn);

  void close();                 // now (drops unwritten output)
  void close_after_flush();     // after what is owed has been written (QUIT, protocol errors)
  void flush();                 // called from the cork: one write of everything ready
  void resume();                // called from the cork: process input held back by a barrier
  // Holds the current request (and what follows) until this client's requests in flight on
  // another upstream connection are answered, so its commands run upstream in the order sent.
  void stall();
  bool stalled() const { return stalled_; }
  // When the request being dispatched arrived, as its upstream deadline's start: input held
  // back by a stall counts from the stall's start (for bytes read during the stall that is
  // earlier than their own arrival: stricter, never later), anything else from now. So a
  // request pipelined behind a slow cache miss is answered within --upstream-timeout-ms of
  // being sent, not one timeout for the miss plus one of its own.
  uint64_t arrived_ms() const;

  // Client state visible to dispatch.
  uint64_t id;
  int proto = 2;
  int db = 0;
  bool authenticated = false;
  bool ever_authenticated = false;  // Redis's limits for never-authenticated clients
  std::string name;
  std::string lib_name, lib_ver;
  uint64_t created_ms = 0;
  uint64_t last_cmd_ms = 0;
  size_t server_index = 0;  // position in Server::clients_
  std::string peer;         // "ip:port"

  // Pinning: while any of these states lasts, every forwarded command goes to `pinned`.
  UpstreamConn* pinned = nullptr;
  bool in_multi = false;
  bool watching = false;
  bool streaming = false;      // subscribed or MONITOR: replies are not 1:1 with requests
  bool multi_failed = false;   // a command of the open transaction was refused: EXEC aborts
  bool multi_barrier = false;  // the open transaction holds a write respite cannot key (EVAL)
  // The open transaction's last SELECT that can succeed (-1: none) and its position, and the
  // db its queued writes are in (for their invalidation).
  int multi_select_db = -1;
  uint32_t multi_select_pos = 0;
  int multi_db = 0;
  // Bumped whenever respite's idea of the client's db changes: EXEC's reply moves the client
  // only if nothing (a SELECT pipelined after EXEC, RESET) moved it since EXEC was sent.
  uint32_t db_gen = 0;
  uint32_t multi_count = 0;    // commands queued since MULTI
  uint32_t barriers = 0;       // replies held until the tracking link caught up (no cache use)
  // EXEC's reply arrived: SELECTs the transaction ran move the client to their db.
  void on_exec_reply(std::string_view reply, uint32_t pos, int new_db, uint32_t gen);
  bool sticky_pin = false;     // CLIENT TRACKING/REPLY etc.: pinned until the client leaves
  void maybe_release_pin();

  // CLIENT REPLY: On, Off, or Skip (the next command's reply only).
  enum class ReplyMode : uint8_t { On, Off, Skip } reply_mode = ReplyMode::On;
  void set_authenticated(bool yes);

  // Ordering across connections: forwarded requests of this client in flight, and where.
  UpstreamConn* last_conn = nullptr;
  uint32_t inflight = 0;
  uint32_t flights_waiting = 0;  // cache misses of this client not answered yet
  double rate_tokens = -1;       // --rate-limit token bucket (-1: not started)
  uint64_t rate_refill_ms = 0;
  WriteInvalidation* multi_writes = nullptr;  // keys written by the queued transaction
  void on_flight_done();

 private:
  friend class Server;
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_close(uv_handle_t* h);
  void process_input();
  void mark_dirty();
  void drain_ready();

  Server* server_;
  uv_tcp_t tcp_;
  uv_write_t write_req_;
  int refs_ = 1;  // the handle's own reference, dropped in on_close
  bool closing_ = false;
  bool closed_ = false;
  bool close_when_flushed_ = false;
  bool reading_ = false;
  bool writing_active_ = false;
  bool dirty_ = false;
  bool stalled_ = false;  // input held back until in-flight requests on another conn finish
  uint64_t held_since_ms_ = 0;  // when the first stall of the held input began
  size_t held_bytes_ = 0;       // bytes of in_ that were held by a stall and are not consumed
  bool input_queued_ = false;  // read this turn, to be processed in the check phase
  bool owed_full_ = false;     // held back: owed_limit() replies owed
  static constexpr size_t kCommandsPerTurn = 256;
  static constexpr size_t kMaxOwedReplies = 4096;
  // A client whose replies pile up unread gets few requests in flight: its replies travel the
  // upstream connection it shares with other clients, ahead of theirs, and 4096 owed 10 KB
  // replies are 40 MB for everyone else to wait behind. Its output still grows (so the output
  // buffer limit still closes it), 32 replies per round trip.
  static constexpr size_t kBackedUpOutput = 1 << 20;
  static constexpr size_t kBackedUpOwed = 32;
  size_t owed_limit() const {
    return out_.size() + writing_.size() + slot_bytes_ > kBackedUpOutput ? kBackedUpOwed
                                                                          : kMaxOwedReplies;
  }
  static constexpr size_t kInputHighWater = 1 << 20;
  bool eof_ = false;           // the client half-closed: close once answered
  // Output accounting for client-output-buffer-limit: replies waiting in ready slots, and the
  // largest single reply queued since the output was last empty (not counted: see Config).
  size_t slot_bytes_ = 0;
  size_t largest_reply_ = 0;
  uint64_t soft_limit_since_ = 0;  // when the output went over the soft limit (0: it is not)
  void note_reply(size_t n) {
    if (n > largest_reply_) largest_reply_ = n;
  }
  // A reply written by immediate_reply() into a new slot (behind a reply still owed) counts
  // toward the output limit like any other.
  void account_last_slot() {
    if (slots_.empty()) return;
    Slot& b = slots_.back();
    if (!b.ready || b.counted != 0 || b.data.empty()) return;
    b.counted = b.data.size();
    slot_bytes_ += b.counted;
    note_reply(b.counted);
  }
  // Closes the client when its output is over the limit; true if it did.
  bool enforce_output_limit();
  // Stream-local replies waiting for their token (stream_local).
  struct StreamLocal {
    std::string reply;
    StreamAfter then;
    uint64_t deadline;
    uint64_t n;  // this token's number: a late answer to an expired one is never taken for it
  };
  uint64_t stream_tokens_sent_ = 0;
  std::deque<StreamLocal> stream_locals_;
  std::string stream_token_;  // random hex, made on first use
  bool hold_for_stream_ = false;  // a QUIT or RESET waits for its token: no input until then
  void finish_stream_local();
  void run_queued_input();
  void consume_input(size_t n);

  Buffer in_;
  resp::RequestParser parser_;
  resp::Frame frame_;

  std::string out_;      // ready to write
  std::string writing_;  // handed to libuv, in flight

  struct Slot {
    bool ready = false;
    bool drop = false;  // CLIENT REPLY OFF/SKIP: answered upstream, never written
    size_t counted = 0;  // bytes of `data` in slot_bytes_ (replies that completed here)
    std::string data;
  };
  std::string discard_;  // sink for replies the client asked not to get
  RingQueue<Slot> slots_;
  uint64_t head_seq_ = 0;  // sequence number of slots_.front()
  uint64_t next_seq_ = 0;
};

class UpstreamConn {
 public:
  // `owner` non-null: a dedicated connection pinned to that client (same protocol and db).
  UpstreamConn(Server* server, int proto, ClientConn* owner, int db);
  void connect();
  void close();  // fails everything pending, frees itself once libuv is done with the handle

  bool ready() const { return state_ == State::Ready; }
  bool closed() const { return state_ == State::Closed; }
  int proto() const { return proto_; }
  ClientConn* owner() const { return owner_; }
  size_t pending() const { return pending_.size(); }
  // A pinned connection's client id on the upstream (-1 until known): CLIENT ID is its first
  // request (Server::learn_upstream_client_id), so CLIENT UNBLOCK of its owner can name it.
  int64_t upstream_client_id = -1;

  // Sends a client's request and relays the reply to the client's slot `seq` (`seq` = -1: stream
  // the reply, the client is in a streaming state). `raw` must be a complete RESP request.
  // `answer_by` (loop ms, 0: untimed, e.g. blocking commands) is when the client gets a timeout
  // error if no reply came. The connection fails when its oldest request has waited a whole
  // --upstream-timeout-ms since it was sent; a request that arrived earlier (held behind the
  // client's cache misses) is answered at `answer_by` on its own, its late reply discarded.
  void forward(ClientConn* c, uint64_t seq, std::string_view raw, int db, uint64_t answer_by,
               const resp::Frame* f = nullptr);
  // Sends a command (or `nreplies` pipelined ones) respite itself needs; `sink` gets each reply.
  void request(ReplySink* sink, std::string_view raw, int db, size_t nreplies = 1);
  // A command sent first on (re)connect, e.g. CLIENT TRACKING; an error reply drops the link.
  void handshake(std::string_view raw) { push_internal(raw); }
  // Where unsolicited replies go on a connection no client owns (the invalidation link).
  ReplySink* stream_sink = nullptr;
  // Keys to invalidate again when the reply of the next forwarded write arrives (or fails).
  void set_reply_invalidation(struct WriteInvalidation* inv);
  // The common case without allocation: one key, kept in a FIFO byte arena until the reply.
  // `flights_at` is Shared::flights_started when the write was sent: if no fetch started since,
  // nothing can have raced the write and the second invalidation is skipped.
  void set_reply_invalidation_key(uint32_t db, std::string_view key, uint64_t flights_at);
  // What happens when the reply of the Relay just forwarded arrives (kAfter* bits).
  void set_after(uint8_t bits, bool write);
  void set_exec_select(int db, uint32_t pos, uint32_t gen);
  // `SELECT n` then `SELECT <its current db>`, for `sink` (2 replies): whether db n exists,
  // leaving the connection where it was.
  void probe_select(ReplySink* sink, int n);
  static constexpr uint8_t kAfterBarrier = 1;    // held until the tracking links caught up
  static constexpr uint8_t kAfterExec = 2;       // EXEC: the client learns its SELECTs
  static constexpr uint8_t kAfterExecAbort = 4;  // a DISCARD sent for EXEC: -EXECABORT
  // Appends a request encoded from arguments (for re-encoding inline requests).
  static void encode_command(std::string& out, const resp::Frame& f);

  // Closes once nothing is pending (a fetch connection replaced after the link dropped).
  void retire();
  void flush();                        // called from the cork
  void check_timeout(uint64_t now);    // called from the server's timer
  uint64_t connected_at_ms = 0;

 private:
  enum class State { Connecting, Ready, Closed };
  struct Pending {
    enum class Kind : uint8_t { Relay, Stream, Internal, Sink } kind;
    ClientConn* client;  // Relay/Stream: holds a reference
    uint64_t seq;
    ReplySink* sink;
    uint64_t deadline;   // ms; 0 = no deadline (blocking commands)
    uint64_t answer_by = 0;  // Relay: the client's timeout, when before `deadline` (else 0)
    bool answered = false;   // ...and it has been answered with that timeout
    WriteInvalidation* inv = nullptr;  // Relay of a write: invalidate again on its reply
    bool inv_key = false;              // ...or this one key, the next inv_key_len arena bytes
    uint32_t inv_key_len = 0;
    uint32_t inv_db = 0;
    uint64_t inv_flights_at = 0;
    uint64_t start_us = 0;             // Relay: when it was queued (latency, slowlog)
    uint8_t after = 0;                 // Relay: kAfter* work on its reply
    int32_t exec_db = -1;              // kAfterExec: the db a committed EXEC moves to...
    uint32_t exec_pos = 0;             // ...if the reply at this position is +OK...
    uint32_t exec_gen = 0;             // ...and the client's db_gen is still this
    bool write = false;                // Relay: it may write (a timeout says so)
    // Relay: the command name and first argument, truncated, for PROXY SLOWLOG.
    uint8_t name_len = 0, arg_len = 0;
    char name[15];
    char arg[31];
  };
  static void on_connect(uv_connect_t* req, int status);
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_close(uv_handle_t* h);
  void fail(std::string_view why);
  void select_db(int db);
  void push_internal(std::string_view raw);
  void mark_dirty();
  void deliver(Pending& p, std::string_view reply);

  Server* server_;
  int proto_;
  ClientConn* owner_;
  int db_;
  State state_ = State::Connecting;
  uv_tcp_t tcp_;
  uv_connect_t connect_req_;
  uv_write_t write_req_;
  bool handle_open_ = false;
  bool retiring_ = false;
  bool close_started_ = false;
  bool closing_on_purpose_ = false;
  bool writing_active_ = false;
  bool dirty_ = false;
  std::string out_;
  std::string writing_;
  Buffer in_;
  resp::ReplyScanner scanner_;
  RingQueue<Pending> pending_;
  // Relays answered by their timeout whose replies have not come yet; past this many, the
  // connection goes (a stopped upstream must not grow the pending queue without bound).
  size_t timed_out_ = 0;
  static constexpr size_t kMaxTimedOut = 10000;
  size_t answer_by_pending_ = 0;  // Relays with an answer_by not reached yet (check_timeout)
  std::string inv_arena_;  // keys of single-key writes in flight, in pending order
  size_t inv_head_ = 0;
  void reply_invalidation(Pending& p);
  friend class Server;
};

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
  ClientConn* client = nullptr;  // GET: holds a reference
  uint64_t seq = 0;
  MgetAssembly* mget = nullptr;  // MGET: the reply being assembled
  uint32_t index = 0;
  ValueReader* reader = nullptr;
  Server* owner = nullptr;  // the loop the waiter lives on (single-flight spans loops)
};

class FetchBatch;

// A ReplySink calling a function (control-plane replies).
template <class F>
class FnSink final : public ReplySink {
 public:
  explicit FnSink(F f) : f_(std::move(f)) {}
  void on_reply(std::string_view reply, bool failed) override { f_(reply, failed); }

 private:
  F f_;
};

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

class Server {
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

  uv_loop_t* loop() { return &loop_; }
  Config& config() { return cfg_; }
  Stats& stats() { return stats_; }
  uint64_t now() { return now_ms(&loop_); }

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
  void invalidate_key_after_write(uint32_t db, std::string_view key, uint64_t flights_at);
  void invalidate_after_write(WriteInvalidation* inv);  // applies and frees `inv`
  void recycle(FetchBatch* b);  // a landed batch goes back to batch_pool_
  void fetch_landed(FetchBatch* b, const std::vector<std::string>& gets,
                    const std::vector<int64_t>& pttls, bool failed, std::string_view why);
  // The clock in microseconds, read once per batch of request work (each check phase, each
  // upstream read, each timer tick, each HTTP lookup) rather than once per request: reading it
  // per request was 5-8% of a pipelined GET or SET profile. Entries expire and round trips are
  // timed with the precision of one such batch, as Redis uses one time snapshot per command.
  cache::Micros micros() const { return clock_us_; }
  cache::Micros tick_micros() { return clock_us_ = static_cast<cache::Micros>(uv_hrtime() / 1000); }
  bool tracking_up() const { return tracking_up_; }
  // A reply of a write whose keys respite cannot know (EVAL, FCALL, SORT ... STORE): the
  // invalidations Redis made for it are written to the tracking links before the answer to a
  // PING sent there after the reply arrived. `reply` goes to `c`'s slot `seq` once every loop's
  // link has answered that PING (at once when no link is up: the cache is not used then).
  void tracking_barrier(ClientConn* c, uint64_t seq, std::string_view reply);
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
  void add_dirty(UpstreamConn* u) { dirty_upstreams_.push_back(u); }
  void add_resume(ClientConn* c) { resume_clients_.push_back(c); }
  void add_input(ClientConn* c) { input_clients_.push_back(c); }
  // Input left for the next loop turn (the per-turn command budget ran out).
  void defer_input(ClientConn* c);
  // A relayed reply arrived `us` microseconds after its request was queued.
  void record_round_trip(uint64_t us, const ClientConn* c, std::string_view name,
                         std::string_view arg);
  Counter latency_[kLatencyBuckets];
  uint64_t latency_percentile(double q) const;
  std::vector<uint64_t> latency_histogram() const;  // summed over loops, per bucket
  void upstream_gone(UpstreamConn* u);
  void upstream_up(UpstreamConn* u);
  const sockaddr* upstream_addr() const { return reinterpret_cast<const sockaddr*>(&upstream_addr_); }
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
  static void on_check(uv_check_t* h);
  static void on_timer(uv_timer_t* h);
  static void on_signal(uv_signal_t* h, int signum);
  static void on_async(uv_async_t* h);
  void maybe_finish_shutdown();
  int open_listener();
  // Answers a waiter on the loop it belongs to.
  void deliver_waiter(CacheWaiter& w, bool missing, std::string_view value, std::string_view error,
                      bool key_error, std::shared_ptr<const std::string>* shared_value = nullptr);

  Config cfg_;
  Shared* shared_;
  int index_;
  uv_async_t async_;
  std::atomic<size_t> pinned_count_{0};  // for other loops' PROXY INFO, refreshed by the timer
  std::atomic<bool> upstream_up_{false};
  std::mutex posted_mu_;
  bool async_closed_ = false;
  std::vector<std::function<void()>> posted_, posted_spare_;
  uv_loop_t loop_;
  uv_tcp_t listener_;
  uv_check_t cork_;
  uv_timer_t timer_;
  uv_signal_t sigterm_, sigint_;
  Stats stats_;
  bool shutting_down_ = false;
  uint64_t shutdown_deadline_ = 0;
  std::vector<ClientConn*> clients_;
  std::vector<ClientConn*> dirty_clients_;
  std::vector<ClientConn*> resume_clients_;
  std::vector<ClientConn*> input_clients_, input_spare_, deferred_input_;
  uv_idle_t idle_;  // active while input is deferred: the next poll must not block
  static void on_idle(uv_idle_t*) {}
  std::vector<UpstreamConn*> dirty_upstreams_;
  std::vector<ClientConn*> resume_spare_, client_spare_;
  std::vector<UpstreamConn*> upstream_spare_;
  // pool_[proto-2][i]
  std::vector<UpstreamConn*> pool_[2];
  std::vector<UpstreamConn*> pinned_;
  uint64_t next_attempt_[2] = {0, 0};  // per protocol: no new shared connection before this

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
  UpstreamConn* link_ = nullptr;   // SUBSCRIBE __redis__:invalidate
  UpstreamConn* fetch_ = nullptr;  // cache fetches, CLIENT TRACKING on REDIRECT <link id>
  std::vector<UpstreamConn*> retired_;  // old fetch connections finishing their fetches
  int64_t link_id_ = -1;
  bool tracking_up_ = false;
  uint64_t next_link_attempt_ = 0;
  uint64_t link_backoff_ms_ = 0;
  std::unique_ptr<ReplySink> link_id_sink_, link_sub_sink_, link_msg_sink_, version_sink_;
  std::string scratch_;        // reply encoding for flight answers
  static constexpr size_t kKeepScratch = 1 << 20;  // a larger one is not kept after use
  std::string fetch_scratch_;  // fetch request encoding
  std::vector<uint32_t> write_keys_scratch_;
  std::string mget_scratch_, mget_value_scratch_;
  std::vector<std::pair<size_t, size_t>> mget_spans_;
  cache::LookupKind lookup_into(uint32_t db, std::string_view key, cache::Micros now,
                                std::string& out, int proto, size_t* payload, bool* refresh);
  uint64_t backoff_ms_ = 0;
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
  cache::Micros clock_us_ = static_cast<cache::Micros>(uv_hrtime() / 1000);  // see micros()
  sockaddr_storage upstream_addr_{};
  std::unique_ptr<HttpServer> http_;  // --http-port: /lookup, /metrics, /healthz (proxy/http/)
};

}  // namespace respite
