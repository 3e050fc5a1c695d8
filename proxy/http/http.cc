// The HTTP endpoint: listener, connections (parse, dispatch in order, write), /lookup through the
// cache, /metrics from a PROXY INFO snapshot, /healthz. See http.h for the contract.
//
// Event flow per connection: on_read appends to `in_` and runs process_input(), which feeds the
// parser; the parser pauses itself at the end of every message, so one request is handled at a
// time with exact byte accounting (the rest stays in `in_`). Every request takes a slot in an
// ordered queue; /metrics and /healthz fill theirs at once, /lookup when its value arrives. Ready
// slots at the front move to `out_`, written once per loop turn by the endpoint's cork (a
// uv_check handle), like the RESP side. Too many owed responses or too much unwritten output
// pauses reading until the client catches up. A found value waits in its slot as bytes and is
// rendered to JSON only when it reaches the front and the unwritten output is under the bound.
#include "proxy/http/http.h"

#include <http_parser.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <deque>
#include <iterator>

#include "proxy/net/buffer.h"
#include "proxy/net/listener.h"
#include "proxy/ops/info.h"
#include "proxy/ops/log.h"
#include "proxy/ops/metrics.h"
#include "proxy/server.h"
#include "proxy/ops/text.h"

namespace respite {

namespace {

constexpr size_t kMaxHeaderBytes = 32 * 1024;  // request target + header names and values
constexpr size_t kMaxBodyBytes = 64 * 1024;    // bodies are read and ignored, never stored
constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kMaxOwed = 16;                // requests in flight before reading pauses
constexpr size_t kMaxUnwritten = 4u << 20;     // unwritten bytes before reading (and rendering
                                               // found values) pauses
constexpr uint64_t kIdleTimeoutMs = 60000;     // no request taken, no byte written: close
constexpr uint64_t kLingerMs = 2000;           // after a final response: drain input, then close
constexpr uint64_t kSweepMs = 1000;

// Every status the endpoint sends.
constexpr int kStatuses[] = {200, 400, 401, 404, 405, 409, 413, 431, 503};
constexpr size_t kNumStatuses = std::size(kStatuses);

// Process-wide (every loop's endpoint adds to them; /metrics shows the sums).
struct HttpCounters {
  std::atomic<int64_t> connections{0};
  std::atomic<uint64_t> connections_received{0};
  std::atomic<uint64_t> rejected_connections{0};
  std::atomic<uint64_t> responses[kNumStatuses] = {};  // by kStatuses position
};
HttpCounters g_http;

void count_response(int status) {
  for (size_t i = 0; i < kNumStatuses; ++i)
    if (kStatuses[i] == status) g_http.responses[i].fetch_add(1, std::memory_order_relaxed);
}

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kText = "text/plain; charset=utf-8";
constexpr std::string_view kPrometheus = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kAuthenticate = "WWW-Authenticate: Basic realm=\"respite\"\r\n";
constexpr size_t kMaxHeaderName = 32;  // longer names are kept only as "not Authorization"

// How the response ends the exchange.
enum class Persist : uint8_t {
  kKeep,        // HTTP/1.1 keep-alive (the default, no header)
  kKeepHeader,  // HTTP/1.0 keep-alive: say so
  kClose,       // last response on this connection
};

void append_response(std::string& out, int status, std::string_view ctype, std::string_view body,
                     bool head, Persist persist, std::string_view extra_headers = {}) {
  fmt::format_to(std::back_inserter(out),
                 "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n", status,
                 reason(status), ctype, body.size(),
                 persist == Persist::kClose        ? "Connection: close\r\n"
                 : persist == Persist::kKeepHeader ? "Connection: keep-alive\r\n"
                                                   : "",
                 extra_headers);
  if (!head) out.append(body);
  count_response(status);
}

std::string json_error(int status, std::string_view error) {
  std::string b = fmt::format("{{\"status\": {}, \"error\": ", status);
  http::append_json_string(b, error);
  b += "}";
  return b;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

// ---- pure helpers ----

namespace http {

bool url_decode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;  // fewer than two characters follow
      int h = hex_value(in[i + 1]), l = hex_value(in[i + 2]);
      if (h < 0 || l < 0) return false;
      out += static_cast<char>(h * 16 + l);
      i += 2;
    } else {
      out += c;
    }
  }
  return true;
}

bool parse_query(std::string_view query, std::vector<QueryParam>& out) {
  out.clear();
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view seg = query.substr(pos, amp - pos);
    pos = amp + 1;
    if (seg.empty()) continue;
    size_t eq = seg.find('=');
    QueryParam p;
    if (!url_decode(seg.substr(0, eq), p.name)) return false;
    if (eq != std::string_view::npos && !url_decode(seg.substr(eq + 1), p.value)) return false;
    out.push_back(std::move(p));
  }
  return true;
}

}  // namespace http

