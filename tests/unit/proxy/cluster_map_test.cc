// Key slots (proxy/upstream/cluster_map.cc) and the slot map read from CLUSTER SLOTS / SHARDS
// replies (cluster_parse.cc). The replies are RESP bytes decoded by hiredis's own reader, as
// respite's upstream connection decodes them; the "real" fixtures are byte for byte what
// redis-server 7.0.15 sent on loopback (three masters, one replica; then the same cluster after
// its first master was killed and the replica took over).
#include <catch2/catch.hpp>
#include <hiredis/hiredis.h>

#include <initializer_list>
#include <memory>
#include <string>

#include "proxy/upstream/cluster_map.h"

using respite::ClusterMap;
using respite::key_slot;
using respite::kNoShard;

namespace {

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

// One reply decoded from `bytes`, which must hold exactly one.
ReplyPtr decode(const std::string& bytes) {
  redisReader* rd = redisReaderCreate();
  REQUIRE(rd != nullptr);
  REQUIRE(redisReaderFeed(rd, bytes.data(), bytes.size()) == REDIS_OK);
  void* out = nullptr;
  int rc = redisReaderGetReply(rd, &out);
  redisReaderFree(rd);
  REQUIRE(rc == REDIS_OK);
  REQUIRE(out != nullptr);
  return ReplyPtr(static_cast<redisReply*>(out));
}

// RESP2 builders for the hand-made replies.
std::string B(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }
std::string I(long long n) { return ":" + std::to_string(n) + "\r\n"; }
std::string A(std::initializer_list<std::string> items) {
  std::string out = "*" + std::to_string(items.size()) + "\r\n";
  for (const std::string& i : items) out += i;
  return out;
}

// A CLUSTER SHARDS node as Redis 7.0 lays it out.
std::string shards_node(const std::string& id, int port, const std::string& ip,
                        const std::string& role, const std::string& health,
                        const std::string& endpoint = "") {
  return A({B("id"), B(id), B("port"), I(port), B("ip"), B(ip), B("endpoint"),
            B(endpoint.empty() ? ip : endpoint), B("role"), B(role), B("replication-offset"),
            I(0), B("health"), B(health)});
}

std::string id40(char c) { return std::string(40, c); }

std::string parse_slots(const std::string& bytes, ClusterMap& m,
                        const std::string& host = "10.0.0.9") {
  return respite::parse_cluster_slots(decode(bytes).get(), host, m);
}
std::string parse_shards(const std::string& bytes, ClusterMap& m,
                         const std::string& host = "10.0.0.9") {
  return respite::parse_cluster_shards(decode(bytes).get(), host, m);
}

const std::string kIdA = "0c49f59d4bb0a685d30712df849dfc9e176a23cc";
const std::string kIdB = "2879df80c788614b716948050cabb7ffffdf376c";
const std::string kIdC = "becfdcae0ae27d0204bf9393d8d431d5c10a7f55";
const std::string kIdR = "9218c6f61ecaf7f0945922652ffe6fd15e543d51";

// redis-server 7.0.15, CLUSTER SLOTS in RESP2: 27104 replicates 27101; the 4th element of each
// node is the 7.0 metadata map, empty (no hostname).
const std::string kRealSlots =
    "*3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:27101\r\n$40\r\n" + kIdA +
    "\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n:27104\r\n$40\r\n" + kIdR +
    "\r\n*0\r\n*3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:27102\r\n$40\r\n" + kIdB +
    "\r\n*0\r\n*3\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:27103\r\n$40\r\n" + kIdC +
    "\r\n*0\r\n";

}  // namespace

TEST_CASE("key_slot: Redis's documented values and hash tags", "[cluster]") {
  CHECK(respite::crc16("123456789") == 0x31C3);
  CHECK(key_slot("123456789") == (0x31C3 & 16383));
  CHECK(key_slot("foo") == 12182);
  CHECK(key_slot("bar") == 5061);
  CHECK(key_slot("{user1000}.following") == key_slot("{user1000}.followers"));
  CHECK(key_slot("{user1000}.following") == key_slot("user1000"));
  CHECK(key_slot("foo{}{bar}") == (respite::crc16("foo{}{bar}") & 16383));  // empty tag: all
  CHECK(key_slot("foo{{bar}}zap") == key_slot("{bar"));
  CHECK(key_slot("foo{bar}{zap}") == key_slot("bar"));
  CHECK(key_slot("{a}b") == 15495);  // redis-server 7.0.15's CLUSTER KEYSLOT
  CHECK(key_slot("") == 0);
  CHECK(key_slot("{") == key_slot(std::string_view("{")));
}

