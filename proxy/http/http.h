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
#include <string_view>
#include <vector>

namespace respite {

class Server;
class HttpConn;

namespace http {

// Pure helpers, no I/O (unit-tested in tests/unit/proxy/http_test.cc).

// Percent-decoding of one query component ('+' is a space, as in HTML forms and the seeds'
// servers). False when a '%' is not followed by two hex digits.
bool url_decode(std::string_view in, std::string& out);

struct QueryParam {
  std::string name;
  std::string value;
};
// Splits `a=1&b=2` into decoded pairs (empty segments skipped; `a` alone is a=""). False on a
// malformed percent-escape anywhere.
bool parse_query(std::string_view query, std::vector<QueryParam>& out);

// JSON and base64 (proxy/http_json.cc).
bool valid_utf8(std::string_view s);
// Appends `s` as a JSON string literal (with the quotes), in one pass over the bytes: control
// characters as \n \r \t \b \f or \u00xx, '"' and '\' escaped, valid UTF-8 as is, every byte
// that is not part of valid UTF-8 as \ufffd; returns false when there were any of those.
bool append_json_string(std::string& out, std::string_view s);
void append_base64(std::string& out, std::string_view bytes);
// Standard alphabet, padding optional; false on any other character or a malformed end.
bool base64_decode(std::string_view in, std::string& out);
// Appends `"name": "..."` and, when `bytes` is not valid UTF-8, `, "name_base64": "..."`.
void append_json_bytes_field(std::string& out, std::string_view name, std::string_view bytes);

// True when an Authorization header value carries `password` (proxy/http_auth.cc): "Basic"
// with base64 of `user:password` (any user name) or "Bearer <password>"; scheme names are
// case-insensitive. Passwords are compared with secret_equal.
bool authorization_matches(std::string_view header_value, std::string_view password);

// PROXY INFO text (`# Section` lines, `name:value` lines) to Prometheus text format 0.0.4: every
// numeric field becomes respite_<name> with # HELP and # TYPE. Cache fields take their kind and
// help from cache::kStatTable, the proxy counters from RESPITE_PROXY_STATS; counters are named
// <name>_total (a leading "total_" moves to the end: total_commands_processed ->
// respite_commands_processed_total); fields respite does not know are `untyped`. A metric name
// already in `seen` is skipped (and every emitted one is added).
void append_info_metrics(std::string& out, std::string_view info, std::vector<std::string>& seen);

// One metric family with a single sample (or several labelled ones).
void append_metric(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, std::string_view value);

}  // namespace http

class HttpServer {
 public:
  explicit HttpServer(Server* server);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Listens on http-bind (default: bind) : http-port, with SO_REUSEPORT when there are several
  // loops. False (logged) when it cannot.
  bool start();
  // Stops accepting; idle connections close now, busy ones after the responses they owe.
  void begin_shutdown();
  // Closes every handle and connection now (end of Server::run; lookups still in flight are
  // orphaned and free themselves when answered).
  void close();
  // No connection left (shutdown may finish).
  bool idle() const { return conns_.empty(); }

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
