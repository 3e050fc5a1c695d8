// TLS for clients on a loop: the TLS port, and certificates reloaded at runtime (PROXY CONFIG SET
// tls-*, SIGHUP) without dropping a connection.
#include "proxy/front/server.h"
#include "proxy/ops/log.h"

namespace respite {

int Server::tls_port() const {
  return cfg_.tls_port <= 0 ? -1 : bound_port(tls_listener_);
}

namespace {
// The fields a CONFIG SET changed, onto `base` (the settings of the last reload, whichever
// loop made it).
void apply_changes(TlsSettings& base, const TlsSettings& before, const TlsSettings& after) {
  for (std::string TlsSettings::*f :
       {&TlsSettings::cert_file, &TlsSettings::key_file, &TlsSettings::key_file_pass,
        &TlsSettings::ca_cert_file, &TlsSettings::ca_cert_dir, &TlsSettings::auth_clients,
        &TlsSettings::protocols, &TlsSettings::ciphers, &TlsSettings::ciphersuites,
        &TlsSettings::server_name})
    if (before.*f != after.*f) base.*f = after.*f;
}
}  // namespace

std::string Server::reload_tls(const TlsSettings& before, const TlsSettings& after) {
  std::lock_guard<std::mutex> lock(shared_->tls_mu);
  TlsSettings next = shared_->tls_settings;
  apply_changes(next, before, after);
  std::shared_ptr<const TlsContext> ctx;
  if (cfg_.tls_port > 0 || cfg_.http_tls) {
    std::string err;
    ctx = TlsContext::make(next, TlsContext::Role::Server, err);
    if (!ctx) return err;
  }
  // The old context goes from Shared now; each loop swaps its own pointer on its own thread,
  // and the last connection made with the old one frees it.
  shared_->tls_settings = next;
  shared_->tls_ctx = ctx;
  const uint64_t gen = ++shared_->tls_gen;
  for (Server* srv : shared_->servers) {
    if (srv == this) set_tls(ctx, next, gen);
    else srv->post([srv, ctx, next, gen] { srv->set_tls(ctx, next, gen); });
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

void Server::set_tls(std::shared_ptr<const TlsContext> ctx, const TlsSettings& s, uint64_t gen) {
  if (gen <= tls_gen_) return;  // a newer reload reached this loop first
  tls_gen_ = gen;
  cfg_.tls = s;
  if (ctx) tls_ctx_ = std::move(ctx);
}

}  // namespace respite
