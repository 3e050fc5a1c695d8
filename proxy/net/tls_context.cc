// TlsContext: the SSL_CTX made from the tls-* settings, as Redis's tls.c makes its own.
#include "proxy/net/tls_context.h"

#include <fmt/format.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/ssl.h>

#include <cstring>
#include <string_view>

namespace respite {

std::string tls_error_text(const char* fallback) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string(fallback) : out;
}

namespace {

// "TLSv1.2 TLSv1.3" into the lowest and highest version named (Redis's names, any case).
// `listed` gets one bit per version named (1 << (version - TLS1_VERSION)).
bool parse_protocols(const std::string& s, int& lo, int& hi, unsigned& listed, std::string& err) {
  lo = hi = 0;
  listed = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t b = s.find_first_not_of(" \t", i);
    if (b == std::string::npos) break;
    size_t e = s.find_first_of(" \t", b);
    if (e == std::string::npos) e = s.size();
    std::string w = s.substr(b, e - b);
    for (char& c : w) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    int v = w == "tlsv1"     ? TLS1_VERSION
            : w == "tlsv1.1" ? TLS1_1_VERSION
            : w == "tlsv1.2" ? TLS1_2_VERSION
            : w == "tlsv1.3" ? TLS1_3_VERSION
                             : 0;
    if (v == 0) {
      err = fmt::format("invalid tls-protocols '{}': unknown protocol '{}'", s, s.substr(b, e - b));
      return false;
    }
    listed |= 1u << (v - TLS1_VERSION);
    if (lo == 0 || v < lo) lo = v;
    if (v > hi) hi = v;
    i = e;
  }
  if (lo == 0) {  // Redis's default
    lo = TLS1_2_VERSION;
    hi = TLS1_3_VERSION;
    listed = 1u << (TLS1_2_VERSION - TLS1_VERSION) | 1u << (TLS1_3_VERSION - TLS1_VERSION);
  }
  return true;
}

// The key file's passphrase from the settings; none (0) fails the load instead of OpenSSL's
// default, a prompt on the terminal that would block the loop.
int key_pass(char* buf, int size, int, void* user) {
  const auto* pass = static_cast<const std::string*>(user);
  if (!pass || pass->empty() || size <= 0 || pass->size() > static_cast<size_t>(size)) return 0;
  std::memcpy(buf, pass->data(), pass->size());
  return static_cast<int>(pass->size());
}

struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

}  // namespace

TlsContext::TlsContext(SSL_CTX* ctx, Role role, TlsSettings s)
    : ctx_(ctx), role_(role), settings_(std::move(s)) {}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

