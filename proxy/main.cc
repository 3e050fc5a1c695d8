// respite: a Redis-protocol caching proxy.
#include <cstdlib>
#include <new>

#include "proxy/alloc_count.h"
#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/server.h"

// Counting replacements of the global allocation functions (see alloc_count.h). A relaxed
// increment is the only cost; the aligned and nothrow forms fall back to these.
void* operator new(std::size_t n) {
  respite::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

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
