#include "proxy/ops/config.h"

#include "proxy/ops/config_tls.h"

#include <CLI/CLI.hpp>
#include "cache/policy.h"
#include "proxy/ops/text.h"
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iostream>

namespace respite {

bool parse_memory_size(const std::string& s, uint64_t& out) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    const uint64_t digit = static_cast<uint64_t>(s[i] - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
    ++i;
  }
  if (i == 0) return false;  // Redis takes "" and "mb" as 0
  std::string unit = lower(std::string_view(s).substr(i));
  uint64_t mul = 1;
  if (unit.empty() || unit == "b") mul = 1;
  else if (unit == "k") mul = 1000;
  else if (unit == "kb") mul = 1024;
  else if (unit == "m") mul = 1000 * 1000;
  else if (unit == "mb") mul = 1024 * 1024;
  else if (unit == "g") mul = 1000ull * 1000 * 1000;
  else if (unit == "gb") mul = 1024ull * 1024 * 1024;
  else return false;
  if (v && mul > UINT64_MAX / v) return false;  // Redis wraps: 17179869184gb is 0 there
  out = v * mul;
  return true;
}

bool parse_output_limit(const std::string& s, uint64_t& hard, uint64_t& soft, uint64_t& seconds) {
  std::vector<std::string> w;
  size_t i = 0;
  while (i < s.size()) {
    size_t b = s.find_first_not_of(" \t", i);
    if (b == std::string::npos) break;
    size_t e = s.find_first_of(" \t", b);
    w.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    i = e == std::string::npos ? s.size() : e;
  }
  if (!w.empty()) {
    std::string cls = lower(w[0]);
    if (cls == "normal") {
      w.erase(w.begin());
      if (w.size() != 3) return false;  // as Redis: the class takes all three values
    }
    else if (cls == "replica" || cls == "slave" || cls == "pubsub") return false;
  }
  uint64_t h = 0, so = 0, sec = 0;
  if (w.size() == 1) {
    if (!parse_memory_size(w[0], h)) return false;
  } else if (w.size() == 3) {
    if (!parse_memory_size(w[0], h) || !parse_memory_size(w[1], so)) return false;
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(w[2].c_str(), &end, 10);
    if (w[2].empty() || *end != '\0' || errno != 0 || !std::isdigit(static_cast<unsigned char>(w[2][0])))
      return false;
    sec = v;
  } else {
    return false;
  }
  hard = h;
  soft = so;
  seconds = sec;
  return true;
}

namespace {

// Reads `directive value...` lines into "--directive value..." arguments, one group per line, so
// the file and the command line share one definition of every setting. A group is the name and
// one value, except rename-command's (the name and two).
using Directive = std::vector<std::string>;
bool read_config_file(const std::string& path, std::vector<Directive>& out, std::string& err) {
  std::ifstream in(path);
  if (!in) {
    err = fmt::format("cannot open config file '{}'", path);
    return false;
  }
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    size_t e = line.find_last_not_of(" \t\r");
    std::string body = line.substr(b, e - b + 1);
    size_t sp = body.find_first_of(" \t");
    std::string name = body.substr(0, sp);
    std::string value;
    if (sp != std::string::npos) {
      value = body.substr(body.find_first_not_of(" \t", sp));
      if (value.size() >= 2 && ((value.front() == '"' && value.back() == '"') ||
                                (value.front() == '\'' && value.back() == '\''))) {
        value = value.substr(1, value.size() - 2);
      }
    }
    if (name == "config") {
      err = fmt::format("{}:{}: 'config' cannot be nested", path, lineno);
      return false;
    }
    Directive& args = out.emplace_back();
    args.push_back("--" + name);
    if (name == "rename-command") {
      // Two words, either possibly quoted: `rename-command KEYS ""` disables KEYS.
      std::vector<std::string> w;
      size_t i = 0;
      while (i < value.size()) {
        if (value[i] == ' ' || value[i] == '\t') {
          ++i;
        } else if (value[i] == '"' || value[i] == '\'') {
          size_t close = value.find(value[i], i + 1);
          if (close == std::string::npos) close = value.size();
          w.push_back(value.substr(i + 1, close - i - 1));
          i = close + 1;
        } else {
          size_t e = value.find_first_of(" \t", i);
          if (e == std::string::npos) e = value.size();
          w.push_back(value.substr(i, e - i));
          i = e;
        }
      }
      if (w.size() != 2) {
        err = fmt::format("{}:{}: rename-command needs two names (NAME NEWNAME, or NAME \"\")",
                          path, lineno);
        return false;
      }
      args.push_back(w[0]);
      args.push_back(w[1]);
      continue;
    }
    args.push_back(value);
  }
  return true;
}

}  // namespace

