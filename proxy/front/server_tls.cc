// TLS for clients on a loop: the TLS port, and certificates reloaded at runtime (PROXY CONFIG SET
// tls-*, SIGHUP) without dropping a connection.
#include "proxy/front/server.h"
#include "proxy/ops/log.h"

namespace respite {

int Server::tls_port() const {
  if (cfg_.tls_port <= 0) return -1;
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(&tls_listener_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return -1;
}

std::string Server::reload_tls(const TlsSettings& s) {
  if (cfg_.tls_port <= 0 && !cfg_.http_tls) {
    for (Server* srv : shared_->servers) {
      if (srv == this) cfg_.tls = s;
      else srv->post([srv, s] { srv->cfg_.tls = s; });
    }
    return "";
  }
  std::string err;
  std::shared_ptr<const TlsContext> ctx = TlsContext::make(s, TlsContext::Role::Server, err);
  if (!ctx) return err;
  // Each loop swaps its own pointer on its own thread; the last connection made with the old
  // context frees it.
  for (Server* srv : shared_->servers) {
    if (srv == this) set_tls(ctx);
    else srv->post([srv, ctx] { srv->set_tls(ctx); });
  }
  return "";
}

void Server::close_late_handshakes(uint64_t now) {
  next_handshake_check_ms_ = now + 100;
  std::vector<ClientConn*> late;
  for (ClientConn* c : clients_)
    if (c->handshake_deadline_ms != 0 && now >= c->handshake_deadline_ms && c->handshaking())
      late.push_back(c);
  for (ClientConn* c : late) {
    stats_.tls_handshake_errors++;
    log(LogLevel::Verbose, "closing TLS client id={} addr={}: no handshake in time", c->id, c->peer);
    c->close();
  }
}

void Server::set_tls(std::shared_ptr<const TlsContext> ctx) {
  cfg_.tls = ctx->settings();
  tls_ctx_ = std::move(ctx);
}

}  // namespace respite
