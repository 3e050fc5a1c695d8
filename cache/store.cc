#include "cache/store.h"

#include <algorithm>

#include <cassert>
#include <cstring>
#include <new>
#include <vector>

#include "cache/xfetch.h"

namespace cache {

// Slot tags live in the low 4 bits of entry pointers.
static_assert(__STDCPP_DEFAULT_NEW_ALIGNMENT__ >= 16, "entries must be 16-byte aligned");

namespace {

// Table sizes grow by 1.5x, not 2x: right after a growth the table is 7/8 / 1.5 = 58% full, so
// a slot costs at most 8 / 0.58 = 13.7 bytes per entry instead of 18.3 (issue 4's 64-byte
// budget per entry has no room for the latter).
size_t next_slots(size_t cap) { return cap == 0 ? 16 : cap + cap / 2; }
bool fits(size_t n, size_t cap) { return n * 8 <= cap * 7; }

}  // namespace

Store::Store(const StoreConfig& config, uint64_t hash_seed, uint64_t rng_seed)
    : config_(config), hash_seed_(hash_seed), rng_(rng_seed) {
  policy_ = make_policy(config_.policy, config_.policy_params, *this, rng_, hash_seed_);
  policy_->set_capacity(config_.max_memory);
  policy_bytes_ = policy_->memory();
}

Store::~Store() { clear(); }

size_t Store::fit_slots(size_t n) {
  if (n == 0) return 0;
  size_t cap = next_slots(0);
  while (!fits(n, cap)) cap = next_slots(cap);
  return cap;
}

size_t Store::growth_bytes(size_t n) const {
  if (fits(n, cap_)) return 0;
  return (next_slots(cap_) - cap_) * sizeof(uintptr_t);
}

bool Store::expired(const Entry& e, Micros now) const {
  return static_cast<uint64_t>(now / 1000) >= e.expiry_ms;
}

size_t Store::find(uint32_t db, std::string_view key, uint64_t h) const {
  if (cap_ == 0) return kNpos;
  const uintptr_t tag = h & 15;
  for (size_t i = home(h);; i = next(i)) {
    uintptr_t s = slots_[i];
    if (s == 0) return kNpos;
    if ((s & 15) != tag) continue;
    const Entry* e = entry_at(s);
    if (e->key_len == key.size() && (db == kAllDbs || e->db == db) &&
        (key.empty() || std::memcmp(e->key_data(), key.data(), key.size()) == 0)) {
      return i;
    }
  }
}

size_t Store::find_entry(const Entry* e) const {
  size_t i = home(hash(e->key()));
  while (entry_at(slots_[i]) != e) {
    assert(slots_[i] != 0);
    i = next(i);
  }
  return i;
}

Lookup Store::get(uint32_t db, std::string_view key, uint64_t h, Micros now,
                  RefreshingFn refreshing, void* ctx) {
  size_t i = find(db, key, h);
  if (i != kNpos) {
    Entry* e = entry_at(slots_[i]);
    if (!expired(*e, now) ||
        (refreshing && in_refresh_grace(*e, now) && refreshing(ctx, db, key))) {
      policy_->on_hit(*e, h, now);
      stats_.cache_hits++;
      Lookup r;
      r.kind = e->negative() ? LookupKind::kNegative : LookupKind::kHit;
      r.value = e->value();
      r.refresh = early_refresh(*e, now);
      return r;
    }
    erase_at(i);
    stats_.cache_expired++;
  }
  stats_.cache_misses++;
  policy_->on_miss(h);
  return {};
}

bool Store::contains(uint32_t db, std::string_view key, Micros now) const {
  size_t i = find(db, key, hash(key));
  return i != kNpos && !expired(*entry_at(slots_[i]), now);
}

bool Store::in_refresh_grace(const Entry& e, Micros now) const {
  return !e.is_volatile() && e.expiry_ms != kNoExpiry &&
         static_cast<uint64_t>(now / 1000) < e.expiry_ms + kRefreshGraceMs;
}

bool Store::early_refresh(const Entry& e, Micros now) {
  const double beta = config_.xfetch_beta;
  if (!(beta > 0) || e.expiry_ms == kNoExpiry) return false;
  // delta is the recompute time. A loopback fetch takes ~100 us, which makes the early-refresh
  // window narrower than the gap between two reads of even a hot key, so the entry would expire
  // with no read inside it. A floor of a few ms widens the window to where reads land; the
  // refresh is single-flighted, so refreshing a little early costs one fetch per TTL at most.
  const double delta = std::max(kMinRefreshDeltaUs, static_cast<double>(decode_fetch_us(e.fetch)));
  if (delta <= 0) return false;
  const double expiry_us = static_cast<double>(e.expiry_ms) * 1000;
  const double t = static_cast<double>(now);
  // -ln(rand) exceeds 40 with probability e^-40: skip the draw and the log on almost every hit.
  if (expiry_us - t > delta * beta * 40) return false;
  return should_refresh_early(t, expiry_us, delta, beta, rng_.unit());
}

bool Store::put(const Fill& f, uint64_t h, Micros now) {
  if (size_t i = find(f.db, f.key, h); i != kNpos) erase_at(i);
  if (config_.max_memory == 0) return false;

  const size_t value_len = f.negative ? 0 : f.value.size();
  const uint64_t charge = entry_charge(f.key.size(), value_len);
  const bool admissible =
      value_len <= config_.max_value && f.key.size() <= kMaxEntryKey && f.db <= kMaxEntryDb &&
      f.expiry_ms > static_cast<uint64_t>(now / 1000) &&
      // It must fit in an otherwise empty store, or evicting for it would be in vain.
      charge + next_slots(0) * sizeof(uintptr_t) + policy_bytes_ <= config_.max_memory;
  if (!admissible) {
    stats_.cache_fills_rejected++;
    return false;
  }

  // Make room before inserting, so bytes() never exceeds the budget, not even for a moment.
  for (;;) {
    const bool keys_ok = config_.max_keys == 0 || count_ < config_.max_keys;
    const uint64_t policy_growth = policy_->memory_for(count_ + 1) - policy_bytes_;
    if (keys_ok && bytes() + charge + growth_bytes(count_ + 1) + policy_growth <=
                       config_.max_memory)
      break;
    // After many evictions the table may be mostly empty: give that back before evicting more.
    if (keys_ok && maybe_shrink()) continue;
    Entry* v = policy_->victim(now, false);
    if (v == nullptr) {
      stats_.cache_fills_rejected++;
      return false;
    }
    evict(v);
  }
  void* mem = nullptr;
  if (fits(count_ + 1, cap_) || rehash(next_slots(cap_))) {
    mem = ::operator new(sizeof(Entry) + f.key.size() + value_len, std::nothrow);
  }
  if (mem == nullptr) {
    stats_.cache_fills_rejected++;
    return false;
  }
  assert((reinterpret_cast<uintptr_t>(mem) & 15) == 0);
  policy_->reserve(count_ + 1);
  policy_bytes_ = policy_->memory();

  Entry* e = new (mem) Entry();
  e->expiry_ms = f.expiry_ms > kNoExpiry ? kNoExpiry : f.expiry_ms;
  e->db = f.db;
  e->key_len = static_cast<uint32_t>(f.key.size());
  e->value_len = static_cast<uint32_t>(value_len);
  e->flags = (f.negative ? Entry::kNegative : 0) | (f.upstream_ttl ? Entry::kVolatile : 0);
  e->fetch = encode_fetch_us(f.fetch_us);
  if (!f.key.empty()) std::memcpy(e->key_data(), f.key.data(), f.key.size());
  if (value_len) std::memcpy(e->key_data() + f.key.size(), f.value.data(), value_len);

  size_t i = home(h);
  while (slots_[i] != 0) i = next(i);
  slots_[i] = reinterpret_cast<uintptr_t>(e) | (h & 15);
  count_++;
  entry_bytes_ += charge;
  payload_bytes_ += f.key.size() + value_len;
  policy_->on_insert(*e, h, now);
  stats_.cache_fills++;
  return true;
}

void Store::erase_at(size_t i) {
  Entry* e = entry_at(slots_[i]);
  policy_->on_erase(*e);
  count_--;
  entry_bytes_ -= entry_charge(e->key_len, e->value_len);
  payload_bytes_ -= e->key_len + e->value_len;
  ::operator delete(e);

  // Backward shift: pull later members of the probe run into the hole unless that would put
  // them before their home slot. Keeps every run gap-free, so lookups stop at the first empty.
  size_t hole = i;
  for (size_t j = next(i); slots_[j] != 0; j = next(j)) {
    size_t k = home(hash(entry_at(slots_[j])->key()));
    bool stays = hole <= j ? (hole < k && k <= j) : (hole < k || k <= j);
    if (!stays) {
      slots_[hole] = slots_[j];
      hole = j;
    }
  }
  slots_[hole] = 0;
}

void Store::evict(Entry* e) {
  erase_at(find_entry(e));
  stats_.cache_evictions++;
}

size_t Store::erase(uint32_t db, std::string_view key, uint64_t h) {
  size_t n = 0;
  for (size_t i; (i = find(db, key, h)) != kNpos;) {
    erase_at(i);
    n++;
  }
  return n;
}

size_t Store::erase_db(uint32_t db) {
  std::vector<Entry*> doomed;
  for (size_t i = 0; i < cap_; i++) {
    if (slots_[i] != 0 && entry_at(slots_[i])->db == db) doomed.push_back(entry_at(slots_[i]));
  }
  for (Entry* e : doomed) erase_at(find_entry(e));
  maybe_shrink();
  return doomed.size();
}

size_t Store::erase_if(bool (*doomed)(const void* ctx, std::string_view key), const void* ctx) {
  std::vector<Entry*> out;
  for (size_t i = 0; i < cap_; i++) {
    if (slots_[i] != 0 && doomed(ctx, entry_at(slots_[i])->key())) out.push_back(entry_at(slots_[i]));
  }
  for (Entry* e : out) erase_at(find_entry(e));
  maybe_shrink();
  return out.size();
}

void Store::clear() {
  for (size_t i = 0; i < cap_; i++) {
    if (slots_[i] != 0) ::operator delete(entry_at(slots_[i]));
  }
  policy_->clear();
  slots_.reset();
  cap_ = count_ = 0;
  entry_bytes_ = payload_bytes_ = 0;
  expire_cursor_ = 0;
}

bool Store::rehash(size_t new_cap) {
  std::unique_ptr<uintptr_t[]> fresh(new (std::nothrow) uintptr_t[new_cap]());
  if (!fresh) return false;
  std::unique_ptr<uintptr_t[]> old = std::move(slots_);
  size_t old_cap = cap_;
  slots_ = std::move(fresh);
  cap_ = new_cap;
  for (size_t j = 0; j < old_cap; j++) {
    if (old[j] == 0) continue;
    size_t i = home(hash(entry_at(old[j])->key()));
    while (slots_[i] != 0) i = next(i);
    slots_[i] = old[j];
  }
  expire_cursor_ = 0;
  return true;
}

bool Store::maybe_shrink() {
  if (count_ == 0) {
    bool had = cap_ != 0;
    slots_.reset();
    cap_ = 0;
    expire_cursor_ = 0;
    return had;
  }
  return cap_ > next_slots(0) && count_ * 4 < cap_ && rehash(fit_slots(count_ * 2));
}

size_t Store::expire_step(Micros now, size_t max_slots, RefreshingFn refreshing, void* ctx) {
  size_t removed = 0;
  for (size_t n = 0; n < max_slots && count_ > 0; n++) {
    if (expire_cursor_ >= cap_) expire_cursor_ = 0;
    uintptr_t s = slots_[expire_cursor_];
    // An entry being refreshed stays through its grace (get() serves it until the refresh lands).
    if (s != 0 && expired(*entry_at(s), now) &&
        !(refreshing && in_refresh_grace(*entry_at(s), now) &&
          refreshing(ctx, static_cast<uint32_t>(entry_at(s)->db), entry_at(s)->key()))) {
      // Stay on this slot: the backward shift may have pulled another entry into it.
      erase_at(expire_cursor_);
      stats_.cache_expired++;
      removed++;
    } else {
      expire_cursor_++;
    }
  }
  return removed;
}

Entry* Store::random_entry() {
  if (count_ == 0) return nullptr;
  for (size_t i = static_cast<size_t>(rng_.below(cap_));; i = next(i)) {
    if (slots_[i] != 0) return entry_at(slots_[i]);
  }
}

void Store::configure(const StoreConfig& config, Micros now) {
  const bool new_policy = config.policy != config_.policy ||
                          config.policy_params.lfu_log_factor != config_.policy_params.lfu_log_factor ||
                          config.policy_params.lfu_decay_time != config_.policy_params.lfu_decay_time ||
                          config.policy_params.samples != config_.policy_params.samples;
  config_ = config;
  if (new_policy) {
    policy_ = make_policy(config_.policy, config_.policy_params, *this, rng_, hash_seed_);
    policy_->set_capacity(config_.max_memory);
    for (size_t i = 0; i < cap_; i++) {
      if (slots_[i] != 0) {
        Entry* e = entry_at(slots_[i]);
        policy_->on_insert(*e, hash(e->key()), now);
      }
    }
  } else {
    policy_->set_capacity(config_.max_memory);
  }
  policy_->reserve(count_);
  policy_bytes_ = policy_->memory();
  shrink_to_bounds(now);
}

void Store::shrink_to_bounds(Micros now) {
  if (config_.max_memory == 0) {
    clear();
    return;
  }
  while (count_ > 0 && (bytes() > config_.max_memory ||
                        (config_.max_keys != 0 && count_ > config_.max_keys))) {
    if (maybe_shrink()) continue;  // a sparse table gives memory back without evicting
    Entry* v = policy_->victim(now, true);
    if (v == nullptr) break;
    evict(v);
  }
  maybe_shrink();
}

uint64_t Store::recount_bytes() const {
  uint64_t total = table_bytes() + policy_->memory();
  for (size_t i = 0; i < cap_; i++) {
    if (slots_[i] != 0) {
      const Entry* e = entry_at(slots_[i]);
      total += entry_charge(e->key_len, e->value_len);
    }
  }
  return total;
}

Stats Store::snapshot() const {
  Stats s = stats_;
  s.cache_keys = count_;
  s.cache_bytes = bytes();
  return s;
}

}  // namespace cache
