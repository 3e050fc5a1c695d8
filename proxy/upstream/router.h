// Which upstream node a request goes to. Dispatch describes the request (what the command
// table says of it, its first key, the client's pin) and the router answers a node. Today there
// is one node and every request goes there; replicas (reads to a replica that has the client's
// writes), Sentinel (the primary changes at runtime) and Cluster (a node per key slot, MOVED and
// ASK) decide here, without dispatch changing.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "proxy/upstream/node.h"

namespace respite {

struct RouteRequest {
  bool write = true;       // may write (or the command table cannot tell)
  bool pinned = false;     // goes to a connection pinned to its client
  uint32_t db = 0;
  std::string_view key;    // the first key at a fixed position, if any, when routes_by_key()
};

class Router {
 public:
  void add(Node* n) {
    nodes_.push_back(n);
    if (!primary_) primary_ = n;
  }
  Node* primary() const { return primary_; }
  Node* route(const RouteRequest&) const { return primary_; }
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
  // Where a cache fill of `key` reads from.
  Node* for_fill(uint32_t, std::string_view) const { return primary_; }
  const std::vector<Node*>& nodes() const { return nodes_; }

 private:
  std::vector<Node*> nodes_;
  Node* primary_ = nullptr;
  bool follow_redirects_ = false;
};

}  // namespace respite