// ---- connections ----

// A /lookup waiting for its value. Allocated apart from the connection: when the connection
// closes first, close() sets `conn` to null and the lookup frees itself when the value arrives.
class PendingLookup final : public ValueReader {
 public:
  PendingLookup(HttpConn* c, uint64_t s, std::string k) : conn(c), seq(s), key(std::move(k)) {}
  void on_value(bool missing, std::string_view value, std::string_view error) override;

  HttpConn* conn;
  uint64_t seq;
  std::string key;
};

class HttpConn {
 public:
  explicit HttpConn(HttpServer* srv);
  uv_tcp_t* handle() { return &tcp_; }
  void start();
  void reject_busy();  // over maxclients: 503, then close
  void close();
  void finish();       // shutdown: no more requests; close once what is owed is written
  void flush();        // from the cork
  bool lingering() const { return lingering_; }
  // No request taken and no byte written for `ms`: an idle keep-alive connection, a client
  // trickling a request, or one that stopped reading its responses.
  bool stalled_for(uint64_t now, uint64_t ms) const { return now - last_active_ >= ms; }
  bool linger_expired(uint64_t now) const { return lingering_ && now - linger_since_ >= kLingerMs; }
  void lookup_done(PendingLookup* lk, bool missing, std::string_view value,
                   std::string_view error);

  size_t index = SIZE_MAX;  // position in HttpServer::conns_
  bool dirty = false;

 private:
  struct Slot {
    bool ready = false;
    bool head = false;
    bool found = false;  // ready: a found value, rendered when written (`key`, `value`)
    Persist persist = Persist::kKeep;
    PendingLookup* lookup = nullptr;
    std::string data;    // ready and not `found`: the whole response
    std::string key, value;
  };

  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_close(uv_handle_t* h);
  friend class HttpServer;
  static const http_parser_settings& settings();
  static int cb_message_begin(http_parser* p);
  static int cb_url(http_parser* p, const char* at, size_t len);
  static int cb_header_field(http_parser* p, const char* at, size_t len);
  static int cb_header_value(http_parser* p, const char* at, size_t len);
  static bool count_header_bytes(HttpConn* c, size_t len);
  static int cb_headers_complete(http_parser* p);
  static int cb_body(http_parser* p, const char* at, size_t len);
  static int cb_message_complete(http_parser* p);

  void read_start();
  void read_stop();
  void process_input();
  void handle_request();
  void handle_lookup(uint64_t seq, std::string_view query);
  void reject(int status, std::string_view message);  // final response, then close
  uint64_t reserve(bool head, Persist persist);
  void complete(uint64_t seq, int status, std::string_view ctype, std::string_view body,
                std::string_view extra_headers = {});
  void drain_ready();
  void render_found(Slot& s);
  void mark_dirty();
  bool authorized() const;
  size_t unwritten() const { return out_.size() + writing_.size(); }
  bool backlogged() const { return slots_.size() >= kMaxOwed || unwritten() >= kMaxUnwritten; }
  void start_linger();

  HttpServer* srv_;
  uv_tcp_t tcp_;
  uv_write_t write_req_;
  uv_shutdown_t shutdown_req_;
  http_parser parser_;
  Buffer in_;

