#include "proxy/upstream/blocking_client.h"

namespace respite {

BlockingReply blocking_command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return BlockingReply(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data())));
}

BlockingConn blocking_open(const std::string& host, int port, const std::string& user,
                           const std::string& password, std::string& err, int timeout_ms) {
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  BlockingConn c(redisConnectWithTimeout(host.c_str(), port, tv));
  if (!c || c->err) {
    err = c ? c->errstr : "out of memory";
    return nullptr;
  }
  redisSetTimeout(c.get(), tv);
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
