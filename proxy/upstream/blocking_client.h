// A blocking connection to a Redis, for questions asked outside the event loops: the Sentinels'
// answers at start, the Cluster slot map (at start and on the map watcher's thread). Plain TCP
// is hiredis's own connection; TLS (hiredis 0.14 has none) is a blocking socket with OpenSSL
// on it, its replies parsed by hiredis's reply reader, so callers get the same redisReply.
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
  redisContext* plain = nullptr;  // plain TCP: hiredis does everything
  // TLS: the socket, its SSL, and the reader replies are parsed with.
  int fd = -1;
  SSL* ssl = nullptr;
  redisReader* reader = nullptr;
};
using BlockingConn = std::unique_ptr<BlockingClient>;

// One command and its reply (nullptr when the connection failed: c->errstr says why).
BlockingReply blocking_command(BlockingClient* c, const std::vector<std::string>& args);
// A connection with `timeout_ms` timeouts (connect, each read and write), over TLS in `tls`
// (a client context) when it is given, authenticated if `password` is set; nullptr and `err`
// when it failed.
BlockingConn blocking_open(const std::string& host, int port, const std::string& user,
                           const std::string& password, std::string& err, int timeout_ms = 1000,
                           const TlsContext* tls = nullptr);

}  // namespace respite
