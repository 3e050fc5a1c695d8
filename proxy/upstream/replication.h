// Reads from replicas without stale reads of respite's own writes (read-your-writes), shared by
// every loop.
//
// The mechanism. Redis numbers everything it replicates (the replication offset). A write whose
// reply reached respite has an offset no greater than the primary's master_repl_offset read by
// any INFO sent to the primary afterwards: Redis runs one command at a time, and that INFO
// arrived after the write had run. So:
//  - respite polls the primary's `INFO replication` (the polls are numbered: marks) and each
//    replica's own (slave_repl_offset: what the replica has applied);
//  - a write acknowledged to respite is recorded with the number of the next primary poll to be
//    sent (its mark), per key, or for every key when its keys are unknown (FLUSHDB, FLUSHALL,
//    scripts, MOVE/COPY to another db);
//  - a replica has applied mark m once it reported an offset >= the primary's offset of poll m;
//  - a read goes to a replica only if the replica has applied every mark recorded for its keys
//    (a read whose keys are not known needs every mark). Otherwise it goes to the primary.
// The record is a fixed table of kSlots marks indexed by a hash of (db, key): a write raises its
// slot to its mark, a read compares its keys' slots with the replica's applied mark. Two keys in
// one slot only make a read wait for the other's write (it goes to the primary); nothing is
// ever allocated or dropped, and no lock is taken on the write or read path.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace respite {

// What the monitor last learnt of one replica (read by every loop).
struct ReplicaHealth {
  std::atomic<bool> healthy{false};     // answers, not loading, its link to the primary up
  std::atomic<uint64_t> applied{0};     // the newest mark it is known to have applied
  std::atomic<int64_t> offset{-1};      // slave_repl_offset, last read
  std::atomic<int64_t> lag{-1};         // the primary's offset at its last poll minus `offset`
  std::atomic<uint8_t> why{0};          // Why below, when not healthy
  // Marks up to this one may have been forgotten while the replica was out: it answers nothing
  // until it has applied them all (WriteLedger::set_healthy).
  std::atomic<uint64_t> floor{0};
  enum Why : uint8_t { kNotPolled, kDown, kLoading, kLinkDown, kNotReplica, kError, kNotListed };
  static const char* why_text(uint8_t w);
};

class WriteLedger {
 public:
  explicit WriteLedger(size_t replicas);

  // A write through respite was acknowledged: a read of `key` in `db` waits for the replicas.
  // Called on the reply's way to the client, before anything else sees it acknowledged.
  void wrote(uint32_t db, std::string_view key);
  // An acknowledged write whose keys are not known: every read waits. Returns its mark (a
  // replica has applied the write once ReplicaHealth::applied reaches it).
  uint64_t wrote_all();
  // May replica `i` answer a read of `keys` in `db`? `keys_known` false: the read's keys are
  // not known (KEYS, SCAN, a script): only a replica that has applied every mark may.
  bool may_read(size_t i, uint32_t db, std::span<const std::string_view> keys,
                bool keys_known) const;

  // The monitor's verdict on replica `i`. Records are kept only for replicas taking reads (one
  // that is down must not hold every record), so a replica coming back answers nothing until it
  // has applied every write acknowledged so far.
  void set_healthy(size_t i, bool healthy);
  // The monitor's side (one loop): the number of the primary poll about to be sent, then the
  // offset that poll read; a replica's applied offset.
  uint64_t next_mark() { return marks_.fetch_add(1) + 1; }
  // `replid`: the primary's master_replid, and the one the replica follows (its own
  // master_replid): an offset counts only in the history of the primary respite writes to (a
  // replica still following an old primary after a failover could report a larger offset
  // without the write).
  void primary_offset(uint64_t mark, int64_t offset, std::string_view replid);
  void replica_offset(size_t i, int64_t offset, std::string_view replid);
  // Some write is not yet known applied by every healthy replica (the monitor polls faster).
  bool behind() const;

  ReplicaHealth& health(size_t i) { return *replicas_[i]; }
  const ReplicaHealth& health(size_t i) const { return *replicas_[i]; }
  size_t replicas() const { return replicas_.size(); }
  // Slots holding a write some healthy replica has not applied (0 with none healthy): about
  // the number of keys written through respite that reads still send to the primary. A scan
  // of the table, for PROXY INFO.
  size_t pending_slots() const;

  // 128 KiB: small enough to stay in a core's L2 cache (recording a write was a cache miss,
  // ~10% of a forwarded SET's CPU, with 1 MiB), large enough that a few thousand keys written
  // and not yet replicated hold back few reads of others.
  static constexpr size_t kSlots = size_t{1} << 14;
  static constexpr size_t kMaxPolls = 4096;  // primary offsets kept (older ones are subsumed)

 private:
  static size_t slot(uint32_t db, std::string_view key);
  uint64_t current_mark() const { return marks_.load() + 1; }
  static void raise(std::atomic<uint64_t>& a, uint64_t v) {
    uint64_t cur = a.load();
    while (cur < v && !a.compare_exchange_weak(cur, v)) {
    }
  }

  std::unique_ptr<std::atomic<uint64_t>[]> slots_;  // kSlots marks
  std::atomic<uint64_t> all_mark_{0};               // a write of unknown keys
  std::atomic<uint64_t> max_mark_{0};               // the newest mark recorded
  std::atomic<uint64_t> marks_{0};                  // primary polls sent
  mutable std::mutex mu_;                           // the polls and offsets below
  std::deque<std::pair<uint64_t, int64_t>> polls_;  // (mark, primary offset), oldest first
  int64_t primary_offset_ = -1;                     // the newest poll's (for the lag)
  std::string primary_replid_;                      // ...and its replication id
  std::vector<std::unique_ptr<ReplicaHealth>> replicas_;
};

}  // namespace respite