std::shared_ptr<const TlsContext> TlsContext::make(const TlsSettings& s, Role role,
                                                   std::string& err) {
  ERR_clear_error();
  const bool server = role == Role::Server;
  std::unique_ptr<SSL_CTX, CtxFree> ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (!ctx) {
    err = tls_error_text("cannot create an SSL context");
    return nullptr;
  }
  auto fail = [&](std::string what) {
    err = fmt::format("{}: {}", what, tls_error_text("failed"));
    return nullptr;
  };
  int lo = 0, hi = 0;
  unsigned listed = 0;
  if (!parse_protocols(s.protocols, lo, hi, listed, err)) return nullptr;
  if (SSL_CTX_set_min_proto_version(ctx.get(), lo) != 1 ||
      SSL_CTX_set_max_proto_version(ctx.get(), hi) != 1)
    return fail(fmt::format("invalid tls-protocols '{}'", s.protocols));
  // As Redis: a version between two listed ones but not listed itself is off too.
  uint64_t no = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
  const struct { int v; uint64_t op; } kOff[] = {{TLS1_VERSION, SSL_OP_NO_TLSv1},
                                                 {TLS1_1_VERSION, SSL_OP_NO_TLSv1_1},
                                                 {TLS1_2_VERSION, SSL_OP_NO_TLSv1_2},
                                                 {TLS1_3_VERSION, SSL_OP_NO_TLSv1_3}};
  for (const auto& o : kOff)
    if (!(listed & (1u << (o.v - TLS1_VERSION)))) no |= o.op;
  SSL_CTX_set_options(ctx.get(), no);
  // An idle connection (most of them) gives its 16 KB record buffers back.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  if (!s.ciphers.empty() && SSL_CTX_set_cipher_list(ctx.get(), s.ciphers.c_str()) != 1)
    return fail(fmt::format("invalid tls-ciphers '{}'", s.ciphers));
  if (!s.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx.get(), s.ciphersuites.c_str()) != 1)
    return fail(fmt::format("invalid tls-ciphersuites '{}'", s.ciphersuites));

  if (server && (s.cert_file.empty() || s.key_file.empty())) {
    err = "TLS needs tls-cert-file and tls-key-file";
    return nullptr;
  }
  if (s.cert_file.empty() != s.key_file.empty()) {
    err = "a client certificate needs both its cert file and its key file";
    return nullptr;
  }
  SSL_CTX_set_default_passwd_cb(ctx.get(), key_pass);
  SSL_CTX_set_default_passwd_cb_userdata(ctx.get(), const_cast<std::string*>(&s.key_file_pass));
  if (!s.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), s.cert_file.c_str()) != 1)
      return fail(fmt::format("cannot load certificate '{}'", s.cert_file));
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), s.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
      return fail(fmt::format("cannot load private key '{}'{}", s.key_file,
                              s.key_file_pass.empty() ? " (an encrypted key needs its passphrase: *-key-file-pass)" : ""));
    if (SSL_CTX_check_private_key(ctx.get()) != 1)
      return fail(fmt::format("private key '{}' does not match certificate '{}'", s.key_file,
                              s.cert_file));
  }

  SSL_CTX_set_default_passwd_cb_userdata(ctx.get(), nullptr);  // `s` is not kept
  std::string auth = s.auth_clients;
  for (char& c : auth) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (server && auth != "yes" && auth != "no" && auth != "optional") {
    err = fmt::format("tls-auth-clients must be yes, no or optional, not '{}'", s.auth_clients);
    return nullptr;
  }
  const bool verify_peer = !server || auth != "no";
  const bool have_ca = !s.ca_cert_file.empty() || !s.ca_cert_dir.empty();
  if (have_ca) {
    if (SSL_CTX_load_verify_locations(ctx.get(), s.ca_cert_file.empty() ? nullptr : s.ca_cert_file.c_str(),
                                      s.ca_cert_dir.empty() ? nullptr : s.ca_cert_dir.c_str()) != 1)
      return fail(fmt::format("cannot load CA certificates '{}{}{}'", s.ca_cert_file,
                              s.ca_cert_file.empty() || s.ca_cert_dir.empty() ? "" : "' and '",
                              s.ca_cert_dir));
  } else if (server && verify_peer) {
    // As Redis: client certificates cannot be verified against nothing.
    err = "tls-auth-clients needs tls-ca-cert-file or tls-ca-cert-dir (or tls-auth-clients no)";
    return nullptr;
  } else if (!server && SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    return fail("cannot load the system's CA certificates");
  }
  int mode = SSL_VERIFY_NONE;
  if (verify_peer) mode = SSL_VERIFY_PEER;
  if (server && auth == "yes") mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx.get(), mode, nullptr);
  if (server) {
    // Sessions resumed with a client certificate need a context id (else OpenSSL refuses them).
    static const unsigned char kSid[] = "respite";
    SSL_CTX_set_session_id_context(ctx.get(), kSid, sizeof kSid - 1);
  }
  return std::shared_ptr<const TlsContext>(new TlsContext(ctx.release(), role, s));
}

std::string check_server_name(std::string_view name) {
  if (name.size() > 255) return "a server name is at most 255 bytes";
  if (name.find('\0') != std::string_view::npos) return "a server name cannot hold a NUL";
  return "";
}

SSL* TlsContext::new_ssl(std::string_view host) const {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  if (role_ == Role::Server) {
    SSL_set_accept_state(ssl);
    return ssl;
  }
  SSL_set_connect_state(ssl);
  // The configured name overrides the node's own host (a node known by its address, whose
  // certificate names it).
  std::string name(settings_.server_name.empty() ? host : std::string_view(settings_.server_name));
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
  if (name.empty()) return ssl;
  if (!check_server_name(name).empty()) {
    SSL_free(ssl);
    return nullptr;
  }
  // An address is checked against the certificate's IP entries and is not sent as SNI
  // (RFC 6066 allows host names only); a name is both.
  in6_addr probe;
  const bool is_ip = inet_pton(AF_INET, name.c_str(), &probe) == 1 ||
                     inet_pton(AF_INET6, name.c_str(), &probe) == 1;
  bool ok;
  if (is_ip) ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1;
  else ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1 && SSL_set1_host(ssl, name.c_str()) == 1;
  if (!ok) {
    SSL_free(ssl);
    return nullptr;
  }
  return ssl;
}

}  // namespace respite
