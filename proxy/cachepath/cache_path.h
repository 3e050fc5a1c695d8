// The cache path of one loop: GET and MGET answered from memory, misses collapsed into one
// upstream fetch per key (single-flight across every loop), fetch batches on the tracked fetch
// connection, and writes invalidating before they are forwarded and again when acknowledged.
// The coherence connections it relies on are the Tracking service's (tracking.h).
//
// It knows clients only as Requesters and commands only by what dispatch tells it (the keys a
// write touches and its flush scope, from the command table), so nothing here includes front/.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/cache.h"
#include "proxy/cachepath/tracking.h"
#include "proxy/net/loop.h"
#include "proxy/upstream/requester.h"
#include "proxy/upstream/router.h"
#include "proxy/upstream/upstream_conn.h"
#include "resp/request_parser.h"

namespace respite {

class CachePath;
class FetchBatch;
struct MgetAssembly;

// Reads one key for a non-RESP front end (the HTTP lookup): through the cache and its
// single-flight like a GET. Exactly one call per read_key().
class ValueReader {
 public:
  virtual ~ValueReader() = default;
  // `error` non-empty: the upstream failed or refused (a complete RESP error reply, or a short
  // reason); else `missing` or `value`.
  virtual void on_value(bool missing, std::string_view value, std::string_view error) = 0;
};

// Who a cache flight answers: a GET's reply slot, one position of an MGET, or a ValueReader.
struct CacheWaiter {
  Requester* client = nullptr;  // GET: holds a reference
  uint64_t seq = 0;
  MgetAssembly* mget = nullptr;  // MGET: the reply being assembled
  uint32_t index = 0;
  ValueReader* reader = nullptr;
  CachePath* owner = nullptr;  // the loop the waiter lives on (single-flight spans loops)
};

using CacheStore = cache::Cache<CacheWaiter>;

// What every loop's cache path shares.
struct CacheShared {
  std::unique_ptr<CacheStore> cache;
  std::atomic<uint64_t> flights_started{0};  // cache fetches sent, all loops
  std::vector<CachePath*> paths;             // one per loop; fixed before any loop runs
  // A node's SWAPDB count (INFO commandstats) as the newest applied poll of any loop saw it
  // (-1: not read yet), and that poll's number. Every loop polls; a reply to a poll older than
  // the one applied last is dropped, so the shared cache is flushed once per SWAPDB, not once
  // per loop (Tracking::poll_swapdb). One per node the cache reads from: [0] the primary's,
  // [1 + i] replica i's (a replica applies a SWAPDB later than the primary, and sends no
  // invalidation for it either).
  struct SwapdbCount {
    std::mutex mu;
    int64_t calls = -1;
    uint64_t applied = 0;
    std::atomic<uint64_t> polls{0};
  };
  std::vector<std::unique_ptr<SwapdbCount>> swapdb;  // sized by set_nodes(), before loops run
  void set_nodes(size_t replicas) {
    swapdb.clear();
    for (size_t i = 0; i < 1 + replicas; ++i) swapdb.push_back(std::make_unique<SwapdbCount>());
  }
  CacheShared() { set_nodes(0); }
  // The refusal of tracking was logged (Tracking::refuse): once for all loops, again only after
  // some loop's link was accepted meanwhile.
  std::atomic<bool> tracking_refusal_said{false};
};

// What a forwarded write invalidates, as dispatch reads it from the command table.
struct WriteKeys {
  WriteInvalidation::Scope scope = WriteInvalidation::Scope::Keys;
  bool any_db = false;             // its keys may be in another db than the client's
  std::span<const uint32_t> args;  // argv indexes of the keys it writes (Scope::Keys)
};

class CachePath {
 public:
  CachePath(CacheShared* shared, Loop* loop, UpstreamHost* host, Router* router);
  CachePath(const CachePath&) = delete;
  CachePath& operator=(const CachePath&) = delete;
  ~CachePath();

  CacheStore& cache() { return *cache_; }
  // The primary's tracking service.
  Tracking& tracking() { return tracking_; }
  // Fills may read from replica `i` of `ledger` on `n` (--read-from replica, prefer-replica):
  // a tracking service of its own. Before the loop runs.
  void add_replica(Node* n, int i, WriteLedger* ledger);
  // The tracking service on node `n`, or nullptr when the cache does not read from it.
  Tracking* tracking_for(const Node* n);
  // Every tracking service: the timer, shutdown, and the cache switched off (links closed).
  void tick(uint64_t now);
  void stop_tracking();
  void close_links();
  // This loop's part of a barrier (Tracking::barrier): `done` runs once the primary's link, and
  // the link of every replica the cache reads from, answered a PING sent after the write, a
  // replica's once it has applied WriteLedger mark `mark`. A replica that has not within
  // kReplicaApplyWaitMs (or stops being healthy) loses its link and the cache is flushed.
  void coherence_ping(uint64_t mark, std::function<void()> done);
  // A replica reported a newer applied offset (the monitor, posted to every loop): barrier
  // parts waiting for it may go on.
  void replicas_applied() {
    if (!replica_waits_.empty()) check_replica_waits(loop_->now());
  }
  // Fills may read from replicas (add_replica was called).
  bool fills_from_replicas() const { return !replica_tracking_.empty(); }
  static constexpr uint64_t kReplicaApplyWaitMs = 200;
  // The cache may answer reads: enabled, and this loop's invalidation link is up (or, with
  // cache-coherence ttl, its fetch connection is open).
  bool usable() const {
    return cache_->enabled() && (router_->cluster() ? cluster_serving_ : tracking_.serving());
  }

