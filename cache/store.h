// One shard's entries: an open-addressing table of entry pointers, byte accounting, TTL, and the
// eviction policy. No flights and no coherence rules here (see cache.h); no I/O, no clock of its
// own, no locking (the owner serialises calls).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "cache/entry.h"
#include "cache/hash.h"
#include "cache/policy.h"
#include "cache/stats.h"

namespace cache {

// Invalidate a key in every db. Redis's tracking invalidations name keys without a db.
inline constexpr uint32_t kAllDbs = 0xffffffffu;

// Bounds and knobs of one store. For a sharded cache these are the shard's share.
struct StoreConfig {
  uint64_t max_memory = 0;  // bytes() never exceeds it; 0 = disabled (nothing is stored)
  uint64_t max_keys = 0;    // 0 = no key limit
  uint64_t max_value = 1 << 20;  // larger payloads are not stored
  double xfetch_beta = 1.0;      // 0 = no early refresh
  PolicyKind policy = PolicyKind::kAllKeysLru;
  PolicyParams policy_params;
};

enum class LookupKind : uint8_t {
  kMiss,      // nothing live: fetch it
  kHit,       // `value` is the cached bulk payload
  kNegative,  // the key is cached as missing upstream ($-1 / _)
};

struct Lookup {
  LookupKind kind = LookupKind::kMiss;
  // kHit: the payload. Points into the entry: copy it into the reply before any call other
  // than get() (fills, invalidations, flushes, expiry steps and settings may free the entry).
  // get() only ever removes the entry it looks up, and only if expired, so the views of an
  // MGET's keys looked up one after another with the same `now` all stay valid together.
  // All of this holds only while no other thread uses the store: a thread-safe Cache hands
  // the value out under its shard lock instead (Cache::get_with).
  std::string_view value;
  // kHit / kNegative: XFetch says this reader should start an early refresh.
  bool refresh = false;
};

// A value to store, as the cache's fill path computed it.
struct Fill {
  uint32_t db = 0;
  std::string_view key;
  std::string_view value;      // ignored when negative
  bool negative = false;
  uint64_t expiry_ms = kNoExpiry;  // absolute, in the clock's milliseconds
  bool upstream_ttl = false;       // the upstream key has a TTL (volatile-* policies)
  uint64_t fetch_us = 0;           // how long the fetch took (XFetch's delta)
};

class Store final : private EntrySampler {
 public:
  Store(const StoreConfig& config, uint64_t hash_seed, uint64_t rng_seed);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  uint64_t hash(std::string_view key) const { return hash_bytes(key, hash_seed_); }

  // The live entry for (db, key), `h` being hash(key). A hit refreshes the entry for the policy;
  // an expired entry is removed (cache_expired) and reported as a miss. Never allocates.
  // `refreshing(ctx, db, key)`: a fetch of this key is in flight. An entry past its expiry is then still
  // served for up to kRefreshGraceMs, unless its expiry is the upstream key's own TTL: XFetch's
  // promise that readers keep the current value until the refresh lands (coherence comes from
  // invalidation, not from the TTL, so this only stretches respite's own freshness bound).
  // Asked only for an expired entry, so the hit path pays nothing for it.
  using RefreshingFn = bool (*)(void* ctx, uint32_t db, std::string_view key);
  Lookup get(uint32_t db, std::string_view key, uint64_t h, Micros now,
             RefreshingFn refreshing = nullptr, void* ctx = nullptr);
  static constexpr uint64_t kRefreshGraceMs = 2000;
  static constexpr double kMinRefreshDeltaUs = 5000;
  // Whether (db, key) has a live entry, without counting or touching it (tests, diagnostics).
  bool contains(uint32_t db, std::string_view key, Micros now) const;

  // Stores `f`, replacing any entry for its (db, key); the old entry is dropped even when the
  // new one is not admitted, since it is older than what the upstream just said. Evicts (policy
  // order) until the entry, its key count and any table growth fit. Returns false, counting
  // cache_fills_rejected, when it is not admitted: store disabled, payload over max_value, key
  // or db beyond what an entry holds, already expired, larger than the whole budget, or the
  // policy refuses to evict.
  bool put(const Fill& f, uint64_t h, Micros now);

