#include "proxy/ops/config_tls.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cctype>

namespace respite {

void add_tls_options(CLI::App& app, Config& cfg) {
  app.add_option("--tls-port", cfg.tls_port,
                 "TLS port for clients (0: off); with it, --port 0 turns the plain port off")
      ->capture_default_str()->check(CLI::Range(0, 65535));
  app.add_option("--tls-cert-file", cfg.tls.cert_file, "server certificate (PEM, chain)");
  app.add_option("--tls-key-file", cfg.tls.key_file, "server private key (PEM)");
  app.add_option("--tls-key-file-pass", cfg.tls.key_file_pass,
                 "passphrase of an encrypted tls-key-file");
  app.add_option("--tls-ca-cert-file", cfg.tls.ca_cert_file,
                 "CA certificates client certificates are verified against (PEM)");
  app.add_option("--tls-ca-cert-dir", cfg.tls.ca_cert_dir, "directory of CA certificates");
  app.add_option("--tls-auth-clients", cfg.tls.auth_clients,
                 "yes|no|optional: clients must present a certificate (yes, as Redis)")
      ->capture_default_str();
  app.add_option("--tls-protocols", cfg.tls.protocols,
                 "TLS versions accepted, e.g. \"TLSv1.2 TLSv1.3\" (the default)");
  app.add_option("--tls-ciphers", cfg.tls.ciphers, "TLSv1.2 cipher list (OpenSSL syntax)");
  app.add_option("--tls-ciphersuites", cfg.tls.ciphersuites, "TLSv1.3 cipher suites");
  app.add_option("--tls-handshake-timeout-ms", cfg.tls_handshake_timeout_ms,
                 "close a TLS client that has not completed its handshake in this time")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{3600000}));
  app.add_flag("--http-tls", cfg.http_tls,
               "HTTPS on --http-port with the tls-* certificates (clients' certificates as "
               "tls-auth-clients says)");
  app.add_flag("--upstream-tls", cfg.upstream_tls,
               "connect to the upstream nodes (and the Sentinels) over TLS, verifying them");
  app.add_option("--upstream-tls-ca-cert-file", cfg.upstream_tls_settings.ca_cert_file,
                 "CA certificates the upstream's certificate is verified against (default: the "
                 "system's)");
  app.add_option("--upstream-tls-ca-cert-dir", cfg.upstream_tls_settings.ca_cert_dir,
                 "directory of CA certificates for the upstream");
  app.add_option("--upstream-tls-cert-file", cfg.upstream_tls_settings.cert_file,
                 "client certificate respite presents upstream (PEM)");
  app.add_option("--upstream-tls-key-file", cfg.upstream_tls_settings.key_file,
                 "its private key (PEM)");
  app.add_option("--upstream-tls-key-file-pass", cfg.upstream_tls_settings.key_file_pass,
                 "passphrase of an encrypted upstream-tls-key-file");
  app.add_option("--upstream-tls-server-name", cfg.upstream_tls_settings.server_name,
                 "name sent as SNI and checked against the upstream's certificate (default: "
                 "each node's own host)");
  app.add_option("--upstream-tls-protocols", cfg.upstream_tls_settings.protocols,
                 "TLS versions offered upstream (default \"TLSv1.2 TLSv1.3\")");
}

std::string finalize_tls(Config& cfg) {
  std::string auth = cfg.tls.auth_clients;
  for (char& c : auth) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (auth != "yes" && auth != "no" && auth != "optional")
    return fmt::format("tls-auth-clients must be yes, no or optional, not '{}'", cfg.tls.auth_clients);
  cfg.tls.auth_clients = auth;
  if (cfg.http_tls && (cfg.tls.cert_file.empty() || cfg.tls.key_file.empty()))
    return "--http-tls needs --tls-cert-file and --tls-key-file";
  if (cfg.tls_port > 0) {
    if (cfg.tls.cert_file.empty() || cfg.tls.key_file.empty())
      return "--tls-port needs --tls-cert-file and --tls-key-file";
    if (cfg.tls_port == cfg.port) return "--tls-port and --port must differ";
  }
  const TlsSettings& u = cfg.upstream_tls_settings;
  if (u.server_name.size() > 255)  // SNI's limit (RFC 6066): no SSL could be made with it
    return "--upstream-tls-server-name is at most 255 bytes";
  if (u.server_name.find('\0') != std::string::npos)
    return "--upstream-tls-server-name cannot hold a NUL";
  if (cfg.upstream_tls && u.cert_file.empty() != u.key_file.empty())
    return "--upstream-tls-cert-file and --upstream-tls-key-file go together";
  return "";
}

std::string describe_tls(const Config& c) {
  std::string s = c.tls_port > 0
                      ? fmt::format("tls-port {} tls-cert-file {} tls-auth-clients {}{}", c.tls_port,
                                    c.tls.cert_file, c.tls.auth_clients,
                                    c.port == 0 ? " (no plain port)" : "")
                      : std::string("tls-port 0 (TLS for clients off)");
  if (c.http_tls) s += " http-tls yes";
  if (c.upstream_tls)
    s += fmt::format(" upstream-tls yes server-name {}",
                     c.upstream_tls_settings.server_name.empty() ? "(each node's host)"
                                                                : c.upstream_tls_settings.server_name);
  return s;
}

}  // namespace respite
