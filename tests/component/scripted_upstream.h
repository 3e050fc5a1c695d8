// A scripted upstream for component tests: a libuv TCP server on respite's own loop that
// speaks RESP. Each request gets the reply a test scripted for its command (now, after a
// delay, held until released, never, or the connection closed instead), or a default answer
// that plays Redis well enough for respite's handshake and control traffic (AUTH, HELLO 3,
// SELECT, INFO, CONFIG GET databases, CLIENT ID/TRACKING, SUBSCRIBE, PING), a small string and
// hash store (GET/PTTL/SET/DEL, HGET/HSET), transactions (MULTI/EXEC/DISCARD), PUBLISH and
// invalidation messages for keys read by a tracking connection.
//
// Replies leave a connection in request order, as Redis answers: a reply held or delayed holds
// back those behind it. Each connection records what it received, and which of respite's
// connections it is (Role) is told from its first commands.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "resp/request_parser.h"

namespace component {

using Args = std::vector<std::string>;

// RESP encoders for scripts and expectations.
std::string bulk(std::string_view s);
std::string nil();                                 // $-1
std::string simple(std::string_view s);            // +s
std::string error(std::string_view s);             // -s
std::string integer(int64_t n);                    // :n
std::string array(std::initializer_list<std::string> encoded_items);
std::string command(std::initializer_list<std::string_view> args);  // a multibulk request
std::string push(std::initializer_list<std::string_view> bulks);    // RESP3 push of bulks

// Which of respite's upstream connections a connection is, by its first commands (after any
// AUTH/HELLO/SELECT): CLIENT TRACKING (fetch); CLIENT ID then INFO commandstats or SUBSCRIBE
// __redis__:invalidate (link); CLIENT ID then anything else (pinned); anything else (shared).
// Unknown until that is known.
enum class Role { Unknown, Shared, Link, Fetch, Pinned };
const char* role_name(Role r);

// What the upstream does with one request.
struct Action {
  enum class Kind {
    Reply,  // `bytes` (one reply, or several, or a reply and a push) in the connection's order
    Hold,   // `bytes` once the test calls Conn::release(); the replies behind it wait
    Never,  // no reply, ever; the replies behind it wait for ever (a stuck Redis)
    Close,  // the connection closes at this request's turn (what is before it is written)
  } kind = Kind::Reply;
  std::string bytes;
  uint64_t delay_ms = 0;      // Reply: ready this long (loop time) after the request
  bool out_of_order = false;  // Reply: written at once, ahead of the replies still owed
};
Action reply(std::string bytes);
Action delayed(uint64_t ms, std::string bytes);
Action out_of_order(std::string bytes);
Action hold(std::string bytes);
Action never();
Action close_connection();

class ScriptedUpstream;

class Conn {
 public:
  Conn(ScriptedUpstream* up, uv_loop_t* loop, int id);
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  int id() const { return id_; }  // what CLIENT ID answers
  Role role() const { return role_; }
  const std::vector<Args>& received() const { return received_; }
  // Requests named `cmd`: its first word, or two words ("CLIENT ID"), case-insensitive.
  size_t count(std::string_view cmd) const;
  bool closed() const { return close_requested_; }  // closing or closed, by either side
  bool gone() const { return gone_; }                // the handle's close callback ran
  bool closed_by_peer() const { return eof_; }       // respite closed it
  int64_t redirect() const { return redirect_; }     // CLIENT TRACKING ... REDIRECT <id>
  int proto() const { return proto_; }

  void send(std::string_view bytes);  // written now, out of band (a push, an extra reply)
  void release();                     // held replies go, and what waited behind them
  // From the upstream's side, as Redis closing a client: what was written goes first (a
  // shutdown of the write side), input is then ignored, and the connection closes at
  // respite's EOF.
  void close();

 private:
  friend class ScriptedUpstream;
  struct Out {
    Action::Kind kind;
    std::string bytes;
    bool ready;
    uint64_t n;
  };
  struct DelayTimer {
    uv_timer_t timer;
    Conn* conn;
    uint64_t n;
  };
  struct WriteReq {
    uv_write_t req;
    std::string data;
  };
  void accept_on(uv_stream_t* server);
  void queue(Action a);
  void queue_in_order(std::string bytes);  // a message behind the replies owed (PUBLISH)
  void pump();
  void write(std::string_view bytes);
  void close_now();
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_close(uv_handle_t* h);
  static void on_delay(uv_timer_t* t);

