// libFuzzer target for cache::Cache: random operation sequences (lookups, joins, landings,
// abandons, invalidations, flushes, expiry steps, clock moves, settings changes) against a
// model of what the cache may answer.
//
// Checked after every operation:
//  - every shard's bytes() <= its max_memory, and equals recount_bytes(); keys() is the sum;
//  - flights() equals the model's count of flights not yet landed or abandoned;
// and on the operations themselves:
//  - a hit returns the value of the last fill the model saw for (db, key), not expired by the
//    model's clock (or within Store's refresh grace, while a fetch of the key is in flight);
//    a negative hit is a negative fill; nothing is ever served after an
//    invalidation or flush until a new fill;
//  - join/start_refresh follow single-flight (join an attached flight, or start one);
//  - land/abandon find exactly the flights the model has, with the waiters that joined them,
//    and report `detached` exactly when an invalidation covered them; a detached flight never
//    fills;
//  - abandon into a reused Landing clears what it held and returns the flight's own waiters.
#ifdef FUZZED_DATA_PROVIDER_H  // the g++ replay build (tests/CMakeLists.txt)
#include FUZZED_DATA_PROVIDER_H
#else
#include <fuzzer/FuzzedDataProvider.h>
#endif

#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cache/cache.h"
#include "fuzz_common.h"

namespace {

using cache::Cache;
using cache::FlightId;
using cache::kNoFlight;
using cache::LookupKind;
using cache::Micros;

struct ModelEntry {
  bool negative = false;
  std::string value;
  uint64_t expiry_ms = cache::kNoExpiry;
  bool upstream_ttl = false;  // the upstream key had a TTL (no refresh grace then)
};

struct ModelFlight {
  uint32_t db = 0;
  std::string key;
  Micros started = 0;
  bool attached = true;
  std::vector<int> waiters;
};

constexpr uint32_t kDbs[] = {0, 1, 2, 70000};  // 70000: beyond what an entry can hold

struct Harness {
  FuzzedDataProvider& in;
  cache::Settings settings;
  Cache<int> c;
  Micros now = 1'000'000'000;
  std::map<std::pair<uint32_t, std::string>, ModelEntry> entries;
  std::map<FlightId, ModelFlight> flights;
  int next_waiter = 1;
  unsigned fills = 0;

  Harness(FuzzedDataProvider& p, const cache::Settings& s) : in(p), settings(s), c(s) {}

  uint32_t pick_db() { return kDbs[in.ConsumeIntegralInRange<size_t>(0, 3)]; }
  std::string pick_key() { return "k" + std::to_string(in.ConsumeIntegralInRange<int>(0, 7)); }
  uint64_t now_ms() const { return static_cast<uint64_t>(now / 1000); }

  ModelFlight* attached_flight(uint32_t db, const std::string& key) {
    for (auto& [id, f] : flights) {
      if (f.attached && f.db == db && f.key == key) return &f;
    }
    return nullptr;
  }

  FlightId pick_flight() {
    if (flights.empty() || in.ConsumeIntegralInRange<int>(0, 15) == 0) {
      return in.ConsumeIntegralInRange<FlightId>(0, 64);  // maybe unknown, maybe landed already
    }
    auto it = flights.begin();
    std::advance(it, in.ConsumeIntegralInRange<size_t>(0, flights.size() - 1));
    return it->first;
  }

  void invalidate_model(uint32_t db, const std::string& key) {
    for (auto it = entries.begin(); it != entries.end();) {
      bool match = it->first.second == key && (db == cache::kAllDbs || it->first.first == db);
      it = match ? entries.erase(it) : std::next(it);
    }
    for (auto& [id, f] : flights) {
      if (f.key == key && (db == cache::kAllDbs || f.db == db)) f.attached = false;
    }
  }