  // The request being parsed.
  std::string url_;
  size_t header_bytes_ = 0;
  uint64_t body_bytes_ = 0;
  int too_large_ = 0;  // 431 or 413 once a limit is crossed
  bool keep_alive_ = false;
  std::string header_name_;      // the header being read (up to kMaxHeaderName + 1 bytes)
  bool in_header_value_ = false;  // its value has begun
  bool value_is_auth_ = false;    // ... and it is an Authorization header
  int auth_headers_ = 0;          // Authorization headers seen
  std::string auth_;              // the (first) Authorization header's value

  std::deque<Slot> slots_;
  uint64_t head_seq_ = 0;
  uint64_t next_seq_ = 0;
  std::string out_;
  std::string writing_;

  uint64_t last_active_ = 0;
  uint64_t linger_since_ = 0;
  bool reading_ = false;
  bool writing_active_ = false;
  bool paused_ = false;     // reading held back: too much owed
  bool done_ = false;       // no more requests are taken; close once everything is written
  bool eof_ = false;        // the client half-closed
  bool lingering_ = false;  // final response written, FIN sent, draining input
  bool closing_ = false;
};

const http_parser_settings& HttpConn::settings() {
  static const http_parser_settings s = [] {
    http_parser_settings v;
    http_parser_settings_init(&v);
    v.on_message_begin = cb_message_begin;
    v.on_url = cb_url;
    v.on_header_field = cb_header_field;
    v.on_header_value = cb_header_value;
    v.on_headers_complete = cb_headers_complete;
    v.on_body = cb_body;
    v.on_message_complete = cb_message_complete;
    return v;
  }();
  return s;
}

void PendingLookup::on_value(bool missing, std::string_view value, std::string_view error) {
  if (conn) conn->lookup_done(this, missing, value, error);
  delete this;
}

HttpConn::HttpConn(HttpServer* srv) : srv_(srv) {
  uv_tcp_init(srv->server()->loop(), &tcp_);
  tcp_.data = this;
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  last_active_ = srv->now();
}

void HttpConn::start() {
  uv_tcp_nodelay(&tcp_, 1);
  read_start();
  if (!reading_) close();
}

void HttpConn::read_start() {
  if (reading_ || closing_) return;
  if (uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read) == 0) reading_ = true;
}

void HttpConn::read_stop() {
  if (!reading_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

void HttpConn::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<HttpConn*>(h->data);
  size_t avail;
  char* p = c->in_.prepare(kReadChunk, &avail);
  *buf = uv_buf_init(p, static_cast<unsigned>(std::min(avail, kReadChunk * 4)));
}

void HttpConn::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* c = static_cast<HttpConn*>(s->data);
  if (nread == 0) return;
  if (nread < 0) {
    if (nread != UV_EOF || c->lingering_) {
      c->close();
      return;
    }
    // Half-close: answer what was asked, then close.
    c->eof_ = true;
    c->done_ = true;
    c->read_stop();
    if (c->slots_.empty() && c->out_.empty() && !c->writing_active_) c->close();
    return;
  }
  c->in_.commit(static_cast<size_t>(nread));
  if (c->lingering_) {
    c->in_.consume(c->in_.size());
    return;
  }
  c->process_input();
}

void HttpConn::process_input() {
  while (!closing_ && !done_ && !in_.empty()) {
    if (backlogged()) {
      paused_ = true;
      read_stop();
      return;
    }
    std::string_view data = in_.readable();
    size_t n = http_parser_execute(&parser_, &settings(), data.data(), data.size());
    in_.consume(n);
    http_errno err = HTTP_PARSER_ERRNO(&parser_);
    if (err == HPE_PAUSED) {  // one whole request
      http_parser_pause(&parser_, 0);
      handle_request();
      continue;
    }
    if (err != HPE_OK) {
      if (too_large_ == 431 || err == HPE_HEADER_OVERFLOW)
        reject(431, "request header fields too large");
      else if (too_large_ == 413) reject(413, "request body too large");
      else reject(400, http_errno_description(err));
      return;
    }
    if (n == 0) break;  // cannot happen (the parser takes everything it is given)
  }
  if (in_.empty()) in_.shrink_if_idle();
}

