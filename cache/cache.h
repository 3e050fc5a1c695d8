// The cache as the proxy uses it: entries (store.h) and in-flight fetches (flights.h) for every
// (db, key), kept coherent with writes. No I/O and no clock: every call that cares about time
// takes `now`, monotonic microseconds (>= 0, any origin) from the caller's clock.
//
// The coherence contract (ARCHITECTURE.md, "Cache coherence"):
//  - Only a flight fills the cache: land() stores the fetched value if and only if the flight
//    is still attached. invalidate(), flush_db() and flush_all() drop the entries AND detach
//    the flights of what they cover, so a fetch that may have read the value from before a
//    write never fills, and a read arriving after the write starts a new fetch. The flight
//    is the per-key version: "still attached" means "no invalidation since the fetch started".
//  - Every entry expires at min(now + ttl, fetch start + upstream PTTL).
//
// How the proxy drives it, per key of a GET or MGET:
//   Lookup r = cache.get_with(db, key, now, [&](const Lookup& v) { encode v.value (hit) or
//       nil (negative) into the reply });   // f runs only on hit/negative, under the lock
//   hit/negative: answered already. If r.refresh, FlightId id = cache.start_refresh(db, key,
//       now); if id != kNoFlight send the fetch (GET + PTTL) tagged with id. (A single-threaded
//       cache may also use get() and copy r.value before its next call; see Lookup.)
//   miss: Join j = cache.join(db, key, waiter, now); if j.started send the fetch tagged j.id.
//   fetch reply (a bulk or nil, with its PTTL):
//       Landing<W> l = cache.land(id, Fetched{...}, now); answer every l.waiters with the reply.
//   error, non-string reply, timeout, lost connection:
//       Landing<W> l = cache.abandon(id); answer every l.waiters with the error.
//   write command: cache.invalidate(db, key, Source::kLocal) for each key before forwarding it
//       and again when its reply arrives; FLUSHDB: flush_db(db, kLocal); FLUSHALL, SWAPDB and a
//       lost tracking link: flush_all(...).
//   tracking message: invalidate(kAllDbs, key, Source::kTracking) (the messages carry no db);
//       a null message: flush_all(Source::kTracking).
//   a timer: expire_step(now, budget). (A fetch that times out fails on its connection:
//       abandon(id) as for any error.)
//
// MGET with an all-hit fast path: remember the reply buffer's size, write the array header, then
// get_with() each key, encoding it inside f. If a key misses (with other threads it may have
// been evicted or invalidated since any earlier look), cut the buffer back to the remembered
// size and take the slow path for the whole command: get_with() each key again, copying hits
// into the assembly inside f, and join() the misses. Never check "all hits?" in one pass and
// encode in a second: nothing holds the entries between the two. (The keys the aborted pass
// looked up are counted twice in cache_hits/cache_misses; the price of not locking several
// shards at once, and only paid when a key misses.)
//
// Threads. A Cache is either single-threaded or thread-safe, fixed at construction:
//  - Settings::thread_safe, or more than one shard: every call may come from any thread. The
//    state is split into shards by key hash, each with its own mutex, store, flight table and
//    counters. get, get_with, join, start_refresh, land, abandon and invalidate lock exactly
//    the key's (or flight's) shard; flush_db, flush_all, expire_step, apply, set_max_memory,
//    set_ttl_ms, stats, bytes, keys and flights lock one shard at a time, so they see each
//    shard consistent but not all shards at one instant. Single-flight holds across threads:
//    the flight table is per shard, not per caller. No call returns a reference into shard
//    state except get() (Lookup::value) and store(); the callbacks of get_with() run under the
//    shard lock.
//  - Otherwise (the default: one shard, thread_safe false) no lock is ever taken; the only cost
//    is one well-predicted branch per call.
//
// Shard count: Settings::shards = 0 (the default) means 1 for a single-threaded cache and
// kThreadSafeShards (16) for a thread-safe one. 16 because a call holds its shard for well under
// a microsecond, so with the few event loops this proxy runs (at most about one per core) two
// loops meet on one shard on roughly 1/16 of their calls at worst, and rarely wait even then;
// more shards buy little and each one costs a mutex, an empty table and a flight map (a few
// hundred bytes). A power of two, so picking a shard is a mask. The budgets (max_memory,
// max_keys) are split evenly, so eviction is per shard: each shard runs the policy on its own
// share, which approximates the global policy while each share holds a few hundred entries or
// more. With 16 shards at a 512kb budget (~355 small entries a shard), seed 001's LRU
// experiment read through the cache loses none of its touched keys to the flood; what sharding
// does cost is the fill: keys split unevenly over shards (about +-5% there), so a fill to the
// whole cache's capacity makes the fuller shards evict their oldest keys early (see
// threads_test.cc). A max_keys below the shard count leaves some shards unable to hold any key.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "cache/flights.h"
#include "cache/store.h"

