// ReplicaMonitor: the polls that tell the routers which replica may answer which read.
#include "proxy/upstream/replica_monitor.h"

#include <charconv>

#include "proxy/ops/log.h"

namespace respite {

namespace {

constexpr std::string_view kReplicationInfo = "*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n";
constexpr std::string_view kPersistenceInfo = "*2\r\n$4\r\nINFO\r\n$11\r\npersistence\r\n";
// Both sections in one reply: Redis 7 and later. Redis 6 and earlier answer INFO with more
// than one argument "-ERR syntax error".
constexpr std::string_view kReplicaInfo =
    "*3\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n$11\r\npersistence\r\n";

bool parse_i64(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::string_view info_value(std::string_view info, std::string_view field) {
  size_t at = 0;
  while ((at = info.find(field, at)) != std::string_view::npos) {
    const bool line_start = at == 0 || info[at - 1] == '\n';
    const size_t colon = at + field.size();
    if (line_start && colon < info.size() && info[colon] == ':') {
      size_t end = info.find_first_of("\r\n", colon + 1);
      if (end == std::string_view::npos) end = info.size();
      return info.substr(colon + 1, end - colon - 1);
    }
    at = colon;
  }
  return {};
}

ReplicaMonitor::ReplicaMonitor(UpstreamHost* host, WriteLedger* ledger, Node* primary,
                               std::vector<Node*> replicas)
    : host_(host),
      ledger_(ledger),
      primary_(primary),
      replicas_(std::move(replicas)),
      replica_out_(replicas_.size(), 0),
      one_section_(replicas_.size(), 0),
      replication_reply_(replicas_.size()),
      replica_again_(replicas_.size(), 0) {}

void ReplicaMonitor::set_replicas(std::vector<Node*> replicas) {
  if (replicas.size() < replicas_.size()) replicas.resize(replicas_.size(), nullptr);
  replicas_ = std::move(replicas);
  const size_t n = replicas_.size();
  replica_out_.resize(n, 0);
  one_section_.resize(n, 0);
  replication_reply_.resize(n);
  replica_again_.resize(n, 0);
  for (size_t i = 0; i < n; ++i)
    if (!replicas_[i]) set_health(i, false, ReplicaHealth::kNotListed);
}

void ReplicaMonitor::deactivate() {
  // As unlisted: a poll still out cannot make one healthy again (judge).
  set_replicas(std::vector<Node*>(replicas_.size(), nullptr));
}

void ReplicaMonitor::tick(uint64_t now) {
  // The interval is decided now, not when the last poll went out: a write acknowledged since
  // makes the next poll due at once.
  if (stopping_ || now < last_poll_ms_ + (ledger_->behind() ? kBehindMs : kIdleMs)) return;
  last_poll_ms_ = now;
  poll_primary();
  for (size_t i = 0; i < replicas_.size(); ++i) poll_replica(i);
}

void ReplicaMonitor::kick() {
  if (stopping_) return;
  // A poll already out may have been sent before the write: its mark does not cover it.
  if (primary_out_) primary_again_ = true;
  else poll_primary();
}

void ReplicaMonitor::poll_primary() {
  if (primary_out_) return;
  UpstreamConn* u = primary_->shared_conn(2, 0);
  if (!u) return;
  // The mark is taken before the poll is queued: a write acknowledged before this point is
  // recorded with this mark or an earlier one, and ran before this INFO does.
  const uint64_t mark = ledger_->next_mark();
  primary_out_ = true;
  u->request(once_sink([this, mark](std::string_view reply, bool failed) {
               primary_out_ = false;
               int64_t off;
               if (failed || !parse_i64(info_value(reply, "master_repl_offset"), off)) return;
               // A server demoted by a failover this loop has not followed yet: its offset is
               // not the primary's (and may be behind writes the new one acknowledged).
               if (info_value(reply, "role") != "master") return;
               ledger_->primary_offset(mark, off, info_value(reply, "master_replid"));
               if (stopping_) return;
               if (primary_again_) {
                 primary_again_ = false;
                 poll_primary();
               }
               // Some write is not known applied: ask the replicas now, the offset to compare
               // with being in (a kick's round takes two round trips, not a tick).
               if (!ledger_->behind()) return;
               for (size_t i = 0; i < replicas_.size(); ++i) {
                 if (replica_out_[i]) replica_again_[i] = 1;
                 else poll_replica(i);
               }
             }),
             kReplicationInfo, 0);
}

void ReplicaMonitor::poll_replica(size_t i) {
  if (replica_out_[i] || !replicas_[i]) return;
  UpstreamConn* u = replicas_[i]->shared_conn(2, 0);
  if (!u) {  // backing off after a failed connect
    set_health(i, false, ReplicaHealth::kDown);
    return;
  }
  replica_out_[i] = 1;
  if (one_section_[i]) {
    // Two INFOs pipelined on one connection: their replies come in order, the first is kept
    // until the second's (a sink is called exactly once, with its reply or its failure).
    u->request(once_sink([this, i](std::string_view reply, bool failed) {
                 replication_reply_[i].assign(failed ? std::string_view() : reply);
               }),
               kReplicationInfo, 0);
    u->request(once_sink([this, i](std::string_view reply, bool failed) {
                 replica_out_[i] = 0;
                 // Empty: the first failed (no reply is empty).
                 judge_replica(i, replication_reply_[i], reply,
                               failed || replication_reply_[i].empty());
                 replication_reply_[i].clear();
               }),
               kPersistenceInfo, 0);
    return;
  }
  u->request(once_sink([this, i](std::string_view reply, bool failed) {
               replica_out_[i] = 0;
               if (!failed && reply.starts_with("-ERR")) {
                 // A generic error, not one of a state (-LOADING, -BUSY, -NOPERM ...): a Redis
                 // before 7, which takes one section per INFO. The next poll asks for the two
                 // apart, and so does every poll after it (a replica's version rarely changes;
                 // two INFOs work on every version).
                 one_section_[i] = 1;
                 if (replicas_[i])  // (still listed)
                   log(LogLevel::Notice, "replica {} refuses INFO with two sections ({}): "
                       "polling INFO replication and INFO persistence apart",
                       replicas_[i]->name(), reply.substr(1, reply.find('\r') - 1));
                 return;
               }
               judge_replica(i, reply, reply, failed);
             }),
             kReplicaInfo, 0);
}

void ReplicaMonitor::judge_replica(size_t i, std::string_view replication,
                                   std::string_view persistence, bool failed) {
  const uint64_t applied = ledger_->health(i).applied.load();
  judge(i, replication, persistence, failed);
  if (on_applied_ && ledger_->health(i).applied.load() > applied) on_applied_();
  if (replica_again_[i] && !stopping_) {
    replica_again_[i] = 0;
    poll_replica(i);
  }
}

void ReplicaMonitor::judge(size_t i, std::string_view replication, std::string_view persistence,
                           bool failed) {
  if (!replicas_[i]) return set_health(i, false, ReplicaHealth::kNotListed);
  if (failed) return set_health(i, false, ReplicaHealth::kDown);
  if (replication.empty() || replication[0] == '-' || persistence.empty() || persistence[0] == '-')
    return set_health(i, false, ReplicaHealth::kError);
  if (info_value(replication, "role") != "slave")
    return set_health(i, false, ReplicaHealth::kNotReplica);
  int64_t off;
  if (parse_i64(info_value(replication, "slave_repl_offset"), off))
    ledger_->replica_offset(i, off, info_value(replication, "master_replid"));
  if (info_value(persistence, "loading") == "1")
    return set_health(i, false, ReplicaHealth::kLoading);
  if (info_value(replication, "master_link_status") != "up")
    return set_health(i, false, ReplicaHealth::kLinkDown);
  set_health(i, true, 0);
}

void ReplicaMonitor::set_health(size_t i, bool healthy, uint8_t why) {
  if (stopping_) return;  // shutting down: the polls fail as their connections close
  ReplicaHealth& h = ledger_->health(i);
  const bool was = h.healthy.load();
  const uint8_t was_why = h.why.load();
  h.why.store(why);
  ledger_->set_healthy(i, healthy);
  if (was == healthy && (healthy || was_why == why)) return;
  if (!replicas_[i]) return;  // no longer listed: nothing to tell of it
  if (healthy)
    log(LogLevel::Notice, "replica {} takes reads", replicas_[i]->name());
  else
    log(LogLevel::Warning, "replica {} takes no reads ({}): they go to another replica or the "
        "primary", replicas_[i]->name(), ReplicaHealth::why_text(why));
}

}  // namespace respite
