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
    default: return "INFO refused";
  }
}

WriteLedger::WriteLedger(size_t replicas) {
  for (size_t i = 0; i < replicas; ++i) replicas_.push_back(std::make_unique<ReplicaHealth>());
}

uint64_t WriteLedger::key_hash(uint32_t db, std::string_view key) {
  return std::hash<std::string_view>{}(key) ^ (uint64_t{db} + 1) * 0x9E3779B97F4A7C15ull;
}

void WriteLedger::wrote(uint32_t db, std::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t m = current_mark();
  if (keys_.size() >= kMaxKeys || order_.size() >= 2 * kMaxKeys) {
    // Bounded: forget the keys, and make every read wait for this mark instead.
    keys_.clear();
    order_.clear();
    all_mark_ = m;
  } else {
    const uint64_t h = key_hash(db, key);
    uint64_t& mark = keys_[h];
    if (mark != m) {  // a key written again before the next poll needs no second entry
      mark = m;
      order_.emplace_back(m, h);
    }
  }
  if (max_mark_.load() < m) max_mark_.store(m);
}

uint64_t WriteLedger::wrote_all() {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t m = current_mark();
  all_mark_ = m;
  if (max_mark_.load() < m) max_mark_.store(m);
  return m;
}

void WriteLedger::set_healthy(size_t i, bool healthy) {
  std::lock_guard<std::mutex> lock(mu_);
  ReplicaHealth& h = *replicas_[i];
  if (healthy && !h.healthy.load()) h.floor.store(max_mark_.load());
  h.healthy.store(healthy);
  forget_applied();
}

bool WriteLedger::may_read(size_t i, uint32_t db, std::span<const std::string_view> keys,
                           bool keys_known) const {
  const uint64_t applied = replicas_[i]->applied.load();
  if (applied < replicas_[i]->floor.load()) return false;  // back from an outage, catching up
  if (applied >= max_mark_.load()) return true;  // every acknowledged write is there
  if (!keys_known) return false;
  std::lock_guard<std::mutex> lock(mu_);
  if (all_mark_ > applied) return false;
  for (std::string_view key : keys) {
    auto it = keys_.find(key_hash(db, key));
    if (it != keys_.end() && it->second > applied) return false;
  }
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
  forget_applied();
}

void WriteLedger::forget_applied() {
  // With no replica taking reads everything may go: a replica that comes back must first apply
  // every mark up to its floor.
  uint64_t lowest = max_mark_.load();
  for (const auto& r : replicas_)
    if (r->healthy.load()) lowest = std::min(lowest, r->applied.load());
  while (!polls_.empty() && polls_.front().first < lowest) polls_.pop_front();
  while (!order_.empty() && order_.front().first <= lowest) {
    auto it = keys_.find(order_.front().second);
    if (it != keys_.end() && it->second <= lowest) keys_.erase(it);
    order_.pop_front();
  }
}

bool WriteLedger::behind() const {
  const uint64_t newest = max_mark_.load();
  for (const auto& r : replicas_)
    if (r->healthy.load() && r->applied.load() < newest) return true;
  return false;
}

size_t WriteLedger::recorded_keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return keys_.size();
}

}  // namespace respite
