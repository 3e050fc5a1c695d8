#include "cache/policy.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <new>
#include <vector>

namespace cache {

namespace {

// A circular intrusive list through Entry::prev/next with a sentinel. Front = most recent.
// Not movable: entries point at the sentinel.
class List {
 public:
  List() { reset(); }
  List(const List&) = delete;
  List& operator=(const List&) = delete;

  bool empty() const { return head_.next == &head_; }
  void push_front(Entry& e) {
    e.prev = &head_;
    e.next = head_.next;
    head_.next->prev = &e;
    head_.next = &e;
  }
  static void unlink(Entry& e) {
    e.prev->next = e.next;
    e.next->prev = e.prev;
  }
  void move_to_front(Entry& e) {
    unlink(e);
    push_front(e);
  }
  Entry* back() { return empty() ? nullptr : static_cast<Entry*>(head_.prev); }
  Entry* front() { return empty() ? nullptr : static_cast<Entry*>(head_.next); }
  // The entry before `e` (towards the front), or nullptr at the front.
  Entry* before(Entry& e) { return e.prev == &head_ ? nullptr : static_cast<Entry*>(e.prev); }
  void reset() { head_.prev = head_.next = &head_; }

 private:
  Links head_;
};

bool is_volatile_kind(PolicyKind k) {
  return k == PolicyKind::kVolatileLru || k == PolicyKind::kVolatileLfu ||
         k == PolicyKind::kVolatileRandom || k == PolicyKind::kVolatileTtl;
}

// Entries on one list in LRU order, or on two (upstream-TTL'd entries apart from the rest) for
// the volatile-* policies, so "is there any volatile entry" and "the oldest volatile entry" are
// O(1).
class ListPolicy : public Policy {
 public:
  explicit ListPolicy(bool split) : split_(split) {}

  void on_insert(Entry& e, uint64_t, Micros) override { list_of(e).push_front(e); }
  void on_hit(Entry& e, uint64_t, Micros) override { list_of(e).move_to_front(e); }
  void on_erase(Entry& e) override { List::unlink(e); }
  void clear() override {
    rest_.reset();
    vol_.reset();
  }

 protected:
  List& list_of(const Entry& e) { return split_ && e.is_volatile() ? vol_ : rest_; }
  // Any entry, least recently used first among volatile ones (only the forced path needs it).
  Entry* any_victim() {
    Entry* v = vol_.back();
    return v ? v : rest_.back();
  }

  bool split_;
  List rest_;  // every entry when !split_, else the entries without an upstream TTL
  List vol_;   // split_ only: entries with an upstream TTL
};

// noeviction, allkeys-lru, volatile-lru: exact LRU.
class LruPolicy final : public ListPolicy {
 public:
  explicit LruPolicy(PolicyKind kind) : ListPolicy(kind == PolicyKind::kVolatileLru), kind_(kind) {}

  Entry* victim(Micros, bool force) override {
    switch (kind_) {
      case PolicyKind::kAllKeysLru:
        return rest_.back();
      case PolicyKind::kVolatileLru:
        if (Entry* v = vol_.back()) return v;
        return force ? rest_.back() : nullptr;
      default:  // noeviction
        return force ? any_victim() : nullptr;
    }
  }

 private:
  PolicyKind kind_;
};

// Redis's LFU counter: 8 bits, logarithmic increments, decremented by one per decay period.
constexpr uint8_t kLfuInit = 5;

uint16_t lfu_minutes(Micros now) {
  return static_cast<uint16_t>((now / 60'000'000) & 0xffff);
}

// allkeys-lfu, volatile-lfu, allkeys-random, volatile-random, volatile-ttl: sampled like Redis
// (maxmemory-samples random entries, best candidate evicted).
class SampledPolicy final : public ListPolicy {
 public:
  SampledPolicy(PolicyKind kind, const PolicyParams& p, EntrySampler& sampler, Rng& rng)
      : ListPolicy(is_volatile_kind(kind)), kind_(kind), params_(p), sampler_(sampler), rng_(rng) {
    if (params_.samples < 1) params_.samples = 1;
  }

  void on_insert(Entry& e, uint64_t h, Micros now) override {
    ListPolicy::on_insert(e, h, now);
    e.meta8a = kLfuInit;
    e.meta16 = lfu_minutes(now);
  }

