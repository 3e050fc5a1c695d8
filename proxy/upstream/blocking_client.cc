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
#include <chrono>
#include <cstring>
#include <string_view>

namespace respite {

BlockingClient::~BlockingClient() {
  if (ssl) SSL_free(ssl);
  if (fd >= 0) ::close(fd);
  if (reader) redisReaderFree(reader);
}

void BlockingClient::set_error(const std::string& why) {
  err = REDIS_ERR_IO;
  std::snprintf(errstr, sizeof errstr, "%s", why.c_str());
}

namespace {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline` (0 once it has passed).
int left_ms(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms > 0 ? static_cast<int>(ms) : 0;
}

// Waits until `fd` is ready for `events`; false when the deadline passed first.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    int ms = left_ms(deadline);
    if (ms == 0) return false;
    pollfd p{fd, events, 0};
    int rc = poll(&p, 1, ms);
    if (rc > 0) return true;  // ready, or an error the next call reports
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) return false;
    return true;
  }
}

// A non-blocking TCP connection, made before `deadline`; -1 and `err` when no address of
// `host` answered.
int connect_tcp(const std::string& host, int port, Clock::time_point deadline, std::string& err) {
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
      rc = wait_fd(fd, POLLOUT, deadline) ? 0 : -1;
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
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
  err.clear();
  return fd;
}

// One TLS call (SSL_connect, SSL_read, SSL_write) retried as the socket becomes ready, until
// it succeeds, fails, or the deadline passes (then "timeout").
template <typename F>
int ssl_call(BlockingClient* c, F call, Clock::time_point deadline, const char* what, std::string& err) {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int rc = call();
    if (rc > 0) return rc;
    int e = SSL_get_error(c->ssl, rc);
    short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (ev != 0) {
      if (!wait_fd(c->fd, ev, deadline)) {
        err = fmt::format("{}: timeout", what);
        return -1;
      }
      continue;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
      err = fmt::format("{}: {}", what, errno == 0 ? "connection closed" : std::strerror(errno));
    else
      err = fmt::format("{}: {}", what, tls_error_text("TLS error"));
    return -1;
  }
}

// Writes all of `data` before `deadline`; "" or why not.
std::string write_all(BlockingClient* c, std::string_view data, Clock::time_point deadline) {
  std::string err;
  while (!data.empty()) {
    ssize_t n;
    if (c->ssl) {
      n = ssl_call(c, [&] { return SSL_write(c->ssl, data.data(), static_cast<int>(data.size())); },
                   deadline, "write", err);
      if (n <= 0) return err;
    } else {
      n = ::send(c->fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return fmt::format("write: {}", std::strerror(errno));
        if (!wait_fd(c->fd, POLLOUT, deadline)) return "write: timeout";
        continue;
      }
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return "";
}

// Reads some bytes into `buf` before `deadline`: their count, or 0 and `err`.
size_t read_some(BlockingClient* c, char* buf, size_t cap, Clock::time_point deadline, std::string& err) {
  if (c->ssl) {
    int n = ssl_call(c, [&] { return SSL_read(c->ssl, buf, static_cast<int>(cap)); }, deadline,
                     "read", err);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }
  for (;;) {
    ssize_t n = ::recv(c->fd, buf, cap, 0);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) {
      err = "read: connection closed";
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      err = fmt::format("read: {}", std::strerror(errno));
      return 0;
    }
    if (!wait_fd(c->fd, POLLIN, deadline)) {
      err = "read: timeout";
      return 0;
    }
  }
}

}  // namespace

BlockingReply blocking_command(BlockingClient* c, const std::vector<std::string>& args) {
  if (c->err) return nullptr;
  const auto deadline = Clock::now() + std::chrono::milliseconds(c->timeout_ms);
  std::string req = fmt::format("*{}\r\n", args.size());
  for (const std::string& a : args) fmt::format_to(std::back_inserter(req), "${}\r\n{}\r\n", a.size(), a);
  if (std::string e = write_all(c, req, deadline); !e.empty()) {
    c->set_error(e);
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
    std::string e;
    size_t n = read_some(c, buf, sizeof buf, deadline, e);
    if (n == 0) {
      c->set_error(e);
      return nullptr;
    }
    if (redisReaderFeed(c->reader, buf, n) != REDIS_OK) {
      c->set_error("out of memory");
      return nullptr;
    }
  }
}

BlockingConn blocking_open(const std::string& host, int port, const std::string& user,
                           const std::string& password, std::string& err, int timeout_ms,
                           const TlsContext* tls) {
  auto c = std::make_unique<BlockingClient>();
  c->timeout_ms = timeout_ms;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  c->fd = connect_tcp(host, port, deadline, err);
  if (c->fd < 0) return nullptr;
  c->reader = redisReaderCreate();
  if (!c->reader) {
    err = "out of memory";
    return nullptr;
  }
  if (tls) {
    c->ssl = tls->new_ssl(host);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
      err = tls_error_text("cannot make an SSL (out of memory, or an unusable server name)");
      return nullptr;
    }
    if (ssl_call(c.get(), [&] { return SSL_connect(c->ssl); }, deadline, "TLS handshake", err) <= 0)
      return nullptr;
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
