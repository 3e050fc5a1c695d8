// Sizes in settings: parse_memory_size, the one parser every size setting goes through
// (proxy/ops/config.h), checked against what Redis 7.0's memtoull answers for the same text (the
// reference, redis-server's CONFIG SET maxmemory), and through parse_config as respite reads its
// command line and config file.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdlib>

#include <cstdint>
#include <string>
#include <vector>

#include "proxy/ops/config.h"

using respite::parse_memory_size;

namespace {

// parse_memory_size's value, or -1 as "refused" (then `out` must be left as it was).
int64_t size_of(const std::string& s) {
  uint64_t out = 4242;
  if (!parse_memory_size(s, out)) {
    CHECK(out == 4242);
    return -1;
  }
  return static_cast<int64_t>(out);
}

// parse_config on `args` (argv[0] added); exit code and the settings read.
struct Parsed {
  bool ok;
  int exit_code;
  respite::Config cfg;
};
Parsed parse(std::vector<std::string> args) {
  args.insert(args.begin(), "respite");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  Parsed p{false, -1, {}};
  p.ok = respite::parse_config(static_cast<int>(argv.size()), argv.data(), p.cfg, p.exit_code);
  return p;
}

}  // namespace

TEST_CASE("memory size: bytes, with no unit or b") {
  CHECK(size_of("0") == 0);
  CHECK(size_of("123") == 123);
  CHECK(size_of("123b") == 123);
  CHECK(size_of("123B") == 123);
  CHECK(size_of("0100") == 100);  // leading zeros, as Redis (strtoull)
}

