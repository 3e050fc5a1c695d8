// respite: a Redis-protocol caching proxy.
#include <signal.h>
#include <cstdlib>
#include <memory>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <new>
#include <thread>
#include <vector>

#include "proxy/ops/alloc_count.h"
#include "proxy/net/tls_context.h"
#include "proxy/ops/config.h"
#include "proxy/ops/log.h"
#include "proxy/front/server.h"
#include "proxy/http/http_server.h"
#include "proxy/upstream/sentinel.h"

// Counting replacements of the global allocation functions (see alloc_count.h). A relaxed
// increment is the only cost; the aligned forms keep the library's own pair.
void* operator new(std::size_t n) {
  respite::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
// The nothrow forms too, so every new/delete pair goes through malloc/free (a sanitizer would
// otherwise see a new from its own allocator freed by ours).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  respite::g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
// GCC sees free() of what its operator new returned; here both are ours and both are malloc's.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

int main(int argc, char** argv) {
  // Before anything writes to a socket: the blocking clients (Sentinel discovery, the first
  // Cluster slot map) run before the loops, and a peer's reset must be an error, not a death.
  signal(SIGPIPE, SIG_IGN);
#if defined(__GLIBC__)
  // Fixed thresholds instead of glibc's adaptive ones. Adaptively, freeing one large mmapped
  // buffer (a queue or buffer grown by a pipelining burst) raises the mmap threshold to its
  // size, so the next bursts' buffers come from the heap and stay resident after they are
  // freed: RSS after bursts of 100k pipelined commands stayed ~20 MB up. With these, blocks of
  // 256 KB and more are mapped and unmapped, and free memory above 1 MB at the top of the heap
  // is given back.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
#endif
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
  // The TLS contexts read their files now: a certificate that does not load stops the start,
  // as in Redis.
  std::shared_ptr<const respite::TlsContext> tls_ctx, upstream_tls_ctx;
  if (cfg.tls_port > 0 || cfg.http_tls) {
    std::string err;
    tls_ctx = respite::TlsContext::make(cfg.tls, respite::TlsContext::Role::Server, err);
    if (!tls_ctx) {
      fmt::print(stderr, "respite: {}: {}\n", cfg.tls_port > 0 ? "--tls-port" : "--http-tls", err);
      return 1;
    }
  }
  if (cfg.upstream_tls) {
    std::string err;
    upstream_tls_ctx =
        respite::TlsContext::make(cfg.upstream_tls_settings, respite::TlsContext::Role::Client, err);
    if (!upstream_tls_ctx) {
      fmt::print(stderr, "respite: --upstream-tls: {}\n", err);
      return 1;
    }
  }
  if (!cfg.sentinel_addrs.empty()) {
    // The primary (and the replicas, when reads may go there and none were given) as the
    // Sentinels say, before anything listens.
    const bool want_replicas = cfg.read_from != "primary" && cfg.replica_addrs.empty();
    respite::SentinelAnswer a = respite::ask_sentinels(cfg, want_replicas, upstream_tls_ctx.get());
    if (a.host.empty()) {
      respite::log(respite::LogLevel::Warning, "no Sentinel named a primary for {}: {}",
                   cfg.sentinel_master, a.error);
      return 1;
    }
    cfg.upstream_host = a.host;
    cfg.upstream_port = a.port;
    cfg.upstream = respite::join_host_port(a.host, a.port);
    respite::log(respite::LogLevel::Notice, "Sentinel: the primary of {} is {}", cfg.sentinel_master,
                 cfg.upstream);
    if (want_replicas) {
      cfg.replica_addrs = a.replicas;
      for (const auto& [h, p] : a.replicas) {
        cfg.replicas.push_back(respite::join_host_port(h, p));
        respite::log(respite::LogLevel::Notice, "Sentinel: replica {}", cfg.replicas.back());
      }
    }
  }
  // One cache for every loop; with several loops it takes per-shard locks.
  respite::Shared shared;
  shared.tls_ctx = tls_ctx;
  shared.tls_settings = cfg.tls;
  shared.upstream_tls_ctx = upstream_tls_ctx;
  if (std::string err = shared.acl.load(cfg); !err.empty()) {
    respite::log(respite::LogLevel::Warning, "users: {}", err);
    return 1;
  }
  if (cfg.cluster) {
    // The slot map before anything listens; then a thread keeps it current.
    shared.cluster_watcher = std::make_unique<respite::ClusterWatcher>(cfg, &shared.cluster_map,
                                                                      upstream_tls_ctx);
    if (std::string err = shared.cluster_watcher->refresh(); !err.empty()) {
      respite::log(respite::LogLevel::Warning, "cannot read the cluster's slot map: {}", err);
      return 1;
    }
    auto map = shared.cluster_map.get();
    respite::log(respite::LogLevel::Notice, "cluster: {} masters, {} of {} slots served",
                 map->shards.size(), map->slots_covered(), respite::kClusterSlots);
    shared.cluster_watcher->start();
  }
  cache::Settings cs;
  cs.max_memory = cfg.cache_max_memory;
  cs.ttl_ms = static_cast<uint64_t>(cfg.cache_ttl_ms);
  cs.max_keys = cfg.cache_max_keys;
  cs.max_value = cfg.cache_max_value;
  cs.policy = *cache::parse_policy(cfg.cache_policy);
  cs.policy_params.lfu_log_factor = cfg.cache_lfu_log_factor;
  cs.policy_params.lfu_decay_time = cfg.cache_lfu_decay_time;
  cs.xfetch_beta = cfg.xfetch_beta;
  cs.single_flight = cfg.cache_single_flight;
  respite::configure_cache_threads(cs, cfg.threads);
  shared.cache = std::make_unique<cache::Cache<respite::CacheWaiter>>(cs);
  if (!cfg.replica_addrs.empty())
    shared.ledger = std::make_unique<respite::WriteLedger>(cfg.replica_addrs.size());
  if (cfg.cluster && cfg.read_from != "primary")
    shared.cluster_reads = std::make_unique<respite::ClusterReads>();
  shared.set_nodes(cfg.replica_addrs.size());

  std::vector<std::unique_ptr<respite::Server>> servers;
  for (int i = 0; i < cfg.threads; ++i) {
    servers.push_back(std::make_unique<respite::Server>(cfg, &shared, i));
    shared.servers.push_back(servers.back().get());
    if (cfg.http_port > 0)
      servers.back()->set_http(std::make_unique<respite::HttpServer>(servers.back().get()));
  }
  shared.start_ms = uv_now(servers[0]->loop());
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int i = 1; i < cfg.threads; ++i)
    threads.emplace_back([&, i] {
      if (servers[static_cast<size_t>(i)]->run() != 0) failed = 1;
    });
  int rc = servers[0]->run();
  for (auto& t : threads) t.join();
  if (shared.cluster_watcher) shared.cluster_watcher->stop();
  return rc != 0 ? rc : failed.load();
}