namespace cache {

// Shards of a thread-safe cache when Settings::shards is 0 (see the header comment).
inline constexpr unsigned kThreadSafeShards = 16;

struct Settings {
  uint64_t max_memory = uint64_t{64} << 20;  // bytes; 0 = cache off (lookups miss, no fills)
  uint64_t ttl_ms = 10000;                   // entry lifetime for new fills; 0 = no limit of
                                             // our own (upstream TTL and invalidation only)
  uint64_t max_keys = 0;                     // 0 = no key limit
  uint64_t max_value = uint64_t{1} << 20;    // larger payloads are relayed, not cached
  PolicyKind policy = PolicyKind::kAllKeysLru;
  PolicyParams policy_params;
  double xfetch_beta = 1.0;                  // 0 = no early refresh
  bool single_flight = true;                 // off only for the stampede demo
  unsigned shards = 0;                       // fixed at construction; budgets split evenly;
                                             // 0 = 1, or kThreadSafeShards if thread_safe
  bool thread_safe = false;                  // fixed at construction; more than one shard
                                             // implies it
  uint64_t seed = 0;                         // hashing and sampling; 0 = random per process
};

// Who asked for an invalidation (only the stats care).
enum class Source : uint8_t { kLocal, kTracking };

// What the upstream answered for one key: GET's reply and PTTL's, fetched together.
struct Fetched {
  bool missing = false;    // GET said nil
  std::string_view value;  // GET's bulk payload when !missing
  int64_t pttl_ms = -1;    // PTTL: >= 0 ms left, -1 no TTL, -2 no key
};

struct Join {
  FlightId id = kNoFlight;
  bool started = false;  // true: the caller must send the fetch and later land() or abandon() id
};

template <class W>
struct Landing {
  bool found = false;     // false: unknown id (landed or abandoned already); nothing to do
  bool detached = false;  // an invalidation raced the fetch; nothing was stored
  bool filled = false;    // the value is cached now
  std::vector<W> waiters; // everyone who joined, in join order (owned: nothing points into
                          // the cache)
};

// W: the proxy's waiter handle (who to answer: a client, a reply slot, an MGET position...).
// Movable; the cache only stores and returns it.
template <class W>
class Cache {
 public:
  explicit Cache(const Settings& s) : settings_(s) {
    if (settings_.shards == 0) settings_.shards = settings_.thread_safe ? kThreadSafeShards : 1;
    if (settings_.shards > 1) settings_.thread_safe = true;
    locking_ = settings_.thread_safe;
    const unsigned n = settings_.shards;
    pow2_ = (n & (n - 1)) == 0;
    shard_mask_ = n - 1;
    enabled_.store(settings_.max_memory != 0, std::memory_order_relaxed);
    uint64_t seed = settings_.seed;
    if (seed == 0) {
      std::random_device rd;
      seed = (uint64_t{rd()} << 32) ^ rd();
    }
    Rng seeds(seed);
    hash_seed_ = seeds.next();
    for (unsigned i = 0; i < n; i++) {
      shards_.push_back(std::make_unique<Shard>(i, share(i), knobs(), hash_seed_, seeds.next()));
    }
    if (!locking_) solo_ = shards_[0].get();
  }
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  // A copy: apply() may change the settings from another thread. `shards` and `thread_safe` are
  // the resolved values.
  Settings settings() const {
    Guard g(locking_ ? &settings_mu_ : nullptr);
    return settings_;
  }
  bool thread_safe() const { return locking_; }