  void on_hit(Entry& e, uint64_t h, Micros now) override {
    ListPolicy::on_hit(e, h, now);
    if (!lfu()) return;
    uint8_t c = decayed(e, now);
    if (c < 255) {
      double base = c > kLfuInit ? c - kLfuInit : 0;
      double p = 1.0 / (base * params_.lfu_log_factor + 1);
      if (rng_.unit() < p) c++;
    }
    e.meta8a = c;
    e.meta16 = lfu_minutes(now);
  }

  Entry* victim(Micros now, bool force) override {
    bool vol_only = split_;
    if (vol_only && vol_.empty()) return force ? rest_.back() : nullptr;
    if (vol_.empty() && rest_.empty()) return nullptr;
    bool random = kind_ == PolicyKind::kAllKeysRandom || kind_ == PolicyKind::kVolatileRandom;
    int want = random ? 1 : params_.samples;
    Entry* best = nullptr;
    int found = 0;
    // Random table slots first; when volatile entries are too rare to be hit that way, fall
    // back to the oldest ones on their list so the work stays bounded.
    for (int tries = 0; found < want && tries < want * 8; tries++) {
      Entry* e = sampler_.random_entry();
      if (!e) break;
      if (vol_only && !e->is_volatile()) continue;
      found++;
      if (!best || better(*e, *best, now)) best = e;
    }
    if (!best) {
      for (Entry* e = vol_.back(); e && found < want; e = vol_.before(*e), found++) {
        if (!best || better(*e, *best, now)) best = e;
      }
    }
    return best;
  }

 private:
  bool lfu() const { return kind_ == PolicyKind::kAllKeysLfu || kind_ == PolicyKind::kVolatileLfu; }

  uint8_t decayed(const Entry& e, Micros now) const {
    if (params_.lfu_decay_time <= 0) return e.meta8a;
    uint16_t t = lfu_minutes(now);
    unsigned elapsed = static_cast<uint16_t>(t - e.meta16);  // wraps like Redis's 16-bit clock
    unsigned periods = elapsed / static_cast<unsigned>(params_.lfu_decay_time);
    return periods >= e.meta8a ? 0 : static_cast<uint8_t>(e.meta8a - periods);
  }

  // Whether `a` should be evicted before `b`.
  bool better(const Entry& a, const Entry& b, Micros now) const {
    if (lfu()) return decayed(a, now) < decayed(b, now);
    if (kind_ == PolicyKind::kVolatileTtl) return a.expiry_ms < b.expiry_ms;
    return false;
  }

  PolicyKind kind_;
  PolicyParams params_;
  EntrySampler& sampler_;
  Rng& rng_;
};

// Count-min sketch of 4-bit counters for W-TinyLFU: four counters per key, all in one 64-byte
// block (one cache line per access); conservative update; every counter halves after
// 40 x words (5 to 10 x entries) additions so old popularity fades.
class FrequencySketch {
 public:
  // `words` is a power of two, at least 8 (one block), or 0 for no sketch (all estimates 0).
  // 16 counters a word, 2 to 4 per entry (TinyLfuPolicy::sketch_words_for).
  void resize(uint64_t words) {
    std::vector<uint64_t>(words).swap(table_);
    block_mask_ = words ? words / 8 - 1 : 0;
    additions_ = 0;
    period_ = words * 4 * 10;
  }
  // Doubles the table keeping every estimate: a key's block index gains one high bit, so
  // block b moves to b or b + old block count, and both start as copies of b. False (and
  // unchanged) if the memory is not there.
  bool grow() {
    const size_t n = table_.size();
    if (n == 0) return false;
    try {
      std::vector<uint64_t> t(2 * n);
      std::copy(table_.begin(), table_.end(), t.begin());
      std::copy(table_.begin(), table_.end(), t.begin() + static_cast<std::ptrdiff_t>(n));
      table_.swap(t);
    } catch (const std::bad_alloc&) {
      return false;
    }
    block_mask_ = table_.size() / 8 - 1;
    period_ = table_.size() * 4 * 10;
    return true;
  }
  uint64_t words() const { return table_.size(); }
  uint64_t memory() const { return table_.capacity() * sizeof(uint64_t); }
  void clear() {
    std::fill(table_.begin(), table_.end(), 0);
    additions_ = 0;
  }

  unsigned estimate(uint64_t h) const {
    if (table_.empty()) return 0;
    unsigned m = 15;
    for (int i = 0; i < 4; i++) {
      unsigned c = get(h, i);
      if (c < m) m = c;
    }
    return m;
  }

