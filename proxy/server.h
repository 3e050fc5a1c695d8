// The event loop and the objects on it: Server (listener, cork, timers, stats), ClientConn (one
// per client socket, with its ordered reply queue) and UpstreamConn (a connection to the upstream
// Redis, shared by many clients or pinned to one).
//
// Lifetimes follow libuv's rule: an object that owns a handle is freed in the handle's close
// callback, and only once nothing else refers to it (ClientConn is reference counted because
// upstream requests in flight point at it).
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/buffer.h"
#include "proxy/config.h"
#include "resp/reply_scanner.h"
#include "resp/request_parser.h"

namespace respite {

class Server;
class UpstreamConn;
struct CommandInfo;

uint64_t now_ms(uv_loop_t* loop);

// Sequence number for a request whose replies are streamed (subscribed or MONITOR clients).
constexpr uint64_t kStreamSeq = UINT64_MAX;

// Receives a reply that respite itself asked for (cache fetches, control commands).
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  // `reply` is one complete RESP reply; empty with `failed` set when the connection failed or
  // timed out before it arrived.
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
  // An out-of-band message (pub/sub, MONITOR) on the pinned connection: after everything owed.
  void stream(std::string_view message);

  // Called by an upstream connection when a relayed request of this client was answered.
  void on_forwarded_done(UpstreamConn* conn);

  void close();                 // now (drops unwritten output)
  void close_after_flush();     // after what is owed has been written (QUIT, protocol errors)
  void flush();                 // called from the cork: one write of everything ready
  void resume();                // called from the cork: process input held back by a barrier
  // Holds the current request (and what follows) until this client's requests in flight on
  // another upstream connection are answered, so its commands run upstream in the order sent.
  void stall() { stalled_ = true; }
  bool stalled() const { return stalled_; }

  // Client state visible to dispatch.
  uint64_t id;
  int proto = 2;
  int db = 0;
  bool authenticated = false;
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
  bool sticky_pin = false;     // CLIENT TRACKING/REPLY etc.: pinned until the client leaves
  void maybe_release_pin();

  // CLIENT REPLY: On, Off, or Skip (the next command's reply only).
  enum class ReplyMode : uint8_t { On, Off, Skip } reply_mode = ReplyMode::On;
  void set_authenticated(bool yes);

  // Ordering across connections: forwarded requests of this client in flight, and where.
  UpstreamConn* last_conn = nullptr;
  uint32_t inflight = 0;

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

  Buffer in_;
  resp::RequestParser parser_;
  resp::Frame frame_;

  std::string out_;      // ready to write
  std::string writing_;  // handed to libuv, in flight

  struct Slot {
    bool ready = false;
    bool drop = false;  // CLIENT REPLY OFF/SKIP: answered upstream, never written
    std::string data;
  };
  std::string discard_;  // sink for replies the client asked not to get
  std::deque<Slot> slots_;
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

  // Sends a client's request and relays the reply to the client's slot `seq` (`seq` = -1: stream
  // the reply, the client is in a streaming state). `raw` must be a complete RESP request.
  void forward(ClientConn* c, uint64_t seq, std::string_view raw, int db, bool timed = true);
  // Sends a command respite itself needs; `sink` gets the reply.
  void request(ReplySink* sink, std::string_view raw, int db);
  // Appends a request encoded from arguments (for re-encoding inline requests).
  static void encode_command(std::string& out, const resp::Frame& f);

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
  bool writing_active_ = false;
  bool dirty_ = false;
  std::string out_;
  std::string writing_;
  Buffer in_;
  resp::ReplyScanner scanner_;
  std::deque<Pending> pending_;
  friend class Server;
};

struct Stats {
  uint64_t total_connections_received = 0;
  uint64_t total_commands_processed = 0;
  uint64_t rejected_connections = 0;
  uint64_t upstream_errors = 0;
  uint64_t upstream_timeouts = 0;
  uint64_t upstream_reconnects = 0;
  uint64_t forwarded_commands = 0;
  uint64_t pinned_connections = 0;
};

class Server {
 public:
  explicit Server(Config cfg);
  ~Server();
  // Binds and runs until SIGTERM/SIGINT; returns the process exit code.
  int run();

  uv_loop_t* loop() { return &loop_; }
  Config& config() { return cfg_; }
  Stats& stats() { return stats_; }
  uint64_t now() { return now_ms(&loop_); }

  // The shared upstream connection a client's commands go to (by protocol, spread by id).
  UpstreamConn* shared_conn(int proto, uint64_t client_id);
  UpstreamConn* open_pinned(ClientConn* c);
  bool upstream_connected() const;

  // Dispatch of one parsed request (commands.cc).
  void dispatch(ClientConn* c, const resp::Frame& f);
  // Sends a request upstream: on the client's pinned connection, on a new pinned one when the
  // command starts connection state, else on the shared one.
  void forward(ClientConn* c, const resp::Frame& f, const CommandInfo* ci);

  // Cache settings changed at runtime (PROXY CONFIG SET).
  void apply_cache_config();
  void flush_cache();

  void client_closed(ClientConn* c);
  void add_dirty(ClientConn* c) { dirty_clients_.push_back(c); }
  void add_dirty(UpstreamConn* u) { dirty_upstreams_.push_back(u); }
  void add_resume(ClientConn* c) { resume_clients_.push_back(c); }
  void upstream_gone(UpstreamConn* u);
  void upstream_up(UpstreamConn* u);
  const sockaddr* upstream_addr() const { return reinterpret_cast<const sockaddr*>(&upstream_addr_); }
  std::string upstream_version = "7.0.0";

  size_t connected_clients() const { return clients_.size(); }
  uint64_t start_ms = 0;
  uint64_t next_client_id = 1;
  bool shutting_down() const { return shutting_down_; }

  std::string info_text(const std::string& section);  // PROXY INFO

 private:
  static void on_connection(uv_stream_t* s, int status);
  static void on_check(uv_check_t* h);
  static void on_timer(uv_timer_t* h);
  static void on_signal(uv_signal_t* h, int signum);
  void begin_shutdown();
  void maybe_finish_shutdown();

  Config cfg_;
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
  std::vector<UpstreamConn*> dirty_upstreams_;
  // shared_[proto-2][i]
  std::vector<UpstreamConn*> shared_[2];
  std::vector<UpstreamConn*> pinned_;
  uint64_t next_attempt_[2] = {0, 0};  // per protocol: no new shared connection before this
  uint64_t backoff_ms_ = 0;
  sockaddr_storage upstream_addr_{};
};

}  // namespace respite
