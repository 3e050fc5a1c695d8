// CLUSTER, answered by respite in cluster mode (--cluster): respite presents itself as a
// one-node cluster that owns all 16384 slots, so a cluster-aware client (redis-py RedisCluster,
// ioredis Cluster, node-redis createCluster, redis-cli -c) sends everything to respite's port,
// and respite routes each key to the real cluster behind it.
//
// The replies copy what redis-server 7.0.15 sends for a lone master owning every slot (checked
// on loopback, RESP2 and RESP3), with respite's address where Redis's node would put its own:
//   - the ip is the local address of the asking client's connection, so a client is told the
//     address it already reached respite by (a lone Redis node that never met another one
//     reports "" and leaves the client to keep using the address it asked);
//   - the port is respite's RESP port, the same on every loop;
//   - the node id is made once per process, the same on every loop and connection, so a client
//     comparing ids across its connections sees one node.
// Commands that would change a cluster (FAILOVER, MEET, ADDSLOTS, ...) are refused: the cluster
// behind respite is not the node the client sees. COUNTKEYSINSLOT and GETKEYSINSLOT are not
// handled here (their kRoles rows forward them).
#include <fmt/format.h>

#include <cctype>
#include <random>
#include <string>
#include <string_view>

#include "proxy/front/command_table.h"
#include "proxy/front/local_commands.h"
#include "proxy/front/server.h"
#include "proxy/ops/text.h"
#include "proxy/upstream/cluster_map.h"
#include "resp/reply_writer.h"

