// Reading a cluster's slot map from CLUSTER SHARDS (Redis 7.0+) or CLUSTER SLOTS replies.
//
// The replies are RESP2. hiredis 0.14 has no map, set or verbatim types, so respite asks for
// the map on a RESP2 connection and a RESP3 reply never reaches these functions; a map arrives
// as a flat key/value array (CLUSTER SHARDS' shards and nodes, CLUSTER SLOTS' per-node metadata
// in 7.0+).
//
// Everything in a reply comes from a peer and is checked before use: types, field presence,
// slot bounds. Loops run over the elements the reply holds (r->elements), never over a count
// the peer declared in some field, and nothing is sized from such a count. A reply that cannot
// be read whole gives an error text and leaves `out` as it was: a half-read map would send keys
// to the wrong node.
#include <fmt/format.h>

#include <string_view>
#include <utility>

#include "proxy/upstream/cluster_map.h"

namespace respite {

namespace {

constexpr size_t kMaxQuoted = 64;  // of a peer's text repeated in an error

bool is_text(const redisReply* r) {
  return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

std::string_view text_of(const redisReply* r) { return std::string_view(r->str, r->len); }

// A peer's text in an error message: cut, and without control bytes (it ends up in logs).
std::string quoted(std::string_view s) {
  std::string q(s.substr(0, kMaxQuoted));
  for (char& ch : q)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  return q;
}

// The reply as a whole: an array, or the node's error (e.g. SHARDS on Redis < 7.0, or cluster
// support disabled).
std::string check_top(const redisReply* r, std::string_view what) {
  if (r == nullptr) return fmt::format("{}: no reply", what);
  if (r->type == REDIS_REPLY_ERROR) return fmt::format("{}: {}", what, quoted(text_of(r)));
  if (r->type != REDIS_REPLY_ARRAY) return fmt::format("{}: the reply is not an array", what);
  return "";
}

// Redis prints an endpoint it does not know as "?" (or leaves it empty): then the node is
// reached at the address respite asked.
bool unknown_endpoint(std::string_view h) { return h.empty() || h == "?"; }

bool valid_port(long long p) { return p > 0 && p <= 65535; }

// One slot range, both ends inclusive.
std::string read_range(const redisReply* lo, const redisReply* hi, ClusterShard& s) {
  if (lo == nullptr || hi == nullptr || lo->type != REDIS_REPLY_INTEGER ||
      hi->type != REDIS_REPLY_INTEGER)
    return "a slot is not an integer";
  if (lo->integer < 0 || hi->integer < 0 || lo->integer >= kClusterSlots ||
      hi->integer >= kClusterSlots)
    return fmt::format("slot range {}-{} is outside 0-{}", lo->integer, hi->integer,
                       kClusterSlots - 1);
  if (lo->integer > hi->integer)
    return fmt::format("slot range {}-{} starts after its end", lo->integer, hi->integer);
  s.ranges.emplace_back(static_cast<uint16_t>(lo->integer), static_cast<uint16_t>(hi->integer));
  return "";
}

// Adds `s` to `m`, or its ranges and new replicas to the shard of the same master: CLUSTER SLOTS
// lists each range of a master's as its own entry.
void add_shard(ClusterMap& m, ClusterShard&& s) {
  uint16_t at = m.shard_of(s.master.name());
  if (at == kNoShard) {
    m.shards.push_back(std::move(s));
    return;
  }
  ClusterShard& into = m.shards[at];
  into.ranges.insert(into.ranges.end(), s.ranges.begin(), s.ranges.end());
  for (ClusterNodeAddr& r : s.replicas) {
    bool known = false;
    for (const ClusterNodeAddr& k : into.replicas) known = known || k.name() == r.name();
    if (!known) into.replicas.push_back(std::move(r));
  }
  if (into.master.id.empty()) into.master.id = std::move(s.master.id);
}

// Indexes the parsed map and hands it over; `out` changes only here.
std::string finish(ClusterMap& m, std::string_view what, ClusterMap& out) {
  // Each shard kept serves at least one slot, and index() numbers shards in 16 bits: more
  // shards than slots means ranges overlap, which index() would report, but only after the
  // numbering had wrapped.
  if (m.shards.size() > kClusterSlots)
    return fmt::format("{}: {} shards for {} slots", what, m.shards.size(), kClusterSlots);
  if (!m.index()) return fmt::format("{}: a slot is claimed by two shards", what);
  out = std::move(m);
  return "";
}

// ---- CLUSTER SLOTS ----
//
// [[start, end, master, replica...], ...]; a node is [endpoint, port, id, metadata...] with the
// id from Redis 4.0 and a metadata map (hostname...) from 7.0, both optional here. The endpoint
// is nil when the node's preferred endpoint type is unknown-endpoint ("the one you asked").

std::string read_slots_node(const redisReply* r, const std::string& default_host,
                            ClusterNodeAddr& n) {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements < 2)
    return "a node is not an [endpoint, port, ...] array";
  const redisReply* host = r->element[0];
  const redisReply* port = r->element[1];
  if (host->type == REDIS_REPLY_NIL) {
    n.host = default_host;
  } else if (is_text(host)) {
    n.host = unknown_endpoint(text_of(host)) ? default_host : std::string(text_of(host));
  } else {
    return "a node's endpoint is not a string";
  }
  if (port->type != REDIS_REPLY_INTEGER || !valid_port(port->integer))
    return "a node's port is not a port number";
  n.port = static_cast<int>(port->integer);
  if (r->elements >= 3) {
    if (!is_text(r->element[2])) return "a node's id is not a string";
    n.id = std::string(text_of(r->element[2]));
  }
  if (n.host.empty()) return "a node has no endpoint";
  return "";
}

}  // namespace

std::string parse_cluster_slots(const redisReply* r, const std::string& default_host,
                                ClusterMap& out) {
  constexpr std::string_view kWhat = "CLUSTER SLOTS";
  if (std::string e = check_top(r, kWhat); !e.empty()) return e;
  ClusterMap m;
  for (size_t i = 0; i < r->elements; ++i) {
    const redisReply* entry = r->element[i];
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 3)
      return fmt::format("{}: entry {} is not a [start, end, master, ...] array", kWhat, i);
    ClusterShard s;
    std::string e = read_range(entry->element[0], entry->element[1], s);
    if (e.empty()) e = read_slots_node(entry->element[2], default_host, s.master);
    for (size_t k = 3; e.empty() && k < entry->elements; ++k) {
      ClusterNodeAddr rep;
      e = read_slots_node(entry->element[k], default_host, rep);
      if (e.empty()) s.replicas.push_back(std::move(rep));
    }
    if (!e.empty()) return fmt::format("{}: entry {}: {}", kWhat, i, e);
    add_shard(m, std::move(s));
  }
  return finish(m, kWhat, out);
}