int HttpConn::cb_message_begin(http_parser* p) {
  auto* c = static_cast<HttpConn*>(p->data);
  c->url_.clear();
  c->header_bytes_ = 0;
  c->body_bytes_ = 0;
  c->too_large_ = 0;
  c->header_name_.clear();
  c->in_header_value_ = false;
  c->value_is_auth_ = false;
  c->auth_headers_ = 0;
  c->auth_.clear();
  return 0;
}

int HttpConn::cb_url(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<HttpConn*>(p->data);
  c->header_bytes_ += len;
  if (c->header_bytes_ > kMaxHeaderBytes) {
    c->too_large_ = 431;
    return 1;
  }
  c->url_.append(at, len);
  return 0;
}

bool HttpConn::count_header_bytes(HttpConn* c, size_t len) {
  c->header_bytes_ += len;
  if (c->header_bytes_ <= kMaxHeaderBytes) return true;
  c->too_large_ = 431;
  return false;
}

// A name or value may come in several pieces (split across reads): a field piece after a value
// starts the next header.
int HttpConn::cb_header_field(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<HttpConn*>(p->data);
  if (!count_header_bytes(c, len)) return 1;
  if (c->in_header_value_) {
    c->header_name_.clear();
    c->in_header_value_ = false;
  }
  if (c->header_name_.size() <= kMaxHeaderName)
    c->header_name_.append(at, std::min(len, kMaxHeaderName + 1 - c->header_name_.size()));
  return 0;
}

int HttpConn::cb_header_value(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<HttpConn*>(p->data);
  if (!count_header_bytes(c, len)) return 1;
  if (!c->in_header_value_) {
    c->in_header_value_ = true;
    c->value_is_auth_ = ieq(c->header_name_, "authorization") && ++c->auth_headers_ == 1;
  }
  if (c->value_is_auth_) c->auth_.append(at, len);  // bounded by kMaxHeaderBytes
  return 0;
}

int HttpConn::cb_headers_complete(http_parser* p) {
  auto* c = static_cast<HttpConn*>(p->data);
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > kMaxBodyBytes) {
    c->too_large_ = 413;
    return -1;  // neither 0 (go on) nor 1/2 (no body / upgrade): an error
  }
  return 0;
}

int HttpConn::cb_body(http_parser* p, const char*, size_t len) {
  auto* c = static_cast<HttpConn*>(p->data);
  c->body_bytes_ += len;
  if (c->body_bytes_ > kMaxBodyBytes) {
    c->too_large_ = 413;
    return 1;
  }
  return 0;
}

int HttpConn::cb_message_complete(http_parser* p) {
  auto* c = static_cast<HttpConn*>(p->data);
  c->keep_alive_ = http_should_keep_alive(p) != 0;
  http_parser_pause(p, 1);  // handled by process_input, one request at a time
  return 0;
}

uint64_t HttpConn::reserve(bool head, Persist persist) {
  slots_.emplace_back();
  slots_.back().head = head;
  slots_.back().persist = persist;
  return next_seq_++;
}