  void get() {
    uint32_t db = pick_db();
    std::string key = pick_key();
    bool called = false;
    cache::Lookup r = c.get_with(db, key, now, [&](const cache::Lookup& v) {
      called = true;
      auto it = entries.find({db, key});
      FUZZ_CHECK(it != entries.end(), db);  // served something never filled or invalidated
      // Past its expiry only within the refresh grace (Store::get): respite's own TTL (not the
      // upstream key's), and a fetch of the key in flight.
      const ModelEntry& m = it->second;
      FUZZ_CHECK(now_ms() < m.expiry_ms ||
                     (!m.upstream_ttl && m.expiry_ms != cache::kNoExpiry &&
                      now_ms() < m.expiry_ms + cache::Store::kRefreshGraceMs &&
                      attached_flight(db, key) != nullptr),
                 now_ms(), m.expiry_ms);
      if (v.kind == LookupKind::kNegative) {
        FUZZ_CHECK(it->second.negative);
      } else {
        FUZZ_CHECK(!it->second.negative && v.value == it->second.value, v.value.size(),
                   it->second.value.size());
      }
    });
    FUZZ_CHECK(called == (r.kind != LookupKind::kMiss));
    if (r.kind != LookupKind::kMiss && r.refresh) {
      bool had = attached_flight(db, key) != nullptr;
      FlightId id = c.start_refresh(db, key, now);
      FUZZ_CHECK((id == kNoFlight) == had, id);
      if (id != kNoFlight) {
        FUZZ_CHECK(!flights.count(id), id);
        flights[id] = ModelFlight{db, key, now, true, {}};
      }
    }
  }

  void join() {
    uint32_t db = pick_db();
    std::string key = pick_key();
    int w = next_waiter++;
    ModelFlight* existing = attached_flight(db, key);
    cache::Join j = c.join(db, key, w, now);
    if (settings.single_flight && existing) {
      FUZZ_CHECK(!j.started);
      FUZZ_CHECK(flights.count(j.id) && &flights[j.id] == existing, j.id);
      existing->waiters.push_back(w);
    } else {
      FUZZ_CHECK(j.started && j.id != kNoFlight && !flights.count(j.id), j.id);
      flights[j.id] = ModelFlight{db, key, now, true, {w}};
    }
  }

  template <class W>
  void check_landing(FlightId id, const cache::Landing<W>& l) {
    auto it = flights.find(id);
    FUZZ_CHECK(l.found == (it != flights.end()), id);
    if (!l.found) return;
    FUZZ_CHECK(l.detached == !it->second.attached, id);
    FUZZ_CHECK(l.waiters == it->second.waiters, l.waiters.size(), it->second.waiters.size());
    if (l.detached) FUZZ_CHECK(!l.filled);
  }

  void land() {
    FlightId id = pick_flight();
    cache::Fetched f;
    f.missing = in.ConsumeBool();
    std::string value(in.ConsumeIntegralInRange<size_t>(0, 300), static_cast<char>('a' + fills % 26));
    value += std::to_string(fills++);
    f.value = value;
    const int64_t pttls[] = {-2, -1, 0, 1, 50, 5000};
    f.pttl_ms = pttls[in.ConsumeIntegralInRange<size_t>(0, 5)];
    cache::Landing<int> l = c.land(id, f, now);
    check_landing(id, l);
    if (!l.found) return;
    ModelFlight mf = std::move(flights[id]);
    flights.erase(id);
    if (!l.filled) return;  // the old entry may or may not be gone: the model keeps it
    ModelEntry e;
    e.negative = f.missing;
    if (!f.missing) e.value = value;
    uint64_t ttl = settings.ttl_ms;
    e.expiry_ms = ttl ? now_ms() + ttl : cache::kNoExpiry;
    if (!f.missing && f.pttl_ms >= 0) {
      uint64_t up = static_cast<uint64_t>(mf.started / 1000) + static_cast<uint64_t>(f.pttl_ms);
      if (up < e.expiry_ms) e.expiry_ms = up;
      e.upstream_ttl = true;
    }
    FUZZ_CHECK(now_ms() < e.expiry_ms, now_ms(), e.expiry_ms);  // filled, so not expired
    entries[{mf.db, mf.key}] = e;
  }

  void abandon() {
    FlightId id = pick_flight();
    cache::Landing<int> l = c.abandon(id);
    FUZZ_CHECK(!l.filled);
    check_landing(id, l);
    flights.erase(id);
  }

  // A fetch connection fails (error, timeout, lost): the proxy abandons each of its flights
  // into one reused Landing (Server::fetch_landed). Here the flights started before a cutoff.
  void fail_connection() {
    Micros cutoff = now - in.ConsumeIntegralInRange<Micros>(0, 3'000'000);
    std::vector<FlightId> ids;
    for (auto& [id, f] : flights) {
      if (f.started < cutoff) ids.push_back(id);
    }
    cache::Landing<int> l;
    l.waiters.push_back(-1);  // what an earlier landing left: cleared
    for (FlightId id : ids) {
      c.abandon(id, l);
      FUZZ_CHECK(l.found && !l.filled, id);
      check_landing(id, l);
      flights.erase(id);
    }
  }

