// The Cluster slot map's reader: asks a node CLUSTER SHARDS (CLUSTER SLOTS from servers before
// 7.0) at start, then on a thread of its own every second, and soon after a loop saw a MOVED
// or lost a node (want_refresh). A map that differs from the last is published to every loop
// (ClusterMapHolder); each rebuilds its own slot table from it (Router::sync).
//
// Its own thread and blocking connections keep the loops free of it: a slow or dead node
// delays the next map, never a request.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "proxy/ops/config.h"
#include "proxy/upstream/blocking_client.h"
#include "proxy/upstream/cluster_map.h"

namespace respite {

class ClusterWatcher {
 public:
  // Asks over TLS in `tls` when it is given (--upstream-tls).
  ClusterWatcher(const Config& cfg, ClusterMapHolder* holder,
                 std::shared_ptr<const TlsContext> tls = nullptr)
      : cfg_(cfg), holder_(holder), tls_(std::move(tls)) {}
  ~ClusterWatcher() { stop(); }
  ClusterWatcher(const ClusterWatcher&) = delete;
  ClusterWatcher& operator=(const ClusterWatcher&) = delete;

  // Reads the map once (blocking): "" when a node answered with a map, else why none did.
  std::string refresh();
  // The background thread; stop() ends it (at shutdown).
  void start();
  void stop();
  // Read the map again soon (a MOVED, a node lost): at most every kMinGapMs.
  void want_refresh();
  uint64_t refreshes() const { return refreshes_.load(std::memory_order_relaxed); }

  static constexpr int kPeriodMs = 1000;
  static constexpr int kMinGapMs = 50;

 private:
  // Asks `host`:`port`; "" and `out` filled, or why not.
  std::string ask(const std::string& host, int port, ClusterMap& out);
  // Reads from replicas: the slots the masters say are being migrated, into `map.moving`.
  void ask_masters(ClusterMap& map);
  void run();

  Config cfg_;
  ClusterMapHolder* holder_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool wanted_ = false;
  std::atomic<uint64_t> refreshes_{0};
  // The connection kept between questions, and where it goes.
  BlockingConn conn_;
  std::shared_ptr<const TlsContext> tls_;
  std::string conn_host_;
  int conn_port_ = 0;
  // ask_masters's connections, by master name ("host:port").
  std::vector<std::pair<std::string, BlockingConn>> master_conns_;
};

}  // namespace respite
