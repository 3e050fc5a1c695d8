// WriteLedger: which reads a replica may answer (see replication.h for the mechanism).
#include "proxy/upstream/replication.h"

#include <algorithm>
#include <cstring>
#include <functional>

namespace respite {

const char* ReplicaHealth::why_text(uint8_t w) {
  switch (w) {
    case kNotPolled: return "not polled yet";
    case kDown: return "down";
    case kLoading: return "loading";
    case kLinkDown: return "master_link_status:down";
    case kNotReplica: return "not a replica";
    case kNotListed: return "not in the slot map";
    default: return "INFO refused";
  }
}

WriteLedger::WriteLedger(size_t replicas) : slots_(new std::atomic<uint64_t>[kSlots]) {
  for (size_t i = 0; i < kSlots; ++i) slots_[i].store(0, std::memory_order_relaxed);
  for (size_t i = 0; i < replicas; ++i) replicas_.push_back(std::make_unique<ReplicaHealth>());
}

size_t WriteLedger::slot(uint32_t db, std::string_view key) {
  const uint64_t h = std::hash<std::string_view>{}(key) ^ (uint64_t{db} + 1) * 0x9E3779B97F4A7C15ull;
  return static_cast<size_t>((h ^ (h >> 29)) & (kSlots - 1));
}

// Sequentially consistent stores (the slot, then the newest mark): a reader that sees the
// write acknowledged sees both.
void WriteLedger::wrote(uint32_t db, std::string_view key) {
  const uint64_t m = current_mark();
  raise(slots_[slot(db, key)], m);
  raise(max_mark_, m);
}

uint64_t WriteLedger::wrote_all() {
  const uint64_t m = current_mark();
  raise(all_mark_, m);
  raise(max_mark_, m);
  return m;
}

void WriteLedger::set_healthy(size_t i, bool healthy) {
  std::lock_guard<std::mutex> lock(mu_);
  ReplicaHealth& h = *replicas_[i];
  // Back from an outage: the writes meanwhile were not waited for by anyone; it answers
  // nothing until it has applied them all.
  if (healthy && !h.healthy.load()) h.floor.store(max_mark_.load());
  h.healthy.store(healthy);
}

bool WriteLedger::may_read(size_t i, uint32_t db, std::span<const std::string_view> keys,
                           bool keys_known) const {
  const uint64_t applied = replicas_[i]->applied.load();
  if (applied < replicas_[i]->floor.load()) return false;  // back from an outage, catching up
  if (applied >= max_mark_.load()) return true;  // every acknowledged write is there
  if (!keys_known || all_mark_.load() > applied) return false;
  for (std::string_view key : keys)
    if (slots_[slot(db, key)].load() > applied) return false;
  return true;
}

void WriteLedger::primary_offset(uint64_t mark, int64_t offset, std::string_view replid) {
  std::lock_guard<std::mutex> lock(mu_);
  if (replid != primary_replid_) {
    // Another history (a failover, a restarted primary): offsets polled before mean nothing in it.
    primary_replid_ = replid;
    polls_.clear();
  }
  // Polls are sent one at a time, so marks arrive in order; a later poll subsumes an earlier
  // one (its offset is at least as large), so dropping the oldest is safe.
  if (!polls_.empty() && polls_.back().first >= mark) return;
  polls_.emplace_back(mark, offset);
  if (polls_.size() > kMaxPolls) polls_.pop_front();
  primary_offset_ = offset;
}

void WriteLedger::replica_offset(size_t i, int64_t offset, std::string_view replid) {
  std::lock_guard<std::mutex> lock(mu_);
  ReplicaHealth& h = *replicas_[i];
  h.offset.store(offset);
  if (replid != primary_replid_) return;  // not (yet) following the primary respite writes to
  if (primary_offset_ >= 0) h.lag.store(std::max<int64_t>(0, primary_offset_ - offset));
  uint64_t applied = h.applied.load();
  for (const auto& [mark, off] : polls_) {
    if (off > offset) break;
    applied = std::max(applied, mark);
  }
  h.applied.store(applied);
  // Polls every healthy replica has passed are not needed to judge an offset again.
  uint64_t lowest = max_mark_.load();
  for (const auto& r : replicas_)
    if (r->healthy.load()) lowest = std::min(lowest, r->applied.load());
  while (polls_.size() > 1 && polls_.front().first < lowest) polls_.pop_front();
}

bool WriteLedger::behind() const {
  const uint64_t newest = max_mark_.load();
  for (const auto& r : replicas_)
    if (r->healthy.load() && r->applied.load() < newest) return true;
  return false;
}

size_t WriteLedger::pending_slots() const {
  uint64_t lowest = UINT64_MAX;
  for (const auto& r : replicas_)
    if (r->healthy.load()) lowest = std::min(lowest, r->applied.load());
  if (lowest == UINT64_MAX) return 0;
  size_t n = all_mark_.load() > lowest;  // a write of unknown keys counts as one
  for (size_t i = 0; i < kSlots; ++i) n += slots_[i].load(std::memory_order_relaxed) > lowest;
  return n;
}

}  // namespace respite
