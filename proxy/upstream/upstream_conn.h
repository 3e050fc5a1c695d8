// A connection to one upstream Redis: requests from many clients (a shared connection) or
// from one (pinned: transactions, subscriptions, blocking commands) are appended to one output
// and written once per loop turn; replies are framed by the reply scanner and handed, as raw
// bytes, to whoever is at the front of the pending queue (Redis answers in order).
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "cache/entry.h"
#include "proxy/net/buffer.h"
#include "proxy/net/ring_queue.h"
#include "proxy/net/stream.h"
#include "proxy/ops/config.h"
#include "proxy/ops/stats.h"
#include "proxy/upstream/forwarded.h"
#include "proxy/upstream/requester.h"
#include "resp/reply_scanner.h"
#include "resp/request_parser.h"

namespace respite {

class Node;
class TlsContext;
class TlsStream;

// What an upstream connection needs from the loop it runs on and from the layers above it
// (the cache path's second invalidation, the slow log), without including them.
class UpstreamHost {
 public:
  virtual uv_loop_t* loop() = 0;
  virtual uint64_t now() = 0;                 // loop ms
  virtual cache::Micros micros() const = 0;   // the batch clock (Server::micros)
  virtual cache::Micros tick_micros() = 0;
  virtual const Config& config() const = 0;
  // The context upstream connections speak TLS in (--upstream-tls); nullptr: plain TCP.
  virtual const TlsContext* upstream_tls() const { return nullptr; }
  virtual Stats& stats() = 0;
  // Called for every request queued on `u` (`listed`: already to be flushed this turn). The
  // cork writes connections in the order of their latest request: one queued on a connection
  // after a request on another goes out after it, as two clients' commands read in one turn
  // reach Redis in the order they were read (a shared connection made dirty early by a poll
  // must not overtake a pinned client's EXEC read before a write on the shared one).
  virtual void add_dirty(UpstreamConn* u, bool listed) = 0;
  // The connection add_dirty put last this turn (nullptr: none yet): another request on it
  // needs no call (the common case: one shared connection, pipelined clients).
  UpstreamConn* last_dirty = nullptr;
  virtual void upstream_gone(UpstreamConn* u) = 0;  // closing: forget it (dirty list)
  // A relayed reply arrived `us` microseconds after its request was queued.
  virtual void record_round_trip(uint64_t us, const Requester* c, std::string_view name,
                                 std::string_view arg) = 0;
  virtual void invalidate_after_write(WriteInvalidation* inv) = 0;  // applies and frees it
  virtual void invalidate_key_after_write(uint32_t db, std::string_view key,
                                          uint64_t flights_at) = 0;
  // The reply of a write whose keys respite cannot know: held until the tracking links caught
  // up (Server::tracking_barrier).
  virtual void tracking_barrier(Requester* c, uint64_t seq, std::string_view reply) = 0;
  // A kept request (Forwarded::keep_for_retry) was answered -MOVED or -ASK: send it again
  // where the reply says and return true (its slot is then answered by the retry), or return
  // false and the reply is relayed to the client as it is.
  virtual bool redirect(const Redirect& r) = 0;
  // A client's request on `n` was answered -READONLY (a primary turned replica).
  virtual void upstream_readonly(Node*) {}

 protected:
  ~UpstreamHost() = default;
};

class UpstreamConn final : private Stream::Handler {
 public:
  // `owner` non-null: a dedicated connection pinned to that client (same protocol and db).
  // `readonly`: a Cluster replica's read connection (Node::read_conn), READONLY sent first.
  UpstreamConn(UpstreamHost* host, Node* node, int proto, Requester* owner, int db,
               bool readonly = false);
  Node* node() const { return node_; }
  bool readonly() const { return readonly_; }
  void connect();
  void close();  // fails everything pending, frees itself once libuv is done with the handle

  bool ready() const { return state_ == State::Ready; }
  bool closed() const { return state_ == State::Closed; }
  int proto() const { return proto_; }
  Requester* owner() const { return owner_; }
  size_t pending() const { return pending_.size(); }
  // A pinned connection's client id on the upstream (-1 until known): CLIENT ID is its first
  // request (Server::learn_upstream_client_id), so CLIENT UNBLOCK of its owner can name it.
  int64_t upstream_client_id = -1;