  // Removes (db, key), or the key in every db with kAllDbs. Returns how many entries went.
  size_t erase(uint32_t db, std::string_view key, uint64_t h);
  size_t erase_db(uint32_t db);
  // Erases every entry whose key `doomed(ctx, key)` names (Redis Cluster: the keys of slots
  // that moved); the number erased.
  size_t erase_if(bool (*doomed)(const void* ctx, std::string_view key), const void* ctx);
  void clear();

  // Active expiry: looks at up to `max_slots` table slots from where the last call stopped and
  // removes expired entries. Returns how many it removed.
  // `refreshing(ctx, db, key)`, when given, tells whether a fetch of the key is in flight: such
  // an entry within its refresh grace is kept (get() serves it until the refresh lands).
  size_t expire_step(Micros now, size_t max_slots, RefreshingFn refreshing = nullptr,
                     void* ctx = nullptr);

  // New bounds or knobs. Evicts (forced, whatever the policy) until the new bounds hold; a
  // policy change re-threads the entries through the new policy.
  void configure(const StoreConfig& config, Micros now);
  const StoreConfig& config() const { return config_; }

  // Bytes held: every entry's charge (entry_charge: header, key, value, allocator rounding),
  // the table (8 bytes a slot) and policy structures. Never above config().max_memory.
  uint64_t bytes() const { return entry_bytes_ + table_bytes() + policy_bytes_; }
  size_t keys() const { return count_; }
  // Σ key + value lengths, so callers can report overhead = bytes() - payload_bytes().
  uint64_t payload_bytes() const { return payload_bytes_; }
  size_t table_slots() const { return cap_; }
  // bytes() recomputed from scratch by walking the table (tests check it equals bytes()).
  uint64_t recount_bytes() const;

  // This store's counters (gauges are filled in by snapshot()). The owner may add its own
  // (flight counters) to the same struct.
  Stats& counters() { return stats_; }
  Stats snapshot() const;

 private:
  static constexpr size_t kNpos = ~size_t{0};
  static constexpr size_t kMinSlots = 16;

  Entry* random_entry() override;

  uint64_t table_bytes() const { return cap_ * sizeof(uintptr_t); }
  size_t home(uint64_t h) const { return static_cast<size_t>(((h >> 32) * cap_) >> 32); }
  size_t next(size_t i) const { return i + 1 == cap_ ? 0 : i + 1; }
  static Entry* entry_at(uintptr_t slot) { return reinterpret_cast<Entry*>(slot & ~uintptr_t{15}); }
  size_t find(uint32_t db, std::string_view key, uint64_t h) const;
  size_t find_entry(const Entry* e) const;
  void erase_at(size_t i);
  void evict(Entry* e);
  bool rehash(size_t new_cap);
  bool maybe_shrink();  // true if the table got smaller
  static size_t fit_slots(size_t n);
  size_t growth_bytes(size_t n) const;
  bool expired(const Entry& e, Micros now) const;
  bool early_refresh(const Entry& e, Micros now);
  bool in_refresh_grace(const Entry& e, Micros now) const;
  void shrink_to_bounds(Micros now);

  StoreConfig config_;
  uint64_t hash_seed_;
  Rng rng_;
  std::unique_ptr<Policy> policy_;
  uint64_t policy_bytes_ = 0;

  // Linear probing with backward-shift deletion, no tombstones. A slot is 0 (empty) or an Entry
  // pointer with the low 4 hash bits in its low 4 bits (entries are 16-byte aligned), so most
  // probes that would compare the wrong key never touch the entry.
  std::unique_ptr<uintptr_t[]> slots_;
  size_t cap_ = 0;
  size_t count_ = 0;
  uint64_t entry_bytes_ = 0;
  uint64_t payload_bytes_ = 0;
  size_t expire_cursor_ = 0;
  Stats stats_;
};

}  // namespace cache
