// TLS settings (Redis's tls-* options) and the OpenSSL context made from them. A context is
// immutable once made: reloading certificates makes a new one, and each event loop swaps its
// shared_ptr on its own thread (Server::set_tls), so a connection keeps the context it was
// accepted with (an SSL holds a reference to its SSL_CTX) and new connections get the new one.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "proxy/ops/tls_settings.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace respite {


class TlsContext : public std::enable_shared_from_this<TlsContext> {
 public:
  enum class Role { Server, Client };
  // Builds a context, reading the files now. nullptr and `err` (one line, the file and
  // OpenSSL's reason) when anything is missing or wrong: a certificate that does not parse, a
  // key that does not match it, an unknown protocol name or cipher.
  static std::shared_ptr<const TlsContext> make(const TlsSettings& s, Role role, std::string& err);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A new SSL in this context's role (server: accept state; client: connect state). A client
  // checks the peer's certificate against `host` (the node it connects to: a name, with SNI,
  // or an IP address), or against the configured server name when there is one, which
  // overrides it; with neither only the chain is verified. nullptr when out of memory or the
  // name is not usable (over 255 bytes, a NUL).
  SSL* new_ssl(std::string_view host = {}) const;
  Role role() const { return role_; }
  const TlsSettings& settings() const { return settings_; }

 private:
  TlsContext(SSL_CTX* ctx, Role role, TlsSettings s);
  SSL_CTX* ctx_;
  Role role_;
  TlsSettings settings_;
};

// A server name is usable for SNI and the certificate check: "" or why not.
std::string check_server_name(std::string_view name);

// OpenSSL's queued errors as one line (and the queue emptied); `fallback` when there are none.
std::string tls_error_text(const char* fallback);

}  // namespace respite