TEST_CASE("CLUSTER SLOTS: a real reply with a replica", "[cluster]") {
  ClusterMap m;
  REQUIRE(parse_slots(kRealSlots, m) == "");
  REQUIRE(m.shards.size() == 3);
  CHECK(m.slots_covered() == 16384);
  const auto& a = m.shards[0];
  CHECK(a.master.name() == "127.0.0.1:27101");
  CHECK(a.master.id == kIdA);
  REQUIRE(a.replicas.size() == 1);
  CHECK(a.replicas[0].name() == "127.0.0.1:27104");
  CHECK(a.replicas[0].id == kIdR);
  CHECK(m.owner[0] == 0);
  CHECK(m.owner[5460] == 0);
  CHECK(m.owner[5461] == 1);
  CHECK(m.owner[16383] == 2);
  CHECK(m.shard_of("127.0.0.1:27103") == 2);
  CHECK(m.owner[key_slot("foo")] == 2);  // 12182
}

TEST_CASE("CLUSTER SLOTS: a master's separate ranges make one shard", "[cluster]") {
  // A owns 0-99 and 200-16383, B 100-199; A's replica is listed with both of A's entries.
  std::string a = A({B("10.0.0.1"), I(7000), B(id40('a'))});
  std::string ar = A({B("10.0.0.2"), I(7001), B(id40('c'))});
  std::string b = A({B("10.0.0.3"), I(7000), B(id40('b')), A({B("hostname"), B("b.example")})});
  std::string bytes = A({A({I(0), I(99), a, ar}), A({I(100), I(199), b}),
                         A({I(200), I(16383), a, ar})});
  ClusterMap m;
  REQUIRE(parse_slots(bytes, m) == "");
  REQUIRE(m.shards.size() == 2);
  CHECK(m.shards[0].master.name() == "10.0.0.1:7000");
  CHECK(m.shards[0].ranges.size() == 2);
  CHECK(m.shards[0].replicas.size() == 1);  // not twice
  CHECK(m.shards[1].master.id == id40('b'));
  CHECK(m.owner[99] == 0);
  CHECK(m.owner[100] == 1);
  CHECK(m.owner[200] == 0);
  CHECK(m.slots_covered() == 16384);
}

TEST_CASE("CLUSTER SLOTS: unknown endpoints, old replies without ids, partial coverage",
          "[cluster]") {
  // "" (a lone node that never learned its address), "?" and nil (unknown-endpoint) all mean
  // "the node you asked"; Redis 3 gives no ids.
  std::string bytes = A({A({I(0), I(9), A({B(""), I(7000), B(id40('a')), A({})})}),
                         A({I(10), I(19), A({B("?"), I(7001)})}),
                         A({I(20), I(29), A({"$-1\r\n", I(7002)})})});
  ClusterMap m;
  REQUIRE(parse_slots(bytes, m, "seed.example") == "");
  REQUIRE(m.shards.size() == 3);
  CHECK(m.shards[0].master.name() == "seed.example:7000");
  CHECK(m.shards[1].master.name() == "seed.example:7001");
  CHECK(m.shards[1].master.id.empty());
  CHECK(m.shards[2].master.name() == "seed.example:7002");
  CHECK(m.slots_covered() == 30);
  CHECK(m.owner[30] == kNoShard);
  // An IPv6 master: named as MOVED names it.
  ClusterMap v6;
  REQUIRE(parse_slots(A({A({I(0), I(16383), A({B("::1"), I(7000)})})}), v6) == "");
  CHECK(v6.shards[0].master.name() == "[::1]:7000");
}

TEST_CASE("CLUSTER SHARDS: a real reply after a failover", "[cluster]") {
  // redis-server 7.0.15 after 27101 was killed: 27104 took its slots and became a master in a
  // shard of its own; 27101 stays listed, slotless, health "fail".
  auto node = [](const std::string& id, int port, const std::string& role,
                 const std::string& health, int offset) {
    return "*14\r\n$2\r\nid\r\n$40\r\n" + id + "\r\n$4\r\nport\r\n:" + std::to_string(port) +
           "\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$" +
           std::to_string(role.size()) + "\r\n" + role + "\r\n$18\r\nreplication-offset\r\n:" +
           std::to_string(offset) + "\r\n$6\r\nhealth\r\n$" + std::to_string(health.size()) +
           "\r\n" + health + "\r\n";
  };
  std::string bytes =
      "*4\r\n*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*1\r\n" +
      node(kIdB, 27102, "master", "online", 0) +
      "*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n" + node(kIdA, 27101, "master", "fail", 112) +
      "*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*1\r\n" +
      node(kIdR, 27104, "master", "online", 112) +
      "*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n" +
      node(kIdC, 27103, "master", "online", 0);
  ClusterMap m;
  REQUIRE(parse_shards(bytes, m) == "");
  REQUIRE(m.shards.size() == 3);
  CHECK(m.slots_covered() == 16384);
  CHECK(m.shard_of("127.0.0.1:27101") == kNoShard);
  CHECK(m.owner[0] == m.shard_of("127.0.0.1:27104"));
  CHECK(m.shards[m.owner[0]].master.id == kIdR);
  CHECK(m.owner[16383] == m.shard_of("127.0.0.1:27103"));
}

