// Eviction policies: which entry leaves when a fill needs room. Redis's maxmemory-policy names
// and meanings, applied to the cache, plus W-TinyLFU. A policy sees every entry's life through
// on_insert / on_hit / on_erase and answers victim(); the store owns the entries and the bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "cache/entry.h"
#include "cache/hash.h"

namespace cache {

enum class PolicyKind : uint8_t {
  kNoEviction,      // when full, new fills are not admitted
  kAllKeysLru,      // exact LRU over all entries
  kVolatileLru,     // exact LRU over entries whose upstream key has a TTL
  kAllKeysLfu,      // Redis's logarithmic counter with decay, sampled
  kVolatileLfu,
  kAllKeysRandom,
  kVolatileRandom,
  kVolatileTtl,     // shortest remaining TTL first, sampled
  kTinyLfu,         // W-TinyLFU: LRU window, frequency-sketch admission, segmented-LRU main
};

// "allkeys-lru" etc., exactly Redis's names, plus "tinylfu". Case-insensitive like CONFIG SET.
std::optional<PolicyKind> parse_policy(std::string_view name);
std::string_view policy_name(PolicyKind kind);

struct PolicyParams {
  int lfu_log_factor = 10;  // Redis lfu-log-factor
  int lfu_decay_time = 1;   // Redis lfu-decay-time, minutes per counter decrement (0 = never)
  int samples = 5;          // Redis maxmemory-samples, for the sampled policies
};

// What a policy may ask of the store that owns the entries.
class EntrySampler {
 public:
  // A random entry (close to uniform), or nullptr when the store is empty. No allocation.
  virtual Entry* random_entry() = 0;

 protected:
  ~EntrySampler() = default;
};

// The policy interface. Calls happen with the store's (shard's) lock held, never concurrently.
// Hooks must not allocate: on_hit runs on the hit path.
class Policy {
 public:
  virtual ~Policy() = default;

  // The byte budget the store is held to (its share of max-memory); called before any entry is
  // inserted and again when the budget changes. Policies that size structures by it do so here;
  // memory() reports what they hold, and the store charges it against the same budget.
  virtual void set_capacity(uint64_t bytes) { (void)bytes; }
  // `e` is in the table now, with its fields set. `hash` is the store's hash of its key.
  virtual void on_insert(Entry& e, uint64_t hash, Micros now) = 0;
  virtual void on_hit(Entry& e, uint64_t hash, Micros now) = 0;
  // A lookup found nothing (frequency-based admission wants to know).
  virtual void on_miss(uint64_t hash) { (void)hash; }
  // `e` is leaving the table (any reason) and is freed right after.
  virtual void on_erase(Entry& e) = 0;
  // The entry to evict next, or nullptr to refuse: the fill that needed room is then not
  // admitted (noeviction; volatile-* without volatile entries). With `force` (the bound itself
  // shrank) the policy must name some entry whenever it holds any.
  virtual Entry* victim(Micros now, bool force) = 0;
  // Every entry is being freed at once; forget them all.
  virtual void clear() = 0;
  // Bytes of policy-owned structures beyond the entries (the TinyLFU sketch).
  virtual uint64_t memory() const { return 0; }
  // Structures sized by the number of entries (the sketch) grow as the store fills, so their
  // bytes are a per-entry cost, not a share of the budget charged up front. memory_for(n) is
  // what memory() will be once reserve(n) has run with n entries stored; the store makes room
  // for the difference, then calls reserve(n) before inserting the n-th entry. reserve() may
  // allocate (fill path only); if that fails it keeps the current size.
  virtual uint64_t memory_for(size_t entries) const { (void)entries; return memory(); }
  virtual void reserve(size_t entries) { (void)entries; }
};

// `sampler` and `rng` must outlive the policy; `hash_seed` is the store's, for re-hashing keys.
std::unique_ptr<Policy> make_policy(PolicyKind kind, const PolicyParams& params,
                                    EntrySampler& sampler, Rng& rng, uint64_t hash_seed);

}  // namespace cache