void HttpConn::handle_request() {
  last_active_ = srv_->now();
  auto method = static_cast<http_method>(parser_.method);
  bool head = method == HTTP_HEAD;
  // Upgrade requests (and CONNECT) hand the rest of the stream to another protocol: answered,
  // then the connection ends.
  bool keep = keep_alive_ && !parser_.upgrade && !srv_->shutting_down_;
  Persist persist = !keep ? Persist::kClose
                    : (parser_.http_major == 1 && parser_.http_minor == 0) ? Persist::kKeepHeader
                                                                            : Persist::kKeep;
  if (persist == Persist::kClose) {
    done_ = true;
    read_stop();
  }
  uint64_t seq = reserve(head, persist);

  if (method != HTTP_GET && method != HTTP_HEAD) {
    complete(seq, 405, kText, "method not allowed\n", "Allow: GET, HEAD\r\n");
    return;
  }
  http_parser_url u;  // 16-bit offsets: fine, the target is under kMaxHeaderBytes
  http_parser_url_init(&u);
  if (http_parser_parse_url(url_.data(), url_.size(), 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) {
    complete(seq, 400, kText, "malformed request target\n");
    return;
  }
  std::string_view path(url_.data() + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
  std::string_view query;
  if (u.field_set & (1 << UF_QUERY))
    query = std::string_view(url_.data() + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);

  Server* server = srv_->server();
  const Config& cfg = server->config();
  bool needs_auth = path == "/lookup" || (path == "/metrics" && cfg.http_metrics_needs_auth);
  if (needs_auth && !cfg.requirepass.empty() && !authorized()) {
    bool offered = auth_headers_ > 0;
    complete(seq, 401, kJson,
             json_error(401, offered ? "invalid password" : "authentication required"),
             kAuthenticate);
    return;
  }
  if (path == "/lookup") {
    handle_lookup(seq, query);
  } else if (path == "/metrics") {
    std::string body = srv_->metrics_text();
    complete(seq, 200, kPrometheus, body);
  } else if (path == "/healthz") {
    if (server->upstream_connected()) complete(seq, 200, kText, "ok\n");
    else complete(seq, 503, kText, "upstream unavailable\n");
  } else {
    complete(seq, 404, kText, "not found\n");
  }
}

bool HttpConn::authorized() const {
  return auth_headers_ == 1 &&
         http::authorization_matches(auth_, srv_->server()->config().requirepass);
}

void HttpConn::handle_lookup(uint64_t seq, std::string_view query) {
  std::vector<http::QueryParam> params;
  if (!http::parse_query(query, params)) {
    complete(seq, 400, kJson, json_error(400, "malformed percent-encoding in the query"));
    return;
  }
  const std::string* key = nullptr;
  const std::string* db_text = nullptr;
  for (const auto& p : params) {
    if (p.name == "key" || p.name == "db") {
      const std::string*& slot = p.name == "key" ? key : db_text;
      if (slot) {
        complete(seq, 400, kJson, json_error(400, fmt::format("{} given more than once", p.name)));
        return;
      }
      slot = &p.value;
    }
  }
  if (!key) {
    complete(seq, 400, kJson, json_error(400, "missing key parameter"));
    return;
  }
  if (key->empty()) {
    complete(seq, 400, kJson, json_error(400, "empty key parameter"));
    return;
  }
  Server* server = srv_->server();
  uint32_t db = 0;
  if (db_text) {
    auto [p, ec] = std::from_chars(db_text->data(), db_text->data() + db_text->size(), db);
    if (db_text->empty() || ec != std::errc() || p != db_text->data() + db_text->size() ||
        db >= static_cast<uint32_t>(server->config().databases)) {
      complete(seq, 400, kJson, json_error(400, "db must be a database number"));
      return;
    }
  }
  auto* lk = new PendingLookup(this, seq, *key);
  slots_[seq - head_seq_].lookup = lk;
  // The value may arrive right here (a cache hit), which completes the slot and frees `lk`.
  server->read_key(db, *key, lk);
}

void HttpConn::lookup_done(PendingLookup* lk, bool missing, std::string_view value,
                           std::string_view error) {
  if (closing_ || lk->seq < head_seq_ || lk->seq - head_seq_ >= slots_.size()) return;
  Slot& slot = slots_[lk->seq - head_seq_];
  slot.lookup = nullptr;
  uint64_t max_value = srv_->server()->config().http_max_value;
  if (error.empty() && !missing && value.size() <= max_value) {
    // Kept as bytes; the JSON (up to 6 bytes per byte) is made when it is its turn to be written.
    slot.found = true;
    slot.ready = true;
    slot.key = std::move(lk->key);
    slot.value.assign(value);
    drain_ready();
    mark_dirty();
    return;
  }
  std::string body = "{";
  http::append_json_bytes_field(body, "key", lk->key);
  int status;
  if (!error.empty()) {
    // A Redis error reply ("-WRONGTYPE ...\r\n") or respite's own reason.
    std::string_view e = error;
    if (!e.empty() && e.front() == '-') e.remove_prefix(1);
    while (!e.empty() && (e.back() == '\n' || e.back() == '\r')) e.remove_suffix(1);
    // WRONGTYPE: the key exists but holds no string; the upstream itself is fine.
    status = e.rfind("WRONGTYPE", 0) == 0 ? 409 : 503;
    fmt::format_to(std::back_inserter(body), ", \"status\": {}, \"error\": ", status);
    http::append_json_string(body, e);
  } else if (missing) {
    status = 404;
    body += ", \"status\": 404, \"error\": \"not found\"";
  } else {
    status = 413;  // not encoded: a bound on the response
    fmt::format_to(std::back_inserter(body),
                   ", \"status\": 413, \"error\": \"value too large ({} bytes, http-max-value "
                   "{})\"",
                   value.size(), max_value);
  }
  body += "}";
  complete(lk->seq, status, kJson, body);
}

// {"key": K, "value": V, "status": 200}, headers and all, onto `out_`.
void HttpConn::render_found(Slot& s) {
  std::string body;
  body.reserve(s.key.size() + s.value.size() + 48);  // exact when nothing needs escaping
  body += '{';
  http::append_json_bytes_field(body, "key", s.key);
  body += ", ";
  http::append_json_bytes_field(body, "value", s.value);
  body += ", \"status\": 200}";
  append_response(out_, 200, kJson, body, s.head, s.persist);
}

void HttpConn::complete(uint64_t seq, int status, std::string_view ctype, std::string_view body,
                        std::string_view extra_headers) {
  if (closing_ || seq < head_seq_ || seq - head_seq_ >= slots_.size()) return;
  Slot& s = slots_[seq - head_seq_];
  if (seq == head_seq_) {
    append_response(out_, status, ctype, body, s.head, s.persist, extra_headers);
    slots_.pop_front();
    ++head_seq_;
    drain_ready();
  } else {
    append_response(s.data, status, ctype, body, s.head, s.persist, extra_headers);
    s.ready = true;
  }
  mark_dirty();
}

// Ready responses at the front move to `out_`, in order; a found value is rendered only while
// the unwritten output is under kMaxUnwritten (flush comes back here as the writes complete).
void HttpConn::drain_ready() {
  while (!slots_.empty() && slots_.front().ready) {
    Slot& s = slots_.front();
    if (s.found) {
      if (unwritten() >= kMaxUnwritten) return;
      render_found(s);
    } else {
      out_.append(s.data);
    }
    slots_.pop_front();
    ++head_seq_;
  }
}

// A response that ends the connection (parse error, limits, busy): after everything owed.
void HttpConn::reject(int status, std::string_view message) {
  done_ = true;
  read_stop();
  in_.consume(in_.size());
  uint64_t seq = reserve(false, Persist::kClose);
  complete(seq, status, kJson, json_error(status, message));
}

void HttpConn::reject_busy() { reject(503, "max number of clients reached"); }

void HttpConn::mark_dirty() {
  if (dirty || closing_) return;
  dirty = true;
  srv_->add_dirty(this);
}

void HttpConn::flush() {
  if (closing_) return;
  // Written at once in full, the output makes room for found values waiting to be rendered:
  // again (each round renders at least one response or stops).
  while (!writing_active_) {
    drain_ready();
    if (out_.empty()) break;
    uv_buf_t b = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1);
    if (n == UV_EAGAIN) n = 0;
    if (n < 0) {
      close();
      return;
    }
    if (n > 0) last_active_ = srv_->now();
    if (static_cast<size_t>(n) == out_.size()) {
      out_.clear();
      if (out_.capacity() > (1u << 20)) std::string().swap(out_);
    } else {
      writing_.swap(out_);
      out_.clear();
      uv_buf_t rest = uv_buf_init(writing_.data() + n, static_cast<unsigned>(writing_.size() - n));
      writing_active_ = true;
      if (uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &rest, 1, on_write) != 0) {
        writing_active_ = false;
        close();
      }
      return;
    }
  }
  if (writing_active_ || !out_.empty()) return;
  // Everything ready is written (a found value waits only while output is unwritten).
  if (done_) {
    if (slots_.empty()) start_linger();
    return;
  }
  if (paused_ && !backlogged()) {
    paused_ = false;
    process_input();
    if (!closing_ && !done_ && !paused_) read_start();
  }
}