TEST_CASE("CLUSTER SHARDS: failed masters, replicas by health, endpoints", "[cluster]") {
  std::string bytes = A({
      // Mid-failover: the old master failed, the new one serves; one replica still loading.
      A({B("slots"), A({I(0), I(99), I(200), I(299)}), B("nodes"),
         A({shards_node(id40('1'), 7000, "10.0.0.1", "master", "failed"),
            shards_node(id40('2'), 7000, "10.0.0.2", "master", "online"),
            shards_node(id40('3'), 7000, "10.0.0.3", "replica", "online"),
            shards_node(id40('4'), 7000, "10.0.0.4", "replica", "loading"),
            shards_node(id40('5'), 7000, "10.0.0.5", "replica", "failed")})}),
      // Slots but only a failed master: left out.
      A({B("slots"), A({I(100), I(199)}), B("nodes"),
         A({shards_node(id40('6'), 7000, "10.0.0.6", "master", "fail")})}),
      // Unknown ip: the endpoint; then neither: the host asked. Unknown keys are skipped.
      A({B("shard-id"), B(id40('f')), B("slots"), A({I(300), I(399)}), B("nodes"),
         A({shards_node(id40('7'), 7001, "?", "master", "online", "node7.example"),
            shards_node(id40('8'), 7002, "", "replica", "online", "?")})}),
      // No slots: left out.
      A({B("slots"), A({}), B("nodes"),
         A({shards_node(id40('9'), 7000, "10.0.0.9", "master", "online")})}),
  });
  ClusterMap m;
  REQUIRE(parse_shards(bytes, m, "seed.example") == "");
  REQUIRE(m.shards.size() == 2);
  const auto& s0 = m.shards[0];
  CHECK(s0.master.name() == "10.0.0.2:7000");
  CHECK(s0.master.id == id40('2'));
  REQUIRE(s0.replicas.size() == 1);
  CHECK(s0.replicas[0].name() == "10.0.0.3:7000");
  CHECK(s0.ranges.size() == 2);
  const auto& s1 = m.shards[1];
  CHECK(s1.master.name() == "node7.example:7001");
  REQUIRE(s1.replicas.size() == 1);
  CHECK(s1.replicas[0].name() == "seed.example:7002");
  CHECK(m.owner[150] == kNoShard);
  CHECK(m.owner[250] == 0);
  CHECK(m.owner[350] == 1);
  CHECK(m.slots_covered() == 300);
}

TEST_CASE("CLUSTER SLOTS: malformed replies give an error and leave the map", "[cluster]") {
  std::string node = A({B("10.0.0.1"), I(7000), B(id40('a'))});
  const char* const kCases[][2] = {
      {"error reply", "-ERR This instance has cluster support disabled\r\n"},
      {"not an array", "+OK\r\n"},
      {"nil", "$-1\r\n"},
      {"entry not an array", "*1\r\n:1\r\n"},
      {"entry too short", "*1\r\n*2\r\n:0\r\n:1\r\n"},
  };
  for (const auto& c : kCases) {
    SECTION(c[0]) {
      ClusterMap m;
      m.owner[7] = 3;
      CHECK(parse_slots(c[1], m) != "");
      CHECK(m.owner[7] == 3);  // untouched
    }
  }
  std::string bad[] = {
      A({A({B("0"), I(1), node})}),                            // start not an integer
      A({A({I(0), I(16384), node})}),                          // past the last slot
      A({A({I(-1), I(5), node})}),                             // negative
      A({A({I(9), I(5), node})}),                              // start after end
      A({A({I(0), I(5), A({B("10.0.0.1")})})}),                // node without port
      A({A({I(0), I(5), A({B("10.0.0.1"), B("7000")})})}),     // port as a string
      A({A({I(0), I(5), A({B("10.0.0.1"), I(70000)})})}),      // port out of range
      A({A({I(0), I(5), A({I(1), I(7000)})})}),                // endpoint an integer
      A({A({I(0), I(5), A({B("h"), I(7000), I(3)})})}),        // id an integer
      A({A({I(0), I(5), node, I(4)})}),                        // replica not an array
      A({A({I(0), I(5), node}), A({I(5), I(9), A({B("h2"), I(1)})})}),  // slot 5 twice
      A({A({I(0), I(5), A({B(""), I(7000)})})}),               // no endpoint, no default
  };
  for (size_t i = 0; i < std::size(bad); ++i) {
    CAPTURE(i);
    ClusterMap m;
    CHECK(respite::parse_cluster_slots(decode(bad[i]).get(), i + 1 == std::size(bad) ? "" : "h",
                                       m) != "");
    CHECK(m.shards.empty());
  }
  CHECK(respite::parse_cluster_slots(nullptr, "h", *std::make_unique<ClusterMap>()) != "");
}

