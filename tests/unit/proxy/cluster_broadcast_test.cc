#include <catch2/catch.hpp>

#include "proxy/front/cluster_broadcast.h"

using respite::merge_info;

TEST_CASE("cluster INFO: counts summed over the masters, settings and the server's own kept",
          "[cluster]") {
  std::string a =
      "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:10\r\n\r\n"
      "# Clients\r\nconnected_clients:3\r\nblocked_clients:0\r\nmaxclients:10000\r\n\r\n"
      "# Stats\r\ntotal_commands_processed:100\r\n\r\n"
      "# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=300\r\n";
  std::string b =
      "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:20\r\n\r\n"
      "# Clients\r\nconnected_clients:4\r\nblocked_clients:1\r\nmaxclients:10000\r\n\r\n"
      "# Stats\r\ntotal_commands_processed:50\r\n\r\n"
      "# Keyspace\r\ndb0:keys=7,expires=0,avg_ttl=0\r\n";
  std::string m = merge_info({a, b});
  CHECK(m.find("uptime_in_seconds:10\r\n") != std::string::npos);
  CHECK(m.find("connected_clients:7\r\n") != std::string::npos);
  CHECK(m.find("blocked_clients:1\r\n") != std::string::npos);
  CHECK(m.find("maxclients:10000\r\n") != std::string::npos);
  CHECK(m.find("total_commands_processed:150\r\n") != std::string::npos);
  CHECK(m.find("db0:keys=12,expires=1,avg_ttl=300\r\n") != std::string::npos);
  CHECK(m.find("# Clients\r\n") != std::string::npos);
  CHECK(m.ends_with("avg_ttl=300\r\n"));
}

TEST_CASE("cluster INFO: a keyspace line only another master has is added", "[cluster]") {
  std::string a = "# Keyspace\r\n";
  std::string b = "# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n";
  CHECK(merge_info({a, b}) == "# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n");
  CHECK(merge_info({b, a}) == b);
  CHECK(merge_info({}) == "");
}