bool parse_config(int argc, char** argv, Config& cfg, int& exit_code) {
  CLI::App app{"respite: a Redis-protocol caching proxy. Point any Redis client at it."};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.get_formatter()->column_width(36);

  app.add_option("--config", cfg.config_file,
                 "redis.conf-style file: one `directive value` per line; every flag is a "
                 "directive; flags on the command line win");
  app.add_option("--port", cfg.port, "TCP port to listen on")->capture_default_str();
  app.add_option("--bind", cfg.bind, "address to listen on (loopback by default)")
      ->capture_default_str();
  app.add_option("--threads", cfg.threads, "event-loop threads, one listener each (1 unless respite has cores of its own)")->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--maxclients", cfg.maxclients, "maximum connected clients")
      ->capture_default_str();
  app.add_option("--http-port", cfg.http_port,
                 "HTTP endpoint port for /lookup, /metrics and /healthz (0: off)")
      ->capture_default_str()->check(CLI::Range(0, 65535));
  app.add_option("--http-bind", cfg.http_bind,
                 "address of the HTTP endpoint (default: the same as --bind)");
  app.add_option("--http-metrics-auth", cfg.http_metrics_auth,
                 "yes|no: /metrics needs the password too (default: yes when requirepass is set)");
  app.add_option("--http-max-value", cfg.http_max_value_str,
                 "/lookup answers 413 for larger values")->capture_default_str();
  app.add_option("--requirepass", cfg.requirepass,
                 "password clients must AUTH with (empty: no authentication)");
  app.add_option("--user", cfg.users,
                 "a user in Redis's ACL rule syntax: \"NAME rule...\" (repeatable; the config "
                 "file's `user NAME rule...` lines)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--aclfile", cfg.aclfile,
                 "a users file as Redis's aclfile: one `user NAME rule...` line per user");
  app.add_option("--protected-mode", cfg.protected_mode_str,
                 "yes|no: with no password set, refuse clients from other hosts than loopback")
      ->capture_default_str();
  app.add_option("--rename-command", cfg.rename_commands,
                 "NAME NEWNAME: the command answers only to NEWNAME (\"\": to none); repeatable")
      ->expected(2)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--deny-command", cfg.deny_commands,
                 "NAME: the command is refused as unknown (repeatable)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--upstream", cfg.upstreams,
                 "upstream Redis as host:port (default 127.0.0.1:6379); with --cluster "
                 "repeatable: the seed nodes")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("--cluster", cfg.cluster,
               "the upstream is a Redis Cluster: keys go to the node serving their slot, "
               "multi-key commands are split, clients see one node owning every slot");
  app.add_option("--replica", cfg.replicas,
                 "a replica of the upstream as host:port (repeatable); reads may go there "
                 "(--read-from)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--read-from", cfg.read_from,
                 "primary|replica|prefer-replica: where reads go when replicas are given, or with "
                 "--cluster to each shard's replicas (never a read of a write respite "
                 "acknowledged that a replica has not applied; in Cluster, cache fills still read "
                 "from the masters, forwarded reads go to replicas)")
      ->capture_default_str();
  app.add_option("--sentinel", cfg.sentinels,
                 "a Sentinel as host:port (repeatable): the upstream primary is the one they "
                 "name for --sentinel-master, followed through failovers")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--sentinel-master", cfg.sentinel_master, "the master name the Sentinels monitor");
  app.add_option("--sentinel-user", cfg.sentinel_user, "ACL user for the Sentinels");
  app.add_option("--sentinel-password", cfg.sentinel_password, "password for the Sentinels");
  app.add_option("--upstream-user", cfg.upstream_user, "ACL user respite authenticates as upstream");
  app.add_option("--upstream-password", cfg.upstream_password,
                 "password respite authenticates with upstream (AUTH on every connection)");
  app.add_option("--upstream-timeout-ms", cfg.upstream_timeout_ms,
                 "a request waiting this long for the upstream fails with an error")
      ->capture_default_str()->check(CLI::Range(1, 3600000));
  app.add_option("--upstream-connections", cfg.upstream_connections,
                 "shared upstream connections per protocol (clients are spread over them)")
      ->capture_default_str()->check(CLI::Range(1, 64));
  app.add_option("--databases", cfg.databases, "number of logical databases SELECT accepts")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  app.add_option("--cache-max-memory", cfg.cache_max_memory_str,
                 "cache byte budget (512kb, 64mb, 1gb; 0 disables the cache)")
      ->capture_default_str();
  app.add_option("--cache-ttl-ms", cfg.cache_ttl_ms,
                 "longest time an entry is served from the cache (upstream TTLs shorten it)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  app.add_option("--cache-max-keys", cfg.cache_max_keys, "cache key limit (0: none)")
      ->capture_default_str();
  app.add_option("--cache-max-value", cfg.cache_max_value_str,
                 "larger values are relayed, not cached")->capture_default_str();
  app.add_option("--cache-policy", cfg.cache_policy,
                 "eviction: noeviction, allkeys-lru, volatile-lru, allkeys-lfu, volatile-lfu, "
                 "allkeys-random, volatile-random, volatile-ttl, tinylfu")
      ->capture_default_str();
  app.add_option("--cache-coherence", cfg.cache_coherence_str,
                 "tracking: Redis's CLIENT TRACKING keeps the cache coherent (an upstream that "
                 "refuses it gets no cache); ttl: no tracking, writes through respite invalidate, "
                 "writes made elsewhere are seen within cache-ttl-ms")
      ->capture_default_str();
  app.add_option("--cache-lfu-log-factor", cfg.cache_lfu_log_factor,
                 "LFU counter logarithm factor (Redis's lfu-log-factor)")
      ->capture_default_str()->check(CLI::Range(0, 255));
  app.add_option("--cache-lfu-decay-time", cfg.cache_lfu_decay_time,
                 "minutes per LFU counter decay step (Redis's lfu-decay-time)")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  app.add_option("--xfetch-beta", cfg.xfetch_beta,
                 "early refresh of hot keys before they expire (XFetch beta; 0 turns it off)")
      ->capture_default_str()->check(CLI::Range(0.0, 100.0));
  app.add_option("--cache-single-flight", cfg.cache_single_flight,
                 "collapse concurrent misses of a key into one fetch (off only for demos)")
      ->capture_default_str()->group("");
  app.add_option("--proto-max-bulk-len", cfg.proto_max_bulk_len_str,
                 "longest bulk string a client may send")->capture_default_str();
  app.add_option("--client-query-buffer-limit", cfg.client_query_buffer_limit_str,
                 "close a client whose unparsed input exceeds this")->capture_default_str();
  app.add_option("--client-output-buffer-limit", cfg.client_output_buffer_limit_str,
                 "Redis's form 'normal <hard> <soft> <seconds>': close a client whose unwritten "
                 "replies exceed hard, or soft for that many seconds (0: no limit); the largest "
                 "single reply queued is not counted")
      ->capture_default_str();
  app.add_option("--slowlog-log-slower-than", cfg.slowlog_log_slower_than,
                 "forwarded commands whose upstream round trip exceeds this many microseconds "
                 "are kept in PROXY SLOWLOG (negative: off)")
      ->capture_default_str();
  app.add_option("--slowlog-max-len", cfg.slowlog_max_len, "entries PROXY SLOWLOG keeps")
      ->capture_default_str()->check(CLI::Range(0, 1 << 20));
  app.add_option("--rate-limit", cfg.rate_limit,
                 "requests per second each client connection may send (token bucket); excess "
                 "requests get an error (0: no limit)")
      ->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--timeout", cfg.timeout, "close clients idle this many seconds (0: never)")
      ->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  add_tls_options(app, cfg);
  app.add_option("--log-level", cfg.log_level, "debug, verbose, notice or warning")
      ->capture_default_str();
  app.add_option("--logfile", cfg.logfile, "append logs to this file (default: stderr)");

  // First pass: find --config; its directives go before the real arguments so flags win.
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  std::string file;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) file = args[i + 1];
    else if (args[i].rfind("--config=", 0) == 0) file = args[i].substr(9);
  }
  std::vector<Directive> directives;
  if (!file.empty()) {
    std::string err;
    if (!read_config_file(file, directives, err)) {
      std::cerr << "respite: " << err << "\n";
      exit_code = 1;
      return false;
    }
    // A repeatable setting given on the command line replaces the file's, as a single one does
    // (the file's `upstream` and a --upstream flag are not two cluster seeds).
    for (const char* name : {"--upstream", "--replica", "--sentinel"}) {
      const std::string n = name;
      bool on_command_line = false;
      for (const std::string& a : args) on_command_line |= a == n || a.rfind(n + "=", 0) == 0;
      if (!on_command_line) continue;
      std::erase_if(directives, [&](const Directive& d) { return d[0] == n; });
    }
  }
  // A flag's directive (`upstream-tls yes`, `cluster yes`) takes its value as `--name=value`
  // (yes/no, true/false, on/off), which CLI11 reads for flags.
  std::vector<std::string> all;
  for (const Directive& d : directives) {
    const CLI::Option* o = app.get_option_no_throw(d[0]);
    if (o && o->get_expected_max() == 0 && d.size() == 2) {
      all.push_back(d[0] + "=" + (d[1].empty() ? std::string("yes") : d[1]));
    } else {
      all.insert(all.end(), d.begin(), d.end());
    }
  }
  all.insert(all.end(), args.begin(), args.end());
  std::vector<std::string> rev(all.rbegin(), all.rend());  // CLI11 parses a reversed vector
  try {
    app.parse(rev);
  } catch (const CLI::ParseError& e) {
    exit_code = app.exit(e);
    return false;
  }
  std::string err = finalize_config(cfg);
  if (!err.empty()) {
    std::cerr << "respite: " << err << "\n";
    exit_code = 1;
    return false;
  }
  return true;
}

