// The HTTP endpoint (off unless --http-port is given): a small HTTP/1.1 server on a Server's event
// loop, requests parsed with http-parser (Debian's libhttp-parser-dev).
//
//   GET /lookup?key=K[&db=N]  {"key": K, "value": V, "status": 200} through the cache and its
//                             single-flight (Server::read_key); 404 missing key, 400 malformed
//                             query, 409 the key holds a non-string, 503 upstream down or the read
//                             failed. Content-Type application/json.
//   GET /metrics              Prometheus text format 0.0.4: every numeric PROXY INFO field as
//                             respite_<name>, plus respite_up and the endpoint's own counters.
//   GET /healthz              200 "ok" when the upstream answers, else 503.
//   HEAD on any of them       the same status and headers, no body. Other methods: 405.
//
// Authentication: with requirepass set, /lookup (and /metrics, unless http-metrics-auth is no)
// needs the password: `Authorization: Basic base64(user:password)` (any user name) or
// `Authorization: Bearer <password>`; otherwise 401 with `WWW-Authenticate: Basic
// realm="respite"` and a JSON error. /healthz is always open.
//
// A value longer than http-max-value bytes gets 413 (JSON error, the value is not encoded).
//
// Connections are kept alive (HTTP/1.1 default, HTTP/1.0 with Connection: keep-alive); pipelined
// requests are answered in order. At most kMaxOwed requests are in flight per connection, and
// nothing more is read or parsed while that many are owed or the connection's unwritten output
// is over kMaxUnwritten (a /lookup's JSON is rendered only when its turn to be written comes and
// that output is under the bound), so a client that pipelines without reading holds a bounded
// amount of memory. Limits: request line + headers kMaxHeaderBytes (431), body kMaxBodyBytes
// (413), a parse error 400; each of those, and a connection over maxclients (503), closes the
// connection after the response. At most `maxclients` HTTP connections per process (counted
// apart from RESP clients).
//
// Values are bytes, JSON strings are Unicode: valid UTF-8 passes through (control characters,
// '"' and '\' escaped); when a value or key is not valid UTF-8, each offending byte becomes
// U+FFFD in "value"/"key" and the exact bytes are added as "value_base64"/"key_base64".
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

#include "proxy/front/server.h"

namespace respite {

class Server;
class HttpConn;

class HttpServer final : public FrontEnd {
 public:
  explicit HttpServer(Server* server);
  ~HttpServer() override;
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Listens on http-bind (default: bind) : http-port, with SO_REUSEPORT when there are several
  // loops. False (logged) when it cannot.
  bool start() override;
  // Stops accepting; idle connections close now, busy ones after the responses they owe.
  void begin_shutdown() override;
  // Closes every handle and connection now (end of Server::run; lookups still in flight are
  // orphaned and free themselves when answered).
  void close() override;
  // No connection left (shutdown may finish).
  bool idle() const override { return conns_.empty(); }

  Server* server() const { return server_; }
  uint64_t now() const;

 private:
  friend class HttpConn;
  static void on_connection(uv_stream_t* s, int status);
  static void on_check(uv_check_t* h);
  static void on_sweep(uv_timer_t* h);
  int open_listener(const std::string& bind, int port);
  void conn_closed(HttpConn* c);
  void add_dirty(HttpConn* c) { dirty_.push_back(c); }
  void remove_dirty(HttpConn* c);
  std::string metrics_text();

  Server* server_;
  uv_tcp_t listener_;
  uv_check_t cork_;
  uv_timer_t sweep_;
  bool listener_inited_ = false;
  bool handles_inited_ = false;
  bool shutting_down_ = false;
  bool closed_ = false;
  std::vector<HttpConn*> conns_;
  std::vector<HttpConn*> dirty_, dirty_spare_;
};

}  // namespace respite
