// A client connection: reads requests, hands each to dispatch, and writes the replies in the
// order the requests came, whatever order they complete in (cache hits at once, misses when
// their flight lands, forwarded commands when the upstream answers).
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/net/buffer.h"
#include "proxy/net/ring_queue.h"
#include "proxy/net/stream.h"
#include "proxy/net/tls_context.h"
#include "proxy/upstream/requester.h"
#include "resp/request_parser.h"

namespace respite {

class AclUser;
class Server;
class TlsStream;
class UpstreamConn;
struct WriteInvalidation;

class ClientConn final : public Requester, private Stream::Handler {
 public:
  // With `tls`, the connection speaks TLS in that context (a TlsStream over the TcpStream).
  ClientConn(Server* server, uint64_t id, std::shared_ptr<const TlsContext> tls = nullptr);
  // Takes the connection from `listener` (0, or a libuv error: then close()).
  int accept(uv_stream_t* listener) { return tcp_->accept(listener); }
  void start();  // begins reading; called once the socket is accepted
  Stream& stream_io() { return *stream_; }

  bool closed() const override { return closing_ || closed_; }

  // Reply queue. Every request takes a sequence number in arrival order; replies are written in
  // that order whatever order they complete in.
  uint64_t reserve_slot() override;
  void complete(uint64_t seq, std::string_view reply) override;
  // Where a reply for a request answered right now should be written: the output itself when
  // nothing is owed before it, else a new ready slot at the back of the queue.
  std::string& immediate_reply() override;
  std::string& queued_reply();  // the same, whatever CLIENT REPLY says
  // An out-of-band message (pub/sub, MONITOR) on the pinned connection: after everything owed.
  void stream(std::string_view message) override;
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
  void on_forwarded_done(UpstreamConn* conn) override;
  void on_redirected() override { last_conn = nullptr; }  // no connection holds its order now

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

  // Client state visible to dispatch (id, proto, name, peer: Requester).
  int db = 0;
  bool authenticated = false;
  bool ever_authenticated = false;  // Redis's limits for never-authenticated clients
  std::string lib_name, lib_ver;
  uint64_t created_ms = 0;
  uint64_t last_cmd_ms = 0;
  // TLS: closed by the server's timer if the handshake is not done by then (0: no deadline).
  uint64_t handshake_deadline_ms = 0;
  bool handshaking() const;  // a TLS client whose handshake is not done yet
  size_t server_index = 0;  // position in Server::clients_

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
  // Cluster: MULTI was answered by respite and not sent yet; the transaction's first command
  // pins it to the node of its slot (then MULTI goes first). The slot its keys are in (-1:
  // none yet): every key of a transaction must be in one slot.
  bool multi_deferred = false;
  int multi_slot = -1;
  // ...and the commands without keys queued meanwhile (answered QUEUED here, sent after MULTI
  // once a keyed command or EXEC names the node), and how many.
  std::string multi_held;
  uint32_t multi_held_count = 0;
  // EXEC's reply arrived: SELECTs the transaction ran move the client to their db.
  void on_exec_reply(std::string_view reply, uint32_t pos, int new_db, uint32_t gen) override;
  void on_pinned_conn_closed(UpstreamConn* conn) override;
  bool sticky_pin = false;     // CLIENT TRACKING/REPLY etc.: pinned until the client leaves
  void maybe_release_pin();

  // CLIENT REPLY: On, Off, or Skip (the next command's reply only).
  enum class ReplyMode : uint8_t { On, Off, Skip } reply_mode = ReplyMode::On;
  void set_authenticated(bool yes);
  // The client's ACL user (the default user until AUTH), and whether it may run anything on
  // any key and channel: dispatch's ACL check is skipped then (the hot path's cost: this bool).
  const AclUser* user = nullptr;
  bool acl_unrestricted = true;
  void set_user(const AclUser* u);

  // Ordering across connections: forwarded requests of this client in flight, and where.
  UpstreamConn* last_conn = nullptr;
  uint32_t inflight = 0;
  // A read sent to a Cluster replica is among `inflight`: the client's later requests wait for
  // every reply (a write of its key to the master must not run before that read).
  bool replica_read_out = false;
  double rate_tokens = -1;       // --rate-limit token bucket (-1: not started)
  uint64_t rate_refill_ms = 0;
  WriteInvalidation* multi_writes = nullptr;  // keys written by the queued transaction
  void on_flight_done() override;

 private:
  friend class Server;
  ~ClientConn() override = default;
  // Stream::Handler
  void on_stream_data() override;
  void on_stream_eof() override;
  void on_stream_error(const char* op, int status) override;
  void on_stream_written() override;
  void on_stream_closed() override;
  size_t read_hint() override { return parser_.want(); }
  bool read_more();  // resumes reading unless closed; false if the stream cannot read
  void process_input();
  void mark_dirty();
  void drain_ready();

  Server* server_;
  TcpStream* tcp_;                  // the TCP stream (below the TLS one, if any): accept
  TlsStream* tls_ = nullptr;        // the TLS stream, when the client came to the TLS port
  std::unique_ptr<Stream> stream_;
  bool closing_ = false;
  bool closed_ = false;
  bool close_when_flushed_ = false;
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
    return stream_->unwritten() + slot_bytes_ > kBackedUpOutput ? kBackedUpOwed
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

  std::string& out_;  // the stream's output: replies ready to write

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

}  // namespace respite
