#include "proxy/upstream/blocking_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace respite {

BlockingClient::~BlockingClient() {
  if (plain) redisFree(plain);
  if (ssl) SSL_free(ssl);
  if (fd >= 0) ::close(fd);
  if (reader) redisReaderFree(reader);
}

void BlockingClient::set_error(const std::string& why) {
  err = REDIS_ERR_IO;
  std::snprintf(errstr, sizeof errstr, "%s", why.c_str());
}

namespace {

// A TCP connection within `timeout_ms`, then blocking with that timeout on each read and
// write; -1 and `err` when no address of `host` answered.
int connect_tcp(const std::string& host, int port, int timeout_ms, std::string& err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
    err = gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  err = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = poll(&p, 1, timeout_ms) == 1 ? 0 : -1;
      int so = 0;
      socklen_t len = sizeof so;
      if (rc == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len) != 0 || so != 0)) {
        errno = so;
        rc = -1;
      } else if (rc != 0) {
        errno = ETIMEDOUT;
      }
    }
    if (rc == 0) break;
    err = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) return -1;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
  err.clear();
  return fd;
}

// What an SSL call's failure means, for errstr.
std::string ssl_failure(SSL* ssl, int rc, const char* what) {
  int e = SSL_get_error(ssl, rc);
  if (e == SSL_ERROR_ZERO_RETURN) return fmt::format("{}: connection closed", what);
  if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
    return fmt::format("{}: {}", what, errno == EAGAIN || errno == EWOULDBLOCK ? "timeout"
                                        : errno == 0                           ? "connection closed"
                                                                              : std::strerror(errno));
  return fmt::format("{}: {}", what, tls_error_text("TLS error"));
}

BlockingReply tls_command(BlockingClient* c, const std::vector<std::string>& args) {
  if (c->err) return nullptr;
  std::string req = fmt::format("*{}\r\n", args.size());
  for (const std::string& a : args) fmt::format_to(std::back_inserter(req), "${}\r\n{}\r\n", a.size(), a);
  ERR_clear_error();
  if (int rc = SSL_write(c->ssl, req.data(), static_cast<int>(req.size())); rc <= 0) {
    c->set_error(ssl_failure(c->ssl, rc, "write"));
    return nullptr;
  }
  char buf[16384];
  for (;;) {
    void* reply = nullptr;
    if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
      c->set_error(fmt::format("protocol error: {}", c->reader->errstr));
      return nullptr;
    }
    if (reply) return BlockingReply(static_cast<redisReply*>(reply));
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, sizeof buf);
    if (n <= 0) {
      c->set_error(ssl_failure(c->ssl, n, "read"));
      return nullptr;
    }
    if (redisReaderFeed(c->reader, buf, static_cast<size_t>(n)) != REDIS_OK) {
      c->set_error("out of memory");
      return nullptr;
    }
  }
}

}  // namespace

BlockingReply blocking_command(BlockingClient* c, const std::vector<std::string>& args) {
  if (c->ssl) return tls_command(c, args);
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  BlockingReply r(static_cast<redisReply*>(
      redisCommandArgv(c->plain, static_cast<int>(argv.size()), argv.data(), lens.data())));
  if (!r) {
    c->err = c->plain->err ? c->plain->err : REDIS_ERR_OTHER;
    std::snprintf(c->errstr, sizeof c->errstr, "%s", c->plain->errstr);
  }
  return r;
}

BlockingConn blocking_open(const std::string& host, int port, const std::string& user,
                           const std::string& password, std::string& err, int timeout_ms,
                           const TlsContext* tls) {
  auto c = std::make_unique<BlockingClient>();
  if (tls) {
    c->fd = connect_tcp(host, port, timeout_ms, err);
    if (c->fd < 0) return nullptr;
    c->ssl = tls->new_ssl(host);
    c->reader = redisReaderCreate();
    if (!c->ssl || !c->reader || SSL_set_fd(c->ssl, c->fd) != 1) {
      err = tls_error_text("cannot make an SSL (out of memory, or an unusable server name)");
      return nullptr;
    }
    ERR_clear_error();
    if (int rc = SSL_connect(c->ssl); rc != 1) {
      err = ssl_failure(c->ssl, rc, "TLS handshake");
      return nullptr;
    }
  } else {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    c->plain = redisConnectWithTimeout(host.c_str(), port, tv);
    if (!c->plain || c->plain->err) {
      err = c->plain ? c->plain->errstr : "out of memory";
      return nullptr;
    }
    redisSetTimeout(c->plain, tv);
  }
  if (!password.empty()) {
    BlockingReply r = user.empty() ? blocking_command(c.get(), {"AUTH", password})
                                   : blocking_command(c.get(), {"AUTH", user, password});
    if (!r || r->type == REDIS_REPLY_ERROR) {
      err = r ? r->str : c->errstr;
      return nullptr;
    }
  }
  return c;
}

}  // namespace respite