void HttpConn::on_write(uv_write_t* req, int status) {
  auto* c = static_cast<HttpConn*>(req->handle->data);
  c->writing_active_ = false;
  c->writing_.clear();
  if (c->writing_.capacity() > (1u << 20)) std::string().swap(c->writing_);
  if (c->closing_) return;
  if (status < 0) {
    c->close();
    return;
  }
  c->last_active_ = c->srv_->now();
  c->flush();
}

// After the final response: send FIN, then read and discard until the client closes (or
// kLingerMs), so a client still sending does not get a reset that destroys the response.
void HttpConn::start_linger() {
  if (lingering_ || closing_) return;
  if (eof_ || srv_->shutting_down_) {
    close();
    return;
  }
  lingering_ = true;
  linger_since_ = srv_->now();
  shutdown_req_.data = this;
  if (uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_), on_shutdown) != 0) {
    close();
    return;
  }
  in_.consume(in_.size());
  read_start();
}

void HttpConn::on_shutdown(uv_shutdown_t* req, int status) {
  auto* c = static_cast<HttpConn*>(req->data);
  if (status < 0 && !c->closing_) c->close();
}

void HttpConn::finish() {
  if (closing_) return;
  done_ = true;
  read_stop();
  if (slots_.empty() && out_.empty() && !writing_active_) close();
}

