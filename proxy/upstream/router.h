// Which upstream node a request goes to. Dispatch describes the request (what the command
// table says of it, its keys, the client's pin) and the router answers a node: the primary, or
// with --replica and --read-from a replica for a read that replica may answer without missing
// a write respite acknowledged (WriteLedger, replication.h). Sentinel (the primary changes at
// runtime) and Cluster (a node per key slot, MOVED and ASK) decide here too, without dispatch
// changing.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "proxy/upstream/node.h"
#include "proxy/upstream/replication.h"

namespace respite {

// Where reads that may go to a replica go (--read-from).
enum class ReadFrom : uint8_t {
  Primary,        // every request to the primary
  Replica,        // reads to a replica; to the primary when none may answer (logged when no
                  // replica takes reads at all)
  PreferReplica,  // the same, the primary being an expected fallback
};

struct RouteRequest {
  bool write = true;       // may write (or the command table cannot tell): the primary
  bool pinned = false;     // goes to a connection pinned to its client: the primary
  uint32_t db = 0;
  std::string_view key;    // the first key at a fixed position, if any, when routes_by_key()
  // A read that may go to a replica (reads_replicas()): every key it reads, or keys_known false
  // when they cannot be told (KEYS, SCAN, DBSIZE): then only a replica that has applied every
  // write respite acknowledged may answer.
  std::span<const std::string_view> keys;
  bool keys_known = false;
};

class Router {
 public:
  void add(Node* n) {
    nodes_.push_back(n);
    if (!primary_) primary_ = n;
  }
  // Replica `n`, the ledger's replica index `replicas().size()` at the call.
  void add_replica(Node* n) {
    nodes_.push_back(n);
    replicas_.push_back(n);
  }
  void set_read_from(ReadFrom rf, WriteLedger* ledger) {
    read_from_ = rf;
    ledger_ = ledger;
  }
  Node* primary() const { return primary_; }
  const std::vector<Node*>& replicas() const { return replicas_; }
  // Reads may go to replicas (dispatch then fills RouteRequest::keys for reads).
  bool reads_replicas() const { return read_from_ != ReadFrom::Primary && !replicas_.empty(); }
  ReadFrom read_from() const { return read_from_; }
  bool any_replica_healthy() const {
    for (size_t i = 0; i < replicas_.size(); ++i)
      if (ledger_->health(i).healthy.load(std::memory_order_relaxed)) return true;
    return false;
  }

  Node* route(const RouteRequest& rr) const {
    if (rr.write || rr.pinned || !reads_replicas()) return primary_;
    return read_node(rr);
  }
  // Whether route() looks at RouteRequest::key (dispatch fills it only then): not with one node.
  bool routes_by_key() const { return false; }
  // Whether a -MOVED/-ASK reply may send a request again (Redis Cluster): forwarded requests
  // then keep their bytes until the reply (Forwarded::keep_for_retry). Off with one node, so
  // nothing is copied; on for tests of the retry path (and for Cluster, when it comes).
  bool follows_redirects() const { return follow_redirects_; }
  void set_follow_redirects(bool on) { follow_redirects_ = on; }
  // The node a MOVED/ASK names ("host:port" as Redis prints it), or nullptr if not known.
  Node* find(std::string_view name) const {
    for (Node* n : nodes_)
      if (n->name() == name) return n;
    return nullptr;
  }
  // Where a plain GET for a reader that cannot use the cache goes (CachePath::read_key); cache
  // fills choose their node themselves (CachePath::fill_tracking).
  Node* for_fill(uint32_t, std::string_view) const { return primary_; }
  const std::vector<Node*>& nodes() const { return nodes_; }

 private:
  // A healthy replica that has applied the writes the read needs, the one with the fewest
  // requests in flight on this loop; else the primary.
  Node* read_node(const RouteRequest& rr) const {
    Node* best = nullptr;
    for (size_t i = 0; i < replicas_.size(); ++i) {
      Node* n = replicas_[i];
      if (!ledger_->health(i).healthy.load(std::memory_order_relaxed)) continue;
      if (best && n->stats.inflight.get() >= best->stats.inflight.get()) continue;
      if (!ledger_->may_read(i, rr.db, rr.keys, rr.keys_known)) continue;
      best = n;
    }
    return best ? best : primary_;
  }

  std::vector<Node*> nodes_;
  std::vector<Node*> replicas_;
  Node* primary_ = nullptr;
  ReadFrom read_from_ = ReadFrom::Primary;
  WriteLedger* ledger_ = nullptr;
  bool follow_redirects_ = false;
};

}  // namespace respite