  // Looks (db, key) up. Never allocates. r.value points into the entry (see Lookup): only for
  // single-threaded caches. With other threads, the entry may be freed as soon as get()
  // returns; use get_with().
  Lookup get(uint32_t db, std::string_view key, Micros now) {
    uint64_t h = hash(key);
    if (solo_) return solo_->store.get(db, key, h, now, &Cache::refreshing_ctx, solo_);  // a tail call: no lock, no shard pick
    Shard& s = shard(h);
    std::lock_guard<std::mutex> g(s.mu);
    return s.store.get(db, key, h, now, &Cache::refreshing_ctx, &s);
  }

  // Looks (db, key) up like get() and, on a hit or a negative entry, calls f(const Lookup&)
  // with the shard's lock held, so f may read v.value (encode it into the reply, copy it).
  // f must be short and must not call into this cache (the lock is not recursive). Returns the
  // lookup with `value` emptied (it is valid only inside f): kind and refresh. Never allocates
  // (f aside).
  template <class F>
  Lookup get_with(uint32_t db, std::string_view key, Micros now, F&& f) {
    static_assert(std::is_invocable_v<F&, const Lookup&>, "f(const Lookup&)");
    uint64_t h = hash(key);
    Lookup r;
    if (solo_) {
      r = solo_->store.get(db, key, h, now, &Cache::refreshing_ctx, solo_);
      if (r.kind != LookupKind::kMiss) f(std::as_const(r));
    } else {
      Shard& s = shard(h);
      std::lock_guard<std::mutex> g(s.mu);
      r = s.store.get(db, key, h, now, &Cache::refreshing_ctx, &s);
      if (r.kind != LookupKind::kMiss) f(std::as_const(r));
    }
    r.value = {};
    return r;
  }

  // After a miss: joins the attached flight for (db, key), or starts one (started = true).
  // With threads the entry may have been filled between the miss and this call; then this
  // starts a fetch anyway (one extra upstream read, never a stale one).
  Join join(uint32_t db, std::string_view key, W waiter, Micros now) {
    uint64_t h = hash(key);
    Shard& s = shard(h);
    Guard g(lock_of(s));
    Stats& st = s.store.counters();
    if (s.knobs.single_flight) {
      if (auto* f = s.flights.find(db, key)) {
        f->waiters.push_back(std::move(waiter));
        st.singleflight_joined++;
        return {f->id, false};
      }
    }
    auto& f = s.flights.start(next_id(s), db, key, now, false);
    f.waiters.push_back(std::move(waiter));
    st.upstream_fetches++;
    return {f.id, true};
  }

  // After a hit with r.refresh: starts a waiter-less flight for (db, key), unless one is
  // attached already (then kNoFlight: nothing to send). Readers keep the current entry until
  // the refresh lands.
  FlightId start_refresh(uint32_t db, std::string_view key, Micros now) {
    uint64_t h = hash(key);
    Shard& s = shard(h);
    Guard g(lock_of(s));
    if (s.flights.find(db, key)) return kNoFlight;
    Stats& st = s.store.counters();
    st.upstream_fetches++;
    st.cache_early_refreshes++;
    return s.flights.start(next_id(s), db, key, now, true).id;
  }

