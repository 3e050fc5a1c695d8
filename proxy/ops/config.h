// Settings, from the command line and from a redis.conf-style file (`directive value` per line,
// `#` comments). Every flag `--name` is also the directive `name`; flags given on the command line
// win over the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proxy/ops/tls_settings.h"

namespace respite {

// How the cache learns of writes made behind respite's back (cache-coherence).
//   Tracking: Redis's CLIENT TRACKING (an invalidation link per loop); an upstream that refuses
//             it leaves the cache off and reads forwarded, never a cache that cannot be told.
//   Ttl:      no link: writes through respite still invalidate, writes made elsewhere are seen
//             when the entry expires, at most cache-ttl-ms later. The operator's choice for
//             upstreams without tracking (ElastiCache 7.1, Memorystore).
enum class CacheCoherence : uint8_t { Tracking, Ttl };

struct Config {
  // Listening.
  int port = 7000;
  std::string bind = "127.0.0.1";
  int threads = 1;
  int maxclients = 10000;
  std::string requirepass;
  // Users, in Redis's ACL rule syntax (proxy/front/acl): the config file's `user NAME rules...`
  // lines (each the words after "user"), or a users file of such lines (Redis's aclfile).
  std::vector<std::string> users;
  std::string aclfile;
  // Redis's protected mode: with no password, clients from other hosts than loopback are
  // refused. "yes" or "no".
  std::string protected_mode_str = "yes";
  bool protected_mode = true;  // derived
  // redis.conf's rename-command, as pairs (old, new; new "" disables the command), and
  // respite's deny-command (refused under every name).
  std::vector<std::string> rename_commands;
  std::vector<std::string> deny_commands;

  // TLS for clients (Redis's tls-* options): a TLS listener on tls_port beside the plain one
  // (0: none). With a tls_port, port 0 means no plain listener, as in Redis (without one, port
  // 0 picks a free port, for tests).
  int tls_port = 0;
  bool http_tls = false;  // HTTPS on http-port, with the same certificates (tls-*)
  TlsSettings tls;  // main.cc makes the context; PROXY CONFIG SET tls-* and SIGHUP remake it
  // A TLS client whose handshake is not done this long after it connected is closed (a refused
  // one, at maxclients, after at most a second): a silent peer cannot hold a descriptor.
  int64_t tls_handshake_timeout_ms = 10000;
  // TLS to the upstream nodes and the Sentinels: verified against upstream_tls.ca_cert_file
  // (or the system's CAs); a client certificate when cert_file/key_file are set; SNI and the
  // host name check when server_name is. One context for every loop (Shared).
  bool upstream_tls = false;
  TlsSettings upstream_tls_settings;

  // HTTP endpoint (/lookup, /metrics, /healthz): off while http_port is 0.
  int http_port = 0;
  std::string http_bind;  // empty: the same address as `bind`
  // /metrics needs the password too: "yes", "no", or "" (yes when requirepass is set).
  std::string http_metrics_auth;
  bool http_metrics_needs_auth = false;  // derived
  // Larger values get 413 from /lookup (the JSON response is bounded by this).
  std::string http_max_value_str = "1mb";
  uint64_t http_max_value = 1ull << 20;

  // Upstream.
  std::string upstream = "127.0.0.1:6379";
  std::string upstream_host = "127.0.0.1";  // derived from `upstream`
  int upstream_port = 6379;                 // derived from `upstream`
  // Every --upstream given (repeatable with --cluster: the seed nodes); `upstream` is the first.
  std::vector<std::string> upstreams;
  std::vector<std::pair<std::string, int>> upstream_addrs;  // derived from `upstreams`
  // Redis Cluster: the upstreams are seed nodes; the slot map says which serves each key.
  bool cluster = false;
  std::string upstream_user;
  std::string upstream_password;
  // Above what Redis itself may take for one command (a script runs past lua-time-limit's 5 s,
  // KEYS or a big DEL for seconds): a request is failed only when it is surely lost.
  int upstream_timeout_ms = 30000;
  int upstream_connections = 1;  // shared connections per protocol
  // Replicas of the upstream (host:port each) and which reads go to them: "primary" (none),
  // "replica" or "prefer-replica" (see proxy/upstream/router.h).
  std::vector<std::string> replicas;
  std::vector<std::pair<std::string, int>> replica_addrs;  // derived from `replicas`
  std::string read_from = "primary";
  // Sentinel: the primary (and, for --read-from, the replicas) of `sentinel_master` as these
  // Sentinels (host:port each) say, followed through failovers. `upstream` is then found.
  std::vector<std::string> sentinels;
  std::vector<std::pair<std::string, int>> sentinel_addrs;  // derived
  std::string sentinel_master;
  std::string sentinel_user;
  std::string sentinel_password;
  int databases = 16;

