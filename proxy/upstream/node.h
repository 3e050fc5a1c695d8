// One upstream Redis server as one event loop sees it: its address, its role, the shared
// connections to it (per protocol, clients spread over them by id), the connections pinned to
// clients, the reconnect backoff, and the connections the cache's coherence runs on (the
// tracking link and the fetch connection, managed by the cache path). With replicas, Sentinel
// or Cluster there are several nodes per loop; the Router picks one per request.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

#include "proxy/ops/stats.h"
#include "proxy/upstream/upstream_conn.h"

namespace respite {

class Node;

// What a node tells the layers above about its connections.
class NodeObserver {
 public:
  // A shared connection (not pinned, not link or fetch) became ready.
  virtual void on_shared_up(UpstreamConn* u) = 0;
  // The tracking link or the fetch connection of node `n` is closing (see Node::Tracking).
  virtual void on_link_lost(Node* n) = 0;
  virtual void on_fetch_lost(Node* n) = 0;

 protected:
  ~NodeObserver() = default;
};

class Node {
 public:
  enum class Role : uint8_t { Unknown, Primary, Replica };

  // `host`/`port` as configured; resolved by resolve(). `up` is the loop's UpstreamHost.
  Node(UpstreamHost* up, NodeObserver* observer, std::string host, int port);
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Resolves the address (blocking getaddrinfo on `loop`); "" or why it failed.
  std::string resolve(uv_loop_t* loop);
  // The node is now another server (Sentinel announced a new primary): every connection
  // closes (requests in flight fail, pinned clients are closed, the tracking link goes and with
  // it the cache), and new ones go to `host`:`port`. "" or why the address did not resolve
  // (the old one is then kept).
  std::string retarget(uv_loop_t* loop, const std::string& host, int port);
  // Credentials for this node's connections instead of --upstream-user/--upstream-password
  // (a Sentinel's own).
  void set_auth(std::string user, std::string password) {
    own_auth_ = true;
    auth_user_ = std::move(user);
    auth_password_ = std::move(password);
  }
  bool own_auth() const { return own_auth_; }
  const std::string& auth_user() const { return auth_user_; }
  const std::string& auth_password() const { return auth_password_; }
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  const std::string& name() const { return name_; }  // "host:port" as configured
  const std::string& host() const { return host_; }  // as configured (TLS checks it)
  Role role = Role::Unknown;

  // Clients' requests relayed by this node's connections (respite's own polls and fetches are
  // not counted). `inflight` is what the router weighs when it may choose between nodes.
  // Written by this loop only; other loops read them for PROXY INFO.
  struct NodeStats {
    Counter requests;   // sent
    Counter errors;     // failed with their connection (no reply)
    Counter redirects;  // answered -MOVED/-ASK and sent again elsewhere
    Level inflight;     // sent, reply not yet arrived
  } stats;

  // The shared connection for a client of protocol `proto` (2 or 3), spread by `client_id`;
  // opened on demand, nullptr while backing off or shutting down.
  UpstreamConn* shared_conn(int proto, uint64_t client_id);
  // Cluster: as shared_conn, but connections that send READONLY first, for the reads the router
  // sends to this node as a replica of the slot's master, and for nothing else (every other
  // connection goes without READONLY, so a master demoted by a failover answers -MOVED).
  UpstreamConn* read_conn(int proto, uint64_t client_id);
  // A new connection dedicated to `owner` (its protocol, in `db`); nullptr if it failed at once.
  UpstreamConn* open_pinned(Requester* owner, int proto, int db);
  // Some RESP2 shared connection is ready (the node counts as up).
  bool connected() const;
  // The first RESP2 shared connection, when ready (for respite's own polls).
  UpstreamConn* first_ready() const;
  size_t pinned_count() const { return pinned_.size(); }

  // Called by UpstreamHost::upstream_up/upstream_gone for this node's connections.
  void conn_up(UpstreamConn* u);
  void conn_gone(UpstreamConn* u);

  // Timer work: timeouts of every connection, and reopening shared connections after backoff.
  void check_timeouts(uint64_t now);
  void reconnect(uint64_t now);
  // No new shared connections from now on (shutdown); close_all() closes every connection.
  void stop_connecting() { stopping_ = true; }
  void close_all();

  // The cache's coherence connections on this node (managed by the cache path, which alone
  // reads and writes these; the node only times them out and forgets them when they close).
  struct Tracking {
    UpstreamConn* link = nullptr;          // SUBSCRIBE __redis__:invalidate
    UpstreamConn* fetch = nullptr;         // fetches, CLIENT TRACKING on REDIRECT <link id>
    std::vector<UpstreamConn*> retired;    // old fetch connections finishing their fetches
    int64_t link_id = -1;
    bool up = false;
    uint64_t next_attempt_ms = 0;
    uint64_t backoff_ms = 0;
  } tracking;

 private:
  UpstreamHost* up_;
  NodeObserver* observer_;
  std::string host_;
  int port_;
  std::string name_;
  sockaddr_storage addr_{};
  std::vector<UpstreamConn*> pool_[2];  // pool_[proto-2][i]
  std::vector<UpstreamConn*> ro_pool_[2];  // read_conn's, as pool_
  // The connection of `client_id` in pool `v`, opened on demand (shared_conn, read_conn).
  UpstreamConn* pooled(std::vector<UpstreamConn*>& v, int proto, uint64_t client_id, bool readonly);
  std::vector<UpstreamConn*> pinned_;
  uint64_t next_attempt_[2] = {0, 0};  // per protocol: no new shared connection before this
  uint64_t backoff_ms_ = 0;
  bool stopping_ = false;
  bool own_auth_ = false;
  std::string auth_user_, auth_password_;
};

}  // namespace respite
