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
//   Lookup r = cache.get(db, key, now);
//   hit/negative: answer from r.value now (copy it: it points into the entry). If r.refresh,
//       FlightId id = cache.start_refresh(db, key, now); if id != kNoFlight send the fetch
//       (GET + PTTL) tagged with id.
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
//   a timer: expire_step(now, budget); abandon_started_before(now - timeout, fn).
//
// Threads: not thread-safe. The state is split into shards chosen by key hash, each with its
// own store and flight table, so a per-shard lock can be added around each call: get, join,
// start_refresh, land, abandon and invalidate touch exactly one shard; flush_*, expire_step,
// settings and stats visit all of them.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/flights.h"
#include "cache/store.h"

namespace cache {

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
  unsigned shards = 1;                       // fixed at construction; budgets split evenly
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
  std::vector<W> waiters; // everyone who joined, in join order
};

// W: the proxy's waiter handle (who to answer: a client, a reply slot, an MGET position...).
// Movable; the cache only stores and returns it.
template <class W>
class Cache {
 public:
  explicit Cache(const Settings& s) : settings_(s) {
    if (settings_.shards == 0) settings_.shards = 1;
    uint64_t seed = settings_.seed;
    if (seed == 0) {
      std::random_device rd;
      seed = (uint64_t{rd()} << 32) ^ rd();
    }
    Rng seeds(seed);
    hash_seed_ = seeds.next();
    for (unsigned i = 0; i < settings_.shards; i++) {
      shards_.push_back(std::make_unique<Shard>(i, share(i), hash_seed_, seeds.next()));
    }
  }

  bool enabled() const { return settings_.max_memory != 0; }
  const Settings& settings() const { return settings_; }

  // Looks (db, key) up. Never allocates. See Lookup for how long r.value stays valid.
  Lookup get(uint32_t db, std::string_view key, Micros now) {
    uint64_t h = hash(key);
    return shard(h).store.get(db, key, h, now);
  }

