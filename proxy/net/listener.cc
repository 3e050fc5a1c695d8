#include "proxy/net/listener.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "proxy/ops/log.h"

namespace respite {

int listen_tcp(uv_tcp_t* tcp, const std::string& bind, int port, bool reuseport,
               uv_connection_cb on_connection, std::string_view what) {
  const std::string_view space = what.empty() ? "" : " ";
  sockaddr_storage addr{};
  const bool v6 = bind.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(bind.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr))
              : uv_ip4_addr(bind.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) {
    log(LogLevel::Warning, "bad {}{}bind address {}: {}", what, space, bind, uv_strerror(rc));
    return rc;
  }
  if (reuseport) {
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&addr),
               v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in)) != 0) {
      rc = uv_translate_sys_error(errno);
      if (fd >= 0) ::close(fd);
    } else {
      rc = uv_tcp_open(tcp, fd);
    }
  } else {
    rc = uv_tcp_bind(tcp, reinterpret_cast<sockaddr*>(&addr), 0);
  }
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(tcp), 511, on_connection);
  if (rc != 0)
    log(LogLevel::Warning, "cannot listen {}{}{}on {}:{}: {}", what.empty() ? "" : "for ", what,
        what.empty() ? "" : " ", bind, port, uv_strerror(rc));
  return rc;
}

}  // namespace respite