  // The fetch of flight `id` answered with a string or nil (and its PTTL). Takes the flight out
  // of the table and stores the value unless the flight was detached. Either way the waiters
  // are returned, to be answered with this reply (outside any cache lock: they are owned).
  Landing<W> land(FlightId id, const Fetched& f, Micros now) {
    Landing<W> out;
    land(id, f, now, out);
    return out;
  }
  // The same into `out`, whose waiter list is cleared and refilled: a caller that keeps one
  // Landing for every fill reuses its capacity and landing allocates nothing.
  void land(FlightId id, const Fetched& f, Micros now, Landing<W>& out) {
    out.found = out.detached = out.filled = false;
    out.waiters.clear();
    Shard& s = shard_of_id(id);
    Guard g(lock_of(s));
    auto flight = s.flights.take(id);
    if (!flight) return;
    out.found = true;
    take_waiters(*flight, out.waiters);
    Stats& st = s.store.counters();
    if (!flight->attached) {
      out.detached = true;
      st.cache_fills_discarded++;
      return;
    }
    if (!s.knobs.enabled) return;
    if (!f.missing && f.pttl_ms == -2) {
      st.cache_fills_rejected++;  // expired between GET and PTTL: the value is gone already
      return;
    }
    const uint64_t now_ms = static_cast<uint64_t>(now / 1000);
    Fill fill;
    fill.db = flight->db;
    fill.key = flight->key;
    fill.negative = f.missing;
    fill.value = f.value;
    fill.expiry_ms = s.knobs.ttl_ms ? now_ms + s.knobs.ttl_ms : kNoExpiry;
    if (!f.missing && f.pttl_ms >= 0) {
      // From the fetch's start: the upstream counted its PTTL after that, so the key lives at
      // least that long and the entry cannot outlive it.
      uint64_t upstream = static_cast<uint64_t>(flight->started / 1000) +
                          static_cast<uint64_t>(f.pttl_ms);
      if (upstream < fill.expiry_ms) fill.expiry_ms = upstream;
      fill.upstream_ttl = true;
    }
    fill.fetch_us = now > flight->started ? static_cast<uint64_t>(now - flight->started) : 0;
    out.filled = s.store.put(fill, s.store.hash(fill.key), now);
  }

  // The fetch of flight `id` failed (error or non-string reply, timeout, connection lost).
  // Takes the flight out; nothing is stored; answer the waiters with the error.
  Landing<W> abandon(FlightId id) {
    Landing<W> out;
    abandon(id, out);
    return out;
  }
  void abandon(FlightId id, Landing<W>& out) {
    out.found = out.detached = out.filled = false;
    out.waiters.clear();
    Shard& s = shard_of_id(id);
    Guard g(lock_of(s));
    auto flight = s.flights.take(id);
    if (!flight) return;
    out.found = true;
    out.detached = !flight->attached;
    take_waiters(*flight, out.waiters);
  }

  // A write to (db, key), or a tracking message for key (db = kAllDbs): drops the entry and
  // detaches in-flight fetches.
  void invalidate(uint32_t db, std::string_view key, Source src) {
    uint64_t h = hash(key);
    Shard& s = shard(h);
    Guard g(lock_of(s));
    s.store.erase(db, key, h);
    s.flights.detach(db, key);
    count_invalidation(s, src);
  }

  void flush_db(uint32_t db, Source src) {
    for (auto& s : shards_) {
      Guard g(lock_of(*s));
      s->store.erase_db(db);
      s->flights.detach_db(db);
      if (s->index == 0) count_invalidation(*s, src);
    }
  }

  // Drops every entry whose key `doomed` names, and detaches every flight (a fill in flight may
  // be of such a key; detached, it answers its waiters and caches nothing).
  void flush_keys_if(bool (*doomed)(const void* ctx, std::string_view key), const void* ctx,
                     Source src) {
    for (auto& s : shards_) {
      Guard g(lock_of(*s));
      s->store.erase_if(doomed, ctx);
      s->flights.detach_all();
      if (s->index == 0) count_invalidation(*s, src);
    }
  }

