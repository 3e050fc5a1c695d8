// Redis's tls-* settings, for clients (TLS port) and for the upstream. The OpenSSL context made
// from them is proxy/net/tls_context.h's.
#pragma once

#include <string>

namespace respite {

struct TlsSettings {
  std::string cert_file;     // PEM, the chain (leaf first)
  std::string key_file;      // PEM
  // The key file's passphrase (Redis's tls-key-file-pass); empty: an encrypted key fails to load
  // (never a prompt). Never logged nor shown by PROXY CONFIG GET.
  std::string key_file_pass;
  std::string ca_cert_file;  // peers' certificates are verified against these...
  std::string ca_cert_dir;   // ...and these (c_rehash layout)
  // Server: "yes" (a client certificate is required, Redis's default), "optional" (verified
  // when given) or "no". Not used by a client context, which always verifies its peer.
  std::string auth_clients = "yes";
  std::string protocols;     // "TLSv1.2 TLSv1.3" (empty: both)
  std::string ciphers;       // TLSv1.2 and below (OpenSSL cipher list)
  std::string ciphersuites;  // TLSv1.3
  // Client: the name sent as SNI and checked against the peer's certificate (empty: each
  // connection checks its node's own host, TlsContext::new_ssl).
  std::string server_name;
  bool operator==(const TlsSettings&) const = default;
};

}  // namespace respite