  void add(uint64_t h) {
    if (table_.empty()) return;  // no sketch: every key looks equally rare
    // Conservative update: only the counters at the minimum grow. The four counters sit in
    // four different words, so each is read once and written at most once.
    size_t w[4];
    unsigned sh[4], c[4];
    unsigned m = 15;
    for (int i = 0; i < 4; i++) {
      w[i] = word(h, i);
      sh[i] = shift(h, i);
      c[i] = static_cast<unsigned>((table_[w[i]] >> sh[i]) & 15);
      if (c[i] < m) m = c[i];
    }
    if (m == 15) return;
    for (int i = 0; i < 4; i++) {
      if (c[i] == m) table_[w[i]] += uint64_t{1} << sh[i];
    }
    if (++additions_ >= period_) {
      for (uint64_t& w : table_) w = (w >> 1) & 0x7777777777777777ull;
      additions_ /= 2;
    }
  }

 private:
  // The block comes from the high hash bits, each counter's word and nibble from a different
  // byte of the low ones.
  size_t word(uint64_t h, int i) const {
    return static_cast<size_t>(((h >> 40) & block_mask_) * 8 + i * 2 + ((h >> (i * 8)) & 1));
  }
  unsigned shift(uint64_t h, int i) const { return static_cast<unsigned>(((h >> (i * 8 + 1)) & 15) * 4); }
  unsigned get(uint64_t h, int i) const {
    return static_cast<unsigned>((table_[word(h, i)] >> shift(h, i)) & 15);
  }

  std::vector<uint64_t> table_;
  uint64_t block_mask_ = 0;
  uint64_t additions_ = 0;
  uint64_t period_ = 64;
};

// W-TinyLFU (Einziger, Friedman, Manes) under a byte budget. New entries enter a small LRU
// window (1% of the budget). Entries pushed out of the window wait in `staged_` as admission
// candidates; when room is needed the oldest candidate duels the main area's LRU victim and the
// one the sketch has seen less often is evicted. The main area is a segmented LRU: a hit in
// probation (or on a candidate) promotes to protected (80% of the main budget), whose overflow
// is demoted back to probation.
class TinyLfuPolicy final : public Policy {
 public:
  enum Segment : uint8_t { kWindow, kStaged, kProbation, kProtected };

  explicit TinyLfuPolicy(uint64_t seed) : seed_(seed) {}

  void set_capacity(uint64_t bytes) override {
    window_target_ = bytes / 100;
    protected_target_ = (bytes - window_target_) / 10 * 8;
    // The sketch starts at one block and doubles as entries arrive (reserve), keeping 2 to 4
    // counters an entry (1 to 2 bytes); never past 1/64 of the budget nor 32 MB; no sketch at
    // all below 4 KB.
    max_words_ = 0;
    if (bytes / 512 >= 8) {
      max_words_ = 8;
      while (max_words_ * 2 <= bytes / 512 && max_words_ < (uint64_t{1} << 22)) max_words_ *= 2;
    }
    const uint64_t start = max_words_ ? 8 : 0;
    if (sketch_.words() == 0 ? start != 0 : (start == 0 || sketch_.words() > max_words_))
      sketch_.resize(start);
  }
  uint64_t memory() const override { return sketch_.memory(); }
  uint64_t memory_for(size_t entries) const override {
    const uint64_t w = sketch_words_for(entries);
    return w > sketch_.words() ? w * sizeof(uint64_t) : memory();
  }
  void reserve(size_t entries) override {
    const uint64_t w = sketch_words_for(entries);
    while (sketch_.words() < w && sketch_.grow()) {
    }
  }

  void on_insert(Entry& e, uint64_t, Micros) override {
    e.meta8b = kWindow;
    window_.push_front(e);
    window_bytes_ += charge(e);
    // Spill the window's overflow (keeping at least the newest entry) into the candidates.
    while (window_bytes_ > window_target_ && window_.back() != &e) {
      Entry& c = *window_.back();
      List::unlink(c);
      window_bytes_ -= charge(c);
      c.meta8b = kStaged;
      staged_.push_front(c);
    }
  }

