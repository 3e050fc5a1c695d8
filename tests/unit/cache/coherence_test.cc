// A model of the proxy around the cache: reads, fetches that execute upstream at one moment and
// land later, local writes (invalidate, execute, acknowledge, invalidate), writes behind
// respite's back announced by tracking messages, timeouts, flushes and expiry, all interleaved
// at random. The coherence contract says: no read answered after a write was acknowledged (or
// its tracking message arrived) may see a value older than that write.
#include <catch2/catch.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/cache.h"
#include "helpers.h"

using namespace cache;
using namespace cache_test;

namespace {

struct Fetch {
  FlightId id;
  int key;
  bool executed = false;
  int version = 0;
};

struct Write {
  int key;
  bool executed = false;
  int version = 0;
};

std::string key_name(int k) { return "key" + std::to_string(k); }
std::string encode(int version) { return "v" + std::to_string(version); }
int decode(std::string_view v) { return std::stoi(std::string(v.substr(1))); }

template <class T>
T take_random(std::vector<T>& v, Rng& r) {
  size_t i = static_cast<size_t>(r.below(v.size()));
  T t = v[i];
  v[i] = v.back();
  v.pop_back();
  return t;
}

}  // namespace

TEST_CASE("coherence: no read after an acknowledged write sees an older value") {
  const unsigned shards = GENERATE(1u, 3u);
  const bool single_flight = GENERATE(true, false);
  FakeClock clk;
  Settings s;
  s.seed = 5;
  s.shards = shards;
  s.single_flight = single_flight;
  s.ttl_ms = 50;
  s.max_memory = 4096;  // small: evictions happen too
  Cache<int> c(s);
  Rng r(2024 + shards + (single_flight ? 100 : 0));

  const int kKeys = 6;
  std::vector<int> upstream(kKeys, 0);  // current version on the upstream
  std::vector<int> floor(kKeys, 0);     // newest version a read must not go below
  std::vector<Fetch> fetches;           // sent, not landed
  std::vector<Write> writes;            // local writes not acknowledged
  std::vector<std::pair<int, int>> tracking;  // (key, version) messages not delivered
  std::unordered_map<int, int> waiter_floor;  // waiter -> floor when its read arrived
  int next_waiter = 0;
  uint64_t hits = 0, landed_values = 0;

  for (int step = 0; step < 40000; step++) {
    const int k = static_cast<int>(r.below(kKeys));
    const std::string key = key_name(k);
    uint64_t op = r.below(20);
    switch (op >= 12 ? 0 : op) {
      case 0:
      case 1: {  // a read
        Lookup l = c.get(0, key, clk.now);
        if (l.kind == LookupKind::kHit) {
          REQUIRE(decode(l.value) >= floor[k]);
          hits++;
          if (l.refresh) {
            FlightId id = c.start_refresh(0, key, clk.now);
            if (id != kNoFlight) fetches.push_back({id, k});
          }
        } else {
          REQUIRE(l.kind == LookupKind::kMiss);  // nothing is ever missing upstream here
          int w = next_waiter++;
          waiter_floor[w] = floor[k];
          Join j = c.join(0, key, w, clk.now);
          if (j.started) fetches.push_back({j.id, k});
        }
        break;
      }
      case 2:  // a fetch executes upstream (GET + PTTL read the value of that moment)
        for (Fetch& f : fetches) {
          if (!f.executed && r.below(2)) {
            f.executed = true;
            f.version = upstream[f.key];
            break;
          }
        }
        break;
      case 3: {  // a fetch's reply arrives
        std::vector<Fetch> done;
        for (size_t i = 0; i < fetches.size(); i++) {
          if (fetches[i].executed) {
            done.push_back(fetches[i]);
            fetches[i] = fetches.back();
            fetches.pop_back();
            break;
          }
        }
        for (const Fetch& f : done) {
          Landing<int> l = c.land(f.id, value(encode(f.version)), clk.now);
          REQUIRE(l.found);
          for (int w : l.waiters) {
            REQUIRE(f.version >= waiter_floor[w]);
            waiter_floor.erase(w);
            landed_values++;
          }
        }
        break;
      }
      case 4:  // a local write: invalidate before forwarding
        c.invalidate(0, key, Source::kLocal);
        writes.push_back({k});
        break;
      case 5:  // a local write executes upstream
        for (Write& w : writes) {
          if (!w.executed && r.below(2)) {
            w.executed = true;
            w.version = ++upstream[w.key];
            break;
          }
        }
        break;
      case 6:  // a local write's reply: invalidate again, then acknowledge to the client
        for (size_t i = 0; i < writes.size(); i++) {
          if (writes[i].executed) {
            Write w = writes[i];
            writes[i] = writes.back();
            writes.pop_back();
            c.invalidate(0, key_name(w.key), Source::kLocal);
            if (w.version > floor[w.key]) floor[w.key] = w.version;
            break;
          }
        }
        break;
      case 7:  // a write behind respite's back; its tracking message comes later
        tracking.push_back({k, ++upstream[k]});
        break;
      case 8:
        if (!tracking.empty()) {
          auto [tk, tv] = take_random(tracking, r);
          c.invalidate(kAllDbs, key_name(tk), Source::kTracking);
          if (tv > floor[tk]) floor[tk] = tv;
        }
        break;
      case 9:  // a timeout frees a fetch's waiters (they get an error, no value)
        if (!fetches.empty() && r.below(4) == 0) {
          Fetch f = take_random(fetches, r);
          Landing<int> l = c.abandon(f.id);
          REQUIRE(l.found);
          for (int w : l.waiters) waiter_floor.erase(w);
        }
        break;
      case 10:
        clk.advance_ms(static_cast<int64_t>(r.below(20)));
        if (r.below(8) == 0) c.expire_step(clk.now, 16);
        break;
      case 11:
        if (r.below(50) == 0) {
          // Null tracking message / lost link: everything goes; the pending tracking messages
          // are covered by it.
          c.flush_all(Source::kTracking);
          for (auto [tk, tv] : tracking) {
            if (tv > floor[tk]) floor[tk] = tv;
          }
          tracking.clear();
        }
        break;
    }
    REQUIRE(c.bytes() <= s.max_memory);
  }
  INFO("hits " << hits << " answered by fetches " << landed_values);
  CHECK(hits > 500);
  CHECK(landed_values > 1500);
}
