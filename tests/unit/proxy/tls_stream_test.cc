// TlsStream on a real loop over loopback TCP: a server stream (accepted) and a client stream
// (connected) with a certificate made here, bytes both ways, close_notify then FIN; and a
// plain peer sending garbage to a server stream, which reports a failed handshake.
#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "proxy/net/tls_stream.h"

namespace {

using respite::Buffer;
using respite::Stream;
using respite::TcpStream;
using respite::TlsContext;
using respite::TlsStream;

// A self-signed EC certificate for CN=localhost, as PEM files in a temp dir.
struct Cert {
  std::string dir, cert, key;
  Cert() {
    char tmpl[] = "/tmp/respite-tls-test-XXXXXX";
    dir = mkdtemp(tmpl);
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    EVP_PKEY* pkey = EVP_EC_gen("P-256");
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, pkey, EVP_sha256());
    FILE* f = std::fopen(cert.c_str(), "w");
    PEM_write_X509(f, x);
    std::fclose(f);
    f = std::fopen(key.c_str(), "w");
    PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    X509_free(x);
    EVP_PKEY_free(pkey);
  }
  // A server serving this certificate without asking for the client's.
  respite::TlsSettings server() const {
    respite::TlsSettings s;
    s.cert_file = cert;
    s.key_file = key;
    s.auth_clients = "no";
    return s;
  }
  // A client trusting this certificate.
  respite::TlsSettings client() const {
    respite::TlsSettings s;
    s.ca_cert_file = cert;
    return s;
  }
  ~Cert() {
    unlink(cert.c_str());
    unlink(key.c_str());
    rmdir(dir.c_str());
  }
};

// A connection's handler that records what happened; `echo` sends back what it reads.
struct Peer : Stream::Handler {
  std::unique_ptr<Stream> stream;
  Buffer in;
  bool echo = false;
  int ready = 0, data = 0, eof = 0, closed = 0, errors = 0;
  std::string error_op;
  std::string got;
  std::string send_on_ready;
  void on_stream_ready() override {
    ready++;
    if (!send_on_ready.empty()) {
      stream->out() += send_on_ready;
      stream->flush();
    }
  }
  void on_stream_data() override {
    data++;
    std::string_view b = in.readable();
    got.append(b);
    if (echo) {
      stream->out().append(b);
      stream->flush();
    }
    in.consume(b.size());
  }
  void on_stream_eof() override {
    eof++;
    stream->close();
  }
  void on_stream_error(const char* op, int) override {
    errors++;
    error_op = op;
    stream->close();
  }
  void on_stream_written() override { stream->flush(); }
  void on_stream_closed() override { closed++; }
  size_t hint = 0;  // room asked for before each read (a client's large request asks 1 MB)
  size_t read_hint() override { return hint; }
};

struct Rig {
  uv_loop_t loop;
  uv_tcp_t listener;
  std::shared_ptr<const TlsContext> server_ctx;
  Peer server;
  int port = 0;
  Rig(std::shared_ptr<const TlsContext> ctx) : server_ctx(std::move(ctx)) {
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &listener);
    listener.data = this;
    sockaddr_in a{};
    uv_ip4_addr("127.0.0.1", 0, &a);
    REQUIRE(uv_tcp_bind(&listener, reinterpret_cast<sockaddr*>(&a), 0) == 0);
    REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(&listener), 8, on_connection) == 0);
    sockaddr_storage ss{};
    int len = sizeof ss;
    uv_tcp_getsockname(&listener, reinterpret_cast<sockaddr*>(&ss), &len);
    port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  static void on_connection(uv_stream_t* l, int status) {
    auto* r = static_cast<Rig*>(l->data);
    REQUIRE(status == 0);
    auto* s = new TlsStream(&r->loop, &r->server, 1 << 20, r->server_ctx);
    r->server.stream.reset(s);
    REQUIRE(s->tcp().accept(l) == 0);
    REQUIRE(s->read_start(&r->server.in));
    uv_close(reinterpret_cast<uv_handle_t*>(l), nullptr);  // one connection per test
  }
  void run() {
    for (int i = 0; i < 1000 && uv_run(&loop, UV_RUN_ONCE) != 0; ++i) {
    }
  }
  ~Rig() {
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
};

std::shared_ptr<const TlsContext> make(const respite::TlsSettings& s, TlsContext::Role role) {
  std::string err;
  auto ctx = TlsContext::make(s, role, err);
  INFO(err);
  REQUIRE(ctx);
  return ctx;
}

}  // namespace