  // Sends a client's request and relays the reply to the client's slot `r.seq` (kStreamSeq:
  // stream the reply, the client is in a streaming state). `r.answer_by` (loop ms, 0: untimed,
  // e.g. blocking commands) is when the client gets a timeout error if no reply came. The
  // connection fails when its oldest request has waited a whole --upstream-timeout-ms since it
  // was sent; a request that arrived earlier (held behind the client's cache misses) is
  // answered at `answer_by` on its own, its late reply discarded. With `r.keep_for_retry` the
  // bytes are kept until the reply, and a -MOVED/-ASK reply goes to UpstreamHost::redirect.
  void forward(const Forwarded& r);
  // Sends ASKING (its +OK is consumed here), after a SELECT of `db` if the connection is
  // elsewhere: the next request, in `db`, may use a slot being imported.
  void asking(int db);
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
  // When the connection came up: connected, and every request of its handshake (the internal
  // requests at the front of its queue: AUTH, HELLO, SELECT) answered without an error.
  // Node::conn_up is called then. 0: not up yet, or never.
  uint64_t connected_at_ms = 0;

 private:
  // Up (connected_at_ms) by then, or the connection fails: a peer that takes the TCP
  // connection and never answers the TLS handshake or the first requests, or a connect that
  // never completes, must not hold the node's connection for ever.
  uint64_t up_deadline_ms_ = 0;
  enum class State { Connecting, Ready, Closed };
  struct Pending {
    enum class Kind : uint8_t { Relay, Internal, Sink } kind;
    Requester* client;  // Relay: holds a reference
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
    bool kept = false;                 // Relay: its bytes are the next kept_len in retry_arena_
    uint8_t redirects = 0;             // ...sent again this often already
    bool asked = false;                // ...the last time after ASKING
    uint32_t kept_len = 0;
    int32_t db = 0;                    // Relay: the db it ran in (for a retry)
    // Relay: the command name and first argument, truncated, for PROXY SLOWLOG.
    uint8_t name_len = 0, arg_len = 0;
    char name[15];
    char arg[31];
  };
  // Stream::Handler
  void on_stream_ready() override;
  void on_stream_data() override;
  void on_stream_eof() override;
  void on_stream_error(const char* op, int status) override;
  void on_stream_written() override;
  void on_stream_closed() override;
  // Replies of a pipelined batch arrive together: read them in 64 KB chunks.
  size_t read_hint() override { return 65536; }
  void fail(std::string_view why);
  void declare_up();
  void select_db(int db);
  void push_internal(std::string_view raw);
  // To be written by this turn's cork (inline: once per forwarded request).
  void mark_dirty() {
    if (state_ != State::Ready || (dirty_ && host_->last_dirty == this)) return;
    list_dirty();
  }
  void list_dirty();
  void deliver(Pending& p, std::string_view reply);

  UpstreamHost* host_;
  Node* node_;
  bool readonly_ = false;  // READONLY sent in the handshake (a Cluster replica's reads)
  int proto_;
  Requester* owner_;
  int db_;
  State state_ = State::Connecting;
  uint32_t handshake_left_ = 0;  // handshake requests not answered yet (see connected_at_ms)
  // TCP, or TLS over TCP with --upstream-tls (Config::upstream_tls_ctx); `tcp_` is the TCP
  // stream either way (connect, options), `tls_` the TLS one if any.
  TcpStream* tcp_ = nullptr;
  TlsStream* tls_ = nullptr;
  std::unique_ptr<Stream> stream_;
  std::string& out_;  // the stream's output: requests not written yet
  bool retiring_ = false;
  bool close_started_ = false;
  bool closing_on_purpose_ = false;
  bool dirty_ = false;
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
  std::string retry_arena_;  // kept requests (Forwarded::keep_for_retry), in pending order
  size_t retry_head_ = 0;
  std::string_view take_kept(Pending& p);
  // A FIFO byte arena before an append: emptied when everything was consumed, and the consumed
  // front dropped once it is most of the arena (a connection that is never idle must not grow
  // it for ever).
  static void compact_arena(std::string& arena, size_t& head) {
    if (head == 0) return;  // the usual case: emptied when its last key was consumed
    if (head == arena.size()) {
      arena.clear();
      head = 0;
      if (arena.capacity() > (1u << 20)) std::string().swap(arena);  // after a burst of big ones
    } else if (head >= 65536 && head * 2 >= arena.size()) {
      arena.erase(0, head);
      head = 0;
    }
  }
  bool try_redirect(Pending& p, std::string_view reply);
  bool retry_lost_read(Pending& p);
  void reply_invalidation(Pending& p);
};


}  // namespace respite