  void flush_all(Source src) {
    for (auto& s : shards_) {
      Guard g(lock_of(*s));
      s->store.clear();
      s->flights.detach_all();
      if (s->index == 0) count_invalidation(*s, src);
    }
  }

  // Active expiry with bounded work: up to `max_slots` table slots, spread over the shards.
  size_t expire_step(Micros now, size_t max_slots) {
    size_t n = 0;
    size_t per = max_slots / shards_.size() + 1;
    for (auto& s : shards_) {
      Guard g(lock_of(*s));
      n += s->store.expire_step(now, per, &Cache::refreshing_ctx, s.get());
    }
    return n;
  }

  // Settings at runtime. `shards`, `thread_safe` and `seed` keep their construction values.
  // Lower bounds evict at once; ttl_ms applies to new fills; a new policy re-threads the
  // entries. Shards take the new settings one after another.
  void apply(const Settings& s, Micros now) {
    Guard g(locking_ ? &settings_mu_ : nullptr);
    apply_locked(s, now);
  }
  void set_max_memory(uint64_t bytes, Micros now) {
    Guard g(locking_ ? &settings_mu_ : nullptr);
    Settings s = settings_;
    s.max_memory = bytes;
    apply_locked(s, now);
  }
  void set_ttl_ms(uint64_t ms) {
    Guard g(locking_ ? &settings_mu_ : nullptr);
    settings_.ttl_ms = ms;
    for (auto& s : shards_) {
      Guard sg(lock_of(*s));
      s->knobs.ttl_ms = ms;
    }
  }

  // Sums over the shards, each read under its lock.
  Stats stats() const {
    Stats total;
    for (const auto& s : shards_) {
      Guard g(lock_of(*s));
      total += s->store.snapshot();
    }
    return total;
  }
  uint64_t bytes() const {
    uint64_t n = 0;
    for (const auto& s : shards_) {
      Guard g(lock_of(*s));
      n += s->store.bytes();
    }
    return n;
  }
  size_t keys() const {
    size_t n = 0;
    for (const auto& s : shards_) {
      Guard g(lock_of(*s));
      n += s->store.keys();
    }
    return n;
  }
  // Flights not yet landed or abandoned (detached ones included).
  size_t flights() const {
    size_t n = 0;
    for (const auto& s : shards_) {
      Guard g(lock_of(*s));
      n += s->flights.size();
    }
    return n;
  }

  // For tests and diagnostics, with no other thread using the cache: no lock is taken.
  size_t shard_count() const { return shards_.size(); }
  const Store& store(size_t i) const { return shards_[i]->store; }

 private:
  // Moves a flight's waiters (pool-allocated, see node_pool.h) into a caller's list.
  template <class Flight>
  static void take_waiters(Flight& f, std::vector<W>& out) {
    out.reserve(out.size() + f.waiters.size());
    for (W& w : f.waiters) out.push_back(std::move(w));
    f.waiters.clear();
  }
  // What the per-key calls need of the settings, copied into each shard so that they read it
  // under the shard's lock while apply() changes the settings.
  struct Knobs {
    uint64_t ttl_ms = 0;
    bool single_flight = true;
    bool enabled = true;
  };

  // One cache line or more each, so that shards used by different threads share none.
  struct alignas(64) Shard {
    Shard(unsigned i, const StoreConfig& c, const Knobs& k, uint64_t hash_seed, uint64_t rng_seed)
        : index(i), knobs(k), store(c, hash_seed, rng_seed) {}
    mutable std::mutex mu;
    unsigned index;
    Knobs knobs;
    Store store;
    Flights<W> flights;
    uint64_t next_seq = 1;
  };

  // Holds `m` for a scope, or nothing when `m` is null (a single-threaded cache).
  class Guard {
   public:
    explicit Guard(std::mutex* m) : m_(m) {
      if (m_) m_->lock();
    }
    ~Guard() {
      if (m_) m_->unlock();
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    std::mutex* m_;
  };