void HttpConn::close() {
  if (closing_) return;
  closing_ = true;
  read_stop();
  for (Slot& s : slots_)
    if (s.lookup) s.lookup->conn = nullptr;  // it frees itself when the value arrives
  slots_.clear();
  if (dirty) {
    srv_->remove_dirty(this);
    dirty = false;
  }
  srv_->conn_closed(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
}

void HttpConn::on_close(uv_handle_t* h) { delete static_cast<HttpConn*>(h->data); }

// ---- the endpoint ----

HttpServer::HttpServer(Server* server) : server_(server) {}

HttpServer::~HttpServer() = default;

uint64_t HttpServer::now() const { return server_->now(); }

bool HttpServer::start() {
  const Config& cfg = server_->config();
  std::string bind = cfg.http_bind.empty() ? cfg.bind : cfg.http_bind;
  uv_tcp_init(server_->loop(), &listener_);
  listener_.data = this;
  listener_inited_ = true;
  if (open_listener(bind, cfg.http_port) != 0) return false;
  uv_check_init(server_->loop(), &cork_);
  cork_.data = this;
  uv_check_start(&cork_, on_check);
  uv_timer_init(server_->loop(), &sweep_);
  sweep_.data = this;
  uv_timer_start(&sweep_, on_sweep, kSweepMs, kSweepMs);
  handles_inited_ = true;
  if (server_->index() == 0) log(LogLevel::Notice, "HTTP endpoint listening on {}:{}", bind, cfg.http_port);
  return true;
}

int HttpServer::open_listener(const std::string& bind, int port) {
  return listen_tcp(&listener_, bind, port, server_->config().threads > 1, on_connection, "HTTP");
}

void HttpServer::on_connection(uv_stream_t* s, int status) {
  auto* srv = static_cast<HttpServer*>(s->data);
  if (status < 0 || srv->shutting_down_) return;
  auto* c = new HttpConn(srv);
  if (uv_accept(s, reinterpret_cast<uv_stream_t*>(c->handle())) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(c->handle()), HttpConn::on_close);
    return;
  }
  g_http.connections_received.fetch_add(1, std::memory_order_relaxed);
  c->index = srv->conns_.size();
  srv->conns_.push_back(c);
  if (g_http.connections.fetch_add(1) + 1 > srv->server_->config().maxclients) {
    g_http.rejected_connections.fetch_add(1, std::memory_order_relaxed);
    c->reject_busy();
    return;
  }
  c->start();
}

