// The HTTP endpoint of one loop: listener, its connections, the cork that writes them once per
// loop turn, the sweep that closes idle and lingering ones, shutdown, and /metrics. See
// http_server.h.
#include "proxy/http/http_server.h"

#include <algorithm>
#include <iterator>
#include <string>

#include "proxy/http/http_conn.h"
#include "proxy/http/response.h"
#include "proxy/net/listener.h"
#include "proxy/ops/info.h"
#include "proxy/ops/log.h"
#include "proxy/ops/metrics.h"
#include "proxy/front/server.h"

namespace respite {

namespace {

constexpr uint64_t kIdleTimeoutMs = 60000;  // no request taken, no byte written: close
constexpr uint64_t kSweepMs = 1000;

}  // namespace

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
  const bool tls = srv->server_->config().http_tls;
  auto* c = new HttpConn(srv, tls ? srv->server_->tls_context() : nullptr);
  if (c->accept(s) != 0) {
    c->close();  // not listed yet: frees itself once its stream has closed
    return;
  }
  http::g_counters.connections_received.fetch_add(1, std::memory_order_relaxed);
  c->index = srv->conns_.size();
  srv->conns_.push_back(c);
  if (http::g_counters.connections.fetch_add(1) + 1 > srv->server_->config().maxclients) {
    http::g_counters.rejected_connections.fetch_add(1, std::memory_order_relaxed);
    if (tls) c->start();  // the handshake reads before the 503 can be written
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
    http::g_counters.connections.fetch_sub(1);
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
  const auto handshake_ms = static_cast<uint64_t>(srv->server_->config().tls_handshake_timeout_ms);
  // Backwards: close() moves the last connection into the closed one's place.
  for (size_t i = srv->conns_.size(); i-- > 0;) {
    if (i >= srv->conns_.size()) continue;
    HttpConn* c = srv->conns_[i];
    if (c->linger_expired(now) || (!c->lingering() && c->stalled_for(now, kIdleTimeoutMs)) ||
        c->handshake_late(now, handshake_ms))
      c->close();
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

  const http::Counters& hc = http::g_counters;
  append_metric(out, "respite_http_connections", "gauge", "Open HTTP connections",
                std::to_string(hc.connections.load()));
  append_metric(out, "respite_http_connections_received_total", "counter",
                "HTTP connections accepted", std::to_string(hc.connections_received.load()));
  append_metric(out, "respite_http_rejected_connections_total", "counter",
                "HTTP connections refused by maxclients",
                std::to_string(hc.rejected_connections.load()));
  append_metric(out, "respite_http_responses_total", "counter",
                "HTTP responses sent, by status code (this scrape not included)", {});
  for (size_t i = 0; i < http::kNumStatuses; ++i)
    fmt::format_to(std::back_inserter(out), "respite_http_responses_total{{code=\"{}\"}} {}\n",
                   http::kStatuses[i], hc.responses[i].load(std::memory_order_relaxed));
  return out;
}

}  // namespace respite