  // GET `key` in `db` for `c`: answered from the cache or joined to a flight (its reply slot is
  // taken now). Only when usable() and the client may use the cache (dispatch checks).
  void get(Requester* c, uint32_t db, std::string_view key);
  // MGET of f.arg(1..): the same, for every key.
  void mget(Requester* c, uint32_t db, const resp::Frame& f);
  // GET `key` in `db` for a ValueReader: from the cache, joining or starting a flight, or
  // (cache off or link down) with a plain upstream GET.
  void read_key(uint32_t db, std::string_view key, ValueReader* reader);

  // A write about to be forwarded: invalidates its keys now and returns what to invalidate
  // again when its reply arrives (nothing when nothing is cached or it writes nothing).
  struct WritePlan {
    WriteInvalidation* heap = nullptr;  // several keys, a db or everything
    int key_arg = -1;                   // or the one key at this argv index
    uint32_t db = 0;
    uint64_t flights_at = 0;
  };
  WritePlan invalidate_before_write(uint32_t db, const resp::Frame& f, const WriteKeys& w);
  void invalidate_key_after_write(uint32_t db, std::string_view key, uint64_t flights_at);
  void invalidate_after_write(WriteInvalidation* inv);  // applies and frees `inv`
  // Invalidates what `inv` names now (a transaction's writes when EXEC is sent).
  void invalidate_now(const WriteInvalidation& inv) {
    if (cache_->enabled()) apply_invalidation(inv, cache::Source::kLocal);
  }
  void flush() { cache_->flush_all(cache::Source::kLocal); }

  // FetchBatch's landing (all its flights) and its return to the pool.
  void fetch_landed(FetchBatch* b, const std::vector<std::string>& gets,
                    const std::vector<int64_t>& pttls, bool failed, std::string_view why);
  void recycle(FetchBatch* b);

 private:
  void send_fetch(uint32_t db, std::span<const std::string_view> keys,
                  std::span<const cache::FlightId> ids);
  // A fetch batch of `keys` (flights `ids`) on `fetch`.
  void send_batch(UpstreamConn* fetch, uint32_t db, std::span<const std::string_view> keys,
                  std::span<const cache::FlightId> ids);
  // ---- Redis Cluster (cachepath/cluster_fills.cc) ----
  // Fills read from the master serving each key's slot, on that master's tracked fetch
  // connection; keys of a master whose tracking is not up are read without caching them.
  void send_cluster_fetch(uint32_t db, std::span<const std::string_view> keys,
                          std::span<const cache::FlightId> ids);
  // A cluster master's tracking service, made on first use.
  Tracking* cluster_tracking(Node* n);
  void cluster_tick(uint64_t now);
  // A fill answered -MOVED/-ASK (the slot is moving): read `key` where the reply says, not
  // cached (the next miss fills from the slot's new master), and answer flight `id`'s waiters.
  void fill_elsewhere(cache::FlightId id, std::string_view key, std::string_view error);
  // Reads `key` on `n` (after ASKING when `ask`) for flight `id`'s waiters; caches nothing.
  void read_uncached(Node* n, bool ask, cache::FlightId id, std::string_view key, int tries);
  std::vector<std::unique_ptr<Tracking>> cluster_tracking_;
  bool cluster_serving_ = false;  // every master's tracking is up (updated by the tick)
  // Where a fill of `keys` reads: a replica whose link is up and that has applied every write
  // of them respite acknowledged, the one with the fewest fetches pending; else the primary.
  Tracking* fill_tracking(uint32_t db, std::span<const std::string_view> keys);
  void check_replica_waits(uint64_t now);
  // Answers a waiter on the loop it belongs to.
  void deliver_waiter(CacheWaiter& w, bool missing, std::string_view value, std::string_view error,
                      bool key_error, std::shared_ptr<const std::string>* shared_value = nullptr);
  // `error`: a complete error reply; `key_error`: it is the upstream's answer about this key
  // (WRONGTYPE), which an MGET turns into nil.
  void answer_waiter(CacheWaiter& w, bool missing, std::string_view value, std::string_view error,
                     bool key_error);
  void apply_invalidation(const WriteInvalidation& inv, cache::Source src);
  cache::LookupKind lookup_into(uint32_t db, std::string_view key, cache::Micros now,
                                std::string& out, int proto, size_t* payload, bool* refresh);

  CacheShared* shared_;
  CacheStore* cache_;
  Loop* loop_;
  UpstreamHost* host_;
  Router* router_;
  Tracking tracking_;
  std::vector<std::unique_ptr<Tracking>> replica_tracking_;
  WriteLedger* ledger_ = nullptr;
  // Barrier parts waiting for a replica to apply a write (coherence_ping).
  struct ReplicaWait {
    Tracking* t;
    uint64_t mark;
    uint64_t give_up_ms;
    std::function<void()> done;
  };
  std::vector<ReplicaWait> replica_waits_;
  bool waits_stopped_ = false;  // shutdown: barrier parts no longer wait for replicas
  // Landed fetch batches, kept for reuse (FetchBatch::reset); owned.
  std::vector<FetchBatch*> batch_pool_;
  static constexpr size_t kBatchPoolMax = 4096;
  cache::Landing<CacheWaiter> landing_;  // reused by fetch_landed (its waiter list's capacity)
  bool landing_busy_ = false;
  std::string scratch_;        // reply encoding for flight answers
  static constexpr size_t kKeepScratch = 1 << 20;  // a larger one is not kept after use
  std::string fetch_scratch_;  // fetch request encoding
  std::string mget_scratch_, mget_value_scratch_;
  std::vector<std::pair<size_t, size_t>> mget_spans_;
};

}  // namespace respite