void HttpServer::conn_closed(HttpConn* c) {
  size_t i = c->index;
  if (i < conns_.size() && conns_[i] == c) {
    conns_[i] = conns_.back();
    conns_[i]->index = i;
    conns_.pop_back();
    g_http.connections.fetch_sub(1);
  }
  c->index = SIZE_MAX;
}

void HttpServer::remove_dirty(HttpConn* c) {
  dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), c), dirty_.end());
}

// The cork: every connection with new output is written once per loop turn. A flush may take
// more input (a paused connection resuming), which can make connections dirty again: a few rounds.
void HttpServer::on_check(uv_check_t* h) {
  auto* srv = static_cast<HttpServer*>(h->data);
  for (int round = 0; round < 4 && !srv->dirty_.empty(); ++round) {
    srv->dirty_spare_.swap(srv->dirty_);
    for (HttpConn* c : srv->dirty_spare_) {
      c->dirty = false;
      c->flush();  // may close c (which unlists it from dirty_, not from this copy)
    }
    srv->dirty_spare_.clear();
  }
}

void HttpServer::on_sweep(uv_timer_t* h) {
  auto* srv = static_cast<HttpServer*>(h->data);
  uint64_t now = srv->now();
  // Backwards: close() moves the last connection into the closed one's place.
  for (size_t i = srv->conns_.size(); i-- > 0;) {
    if (i >= srv->conns_.size()) continue;
    HttpConn* c = srv->conns_[i];
    if (c->linger_expired(now) || (!c->lingering() && c->stalled_for(now, kIdleTimeoutMs))) c->close();
  }
}

void HttpServer::begin_shutdown() {
  if (shutting_down_ || closed_) return;
  shutting_down_ = true;
  if (listener_inited_ && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  std::vector<HttpConn*> all = conns_;
  for (HttpConn* c : all) c->finish();
}

void HttpServer::close() {
  if (closed_) return;
  closed_ = true;
  shutting_down_ = true;
  while (!conns_.empty()) conns_.back()->close();
  dirty_.clear();
  auto close_handle = [](void* h) {
    auto* hh = static_cast<uv_handle_t*>(h);
    if (!uv_is_closing(hh)) uv_close(hh, nullptr);
  };
  if (listener_inited_) close_handle(&listener_);
  if (handles_inited_) {
    close_handle(&cork_);
    close_handle(&sweep_);
  }
}

// Prometheus text: respite_up, every number of PROXY INFO (one snapshot), then the endpoint's
// own counters.
std::string HttpServer::metrics_text() {
  std::string out;
  append_metric(out, "respite_up", "gauge",
                "1 when the upstream answers (a shared upstream connection is ready)",
                server_->upstream_connected() ? "1" : "0");
  append_info_metrics(out, server_->info_snapshot());

  const HttpCounters& hc = g_http;
  append_metric(out, "respite_http_connections", "gauge", "Open HTTP connections",
                std::to_string(hc.connections.load()));
  append_metric(out, "respite_http_connections_received_total", "counter",
                "HTTP connections accepted", std::to_string(hc.connections_received.load()));
  append_metric(out, "respite_http_rejected_connections_total", "counter",
                "HTTP connections refused by maxclients",
                std::to_string(hc.rejected_connections.load()));
  append_metric(out, "respite_http_responses_total", "counter",
                "HTTP responses sent, by status code (this scrape not included)", {});
  for (size_t i = 0; i < kNumStatuses; ++i)
    fmt::format_to(std::back_inserter(out), "respite_http_responses_total{{code=\"{}\"}} {}\n",
                   kStatuses[i], hc.responses[i].load(std::memory_order_relaxed));
  return out;
}

}  // namespace respite
