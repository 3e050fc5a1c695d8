// The listening sockets (RESP and HTTP), shared by every event loop.
#pragma once

#include <uv.h>

#include <string>
#include <string_view>

namespace respite {

// Binds `tcp` (initialised on its loop) to bind:port and listens, with `on_connection` as the
// callback. With `reuseport` (several loops serve the port) the socket is made here with
// SO_REUSEPORT, so each loop has its own and the kernel spreads connections over them, and is
// handed to libuv with uv_tcp_open (libuv 1.44 has no flag for it). Returns 0 or a libuv error,
// after logging a warning that names the listener by `what` ("" for the RESP port, "HTTP").
int listen_tcp(uv_tcp_t* tcp, const std::string& bind, int port, bool reuseport,
               uv_connection_cb on_connection, std::string_view what);

}  // namespace respite