TEST_CASE("CLUSTER SHARDS: malformed replies give an error", "[cluster]") {
  std::string good = shards_node(id40('a'), 7000, "10.0.0.1", "master", "online");
  auto shard = [](const std::string& slots, const std::string& nodes) {
    return A({A({B("slots"), slots, B("nodes"), nodes})});
  };
  std::string bad[] = {
      "-ERR unknown subcommand 'shards'. Try CLUSTER HELP.\r\n",  // Redis 6
      ":3\r\n",
      A({I(1)}),                                              // shard not an array
      A({A({B("slots"), A({})})}),                            // no nodes
      A({A({B("slots"), A({}), B("nodes")})}),                // odd key/value count
      A({A({I(1), A({}), B("nodes"), A({})})}),               // key not a string
      shard(A({I(0)}), A({good})),                            // odd slot list
      shard(A({I(0), I(16384)}), A({good})),                  // slot out of range
      shard(A({I(5), I(4)}), A({good})),                      // start after end
      shard(A({B("0"), B("1")}), A({good})),                  // slots as strings
      shard(B("0-1"), A({good})),                             // slots not an array
      shard(A({I(0), I(1)}), B("nodes")),                     // nodes not an array
      shard(A({I(0), I(1)}), A({I(1)})),                      // node not an array
      shard(A({I(0), I(1)}), A({A({B("id")})})),              // node: odd key/value count
      shard(A({I(0), I(1)}),                                  // node without a port
            A({A({B("id"), B("x"), B("ip"), B("h"), B("role"), B("master"), B("health"),
                  B("online")})})),
      shard(A({I(0), I(1)}),                                  // port as a string
            A({A({B("id"), B("x"), B("port"), B("7000"), B("ip"), B("h"), B("role"),
                  B("master"), B("health"), B("online")})})),
      shard(A({I(0), I(1)}),                                  // role unknown
            A({shards_node(id40('a'), 7000, "10.0.0.1", "primary", "online")})),
      shard(A({I(0), I(1)}),                                  // health an integer
            A({A({B("id"), B("x"), B("port"), I(7000), B("ip"), B("h"), B("role"),
                  B("master"), B("health"), I(1)})})),
      A({A({B("slots"), A({I(0), I(9)}), B("nodes"), A({good})}),  // slot 5 twice
         A({B("slots"), A({I(5), I(5)}), B("nodes"),
            A({shards_node(id40('b'), 7000, "10.0.0.2", "master", "online")})})}),
  };
  for (size_t i = 0; i < std::size(bad); ++i) {
    CAPTURE(i);
    ClusterMap m;
    CHECK(parse_shards(bad[i], m) != "");
    CHECK(m.shards.empty());
  }
}

TEST_CASE("CLUSTER SLOTS: more shards than slots is refused before indexing", "[cluster]") {
  // 20000 masters each claiming one slot: the shard numbers would pass 0xFFFF-1 in a bigger
  // reply, so the count is refused outright (index() would also find slots claimed twice).
  std::string many = "*20000\r\n";
  for (int i = 0; i < 20000; ++i)
    many += A({I(i % 16384), I(i % 16384), A({B("h"), I(i % 65535 + 1)})});
  ClusterMap m;
  std::string e = parse_slots(many, m);
  CHECK(e.find("20000 shards") != std::string::npos);
  CHECK(m.shards.empty());
}

TEST_CASE("CLUSTER NODES: a master's migrating/importing markers and unclaimed slots", "[cluster]") {
  ClusterMap m;
  m.shards.resize(2);
  m.shards[0].ranges = {{0, 99}};
  m.shards[1].ranges = {{100, 199}};
  REQUIRE(m.index());
  const std::string nodes =
      "bbb 127.0.0.1:7001@17001 master - 0 1 2 connected 100-199\n"
      "aaa 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-49 51-98 "
      "[7->-bbb] [150-<-bbb]\n";
  std::bitset<respite::kClusterSlots> moving;
  CHECK(respite::mark_moving_slots(nodes, m, 0, moving));
  CHECK(moving.test(7));     // migrating
  CHECK(moving.test(150));   // importing
  CHECK(moving.test(50));    // the map gives it, the master does not claim it
  CHECK(moving.test(99));
  CHECK_FALSE(moving.test(0));
  CHECK_FALSE(moving.test(98));
  CHECK_FALSE(moving.test(120));
  CHECK(moving.count() == 4);
  std::bitset<respite::kClusterSlots> none;
  CHECK_FALSE(respite::mark_moving_slots("bbb 127.0.0.1:7001@17001 master - 0 1 2 connected\n",
                                         m, 0, none));
  CHECK(none.none());
}