// ---- CLUSTER SHARDS ----
//
// [shard, ...]; a shard is {"slots": [start, end, start, end, ...], "nodes": [node, ...]} and a
// node {"id", "port", "tls-port"?, "ip", "endpoint", "hostname"?, "role", "replication-offset",
// "health"}, each map a flat key/value array in RESP2. Keys respite does not use are skipped,
// whatever their type, so a later Redis may add fields.

namespace {

struct ShardsNode {
  ClusterNodeAddr addr;
  bool master = false;
  std::string health;
};

std::string read_shards_node(const redisReply* r, const std::string& default_host,
                             ShardsNode& n, bool tls) {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
    return "a node is not a key/value array";
  std::string_view ip, endpoint, role;
  bool has_id = false, has_port = false, has_role = false, has_health = false;
  int tls_port = 0;
  for (size_t k = 0; k < r->elements; k += 2) {
    const redisReply* key = r->element[k];
    const redisReply* v = r->element[k + 1];
    if (!is_text(key)) return "a node's field name is not a string";
    std::string_view name = text_of(key);
    if (name == "id" || name == "ip" || name == "endpoint" || name == "role" ||
        name == "health") {
      if (!is_text(v)) return fmt::format("a node's \"{}\" is not a string", name);
      std::string_view t = text_of(v);
      if (name == "id") n.addr.id = std::string(t), has_id = true;
      else if (name == "ip") ip = t;
      else if (name == "endpoint") endpoint = t;
      else if (name == "role") role = t, has_role = true;
      else n.health = std::string(t), has_health = true;
    } else if (name == "port") {
      if (v->type != REDIS_REPLY_INTEGER || !valid_port(v->integer))
        return "a node's \"port\" is not a port number";
      n.addr.port = static_cast<int>(v->integer);
      has_port = true;
    } else if (name == "tls-port") {
      if (v->type != REDIS_REPLY_INTEGER || !valid_port(v->integer))
        return "a node's \"tls-port\" is not a port number";
      tls_port = static_cast<int>(v->integer);
    }
  }
  // With --upstream-tls the node's TLS port is the one to use (Redis lists it beside "port"
  // with tls-cluster, or alone when the node has no plain port); without, a node reachable
  // only by TLS is refused.
  if (tls && tls_port) {
    n.addr.port = tls_port;
    has_port = true;
  }
  if (!has_id || !has_port || !has_role || !has_health)
    return "a node lacks one of \"id\", \"port\", \"role\", \"health\"";
  if (role != "master" && role != "replica")
    return fmt::format("a node's role \"{}\" is neither master nor replica", quoted(role));
  n.master = role == "master";
  if (!unknown_endpoint(ip)) n.addr.host = std::string(ip);
  else if (!unknown_endpoint(endpoint)) n.addr.host = std::string(endpoint);
  else n.addr.host = default_host;
  if (n.addr.host.empty()) return "a node has no endpoint";
  return "";
}

// One shard into `s`; `usable` false when it has no slots or no master that has not failed (it
// is then left out, and its slots stay uncovered: better no node for them than a dead one).
std::string read_shard(const redisReply* r, const std::string& default_host, ClusterShard& s,
                       bool& usable, bool tls) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) return "not a key/value array";
  const redisReply* slots = nullptr;
  const redisReply* nodes = nullptr;
  for (size_t k = 0; k < r->elements; k += 2) {
    const redisReply* key = r->element[k];
    if (!is_text(key)) return "a field name is not a string";
    if (text_of(key) == "slots") slots = r->element[k + 1];
    else if (text_of(key) == "nodes") nodes = r->element[k + 1];
  }
  if (slots == nullptr || nodes == nullptr) return "no \"slots\" or no \"nodes\"";
  if (slots->type != REDIS_REPLY_ARRAY || slots->elements % 2 != 0)
    return "\"slots\" is not an array of start/end pairs";
  if (nodes->type != REDIS_REPLY_ARRAY) return "\"nodes\" is not an array";
  for (size_t k = 0; k < slots->elements; k += 2)
    if (std::string e = read_range(slots->element[k], slots->element[k + 1], s); !e.empty())
      return e;
  // Every node is read (and checked) even when the shard is left out.
  bool has_master = false;
  for (size_t k = 0; k < nodes->elements; ++k) {
    ShardsNode n;
    if (std::string e = read_shards_node(nodes->element[k], default_host, n, tls); !e.empty())
      return fmt::format("node {}: {}", k, e);
    // Redis documents "failed"; 7.0.15 sends "fail" (seen after a master was killed).
    const bool failed = n.health == "failed" || n.health == "fail";
    if (n.master) {
      // After a failover the old master stays listed, failed, beside the new one: the first
      // master that has not failed serves the shard.
      if (!failed && !has_master) {
        s.master = std::move(n.addr);
        has_master = true;
      }
    } else if (n.health == "online") {
      // Replicas still loading their data (or failed) take no reads.
      s.replicas.push_back(std::move(n.addr));
    }
  }
  usable = has_master && !s.ranges.empty();
  return "";
}

}  // namespace

std::string parse_cluster_shards(const redisReply* r, const std::string& default_host,
                                 ClusterMap& out, bool tls) {
  constexpr std::string_view kWhat = "CLUSTER SHARDS";
  if (std::string e = check_top(r, kWhat); !e.empty()) return e;
  ClusterMap m;
  for (size_t i = 0; i < r->elements; ++i) {
    ClusterShard s;
    bool usable = false;
    if (std::string e = read_shard(r->element[i], default_host, s, usable, tls); !e.empty())
      return fmt::format("{}: shard {}: {}", kWhat, i, e);
    if (usable) add_shard(m, std::move(s));
  }
  return finish(m, kWhat, out);
}

}  // namespace respite