std::string split_host_port(const std::string& s, const char* what, std::string& host, int& port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return fmt::format("--{} must be host:port", what);
  host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string digits = s.substr(colon + 1);
  if (digits.empty() || digits.size() > 5 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return fmt::format("--{} port is not a number", what);
  port = std::stoi(digits);
  if (port <= 0 || port > 65535) return fmt::format("--{} port out of range", what);
  return "";
}

std::string join_host_port(const std::string& host, int port) {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                             : fmt::format("{}:{}", host, port);
}

std::string finalize_config(Config& cfg) {
  {
    std::vector<std::string> given;
    for (const std::string& u : cfg.upstreams)
      if (!u.empty()) given.push_back(u);
    if (!given.empty()) cfg.upstream = given[0];
    if (given.size() > 1 && !cfg.cluster)
      return "more than one --upstream needs --cluster (they are then the cluster's seed nodes)";
    if (given.empty()) given.push_back(cfg.upstream);
    cfg.upstream_addrs.clear();
    for (const std::string& u : given) {
      std::string host;
      int port = 0;
      if (std::string e = split_host_port(u, "upstream", host, port); !e.empty()) return e;
      cfg.upstream_addrs.emplace_back(host, port);
    }
  }
  if (std::string e = split_host_port(cfg.upstream, "upstream", cfg.upstream_host,
                                     cfg.upstream_port); !e.empty())
    return e;
  // Repeatable addresses; an empty one (`replica ""` in a file) stands for none.
  auto split_all = [](const std::vector<std::string>& in, const char* what,
                      std::vector<std::pair<std::string, int>>& out) -> std::string {
    out.clear();
    for (const std::string& r : in) {
      if (r.empty()) continue;
      std::string host;
      int port = 0;
      if (std::string e = split_host_port(r, what, host, port); !e.empty()) return e;
      out.emplace_back(host, port);
    }
    return "";
  };
  if (std::string e = split_all(cfg.replicas, "replica", cfg.replica_addrs); !e.empty()) return e;
  if (std::string e = split_all(cfg.sentinels, "sentinel", cfg.sentinel_addrs); !e.empty()) return e;
  if (!cfg.sentinel_addrs.empty() && cfg.sentinel_master.empty())
    return "--sentinel needs --sentinel-master (the name the Sentinels monitor)";
  if (cfg.cluster && (!cfg.sentinel_addrs.empty() || !cfg.replica_addrs.empty()))
    return "--cluster finds masters and replicas itself: no --sentinel or --replica with it";
  {
    std::string rf = lower(cfg.read_from);
    if (rf != "primary" && rf != "replica" && rf != "prefer-replica")
      return fmt::format("read-from must be primary, replica or prefer-replica, not '{}'",
                         cfg.read_from);
    cfg.read_from = rf;
  }
  struct {
    const char* name;
    const std::string& in;
    uint64_t& out;
  } sizes[] = {
      {"cache-max-memory", cfg.cache_max_memory_str, cfg.cache_max_memory},
      {"cache-max-value", cfg.cache_max_value_str, cfg.cache_max_value},
      {"proto-max-bulk-len", cfg.proto_max_bulk_len_str, cfg.proto_max_bulk_len},
      {"client-query-buffer-limit", cfg.client_query_buffer_limit_str,
       cfg.client_query_buffer_limit},
      {"http-max-value", cfg.http_max_value_str, cfg.http_max_value},
  };
  for (auto& s : sizes)
    if (!parse_memory_size(s.in, s.out)) return fmt::format("bad size for {}: '{}'", s.name, s.in);
  if (!parse_output_limit(cfg.client_output_buffer_limit_str, cfg.client_output_buffer_limit,
                          cfg.client_output_buffer_soft, cfg.client_output_buffer_soft_seconds))
    return fmt::format("bad client-output-buffer-limit: '{}' (normal <hard> <soft> <seconds>)",
                       cfg.client_output_buffer_limit_str);
  {
    std::string m = lower(cfg.http_metrics_auth);
    if (m.empty()) cfg.http_metrics_needs_auth = !cfg.requirepass.empty();
    else if (m == "yes") cfg.http_metrics_needs_auth = true;
    else if (m == "no") cfg.http_metrics_needs_auth = false;
    else return fmt::format("http-metrics-auth must be yes or no, not '{}'", cfg.http_metrics_auth);
  }
  {
    std::string m = lower(cfg.cache_coherence_str);
    if (m == "tracking") cfg.cache_coherence = CacheCoherence::Tracking;
    else if (m == "ttl") cfg.cache_coherence = CacheCoherence::Ttl;
    else return fmt::format("cache-coherence must be tracking or ttl, not '{}'", cfg.cache_coherence_str);
    cfg.cache_coherence_str = m;
  }
  {
    std::string m = lower(cfg.protected_mode_str);
    if (m == "yes") cfg.protected_mode = true;
    else if (m == "no") cfg.protected_mode = false;
    else return fmt::format("protected-mode must be yes or no, not '{}'", cfg.protected_mode_str);
  }
  if (cfg.port < 0 || cfg.port > 65535) return "--port out of range";
  if (std::string e = finalize_tls(cfg); !e.empty()) return e;
  if (!cache::parse_policy(cfg.cache_policy)) return fmt::format("unknown cache-policy '{}'", cfg.cache_policy);
  return "";
}

const char* cache_coherence_name(CacheCoherence c) {
  return c == CacheCoherence::Ttl ? "ttl" : "tracking";
}

std::vector<std::string> describe_config(const Config& c) {
  auto mask = [](const std::string& s) { return s.empty() ? std::string("(none)") : "********"; };
  return {
      fmt::format("port {} bind {} threads {} maxclients {}", c.port, c.bind, c.threads,
                  c.maxclients),
      fmt::format("requirepass {}", mask(c.requirepass)),
      describe_tls(c),
      // Users' rules hold passwords: only how many there are.
      fmt::format("users {} aclfile {} protected-mode {} rename-command {} deny-command {}",
                  c.users.size(), c.aclfile.empty() ? "(none)" : c.aclfile,
                  c.protected_mode ? "yes" : "no", c.rename_commands.size() / 2,
                  c.deny_commands.size()),
      c.http_port > 0 ? fmt::format("http-port {} http-bind {}", c.http_port,
                                    c.http_bind.empty() ? c.bind : c.http_bind)
                      : std::string("http-port 0 (HTTP endpoint off)"),
      fmt::format("upstream {}{} user {} password {} timeout {}ms connections {}",
                  c.cluster ? fmt::format("{} (cluster seeds)", fmt::join(c.upstreams, " "))
                            : c.upstream,
                  "",
                  c.upstream_user.empty() ? "(default)" : c.upstream_user,
                  mask(c.upstream_password), c.upstream_timeout_ms, c.upstream_connections),
      fmt::format("replicas {} read-from {}",
                  c.replicas.empty() ? std::string("(none)") : fmt::format("{}", fmt::join(c.replicas, " ")),
                  c.read_from),
      c.sentinels.empty()
          ? std::string("sentinel (none)")
          : fmt::format("sentinel {} sentinel-master {} sentinel-user {} sentinel-password {}",
                        fmt::join(c.sentinels, " "), c.sentinel_master,
                        c.sentinel_user.empty() ? "(default)" : c.sentinel_user,
                        mask(c.sentinel_password)),
      fmt::format("cache-max-memory {} cache-ttl-ms {} cache-max-keys {} cache-max-value {}",
                  c.cache_max_memory, c.cache_ttl_ms, c.cache_max_keys, c.cache_max_value),
      fmt::format("cache-policy {} xfetch-beta {} cache-lfu-log-factor {} cache-lfu-decay-time {}",
                  c.cache_policy, c.xfetch_beta, c.cache_lfu_log_factor, c.cache_lfu_decay_time),
      fmt::format("cache-coherence {}", cache_coherence_name(c.cache_coherence)),
      fmt::format("rate-limit {} timeout {} slowlog-log-slower-than {} slowlog-max-len {}",
                  c.rate_limit, c.timeout, c.slowlog_log_slower_than, c.slowlog_max_len),
      fmt::format("proto-max-bulk-len {} client-query-buffer-limit {} "
                  "client-output-buffer-limit normal {} {} {} log-level {}",
                  c.proto_max_bulk_len, c.client_query_buffer_limit,
                  c.client_output_buffer_limit, c.client_output_buffer_soft,
                  c.client_output_buffer_soft_seconds, c.log_level),
  };
}

}  // namespace respite