  // After a miss: joins the attached flight for (db, key), or starts one (started = true).
  Join join(uint32_t db, std::string_view key, W waiter, Micros now) {
    uint64_t h = hash(key);
    Shard& s = shard(h);
    Stats& st = s.store.counters();
    if (settings_.single_flight) {
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
    if (s.flights.find(db, key)) return kNoFlight;
    Stats& st = s.store.counters();
    st.upstream_fetches++;
    st.cache_early_refreshes++;
    return s.flights.start(next_id(s), db, key, now, true).id;
  }

  // The fetch of flight `id` answered with a string or nil (and its PTTL). Takes the flight out
  // of the table and stores the value unless the flight was detached. Either way the waiters
  // are returned, to be answered with this reply.
  Landing<W> land(FlightId id, const Fetched& f, Micros now) {
    Shard& s = shard_of_id(id);
    auto flight = s.flights.take(id);
    Landing<W> out;
    if (!flight) return out;
    out.found = true;
    out.waiters = std::move(flight->waiters);
    Stats& st = s.store.counters();
    if (!flight->attached) {
      out.detached = true;
      st.cache_fills_discarded++;
      return out;
    }
    if (!enabled()) return out;
    if (!f.missing && f.pttl_ms == -2) {
      st.cache_fills_rejected++;  // expired between GET and PTTL: the value is gone already
      return out;
    }
    const uint64_t now_ms = static_cast<uint64_t>(now / 1000);
    Fill fill;
    fill.db = flight->db;
    fill.key = flight->key;
    fill.negative = f.missing;
    fill.value = f.value;
    fill.expiry_ms = settings_.ttl_ms ? now_ms + settings_.ttl_ms : kNoExpiry;
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
    return out;
  }

  // The fetch of flight `id` failed (error or non-string reply, timeout, connection lost).
  // Takes the flight out; nothing is stored; answer the waiters with the error.
  Landing<W> abandon(FlightId id) {
    Landing<W> out;
    auto flight = shard_of_id(id).flights.take(id);
    if (!flight) return out;
    out.found = true;
    out.detached = !flight->attached;
    out.waiters = std::move(flight->waiters);
    return out;
  }

  // The timeout sweep: abandons every flight started before `cutoff` and calls
  // fn(FlightId, std::vector<W>&& waiters) for each. Returns how many.
  template <class F>
  size_t abandon_started_before(Micros cutoff, F&& fn) {
    size_t n = 0;
    for (auto& s : shards_) {
      for (FlightId id : s->flights.started_before(cutoff)) {
        auto flight = s->flights.take(id);
        fn(id, std::move(flight->waiters));
        n++;
      }
    }
    return n;
  }

  // A write to (db, key), or a tracking message for key (db = kAllDbs): drops the entry and
  // detaches in-flight fetches.
  void invalidate(uint32_t db, std::string_view key, Source src) {
    uint64_t h = hash(key);
    Shard& s = shard(h);
    s.store.erase(db, key, h);
    s.flights.detach(db, key);
    count_invalidation(s, src);
  }

  void flush_db(uint32_t db, Source src) {
    for (auto& s : shards_) {
      s->store.erase_db(db);
      s->flights.detach_db(db);
    }
    count_invalidation(*shards_[0], src);
  }

  void flush_all(Source src) {
    for (auto& s : shards_) {
      s->store.clear();
      s->flights.detach_all();
    }
    count_invalidation(*shards_[0], src);
  }

  // Active expiry with bounded work: up to `max_slots` table slots, spread over the shards.
  size_t expire_step(Micros now, size_t max_slots) {
    size_t n = 0;
    size_t per = max_slots / shards_.size() + 1;
    for (auto& s : shards_) n += s->store.expire_step(now, per);
    return n;
  }

  // Settings at runtime. `shards` and `seed` keep their construction values. Lower bounds
  // evict at once; ttl_ms applies to new fills; a new policy re-threads the entries.
  void apply(const Settings& s, Micros now) {
    unsigned shards = settings_.shards;
    uint64_t seed = settings_.seed;
    settings_ = s;
    settings_.shards = shards;
    settings_.seed = seed;
    for (unsigned i = 0; i < shards_.size(); i++) shards_[i]->store.configure(share(i), now);
  }
  void set_max_memory(uint64_t bytes, Micros now) {
    Settings s = settings_;
    s.max_memory = bytes;
    apply(s, now);
  }
  void set_ttl_ms(uint64_t ms) { settings_.ttl_ms = ms; }

  Stats stats() const {
    Stats total;
    for (const auto& s : shards_) total += s->store.snapshot();
    return total;
  }
  uint64_t bytes() const {
    uint64_t n = 0;
    for (const auto& s : shards_) n += s->store.bytes();
    return n;
  }
  size_t keys() const {
    size_t n = 0;
    for (const auto& s : shards_) n += s->store.keys();
    return n;
  }
  // Flights not yet landed or abandoned (detached ones included).
  size_t flights() const {
    size_t n = 0;
    for (const auto& s : shards_) n += s->flights.size();
    return n;
  }

  // For tests and diagnostics.
  size_t shard_count() const { return shards_.size(); }
  const Store& store(size_t i) const { return shards_[i]->store; }

 private:
  struct Shard {
    Shard(unsigned i, const StoreConfig& c, uint64_t hash_seed, uint64_t rng_seed)
        : index(i), store(c, hash_seed, rng_seed) {}
    unsigned index;
    Store store;
    Flights<W> flights;
    uint64_t next_seq = 1;
  };

  uint64_t hash(std::string_view key) const { return hash_bytes(key, hash_seed_); }
  // Bits 4..35 pick the shard: the table uses the top 32 bits and the slot tag the low 4.
  Shard& shard(uint64_t h) {
    return *shards_[shards_.size() == 1 ? 0 : static_cast<uint32_t>(h >> 4) % shards_.size()];
  }
  Shard& shard_of_id(FlightId id) { return *shards_[id % shards_.size()]; }
  // seq * shards + index: never 0 (seq starts at 1), and land()/abandon() find the shard.
  FlightId next_id(Shard& s) { return s.next_seq++ * shards_.size() + s.index; }

  // Shard i's part of the budgets: an even split, remainders to the first shards. A shard whose
  // key share is 0 stores nothing.
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

  void count_invalidation(Shard& s, Source src) {
    Stats& st = s.store.counters();
    if (src == Source::kLocal) {
      st.cache_invalidations_local++;
    } else {
      st.cache_invalidations_tracking++;
    }
  }

  Settings settings_;
  uint64_t hash_seed_ = 0;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace cache
