// Observing the upstream: round-trip latency histogram (PROXY INFO latency, /metrics) and the
// slow log of forwarded commands (PROXY SLOWLOG).
#include <bit>
#include <ctime>

#include "proxy/front/server.h"
#include "proxy/ops/text.h"

namespace respite {

void Server::record_round_trip(uint64_t us, const Requester* c, std::string_view name,
                               std::string_view arg) {
  int bucket = us == 0 ? 0 : std::min(kLatencyBuckets - 1, static_cast<int>(std::bit_width(us)));
  latency_[bucket]++;
  int64_t threshold = cfg_.slowlog_log_slower_than;
  if (threshold < 0 || static_cast<int64_t>(us) < threshold || cfg_.slowlog_max_len == 0) return;
  // As Redis's slowlog: AUTH's arguments are secrets (HELLO's first is its protocol version,
  // the only one kept here).
  if (ieq(name, "auth")) arg = "(redacted)";
  std::lock_guard<std::mutex> lk(shared_->slowlog_mu);
  SlowEntry e{shared_->slowlog_next_id++, static_cast<int64_t>(std::time(nullptr)), us,
              std::string(name), std::string(arg), c->peer, c->name};
  shared_->slowlog.push_front(std::move(e));
  while (shared_->slowlog.size() > static_cast<size_t>(cfg_.slowlog_max_len))
    shared_->slowlog.pop_back();
}

// Percentile of the summed histogram, as the upper bound of its bucket (microseconds).
uint64_t Server::latency_percentile(double q) const {
  uint64_t counts[kLatencyBuckets] = {};
  uint64_t total = 0;
  for (Server* s : shared_->servers)
    for (int i = 0; i < kLatencyBuckets; ++i) {
      counts[i] += s->latency_[i].get();
      total += s->latency_[i].get();
    }
  if (total == 0) return 0;
  uint64_t want = static_cast<uint64_t>(q * static_cast<double>(total));
  uint64_t seen = 0;
  for (int i = 0; i < kLatencyBuckets; ++i) {
    seen += counts[i];
    if (seen > want) return i == 0 ? 1 : (uint64_t{1} << i);
  }
  return uint64_t{1} << (kLatencyBuckets - 1);
}

}  // namespace respite