  void on_hit(Entry& e, uint64_t h, Micros) override {
    sketch_.add(h);
    switch (e.meta8b) {
      case kWindow:
        window_.move_to_front(e);
        break;
      case kProtected:
        protected_.move_to_front(e);
        break;
      default:  // staged or probation: it proved itself, promote
        List::unlink(e);
        e.meta8b = kProtected;
        protected_.push_front(e);
        protected_bytes_ += charge(e);
        while (protected_bytes_ > protected_target_ && protected_.back() != &e) {
          Entry& d = *protected_.back();
          List::unlink(d);
          protected_bytes_ -= charge(d);
          d.meta8b = kProbation;
          probation_.push_front(d);
        }
        break;
    }
  }

  void on_miss(uint64_t h) override { sketch_.add(h); }

  void on_erase(Entry& e) override {
    List::unlink(e);
    if (e.meta8b == kWindow) window_bytes_ -= charge(e);
    if (e.meta8b == kProtected) protected_bytes_ -= charge(e);
  }

  Entry* victim(Micros, bool) override {
    for (;;) {
      Entry* c = staged_.back();
      Entry* v = probation_.back();
      if (!v) v = protected_.back();
      if (!c) return v ? v : window_.back();
      List::unlink(*c);
      c->meta8b = kProbation;
      if (!v) {  // the main area is empty: the first candidate gets in for free
        probation_.push_front(*c);
        continue;
      }
      if (frequency(*c) > frequency(*v)) {
        probation_.push_front(*c);
        return v;
      }
      probation_.push_front(*c);  // keeps it on a list until the store erases it
      return c;
    }
  }

  void clear() override {
    window_.reset();
    staged_.reset();
    probation_.reset();
    protected_.reset();
    window_bytes_ = protected_bytes_ = 0;
  }

 private:
  static uint64_t charge(const Entry& e) { return entry_charge(e.key_len, e.value_len); }
  unsigned frequency(const Entry& e) const { return sketch_.estimate(hash_bytes(e.key(), seed_)); }
  // A power of two within [current, max_words_] with at most eight entries a word: 2 to 4
  // counters an entry, so the sketch costs 1 to 2 bytes an entry.
  uint64_t sketch_words_for(size_t entries) const {
    uint64_t w = sketch_.words();
    while (w != 0 && w < max_words_ && w * 8 < entries) w *= 2;
    return w;
  }

  uint64_t seed_;
  List window_, staged_, probation_, protected_;
  uint64_t window_bytes_ = 0;
  uint64_t protected_bytes_ = 0;
  uint64_t window_target_ = 0;
  uint64_t protected_target_ = 0;
  uint64_t max_words_ = 0;
  FrequencySketch sketch_;
};

struct NamedPolicy {
  std::string_view name;
  PolicyKind kind;
};
constexpr std::array<NamedPolicy, 9> kPolicyNames = {{
    {"noeviction", PolicyKind::kNoEviction},
    {"allkeys-lru", PolicyKind::kAllKeysLru},
    {"volatile-lru", PolicyKind::kVolatileLru},
    {"allkeys-lfu", PolicyKind::kAllKeysLfu},
    {"volatile-lfu", PolicyKind::kVolatileLfu},
    {"allkeys-random", PolicyKind::kAllKeysRandom},
    {"volatile-random", PolicyKind::kVolatileRandom},
    {"volatile-ttl", PolicyKind::kVolatileTtl},
    {"tinylfu", PolicyKind::kTinyLfu},
}};

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace

std::optional<PolicyKind> parse_policy(std::string_view name) {
  for (const NamedPolicy& p : kPolicyNames) {
    if (iequal(name, p.name)) return p.kind;
  }
  return std::nullopt;
}

std::string_view policy_name(PolicyKind kind) {
  for (const NamedPolicy& p : kPolicyNames) {
    if (p.kind == kind) return p.name;
  }
  return "?";
}

std::unique_ptr<Policy> make_policy(PolicyKind kind, const PolicyParams& params,
                                    EntrySampler& sampler, Rng& rng, uint64_t hash_seed) {
  switch (kind) {
    case PolicyKind::kNoEviction:
    case PolicyKind::kAllKeysLru:
    case PolicyKind::kVolatileLru:
      return std::make_unique<LruPolicy>(kind);
    case PolicyKind::kTinyLfu:
      return std::make_unique<TinyLfuPolicy>(hash_seed);
    default:
      return std::make_unique<SampledPolicy>(kind, params, sampler, rng);
  }
}

}  // namespace cache