TEST_CASE("memory size: k/m/g are powers of 1000, kb/mb/gb of 1024, as redis.conf") {
  CHECK(size_of("1k") == 1000);
  CHECK(size_of("1kb") == 1024);
  CHECK(size_of("512kb") == 512 * 1024);
  CHECK(size_of("2m") == 2'000'000);
  CHECK(size_of("64mb") == int64_t{64} << 20);
  CHECK(size_of("3g") == 3'000'000'000);
  CHECK(size_of("1gb") == int64_t{1} << 30);
}

TEST_CASE("memory size: units are case-insensitive") {
  for (const char* s : {"64MB", "64Mb", "64mB"}) CHECK(size_of(s) == int64_t{64} << 20);
  CHECK(size_of("1K") == 1000);
  CHECK(size_of("1KB") == 1024);
  CHECK(size_of("1G") == 1'000'000'000);
  CHECK(size_of("1GB") == int64_t{1} << 30);
}

TEST_CASE("memory size: the whole 64-bit range, nothing past it") {
  uint64_t out = 0;
  REQUIRE(parse_memory_size("18446744073709551615", out));  // Redis takes it too
  CHECK(out == UINT64_MAX);
  REQUIRE(parse_memory_size("17179869183gb", out));
  CHECK(out == 17179869183ull << 30);
  // Redis 7.0 saturates the first to 2^64-1 and wraps the others (the last two to 0, which
  // would turn the cache off): refused here.
  for (const char* s : {"18446744073709551616", "99999999999999999999999", "17179869184gb",
                        "18446744073709551615k"}) {
    INFO(s);
    CHECK(size_of(s) == -1);
  }
}

TEST_CASE("memory size: refused like Redis, and where Redis would read 0") {
  // Refused by Redis 7.0 too ("argument must be a memory value").
  for (const char* s : {"-1", "-0", "+1", " 1", "1 ", "1.5gb", "1tb", "1x", "0x10", "1kbb", "1bb",
                        "1kB2", "1 kb", "k1"}) {
    INFO(s);
    CHECK(size_of(s) == -1);
  }
  // Redis 7.0 takes these as 0 (no digits): refused here.
  for (const char* s : {"", "b", "mb", "GB"}) {
    INFO(s);
    CHECK(size_of(s) == -1);
  }
}

TEST_CASE("client-output-buffer-limit: its sizes are memory sizes") {
  uint64_t hard = 1, soft = 1, secs = 1;
  REQUIRE(respite::parse_output_limit("normal 1mb 2KB 30", hard, soft, secs));
  CHECK(hard == 1u << 20);
  CHECK(soft == 2048);
  CHECK(secs == 30);
  REQUIRE(respite::parse_output_limit("NORMAL 1g 0 0", hard, soft, secs));
  CHECK(hard == 1'000'000'000);
  CHECK(soft == 0);
  REQUIRE(respite::parse_output_limit("64mb 16mb 60", hard, soft, secs));
  CHECK(hard == 64u << 20);
  CHECK(soft == 16u << 20);
  CHECK(secs == 60);
  REQUIRE(respite::parse_output_limit("32mb", hard, soft, secs));
  CHECK(hard == 32u << 20);
  CHECK(soft == 0);
  CHECK(secs == 0);
  for (const char* s : {"normal 1tb 0 0", "normal 1mb -1 0", "normal mb 0 0", "1.5mb",
                        "17179869184gb", "normal 1mb 1mb x", "normal 1mb", "pubsub 32mb 8mb 60"}) {
    INFO(s);
    hard = soft = secs = 7;
    CHECK_FALSE(respite::parse_output_limit(s, hard, soft, secs));
    CHECK(hard == 7);  // left untouched
  }
}

TEST_CASE("config: size settings are read through the same parser") {
  Parsed p = parse({"--cache-max-memory", "512kb", "--cache-max-value", "2K",
                    "--proto-max-bulk-len", "1mb", "--client-query-buffer-limit", "2GB",
                    "--http-max-value", "100b", "--client-output-buffer-limit", "normal 8mb 4m 10"});
  REQUIRE(p.ok);
  CHECK(p.cfg.cache_max_memory == 512 * 1024);
  CHECK(p.cfg.cache_max_value == 2000);
  CHECK(p.cfg.proto_max_bulk_len == 1u << 20);
  CHECK(p.cfg.client_query_buffer_limit == 2ull << 30);
  CHECK(p.cfg.http_max_value == 100);
  CHECK(p.cfg.client_output_buffer_limit == 8u << 20);
  CHECK(p.cfg.client_output_buffer_soft == 4'000'000);
  CHECK(p.cfg.client_output_buffer_soft_seconds == 10);

  for (const char* bad : {"1tb", "", "-1", "17179869184gb"}) {
    INFO(bad);
    Parsed q = parse({"--cache-max-memory", bad});
    CHECK_FALSE(q.ok);
    CHECK(q.exit_code != 0);
  }
}

TEST_CASE("config: cache-coherence is tracking (default) or ttl, nothing else") {
  Parsed d = parse({});
  REQUIRE(d.ok);
  CHECK(d.cfg.cache_coherence == respite::CacheCoherence::Tracking);
  Parsed t = parse({"--cache-coherence", "TTL"});
  REQUIRE(t.ok);
  CHECK(t.cfg.cache_coherence == respite::CacheCoherence::Ttl);
  CHECK(t.cfg.cache_coherence_str == "ttl");
  bool described = false;
  for (const std::string& line : respite::describe_config(t.cfg))
    described |= line == "cache-coherence ttl";
  CHECK(described);
  for (const char* bad : {"", "none", "tracking ttl", "ttl "}) {
    INFO(bad);
    Parsed q = parse({"--cache-coherence", bad});
    CHECK_FALSE(q.ok);
    CHECK(q.exit_code != 0);
  }
}

TEST_CASE("config: --upstream is repeatable only with --cluster, and on the command line replaces the file's") {
  Parsed one = parse({"--upstream", "10.0.0.1:7001"});
  REQUIRE(one.ok);
  CHECK(one.cfg.upstream == "10.0.0.1:7001");
  CHECK(one.cfg.upstream_addrs.size() == 1);

  CHECK_FALSE(parse({"--upstream", "10.0.0.1:7001", "--upstream", "10.0.0.2:7001"}).ok);
  Parsed seeds = parse({"--cluster", "--upstream", "10.0.0.1:7001", "--upstream", "10.0.0.2:7002"});
  REQUIRE(seeds.ok);
  REQUIRE(seeds.cfg.upstream_addrs.size() == 2);
  CHECK(seeds.cfg.upstream_addrs[1] == std::pair<std::string, int>{"10.0.0.2", 7002});
  CHECK(seeds.cfg.upstream == "10.0.0.1:7001");
  CHECK_FALSE(parse({"--cluster", "--replica", "10.0.0.3:7003"}).ok);

  char path[] = "/tmp/respite-config-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text = "upstream 10.0.0.9:6379\n";
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  Parsed file_only = parse({"--config", path});
  Parsed both = parse({"--config", path, "--upstream", "10.0.0.1:7001"});
  unlink(path);
  REQUIRE(file_only.ok);
  CHECK(file_only.cfg.upstream == "10.0.0.9:6379");
  REQUIRE(both.ok);
  CHECK(both.cfg.upstream == "10.0.0.1:7001");
  CHECK(both.cfg.upstream_addrs.size() == 1);
}

TEST_CASE("config: tls settings and flag directives in the file taking yes or no") {
  Parsed none = parse({});
  REQUIRE(none.ok);
  CHECK(none.cfg.tls_port == 0);
  CHECK(none.cfg.tls.auth_clients == "yes");  // Redis's default
  CHECK_FALSE(none.cfg.upstream_tls);
  CHECK_FALSE(parse({"--tls-port", "7001"}).ok);  // no certificate: refused as in Redis
  CHECK_FALSE(parse({"--tls-port", "7001", "--tls-cert-file", "a", "--tls-key-file", "b",
                     "--tls-auth-clients", "maybe"}).ok);
  Parsed ok = parse({"--tls-port", "7001", "--tls-cert-file", "a", "--tls-key-file", "b",
                     "--tls-auth-clients", "OPTIONAL"});
  REQUIRE(ok.ok);
  CHECK(ok.cfg.tls.auth_clients == "optional");

  char path[] = "/tmp/respite-config-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text =
      "upstream-tls yes\ncluster no\ntls-protocols \"TLSv1.2 TLSv1.3\"\n"
      "upstream-tls-server-name redis.internal\n";
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  Parsed file = parse({"--config", path});
  unlink(path);
  REQUIRE(file.ok);
  CHECK(file.cfg.upstream_tls);
  CHECK_FALSE(file.cfg.cluster);
  CHECK(file.cfg.tls.protocols == "TLSv1.2 TLSv1.3");
  CHECK(file.cfg.upstream_tls_settings.server_name == "redis.internal");
}

TEST_CASE("config: rename-command in the file takes two words and the directives after it stay in step") {
  char path[] = "/tmp/respite-config-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text =
      "rename-command FLUSHALL \"\"\nupstream-tls yes\nupstream 10.0.0.9:6379\n"
      "rename-command KEYS MYKEYS\ncluster no\n";
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  Parsed file = parse({"--config", path});
  Parsed both = parse({"--config", path, "--upstream", "10.0.0.1:7001", "--rename-command", "debug",
                       "mydebug"});
  unlink(path);
  REQUIRE(file.ok);
  CHECK(file.cfg.rename_commands ==
        std::vector<std::string>{"FLUSHALL", "", "KEYS", "MYKEYS"});
  CHECK(file.cfg.upstream_tls);
  CHECK(file.cfg.upstream == "10.0.0.9:6379");
  CHECK_FALSE(file.cfg.cluster);
  REQUIRE(both.ok);
  CHECK(both.cfg.upstream == "10.0.0.1:7001");
  REQUIRE(both.cfg.rename_commands.size() == 6);
  CHECK(both.cfg.rename_commands[4] == "debug");
}
