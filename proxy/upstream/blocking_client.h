// A blocking connection to a Redis (hiredis), for questions asked outside the event loops: the
// Sentinels' answers at start, the Cluster slot map (at start and on the map watcher's thread).
#pragma once

#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <vector>

namespace respite {

struct RedisContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct RedisReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using BlockingConn = std::unique_ptr<redisContext, RedisContextFree>;
using BlockingReply = std::unique_ptr<redisReply, RedisReplyFree>;

// One command and its reply (nullptr when the connection failed: c->errstr says why).
BlockingReply blocking_command(redisContext* c, const std::vector<std::string>& args);
// A connection with `timeout_ms` timeouts, authenticated if `password` is set; nullptr and
// `err` when it failed.
BlockingConn blocking_open(const std::string& host, int port, const std::string& user,
                           const std::string& password, std::string& err, int timeout_ms = 1000);

}  // namespace respite