  void settings_change() {
    switch (in.ConsumeIntegralInRange<int>(0, 2)) {
      case 0: {
        uint64_t m = in.ConsumeIntegralInRange<uint64_t>(0, 20000);
        c.set_max_memory(m, now);
        settings.max_memory = m;
        break;
      }
      case 1: {
        uint64_t t = in.ConsumeIntegralInRange<uint64_t>(0, 5000);
        c.set_ttl_ms(t);
        settings.ttl_ms = t;
        break;
      }
      default: {
        cache::Settings s = c.settings();
        s.policy = static_cast<cache::PolicyKind>(in.ConsumeIntegralInRange<int>(0, 8));
        s.max_keys = in.ConsumeIntegralInRange<uint64_t>(0, 12);
        s.max_value = in.ConsumeIntegralInRange<uint64_t>(0, 400);
        s.single_flight = settings.single_flight;  // changing it with flights out is not modelled
        c.apply(s, now);
        settings = c.settings();
        break;
      }
    }
  }

  void check_invariants() {
    size_t keys = 0;
    for (size_t i = 0; i < c.shard_count(); ++i) {
      const cache::Store& s = c.store(i);
      FUZZ_CHECK(s.bytes() <= s.config().max_memory, s.bytes(),
                 s.config().max_memory);
      FUZZ_CHECK(s.recount_bytes() == s.bytes(), s.recount_bytes(), s.bytes());
      if (s.config().max_keys) FUZZ_CHECK(s.keys() <= s.config().max_keys, s.keys());
      keys += s.keys();
    }
    FUZZ_CHECK(keys == c.keys(), keys, c.keys());
    FUZZ_CHECK(c.flights() == flights.size(), c.flights(), flights.size());
  }

  void run() {
    for (int step = 0; step < 2000 && in.remaining_bytes() > 0; ++step) {
      switch (in.ConsumeIntegralInRange<int>(0, 12)) {
        case 0: case 1: get(); break;
        case 2: case 3: join(); break;
        case 4: case 5: land(); break;
        case 6: abandon(); break;
        case 7: {
          uint32_t db = in.ConsumeBool() ? cache::kAllDbs : pick_db();
          std::string key = pick_key();
          c.invalidate(db, key, cache::Source::kLocal);
          invalidate_model(db, key);
          break;
        }
        case 8: {
          uint32_t db = pick_db();
          c.flush_db(db, cache::Source::kLocal);
          for (auto it = entries.begin(); it != entries.end();) {
            it = it->first.first == db ? entries.erase(it) : std::next(it);
          }
          for (auto& [id, f] : flights) {
            if (f.db == db) f.attached = false;
          }
          break;
        }
        case 9:
          if (in.ConsumeBool()) {
            c.flush_all(cache::Source::kTracking);
            entries.clear();
            for (auto& [id, f] : flights) f.attached = false;
          } else {
            c.expire_step(now, in.ConsumeIntegralInRange<size_t>(0, 64));
          }
          break;
        case 10: now += in.ConsumeIntegralInRange<Micros>(0, 2'000'000); break;
        case 11: settings_change(); break;
        case 12: fail_connection(); break;
      }
      check_invariants();
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  cache::Settings s;
  s.max_memory = in.ConsumeIntegralInRange<uint64_t>(0, 20000);
  s.ttl_ms = in.ConsumeIntegralInRange<uint64_t>(0, 5000);
  s.max_keys = in.ConsumeIntegralInRange<uint64_t>(0, 12);
  s.max_value = in.ConsumeIntegralInRange<uint64_t>(0, 400);
  s.policy = static_cast<cache::PolicyKind>(in.ConsumeIntegralInRange<int>(0, 8));
  s.xfetch_beta = in.ConsumeBool() ? 1.0 : 0.0;
  s.single_flight = in.ConsumeIntegralInRange<int>(0, 7) != 0;
  s.shards = in.ConsumeIntegralInRange<unsigned>(1, 4);  // 3: not a power of two
  s.seed = 12345;
  Harness h(in, s);
  h.settings = h.c.settings();
  h.run();
  return 0;
}
