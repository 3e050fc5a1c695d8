// The single-flight table of one shard: at most one attached fetch per (db, key), with the
// waiters that joined it. Used through Cache (cache.h), which ties it to invalidation; the
// table itself knows nothing of entries.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cache/entry.h"
#include "cache/node_pool.h"
#include "cache/store.h"

namespace cache {

// Names a flight across the whole cache (it encodes the shard). Never reused; 0 is "none".
using FlightId = uint64_t;
inline constexpr FlightId kNoFlight = 0;

template <class W>
class Flights {
 public:
  // Nodes, keys and waiter lists come from the table's NodePool (node_pool.h says why).
  using Key = std::basic_string<char, std::char_traits<char>, PoolAlloc<char>>;
  using Waiters = std::vector<W, PoolAlloc<W>>;

  struct Flight {
    explicit Flight(NodePool* pool) : key(PoolAlloc<char>(pool)), waiters(PoolAlloc<W>(pool)) {}
    FlightId id = kNoFlight;
    uint32_t db = 0;
    // Cleared by an invalidation of its key, db or everything: the fetch may have read the value
    // from before the write, so it must not fill, and later readers must not join it.
    bool attached = true;
    bool refresh = false;  // started by XFetch, not by a miss
    Micros started = 0;
    Key key;
    Waiters waiters;
    Flight* next = nullptr;  // next attached flight for the same key (another db, or another
                             // flight of this one when single-flight is off)
  };

  Flights() = default;
  Flights(const Flights&) = delete;
  Flights& operator=(const Flights&) = delete;

  // The attached flight for (db, key), or nullptr. No allocation.
  Flight* find(uint32_t db, std::string_view key) {
    auto it = by_key_.find(key);
    if (it == by_key_.end()) return nullptr;
    for (Flight* f = it->second; f; f = f->next) {
      if (f->db == db) return f;
    }
    return nullptr;
  }

  // A new attached flight; it goes in front of any other for the same key.
  Flight& start(FlightId id, uint32_t db, std::string_view key, Micros now, bool refresh) {
    Flight& f = by_id_.try_emplace(id, &pool_).first->second;
    f.id = id;
    f.db = db;
    f.refresh = refresh;
    f.started = now;
    f.key.assign(key.data(), key.size());
    auto it = by_key_.find(key);
    if (it == by_key_.end()) {
      by_key_.emplace(std::string_view(f.key), &f);
    } else {
      f.next = it->second;
      rekey(it, &f);
    }
    return f;
  }

  // Detaches the flights of (db, key), or of the key in every db with kAllDbs.
  size_t detach(uint32_t db, std::string_view key) {
    auto it = by_key_.find(key);
    if (it == by_key_.end()) return 0;
    size_t n = 0;
    for (Flight* f = it->second; f;) {
      Flight* next = f->next;
      if (db == kAllDbs || f->db == db) {
        unlink(f);
        n++;
      }
      f = next;
    }
    return n;
  }

  size_t detach_db(uint32_t db) {
    std::vector<Flight*> doomed;
    for (auto& [key, head] : by_key_) {
      for (Flight* f = head; f; f = f->next) {
        if (f->db == db) doomed.push_back(f);
      }
    }
    for (Flight* f : doomed) unlink(f);
    return doomed.size();
  }

  size_t detach_all() {
    size_t n = 0;
    for (auto& [key, head] : by_key_) {
      for (Flight* f = head; f;) {
        Flight* next = f->next;
        f->attached = false;
        f->next = nullptr;
        f = next;
        n++;
      }
    }
    by_key_.clear();
    return n;
  }

  // Removes the flight and hands it over, or nullopt for an unknown id. The returned flight's
  // `attached` still says whether an invalidation detached it.
  std::optional<Flight> take(FlightId id) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return std::nullopt;
    if (it->second.attached) {
      unlink(&it->second);
      it->second.attached = true;
    }
    std::optional<Flight> out(std::move(it->second));
    by_id_.erase(it);
    return out;
  }

  size_t size() const { return by_id_.size(); }
  size_t attached() const {
    size_t n = 0;
    for (const auto& [key, head] : by_key_) {
      for (const Flight* f = head; f; f = f->next) n++;
    }
    return n;
  }

 private:
  using KeyMap = std::unordered_map<std::string_view, Flight*, std::hash<std::string_view>,
                                    std::equal_to<std::string_view>,
                                    PoolAlloc<std::pair<const std::string_view, Flight*>>>;
  using IdMap = std::unordered_map<FlightId, Flight, std::hash<FlightId>, std::equal_to<FlightId>,
                                   PoolAlloc<std::pair<const FlightId, Flight>>>;

  // The map's key views the head flight's string; when the head changes, so must the view
  // (node handles: no allocation).
  void rekey(typename KeyMap::iterator it, Flight* head) {
    auto node = by_key_.extract(it);
    node.key() = std::string_view(head->key);
    node.mapped() = head;
    by_key_.insert(std::move(node));
  }

  void unlink(Flight* f) {
    auto it = by_key_.find(f->key);
    Flight** pp = &it->second;
    while (*pp != f) pp = &(*pp)->next;
    *pp = f->next;
    if (it->second == nullptr) {
      by_key_.erase(it);
    } else if (it->first.data() == f->key.data()) {
      rekey(it, it->second);
    }
    f->attached = false;
    f->next = nullptr;
  }

  NodePool pool_;  // before the maps: they give their nodes back to it when destroyed
  IdMap by_id_{PoolAlloc<std::pair<const FlightId, Flight>>(&pool_)};  // every flight; nodes
                                                                       // keep addresses stable
  KeyMap by_key_{PoolAlloc<std::pair<const std::string_view, Flight*>>(&pool_)};  // attached
                                                                   // flights, chained per key
};

}  // namespace cache