namespace respite {

namespace {

// 40 lowercase hex characters, as a Redis node id, from the system's random source.
std::string random_node_id() {
  std::random_device rd;
  std::string id;
  id.reserve(40);
  for (int i = 0; i < 40; ++i) id.push_back("0123456789abcdef"[rd() & 0xF]);
  return id;
}

// Both made at the first CLUSTER command and then fixed for the process (a function-local
// static is initialized once even when two loops ask at the same moment).
const std::string& node_id() {
  static const std::string id = random_node_id();
  return id;
}
const std::string& shard_id() {  // CLUSTER MYSHARDID (Redis 7.2)
  static const std::string id = random_node_id();
  return id;
}

// The host part of Stream::local_name() ("ip:port", "[ip6]:port"; "?:0" when unknown, which
// gives "", as Redis reports an address it does not know). An IPv4 client of a dual-stack
// listener is told its IPv4 address, which every client library can dial.
std::string announced_ip(ClientConn* c) {
  std::string name = c->stream_io().local_name();
  size_t colon = name.rfind(':');
  std::string host = colon == std::string::npos ? name : name.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  constexpr std::string_view kMapped = "::ffff:";
  if (host.size() > kMapped.size() && ieq(host.substr(0, kMapped.size()), kMapped) &&
      host.find('.') != std::string::npos)
    host = host.substr(kMapped.size());
  if (host == "?") host.clear();
  return host;
}

struct Self {
  std::string ip;
  int port;
  const std::string& id;
};

// CLUSTER SLOTS: one range, one node [ip, port, id, metadata]; the metadata map (hostname...)
// is empty, as Redis 7.0 sends it for a node without a hostname.
void write_slots(resp::Writer& w, const Self& s) {
  w.array(1);
  w.array(3);
  w.integer(0);
  w.integer(kClusterSlots - 1);
  w.array(4);
  w.bulk(s.ip);
  w.integer(s.port);
  w.bulk(s.id);
  w.map(0);
}

// CLUSTER SHARDS: maps in RESP3, flat key/value arrays in RESP2, fields in Redis 7.0's order.
void write_shards(resp::Writer& w, const Self& s) {
  w.array(1);
  w.map(2);
  w.bulk("slots");
  w.array(2);
  w.integer(0);
  w.integer(kClusterSlots - 1);
  w.bulk("nodes");
  w.array(1);
  w.map(7);
  w.bulk("id");
  w.bulk(s.id);
  w.bulk("port");
  w.integer(s.port);
  w.bulk("ip");
  w.bulk(s.ip);
  w.bulk("endpoint");
  w.bulk(s.ip);
  w.bulk("role");
  w.bulk("master");
  w.bulk("replication-offset");
  w.integer(0);
  w.bulk("health");
  w.bulk("online");
}

// CLUSTER NODES' one line. Redis prints an IPv6 address without brackets here, and the bus port
// as port + 10000 (the default cluster-port); epoch 1 as a cluster made by redis-cli --cluster.
std::string nodes_text(const Self& s) {
  return fmt::format("{} {}:{}@{} myself,master - 0 0 1 connected 0-{}\n", s.id, s.ip, s.port,
                     s.port + 10000, kClusterSlots - 1);
}

// CLUSTER INFO of a lone node: the fields and order of Redis 7.0 (the per-message-type counters
// appear only for types sent or received, none here).
constexpr std::string_view kInfo =
    "cluster_state:ok\r\n"
    "cluster_slots_assigned:16384\r\n"
    "cluster_slots_ok:16384\r\n"
    "cluster_slots_pfail:0\r\n"
    "cluster_slots_fail:0\r\n"
    "cluster_known_nodes:1\r\n"
    "cluster_size:1\r\n"
    "cluster_current_epoch:1\r\n"
    "cluster_my_epoch:1\r\n"
    "cluster_stats_messages_sent:0\r\n"
    "cluster_stats_messages_received:0\r\n"
    "total_cluster_links_buffer_limit_exceeded:0\r\n";

// CLUSTER HELP: what respite answers, in the layout of Redis's help replies.
constexpr std::string_view kHelp[] = {
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot> (asked of the cluster).",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored in <slot> (asked of the cluster).",
    "INFO",
    "    Return information about the cluster, as seen through respite.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "LINKS",
    "    Return the node's links to its peers (none: respite is the only node shown).",
    "MYID",
    "    Return the node id.",
    "MYSHARDID",
    "    Return the shard id.",
    "NODES",
    "    Return the cluster configuration: respite, owning every slot.",
    "REPLICAS <node-id>",
    "    Return <node-id> replicas.",
    "SHARDS",
    "    Return slot ranges and the nodes serving them: respite, owning every slot.",
    "SLOTS",
    "    Return slot range mappings: respite, owning every slot.",
    "Commands that change the cluster (ADDSLOTS, FAILOVER, MEET, RESET, ...) are refused:",
    "    respite fronts the cluster and manages its connections to it itself.",
    "HELP",
    "    Prints this help.",
};

// The subcommands that only report.
enum class Sub : uint8_t { Slots, Shards, Nodes, Info, Myid, Myshardid, Keyslot, Links,
                           Replicas, CountFailureReports, Help, Refused, Unknown };

struct SubName {
  std::string_view name;  // as command_table.inc names it
  Sub sub;
};
constexpr SubName kSubs[] = {
    {"cluster|slots", Sub::Slots},
    {"cluster|shards", Sub::Shards},
    {"cluster|nodes", Sub::Nodes},
    {"cluster|info", Sub::Info},
    {"cluster|myid", Sub::Myid},
    {"cluster|keyslot", Sub::Keyslot},
    {"cluster|links", Sub::Links},
    {"cluster|replicas", Sub::Replicas},
    {"cluster|slaves", Sub::Replicas},
    {"cluster|count-failure-reports", Sub::CountFailureReports},
    {"cluster|help", Sub::Help},
};

Sub classify(const CommandInfo& ci, std::string_view sub) {
  for (const SubName& s : kSubs)
    if (ci.name == s.name) return s.sub;
  // Redis 7.2's, absent from the 7.0 table: the lookup returned the container.
  if (ci.name == "cluster") return ieq(sub, "myshardid") ? Sub::Myshardid : Sub::Unknown;
  return Sub::Refused;  // every other subcommand of the table changes the cluster
}

}  // namespace

void cluster_command(Server& srv, ClientConn* c, const resp::Frame& f) {
  const CommandInfo* ci = lookup_command(f);
  if (ci == nullptr) return;  // not reached: dispatch found the role in this entry
  std::string_view sub = f.argc() >= 2 ? f.arg(1) : std::string_view();
  Sub which = classify(*ci, sub);
  // As Redis: arity first (the container's for "CLUSTER" alone), then the subcommand.
  if (which == Sub::Myshardid) {
    if (f.argc() != 2) return arity_error(c, "cluster|myshardid");
  } else if (!arity_ok(*ci, f.argc())) {
    return arity_error(c, ci->name);
  }
  if (which == Sub::Unknown)
    return error(c, fmt::format("ERR unknown subcommand '{}'. Try CLUSTER HELP.",
                                sub.substr(0, 128)));
  if (which == Sub::Refused)
    return error(c, fmt::format("ERR CLUSTER {} is not available through respite (it fronts "
                                "the cluster)",
                                upper(ci->name.substr(ci->name.find('|') + 1))));

  const Self self{announced_ip(c), srv.port(), node_id()};
  resp::Writer w(c->immediate_reply(), c->proto);
  switch (which) {
    case Sub::Slots:
      return write_slots(w, self);
    case Sub::Shards:
      return write_shards(w, self);
    case Sub::Nodes:
      return w.verbatim("txt", nodes_text(self));
    case Sub::Info:
      return w.verbatim("txt", kInfo);
    case Sub::Myid:
      return w.bulk(self.id);
    case Sub::Myshardid:
      return w.bulk(shard_id());
    case Sub::Keyslot:
      return w.integer(key_slot(f.arg(2)));
    case Sub::Links:
      return w.array(0);
    case Sub::Replicas:
    case Sub::CountFailureReports:
      // Only respite's own id names a node; it has no replicas and no failure reports.
      if (f.arg(2) != self.id) return w.error(fmt::format("ERR Unknown node {}", f.arg(2)));
      if (which == Sub::Replicas) return w.array(0);
      return w.integer(0);
    case Sub::Help:
      w.array(std::size(kHelp));
      for (std::string_view line : kHelp) w.simple(line);
      return;
    case Sub::Refused:
    case Sub::Unknown:
      return;
  }
}

}  // namespace respite
