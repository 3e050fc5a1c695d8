// CLUSTER as cluster-aware clients see it through respite in cluster mode (Config::cluster set
// directly: the scripted upstream plays a plain Redis, and nothing here needs the cluster's slot
// map). The expected bytes are redis-server 7.0.15's for a lone master owning every slot, with
// respite's address (127.0.0.1, its port) and its node id where Redis puts its own.
#include <catch2/catch.hpp>

#include <string>

#include "proxy/upstream/cluster_map.h"
#include "tests/component/rig.h"

namespace component {
namespace {

RigOptions cluster_mode(bool cluster = true) {
  RigOptions o;
  o.cache = false;
  o.configure = [cluster](respite::Config& c) { c.cluster = cluster; };
  return o;
}

const std::string kHello3 = "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";

// Redis's CLUSTER INFO body for such a node.
const std::string kInfo =
    "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n"
    "cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:1\r\n"
    "cluster_current_epoch:1\r\ncluster_my_epoch:1\r\ncluster_stats_messages_sent:0\r\n"
    "cluster_stats_messages_received:0\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n";

std::string verbatim(const std::string& s) {
  return "=" + std::to_string(s.size() + 4) + "\r\ntxt:" + s + "\r\n";
}

bool is_node_id(const std::string& s) {
  return s.size() == 40 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

}  // namespace

TEST_CASE("cluster answers: respite is a one-node cluster owning every slot", "[component]") {
  Rig rig(cluster_mode());
  REQUIRE(rig.ready());
  TestClient& c = rig.client();
  const std::string port = std::to_string(rig.srv().port());

  c.command({"CLUSTER", "MYID"});
  REQUIRE(rig.wait_replies(c, 1));
  const std::string id_reply = c.reply(0);
  REQUIRE(id_reply.size() == 5 + 40 + 2);  // $40\r\n<id>\r\n
  const std::string id = id_reply.substr(5, 40);
  CHECK(id_reply == bulk(id));
  CHECK(is_node_id(id));
  const std::string ip = "127.0.0.1";

  // RESP2.
  const std::string slots2 = "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n" + bulk(ip) + ":" + port +
                             "\r\n" + bulk(id) + "*0\r\n";
  const std::string node_fields =
      bulk("id") + bulk(id) + bulk("port") + ":" + port + "\r\n" + bulk("ip") + bulk(ip) +
      bulk("endpoint") + bulk(ip) + bulk("role") + bulk("master") + bulk("replication-offset") +
      ":0\r\n" + bulk("health") + bulk("online");
  const std::string shards2 = "*1\r\n*4\r\n" + bulk("slots") + "*2\r\n:0\r\n:16383\r\n" +
                              bulk("nodes") + "*1\r\n*14\r\n" + node_fields;
  const std::string nodes_line = id + " " + ip + ":" + port + "@" +
                                 std::to_string(rig.srv().port() + 10000) +
                                 " myself,master - 0 0 1 connected 0-16383\n";
  c.command({"CLUSTER", "SLOTS"});
  c.command({"cluster", "shards"});
  c.command({"CLUSTER", "NODES"});
  c.command({"CLUSTER", "INFO"});
  c.command({"CLUSTER", "KEYSLOT", "foo"});
  c.command({"CLUSTER", "KEYSLOT", "{user1000}.following"});
  c.command({"CLUSTER", "MYSHARDID"});
  c.command({"CLUSTER", "LINKS"});
  c.command({"CLUSTER", "REPLICAS", id});
  c.command({"CLUSTER", "MYID"});
  REQUIRE(rig.wait_replies(c, 11));
  CHECK(c.reply(1) == slots2);
  CHECK(c.reply(2) == shards2);
  CHECK(c.reply(3) == bulk(nodes_line));
  CHECK(c.reply(4) == bulk(kInfo));
  CHECK(c.reply(5) == ":12182\r\n");
  CHECK(c.reply(6) == ":" + std::to_string(respite::key_slot("user1000")) + "\r\n");
  const std::string shard_reply = c.reply(7);
  CHECK(shard_reply.size() == 47);
  CHECK(is_node_id(shard_reply.substr(5, 40)));
  CHECK(c.reply(8) == "*0\r\n");
  CHECK(c.reply(9) == "*0\r\n");
  CHECK(c.reply(10) == id_reply);  // the same id every time

  // RESP3: maps and verbatim strings where Redis sends them.
  c.send(kHello3);
  REQUIRE(rig.wait_replies(c, 12));
  c.command({"CLUSTER", "SLOTS"});
  c.command({"CLUSTER", "SHARDS"});
  c.command({"CLUSTER", "NODES"});
  c.command({"CLUSTER", "INFO"});
  REQUIRE(rig.wait_replies(c, 16));
  CHECK(c.reply(12) == "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n" + bulk(ip) + ":" + port + "\r\n" +
                           bulk(id) + "%0\r\n");
  CHECK(c.reply(13) == "*1\r\n%2\r\n" + bulk("slots") + "*2\r\n:0\r\n:16383\r\n" +
                           bulk("nodes") + "*1\r\n%7\r\n" + node_fields);
  CHECK(c.reply(14) == verbatim(nodes_line));
  CHECK(c.reply(15) == verbatim(kInfo));

  // Another connection sees the same node.
  TestClient& d = rig.client();
  d.command({"CLUSTER", "MYID"});
  REQUIRE(rig.wait_replies(d, 1));
  CHECK(d.reply(0) == id_reply);
  CHECK(rig.up().count(Role::Shared, "CLUSTER") == 0);  // nothing reached the upstream
  rig.teardown();
}

TEST_CASE("cluster answers: errors as Redis gives them, refusals, forwarded subcommands",
          "[component]") {
  Rig rig(cluster_mode());
  REQUIRE(rig.ready());
  // COUNTKEYSINSLOT / GETKEYSINSLOT upstream (a pinned connection queues as Redis does).
  rig.up().on("CLUSTER", reply(integer(7)), -1, Role::Shared);
  TestClient& c = rig.client();
  c.command({"CLUSTER"});
  c.command({"CLUSTER", "FOO"});
  c.command({"CLUSTER", "KEYSLOT"});
  c.command({"CLUSTER", "KEYSLOT", "a", "b"});
  c.command({"CLUSTER", "SLOTS", "x"});
  c.command({"CLUSTER", "MYSHARDID", "x"});
  c.command({"CLUSTER", "FAILOVER"});
  c.command({"cluster", "addslots", "1"});
  c.command({"CLUSTER", "RESET"});
  c.command({"CLUSTER", "REPLICAS", "abc"});
  c.command({"CLUSTER", "HELP"});
  c.command({"CLUSTER", "COUNTKEYSINSLOT", "5"});
  REQUIRE(rig.wait_replies(c, 12));
  CHECK(c.reply(0) == "-ERR wrong number of arguments for 'cluster' command\r\n");
  CHECK(c.reply(1) == "-ERR unknown subcommand 'FOO'. Try CLUSTER HELP.\r\n");
  CHECK(c.reply(2) == "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n");
  CHECK(c.reply(3) == "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n");
  CHECK(c.reply(4) == "-ERR wrong number of arguments for 'cluster|slots' command\r\n");
  CHECK(c.reply(5) == "-ERR wrong number of arguments for 'cluster|myshardid' command\r\n");
  CHECK(c.reply(6) ==
        "-ERR CLUSTER FAILOVER is not available through respite (it fronts the cluster)\r\n");
  CHECK(c.reply(7) ==
        "-ERR CLUSTER ADDSLOTS is not available through respite (it fronts the cluster)\r\n");
  CHECK(c.reply(8) ==
        "-ERR CLUSTER RESET is not available through respite (it fronts the cluster)\r\n");
  CHECK(c.reply(9) == "-ERR Unknown node abc\r\n");
  CHECK(c.reply(10).rfind("*", 0) == 0);
  CHECK(c.reply(10).find("+CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n") ==
        5);
  CHECK(c.reply(10).find("+    Prints this help.\r\n") != std::string::npos);
  CHECK(c.reply(11) == integer(7));
  CHECK(rig.up().count(Role::Shared, "CLUSTER") == 1);

  // In a transaction it is queued, not answered, as every local command; with Cluster a
  // keyless command is held until a keyed one names the node, so DISCARD sends nothing.
  c.command({"MULTI"});
  c.command({"CLUSTER", "MYID"});
  c.command({"DISCARD"});
  REQUIRE(rig.wait_replies(c, 15));
  CHECK(c.reply(12) == simple("OK"));
  CHECK(c.reply(13) == simple("QUEUED"));
  CHECK(c.reply(14) == simple("OK"));
  CHECK(rig.up().count(Role::Pinned, "CLUSTER") == 0);
  CHECK(rig.up().count(Role::Shared, "CLUSTER") == 1);
  rig.teardown();
}

TEST_CASE("cluster answers: without --cluster, CLUSTER is forwarded", "[component]") {
  Rig rig(cluster_mode(false));
  REQUIRE(rig.ready());
  rig.up().on("CLUSTER", reply(error("ERR This instance has cluster support disabled")));
  TestClient& c = rig.client();
  c.command({"CLUSTER", "SLOTS"});
  c.command({"CLUSTER", "MYID"});
  REQUIRE(rig.wait_replies(c, 2));
  CHECK(c.reply(0) == "-ERR This instance has cluster support disabled\r\n");
  CHECK(c.reply(1) == "-ERR This instance has cluster support disabled\r\n");
  CHECK(rig.up().count(Role::Shared, "CLUSTER") == 2);
  rig.teardown();
}

}  // namespace component