TEST_CASE("tls stream: a client and a server exchange bytes and end with close_notify then FIN") {
  Cert cert;
  respite::TlsSettings ss = cert.server();
  respite::TlsSettings cs = cert.client();
  cs.server_name = "localhost";
  Rig rig(make(ss, TlsContext::Role::Server));
  rig.server.echo = true;

  Peer client;
  client.send_on_ready = std::string(100000, 'x') + "end";  // several records
  auto* c = new TlsStream(&rig.loop, &client, 1 << 20, make(cs, TlsContext::Role::Client));
  client.stream.reset(c);
  sockaddr_in a{};
  uv_ip4_addr("127.0.0.1", rig.port, &a);
  REQUIRE(c->tcp().connect(reinterpret_cast<sockaddr*>(&a)) == 0);
  // The client reads once it is ready (as UpstreamConn does).
  for (int i = 0; i < 1000 && client.got.size() < 100003; ++i) {
    if (client.ready && !client.stream->reading()) client.stream->read_start(&client.in);
    uv_run(&rig.loop, UV_RUN_ONCE);
  }
  CHECK(client.ready == 1);
  CHECK(rig.server.ready == 1);
  CHECK(rig.server.got.size() == 100003);
  CHECK(client.got == rig.server.got);
  // Client half-closes: the server sees the end of data, closes; the client then sees EOF.
  REQUIRE(client.stream->shutdown() == 0);
  rig.run();
  CHECK(rig.server.eof == 1);
  CHECK(rig.server.closed == 1);
  CHECK(client.eof == 1);
  CHECK(client.closed == 1);
  CHECK(client.errors == 0);
  CHECK(rig.server.errors == 0);
}

TEST_CASE("tls stream: garbage from a plain peer is a failed handshake and a close") {
  Cert cert;
  respite::TlsSettings ss = cert.server();
  Rig rig(make(ss, TlsContext::Role::Server));
  Peer plain;
  auto* t = new TcpStream(&rig.loop, &plain, 1 << 20);
  plain.stream.reset(t);
  sockaddr_in a{};
  uv_ip4_addr("127.0.0.1", rig.port, &a);
  plain.send_on_ready = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(t->connect(reinterpret_cast<sockaddr*>(&a)) == 0);
  for (int i = 0; i < 1000 && !rig.server.closed; ++i) {
    if (plain.ready && !plain.stream->reading() && !plain.closed) plain.stream->read_start(&plain.in);
    uv_run(&rig.loop, UV_RUN_ONCE);
  }
  CHECK(rig.server.errors == 1);
  CHECK(rig.server.error_op == "handshake");
  CHECK(rig.server.ready == 0);
  CHECK(rig.server.data == 0);
  CHECK_FALSE(static_cast<TlsStream*>(rig.server.stream.get())->error().empty());
  if (!plain.closed) plain.stream->close();
  rig.run();
  CHECK(rig.server.closed == 1);
}

TEST_CASE("tls context: a key that does not match its certificate is refused with the reason") {
  Cert a, b;
  respite::TlsSettings s;
  s.cert_file = a.cert;
  s.key_file = b.key;
  s.auth_clients = "no";
  std::string err;
  CHECK_FALSE(TlsContext::make(s, TlsContext::Role::Server, err));
  CHECK(err.find("mismatch") != std::string::npos);
  s.key_file = a.key;
  s.protocols = "TLSv1.2 SSLv3";
  CHECK_FALSE(TlsContext::make(s, TlsContext::Role::Server, err));
  CHECK(err.find("SSLv3") != std::string::npos);
  s.protocols = "TLSv1.3";
  s.auth_clients = "yes";  // needs a CA to check client certificates against
  CHECK_FALSE(TlsContext::make(s, TlsContext::Role::Server, err));
  s.ca_cert_file = a.cert;
  CHECK(TlsContext::make(s, TlsContext::Role::Server, err));
}

namespace {
// A client stream to `rig` checking the server against `host`, run until it is ready or fails.
void connect_client(Rig& rig, Peer& client, std::shared_ptr<const TlsContext> ctx,
                    const std::string& host) {
  auto* c = new TlsStream(&rig.loop, &client, 1 << 20, std::move(ctx), host);
  client.stream.reset(c);
  sockaddr_in a{};
  uv_ip4_addr("127.0.0.1", rig.port, &a);
  REQUIRE(c->tcp().connect(reinterpret_cast<sockaddr*>(&a)) == 0);
  for (int i = 0; i < 1000 && !client.ready && !client.errors; ++i) uv_run(&rig.loop, UV_RUN_ONCE);
  if (!client.closed) client.stream->close();
  if (rig.server.stream && !rig.server.closed) rig.server.stream->close();
  rig.run();
}
}  // namespace

TEST_CASE("tls stream: a client checks the server's certificate against the host it connects to") {
  Cert cert;  // CN=localhost, no IP entry
  respite::TlsSettings ss = cert.server();
  respite::TlsSettings cs = cert.client();  // no server name: each stream's host is checked
  auto client_ctx = make(cs, TlsContext::Role::Client);
  for (const char* host : {"localhost", "evil.example", "127.0.0.1"}) {
    INFO(host);
    Rig rig(make(ss, TlsContext::Role::Server));
    Peer client;
    connect_client(rig, client, client_ctx, host);
    const bool good = std::string(host) == "localhost";
    CHECK(client.ready == (good ? 1 : 0));
    CHECK(client.errors == (good ? 0 : 1));
    if (!good) CHECK(client.error_op == "handshake");
  }
  // A configured server name overrides the host.
  cs.server_name = "localhost";
  Rig rig(make(ss, TlsContext::Role::Server));
  Peer client;
  connect_client(rig, client, make(cs, TlsContext::Role::Client), "127.0.0.1");
  CHECK(client.ready == 1);
  CHECK(client.errors == 0);
}