  std::mutex* lock_of(const Shard& s) const { return locking_ ? &s.mu : nullptr; }

  // Whether a fetch of (db, key) is in flight (an expired entry is then served until it lands).
  // Cheap in the steady state: no flights, no lookup.
  static bool refreshing(Shard& s, uint32_t db, std::string_view key) {
    return s.flights.size() != 0 && s.flights.find(db, key) != nullptr;
  }
  static bool refreshing_ctx(void* shard, uint32_t db, std::string_view key) {
    return refreshing(*static_cast<Shard*>(shard), db, key);
  }
  uint64_t hash(std::string_view key) const { return hash_bytes(key, hash_seed_); }
  // Bits 4..35 pick the shard: the table uses the top 32 bits and the slot tag the low 4.
  Shard& shard(uint64_t h) const {
    const uint32_t x = static_cast<uint32_t>(h >> 4);
    return *shards_[pow2_ ? (x & shard_mask_) : x % shards_.size()];
  }
  Shard& shard_of_id(FlightId id) const {
    return *shards_[pow2_ ? (id & shard_mask_) : id % shards_.size()];
  }
  // seq * shards + index: never 0 (seq starts at 1), and land()/abandon() find the shard.
  // Called with the shard's lock held.
  FlightId next_id(Shard& s) { return s.next_seq++ * shards_.size() + s.index; }

  // Shard i's part of the budgets: an even split, remainders to the first shards. A shard whose
  // key share is 0 stores nothing. Reads settings_: construction, or settings_mu_ held.
  StoreConfig share(unsigned i) const {
    const uint64_t n = settings_.shards;
    StoreConfig c;
    c.max_memory = settings_.max_memory / n + (i < settings_.max_memory % n ? 1 : 0);
    if (settings_.max_keys != 0) {
      c.max_keys = settings_.max_keys / n + (i < settings_.max_keys % n ? 1 : 0);
      if (c.max_keys == 0) c.max_memory = 0;
    }
    c.max_value = settings_.max_value;
    c.xfetch_beta = settings_.xfetch_beta;
    c.policy = settings_.policy;
    c.policy_params = settings_.policy_params;
    return c;
  }
  Knobs knobs() const {
    Knobs k;
    k.ttl_ms = settings_.ttl_ms;
    k.single_flight = settings_.single_flight;
    k.enabled = settings_.max_memory != 0;
    return k;
  }

  // settings_mu_ held.
  void apply_locked(const Settings& s, Micros now) {
    const Settings fixed = settings_;
    settings_ = s;
    settings_.shards = fixed.shards;
    settings_.thread_safe = fixed.thread_safe;
    settings_.seed = fixed.seed;
    enabled_.store(settings_.max_memory != 0, std::memory_order_relaxed);
    const Knobs k = knobs();
    for (unsigned i = 0; i < shards_.size(); i++) {
      Shard& sh = *shards_[i];
      Guard g(lock_of(sh));
      sh.store.configure(share(i), now);
      sh.knobs = k;
    }
  }

  // The shard's lock held.
  void count_invalidation(Shard& s, Source src) {
    Stats& st = s.store.counters();
    if (src == Source::kLocal) {
      st.cache_invalidations_local++;
    } else {
      st.cache_invalidations_tracking++;
    }
  }

  mutable std::mutex settings_mu_;  // settings_ (thread-safe caches); taken before shard locks
  Settings settings_;
  bool locking_ = false;
  Shard* solo_ = nullptr;    // the only shard, when not locking (which implies one shard)
  bool pow2_ = true;          // the shard count is a power of two (1 included)...
  uint32_t shard_mask_ = 0;  // ...and this is it minus one: shard = bits & mask
  std::atomic<bool> enabled_{false};
  uint64_t hash_seed_ = 0;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace cache
