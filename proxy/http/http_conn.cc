// One HTTP connection: reading and parsing, the ordered response slots, writes, linger and
// close. See http_conn.h (the /lookup handler is lookup.cc).
#include "proxy/http/http_conn.h"
#include "proxy/net/tls_stream.h"

#include <algorithm>
#include <string>
#include <string_view>

#include "proxy/http/http.h"
#include "proxy/http/http_server.h"
#include "proxy/ops/text.h"
#include "proxy/front/server.h"

namespace respite {

using http::Persist;
using http::kJson;
using http::kText;

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

namespace {
constexpr size_t kKeepOutput = 1 << 20;  // output capacity kept once written
}  // namespace

namespace {
// TCP, or TLS over TCP (--http-tls); `tcp` is the TCP stream either way.
Stream* make_stream(uv_loop_t* loop, Stream::Handler* h, std::shared_ptr<const TlsContext> ctx,
                    TcpStream*& tcp) {
  if (!ctx) return tcp = new TcpStream(loop, h, kKeepOutput);
  auto* tls = new TlsStream(loop, h, kKeepOutput, std::move(ctx));
  tcp = &tls->tcp();
  return tls;
}
}  // namespace

HttpConn::HttpConn(HttpServer* srv, std::shared_ptr<const TlsContext> tls)
    : srv_(srv),
      stream_(make_stream(srv->server()->loop(), this, std::move(tls), tcp_)),
      out_(stream_->out()) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  last_active_ = accepted_ = srv->now();
  tls_ = dynamic_cast<TlsStream*>(stream_.get());
}

void HttpConn::start() {
  tcp_->set_options(0);  // no Nagle delay, no keepalive probes
  if (!stream_->read_start(&in_)) close();
}

void HttpConn::read_start() {
  if (!closing_) stream_->read_start(&in_);
}

void HttpConn::read_stop() { stream_->read_stop(); }

void HttpConn::on_stream_error(const char*, int) { close(); }

void HttpConn::on_stream_eof() {
  if (lingering_) {
    close();
    return;
  }
  // Half-close: answer what was asked, then close.
  eof_ = true;
  done_ = true;
  if (slots_.empty() && out_.empty() && !stream_->writing()) close();
}

void HttpConn::on_stream_data() {
  if (lingering_) {
    in_.consume(in_.size());
    return;
  }
  process_input();
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
  const Acl& acl = server->shared()->acl;
  // /metrics follows http-metrics-auth; unset, it needs a password when clients do (requirepass,
  // or a default user with a password in the users).
  const bool metrics_auth =
      cfg.http_metrics_auth.empty() ? acl.auth_required() : cfg.http_metrics_needs_auth;
  bool needs_auth = path == "/lookup" || (path == "/metrics" && metrics_auth);
  const AclUser* user = needs_auth ? request_user() : nullptr;
  if (needs_auth && user == nullptr) {
    bool offered = auth_headers_ > 0;
    complete(seq, 401, kJson,
             http::json_error(401, offered ? "invalid password" : "authentication required"),
             http::kAuthenticate);
    return;
  }
  if (path == "/lookup") {
    handle_lookup(seq, query, user);
  } else if (path == "/metrics") {
    std::string body = srv_->metrics_text();
    complete(seq, 200, http::kPrometheus, body);
  } else if (path == "/healthz") {
    if (server->upstream_connected()) complete(seq, 200, kText, "ok\n");
    else complete(seq, 503, kText, "upstream unavailable\n");
  } else {
    complete(seq, 404, kText, "not found\n");
  }
}

const AclUser* HttpConn::request_user() const {
  const Acl& acl = srv_->server()->shared()->acl;
  if (auth_headers_ == 0) return acl.auth_required() ? nullptr : &acl.default_user();
  std::string user, password;
  if (auth_headers_ != 1 || !http::authorization_credentials(auth_, user, password)) return nullptr;
  // A Basic user name that is none of the users' (curl -u :pw, or any name) stands for the
  // default user, as it did when requirepass was the only password: the password decides.
  if (acl.find(user) == nullptr) user = "default";
  return acl.authenticate(user, password);
}

void HttpConn::complete(uint64_t seq, int status, std::string_view ctype, std::string_view body,
                        std::string_view extra_headers) {
  if (closing_ || seq < head_seq_ || seq - head_seq_ >= slots_.size()) return;
  Slot& s = slots_[seq - head_seq_];
  if (seq == head_seq_) {
    http::append_response(out_, status, ctype, body, s.head, s.persist, extra_headers);
    slots_.pop_front();
    ++head_seq_;
    drain_ready();
  } else {
    http::append_response(s.data, status, ctype, body, s.head, s.persist, extra_headers);
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
  complete(seq, status, kJson, http::json_error(status, message));
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
  while (!stream_->writing()) {
    drain_ready();
    if (out_.empty()) break;
    if (stream_->flush() != 0) {
      close();
      return;
    }
    if (stream_->writing()) return;  // the rest when the socket takes it: on_stream_written
    // Held by a TLS stream until its handshake is done: on_stream_written comes then.
    if (!out_.empty()) return;
    last_active_ = srv_->now();      // all of it written
  }
  if (stream_->writing() || !out_.empty()) return;
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

void HttpConn::on_stream_written() {
  last_active_ = srv_->now();
  flush();
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
  if (stream_->shutdown() != 0) {  // a later failure: on_stream_error
    close();
    return;
  }
  in_.consume(in_.size());
  read_start();
}

void HttpConn::finish() {
  if (closing_) return;
  done_ = true;
  read_stop();
  if (slots_.empty() && out_.empty() && !stream_->writing()) close();
}

void HttpConn::close() {
  if (closing_) return;
  closing_ = true;
  read_stop();
  orphan_lookups();
  slots_.clear();
  if (dirty) {
    srv_->remove_dirty(this);
    dirty = false;
  }
  srv_->conn_closed(this);
  stream_->close();
}

// The stream's last call: nothing of the connection is used after it.
void HttpConn::on_stream_closed() { delete this; }
}  // namespace respite