TEST_CASE("tls stream: a client stream whose SSL cannot be made fails its handshake, no crash") {
  Cert cert;
  respite::TlsSettings ss = cert.server();
  respite::TlsSettings cs = cert.client();
  Rig rig(make(ss, TlsContext::Role::Server));
  Peer client;
  // Over SNI's 255 bytes: new_ssl() refuses it.
  connect_client(rig, client, make(cs, TlsContext::Role::Client), std::string(300, 'a'));
  CHECK(client.ready == 0);
  CHECK(client.errors == 1);
  CHECK(client.error_op == "handshake");
  CHECK_FALSE(static_cast<TlsStream*>(client.stream.get())->error().empty());
}

TEST_CASE("tls stream: a large write goes through the memory BIO a chunk at a time") {
  Cert cert;
  respite::TlsSettings ss = cert.server();
  respite::TlsSettings cs = cert.client();
  Rig rig(make(ss, TlsContext::Role::Server));
  constexpr size_t kBig = 20u << 20;
  Peer client;
  client.send_on_ready = std::string(kBig, 'x');  // one flush of 20 MB
  auto* c = new TlsStream(&rig.loop, &client, 1 << 20, make(cs, TlsContext::Role::Client), "localhost");
  client.stream.reset(c);
  sockaddr_in a{};
  uv_ip4_addr("127.0.0.1", rig.port, &a);
  REQUIRE(c->tcp().connect(reinterpret_cast<sockaddr*>(&a)) == 0);
  size_t most_bio = 0, most_below = 0;
  for (int i = 0; i < 100000 && rig.server.got.size() < kBig && !client.errors; ++i) {
    uv_run(&rig.loop, UV_RUN_ONCE);
    most_bio = std::max(most_bio, c->bio_bytes());
    most_below = std::max(most_below, c->tcp().unwritten());
  }
  CHECK(rig.server.got.size() == kBig);  // the control: all of it went through
  CHECK(most_bio < (1u << 20));           // the write BIO held about a chunk, not 20 MB
  CHECK(most_below < (1u << 20));         // and so did the ciphertext queued below
  CHECK(c->unwritten() == 0);
  client.stream->close();
  rig.server.stream->close();
  rig.run();
}

TEST_CASE("tls stream: the read BIO grown by large reads is given back once it is empty") {
  Cert cert;
  respite::TlsSettings ss = cert.server();
  respite::TlsSettings cs = cert.client();
  Rig rig(make(ss, TlsContext::Role::Server));
  rig.server.hint = 1u << 20;  // the server reads up to 1 MB at a time, as for a big SET
  constexpr size_t kBig = 8u << 20;
  Peer client;
  client.send_on_ready = std::string(kBig, 'x');
  auto* c = new TlsStream(&rig.loop, &client, 1 << 20, make(cs, TlsContext::Role::Client), "localhost");
  client.stream.reset(c);
  sockaddr_in a{};
  uv_ip4_addr("127.0.0.1", rig.port, &a);
  REQUIRE(c->tcp().connect(reinterpret_cast<sockaddr*>(&a)) == 0);
  size_t most = 0;
  for (int i = 0; i < 100000 && rig.server.got.size() < kBig && !client.errors; ++i) {
    uv_run(&rig.loop, UV_RUN_ONCE);
    if (rig.server.stream)
      most = std::max(most, static_cast<TlsStream*>(rig.server.stream.get())->bio_bytes());
  }
  REQUIRE(rig.server.got.size() == kBig);
  auto* s = static_cast<TlsStream*>(rig.server.stream.get());
  INFO("largest " << most << ", now " << s->bio_bytes());
  CHECK(s->bio_bytes() <= 128u * 1024);  // idle: no longer the high-water mark
  client.stream->close();
  rig.server.stream->close();
  rig.run();
}

TEST_CASE("tls context: a version between two listed ones is not accepted") {
  Cert cert;
  respite::TlsSettings ss = cert.server();
  ss.protocols = "TLSv1.1 TLSv1.3";  // not TLSv1.2
  respite::TlsSettings cs = cert.client();
  for (const char* client_version : {"TLSv1.3", "TLSv1.2"}) {
    INFO(client_version);
    cs.protocols = client_version;
    Rig rig(make(ss, TlsContext::Role::Server));
    Peer client;
    connect_client(rig, client, make(cs, TlsContext::Role::Client), "localhost");
    const bool listed = std::string(client_version) == "TLSv1.3";
    CHECK(client.ready == (listed ? 1 : 0));
    CHECK(client.errors == (listed ? 0 : 1));
  }
}
