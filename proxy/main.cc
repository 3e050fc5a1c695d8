// respite: a Redis-protocol caching proxy.
#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/server.h"

int main(int argc, char** argv) {
  respite::Config cfg;
  int code = 0;
  if (!respite::parse_config(argc, argv, cfg, code)) return code;
  respite::LogLevel level;
  if (!respite::parse_log_level(cfg.log_level, level)) {
    fmt::print(stderr, "respite: unknown log level '{}'\n", cfg.log_level);
    return 1;
  }
  respite::set_log_level(level);
  if (!respite::set_log_file(cfg.logfile)) {
    fmt::print(stderr, "respite: cannot open logfile '{}'\n", cfg.logfile);
    return 1;
  }
  respite::Server server(std::move(cfg));
  return server.run();
}