  // Cache.
  std::string cache_max_memory_str = "64mb";
  uint64_t cache_max_memory = 64ull << 20;
  int64_t cache_ttl_ms = 10000;
  uint64_t cache_max_keys = 0;
  std::string cache_max_value_str = "1mb";
  uint64_t cache_max_value = 1ull << 20;
  std::string cache_policy = "tinylfu";  // wins the hit-ratio measurement (README)
  int cache_lfu_log_factor = 10;
  int cache_lfu_decay_time = 1;
  double xfetch_beta = 1.0;        // early refresh (XFetch); 0 = off
  bool cache_single_flight = true;  // off only for the stampede demo (hidden flag)
  // Fixed at start: entries cached under one promise must not be served under the other
  // (PROXY CONFIG SET refuses it, see proxy_command.cc).
  std::string cache_coherence_str = "tracking";
  CacheCoherence cache_coherence = CacheCoherence::Tracking;  // derived

  // Limits (Redis's meanings).
  std::string proto_max_bulk_len_str = "512mb";
  uint64_t proto_max_bulk_len = 512ull << 20;
  std::string client_query_buffer_limit_str = "1gb";
  uint64_t client_query_buffer_limit = 1ull << 30;
  // Redis's client-output-buffer-limit for normal clients: close a client whose unwritten
  // replies exceed `hard` at once, or stay above `soft` for `soft_seconds` (0: no such limit),
  // so a client that sends but never reads cannot grow respite's memory without bound. The one
  // largest reply queued is not counted: a client that reads gets a single reply of any size.
  // Given as "normal <hard> <soft> <seconds>", "<hard> <soft> <seconds>" or "<hard>".
  std::string client_output_buffer_limit_str = "normal 64mb 16mb 60";
  uint64_t client_output_buffer_limit = 64ull << 20;  // hard
  uint64_t client_output_buffer_soft = 16ull << 20;
  uint64_t client_output_buffer_soft_seconds = 60;

  // Operations.
  int64_t slowlog_log_slower_than = 10000;  // us; forwarded commands slower go to PROXY SLOWLOG
  int slowlog_max_len = 128;
  int64_t rate_limit = 0;  // requests per second per client connection; 0 = no limit
  int64_t timeout = 0;     // seconds an idle client may stay connected; 0 = forever

  // Logging.
  std::string log_level = "notice";
  std::string logfile;

  std::string config_file;
};

// Parses argv (and the --config file it names). On --help or an error, prints to stdout/stderr and
// returns false with `exit_code` set (0 for --help).
bool parse_config(int argc, char** argv, Config& cfg, int& exit_code);

// Every size setting (--cache-max-memory, --cache-max-value, --proto-max-bulk-len,
// --client-query-buffer-limit, --http-max-value, client-output-buffer-limit's sizes and PROXY
// CONFIG SET cache-max-memory) is read here, as Redis's memtoull reads redis.conf's: digits and an
// optional unit, case-insensitive: b (or none) = bytes, k = 1000, kb = 1024, m = 1000^2,
// mb = 1024^2, g = 1000^3, gb = 1024^3. Refused like Redis: signs, spaces, fractions, hex, other
// units ("1tb"). Refused where Redis 7.0 is lenient: no digits ("" and "mb" are 0 there) and
// values past 2^64-1 (Redis saturates the digits and wraps the product). Leading zeros are fine.
// Returns false, `out` untouched, on anything refused.
bool parse_memory_size(const std::string& s, uint64_t& out);

// Redis's client-output-buffer-limit value: "normal <hard> <soft> <seconds>", "<hard> <soft>
// <seconds>", or one size (hard only). Other classes than normal are refused.
bool parse_output_limit(const std::string& s, uint64_t& hard, uint64_t& soft, uint64_t& seconds);

// "host:port" or "[v6]:port" into its parts; an error text or "". `what` names the setting.
std::string split_host_port(const std::string& s, const char* what, std::string& host, int& port);
// The inverse: "host:port", brackets around an IPv6 address.
std::string join_host_port(const std::string& host, int port);

// Resolves derived fields (upstream host/port, sizes). Returns an error text or "".
std::string finalize_config(Config& cfg);

// "tracking" or "ttl".
const char* cache_coherence_name(CacheCoherence c);

// Lines for the startup log: every setting, passwords masked.
std::vector<std::string> describe_config(const Config& cfg);

}  // namespace respite
