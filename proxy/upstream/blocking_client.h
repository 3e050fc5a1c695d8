// A blocking connection to a Redis, for questions asked outside the event loops: the Sentinels'
// answers at start, the Cluster slot map (at start and on the map watcher's thread). A socket
// of its own (plain, or with OpenSSL on it: hiredis 0.14 has no TLS), its replies parsed by
// hiredis's reply reader, so callers get hiredis's redisReply either way.
//
// Deadlines: the connect, the TLS handshake and each command (its request written and its whole
// reply read) each get `timeout_ms`, however the peer spreads its bytes: a server that trickles
// a reply a byte at a time cannot hold the thread that asked (the Cluster map watcher) for
// longer than that.
#pragma once

#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/net/tls_context.h"

namespace respite {

struct RedisReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using BlockingReply = std::unique_ptr<redisReply, RedisReplyFree>;

// One connection. `err` is nonzero once it failed (then `errstr` says why) and it must be
// opened again, as with hiredis's redisContext.
struct BlockingClient {
  BlockingClient() = default;
  BlockingClient(const BlockingClient&) = delete;
  BlockingClient& operator=(const BlockingClient&) = delete;
  ~BlockingClient();
  void set_error(const std::string& why);

  int err = 0;
  char errstr[128] = {};
  int fd = -1;             // non-blocking; waits are poll()s bounded by the deadline
  SSL* ssl = nullptr;      // TLS only
  redisReader* reader = nullptr;
  int timeout_ms = 1000;
};
using BlockingConn = std::unique_ptr<BlockingClient>;

// One command and its reply (nullptr when the connection failed: c->errstr says why).
BlockingReply blocking_command(BlockingClient* c, const std::vector<std::string>& args);
// A connection with `timeout_ms` deadlines (the connect, the handshake, each command), over TLS in `tls`
// (a client context) when it is given, authenticated if `password` is set; nullptr and `err`
// when it failed.
BlockingConn blocking_open(const std::string& host, int port, const std::string& user,
                           const std::string& password, std::string& err, int timeout_ms = 1000,
                           const TlsContext* tls = nullptr);

}  // namespace respite
