// One HTTP connection: requests parsed with http-parser, answered in order through a queue of
// response slots, written by the endpoint's cork, closed after a linger. See http_server.h for
// the contract.
//
// Bytes travel through a Stream (proxy/net/stream.h), as on the RESP side: it reads into `in_`,
// responses are appended to its out() and flushed, and the FIN before the linger is its
// shutdown(). The connection frees itself in on_stream_closed().
//
// Event flow: the stream appends to `in_` and on_stream_data() runs process_input(), which feeds
// the parser; the parser pauses itself at the end of every message, so one request is handled at
// a time with exact byte accounting (the rest stays in `in_`). Every request takes a slot in an
// ordered queue; /metrics and /healthz fill theirs at once, /lookup when its value arrives
// (lookup.cc). Ready slots at the front move to `out_`, flushed once per loop turn by the
// endpoint's cork (a uv_check handle), like the RESP side. Too many owed responses or too much
// unwritten output pauses reading until the client catches up. A found value waits in its slot
// as bytes and is rendered to JSON only when it reaches the front and the unwritten output is
// under the bound.
#pragma once

#include <http_parser.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/http/response.h"
#include "proxy/net/buffer.h"
#include "proxy/net/stream.h"
#include "proxy/net/tls_context.h"
#include "proxy/net/tls_stream.h"

namespace respite {

class AclUser;
class HttpServer;

class HttpConn final : private Stream::Handler {
 public:
  // With `tls`: HTTPS, the stream is TLS over the TCP one (--http-tls).
  explicit HttpConn(HttpServer* srv, std::shared_ptr<const TlsContext> tls = nullptr);
  // Takes the connection from `listener` (0, or a libuv error: then close()).
  int accept(uv_stream_t* listener) { return tcp_->accept(listener); }
  void start();
  void reject_busy();  // over maxclients: 503, then close
  void close();        // now; the connection frees itself when the stream has closed
  void finish();       // shutdown: no more requests; close once what is owed is written
  void flush();        // from the cork
  bool lingering() const { return lingering_; }
  // No request taken and no byte written for `ms`: an idle keep-alive connection, a client
  // trickling a request, or one that stopped reading its responses.
  bool stalled_for(uint64_t now, uint64_t ms) const { return now - last_active_ >= ms; }
  bool linger_expired(uint64_t now) const { return lingering_ && now - linger_since_ >= kLingerMs; }
  // HTTPS: the TLS handshake is not done `ms` after the connection was accepted (the RESP TLS
  // port's --tls-handshake-timeout-ms bounds it here too, not only the 60 s idle timeout).
  bool handshake_late(uint64_t now, uint64_t ms) const {
    return tls_ && !tls_->established() && now - accepted_ >= ms;
  }

  // A /lookup waiting for its value (lookup.cc). Allocated apart from the connection: when the
  // connection closes first, it is orphaned and frees itself when the value arrives.
  class PendingLookup;
  void lookup_done(PendingLookup* lk, bool missing, std::string_view value,
                   std::string_view error);

  size_t index = SIZE_MAX;  // position in HttpServer::conns_
  bool dirty = false;

 private:
  static constexpr size_t kMaxHeaderBytes = 32 * 1024;  // request target + header names and values
  static constexpr size_t kMaxBodyBytes = 64 * 1024;    // bodies are read and ignored, never stored
  static constexpr size_t kMaxOwed = 16;                // requests in flight before reading pauses
  static constexpr size_t kMaxUnwritten = 4u << 20;     // unwritten bytes before reading (and
                                                        // rendering found values) pauses
  static constexpr uint64_t kLingerMs = 2000;           // after a final response: drain input,
                                                        // then close
  static constexpr size_t kMaxHeaderName = 32;  // longer names are kept only as "not Authorization"

  struct Slot {
    bool ready = false;
    bool head = false;
    bool found = false;  // ready: a found value, rendered when written (`key`, `value`)
    http::Persist persist = http::Persist::kKeep;
    PendingLookup* lookup = nullptr;
    std::string data;    // ready and not `found`: the whole response
    std::string key, value;
  };

  ~HttpConn() override = default;  // from on_stream_closed only
  // Stream::Handler
  void on_stream_data() override;
  void on_stream_eof() override;
  void on_stream_error(const char* op, int status) override;
  void on_stream_written() override;
  void on_stream_closed() override;

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
  // lookup.cc; `user` is who asks (its key permissions are checked before the cache is read).
  void handle_lookup(uint64_t seq, std::string_view query, const AclUser* user);
  void orphan_lookups();                                       // lookup.cc
  void reject(int status, std::string_view message);  // final response, then close
  uint64_t reserve(bool head, http::Persist persist);
  void complete(uint64_t seq, int status, std::string_view ctype, std::string_view body,
                std::string_view extra_headers = {});
  void drain_ready();
  void render_found(Slot& s);  // lookup.cc
  void mark_dirty();
  // The request's ACL user: the Authorization header's (Basic user:password, or Bearer with the
  // default user's password), or the default user when it needs no password; nullptr when the
  // credentials are wrong or missing.
  const AclUser* request_user() const;
  size_t unwritten() const { return stream_->unwritten(); }
  bool backlogged() const { return slots_.size() >= kMaxOwed || unwritten() >= kMaxUnwritten; }
  void start_linger();

  HttpServer* srv_;
  TcpStream* tcp_ = nullptr;  // the TCP stream (below the TLS one, if any): accept, options
  TlsStream* tls_ = nullptr;  // the stream itself when it is TLS (--http-tls)
  uint64_t accepted_ = 0;
  std::unique_ptr<Stream> stream_;
  std::string& out_;  // the stream's output: responses are appended here, in order
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

  uint64_t last_active_ = 0;
  uint64_t linger_since_ = 0;
  bool paused_ = false;     // reading held back: too much owed
  bool done_ = false;       // no more requests are taken; close once everything is written
  bool eof_ = false;        // the client half-closed
  bool lingering_ = false;  // final response written, FIN sent, draining input
  bool closing_ = false;
};

}  // namespace respite