  ScriptedUpstream* up_;
  uv_loop_t* loop_;
  int id_;
  uv_tcp_t tcp_;
  bool open_ = false;  // uv_tcp_init done
  bool close_requested_ = false;
  bool closing_ = false;
  bool gone_ = false;
  bool eof_ = false;
  uv_shutdown_t shutdown_req_;
  std::string in_;
  char read_buf_[16384];
  resp::RequestParser parser_;
  resp::Frame frame_;
  std::deque<Out> out_;
  uint64_t next_out_ = 0;
  std::vector<DelayTimer*> timers_;
  std::vector<Args> received_;

  // Protocol state (defaults).
  Role role_ = Role::Unknown;
  bool client_id_first_ = false;  // link or pinned: told by the next command
  int proto_ = 2;
  int db_ = 0;
  bool in_multi_ = false;
  std::vector<Args> queued_;
  std::set<std::string> channels_;
  int64_t redirect_ = -1;
};

class ScriptedUpstream {
 public:
  using Handler = std::function<Action(Conn&, const Args&)>;

  explicit ScriptedUpstream(uv_loop_t* loop);
  ~ScriptedUpstream();
  ScriptedUpstream(const ScriptedUpstream&) = delete;
  ScriptedUpstream& operator=(const ScriptedUpstream&) = delete;

  int start();  // listens on 127.0.0.1, a free port; returns it (-1: failed)
  int port() const { return port_; }

  // Scripts: the first rule (in the order given) whose command matches (first word, or two
  // words such as "CLIENT ID"; case-insensitive), whose role matches (Unknown: any) and that
  // has uses left answers; `times` -1 is unlimited. Without a rule: default_action().
  void on(std::string cmd, Action a, int times = -1, Role role = Role::Unknown);
  void on(std::string cmd, Handler h, int times = -1, Role role = Role::Unknown);
  // The default answer (and its effect on the store, subscriptions and transactions).
  Action default_action(Conn& c, const Args& a);

  // The store behind GET/SET/HGET/HSET.
  void set(const std::string& key, std::string value, int db = 0);
  // Invalidation messages to the REDIRECT target for keys read by a tracking connection
  // (Redis's CLIENT TRACKING); off: writes send none.
  bool invalidations = true;
  // What INFO commandstats reports for SWAPDB.
  int64_t swapdb_calls = 0;

  std::vector<Conn*> conns(Role r) const;  // in accept order
  Conn* last(Role r) const;                // the newest of that role, or nullptr
  Conn* by_id(int id) const;
  size_t count(Role r, std::string_view cmd) const;  // summed over that role's connections
  size_t accepted() const { return conns_.size(); }
  // Every request on every connection, in the order they were read: (connection id, args).
  const std::vector<std::pair<int, Args>>& arrivals() const { return arrivals_; }

  void stop();              // closes the listener and every connection at once
  bool all_closed() const;  // every handle's close callback has run

 private:
  friend class Conn;
  struct Rule {
    std::string cmd;
    Role role;
    int times;
    Handler handler;
  };
  void handle(Conn& c, Args a);
  void classify(Conn& c, const Args& a);
  Action run_command(Conn& c, const Args& a);
  void written(const std::string& key);  // a write: invalidation messages
  static void on_connection(uv_stream_t* s, int status);
  static void on_listener_close(uv_handle_t* h);

  uv_loop_t* loop_;
  uv_tcp_t listener_;
  bool listening_ = false;
  bool listener_gone_ = true;
  int port_ = -1;
  int next_id_ = 101;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Rule> rules_;
  std::vector<std::pair<int, Args>> arrivals_;
  std::map<std::pair<int, std::string>, std::string> strings_;
  std::map<std::pair<int, std::string>, std::map<std::string, std::string>> hashes_;
  std::map<std::string, std::set<int64_t>> tracked_;  // key -> REDIRECT ids to tell
};

}  // namespace component
