// Forwarding: a request that respite does not answer goes upstream as its original bytes, on the
// client's pinned connection, on a new pinned one when the command starts connection state
// (transactions, pub/sub, blocking commands, MONITOR, tracking), else on a shared one; its write
// invalidation is planned from the command table before it leaves.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "proxy/ops/alloc_count.h"
#include "proxy/front/cluster_broadcast.h"
#include "proxy/front/cluster_split.h"
#include "proxy/front/command_table.h"
#include "proxy/front/local_commands.h"
#include "proxy/ops/log.h"
#include "proxy/front/dispatch.h"
#include "proxy/front/server.h"
#include "proxy/ops/text.h"
#include "resp/reply_writer.h"


namespace respite {

// ---- forwarding ----

namespace {
// The command's Pin (command_table.h); Pin::BlockOption is resolved here: XREAD and XREADGROUP
// block only with a BLOCK argument.
Pin pin_of(const resp::Frame& f, const CommandInfo* ci) {
  if (!ci) return Pin::None;
  if (ci->role.pin != Pin::BlockOption) return ci->role.pin;
  for (size_t i = 1; i < f.argc(); ++i)
    if (ieq(f.arg(i), "block")) return Pin::Blocking;
  return Pin::None;
}

// Writes whose keys respite cannot know from the arguments (a script's or function's writes
// to keys it did not declare, SORT ... STORE): their invalidations come only from the
// tracking link, so their reply waits for it (Server::tracking_barrier).
bool writes_unknown_keys(const resp::Frame& f, const CommandInfo* ci) {
  if (!ci) return false;
  switch (ci->role.flush) {
    case Flush::UnknownKeys:
      return true;
    case Flush::UnknownKeysIfStore:
      for (size_t i = 2; i < f.argc(); ++i)
        if (ieq(f.arg(i), "store")) return true;
      return false;
    case Flush::Keys:
    case Flush::Db:
    case Flush::All:
      return false;
  }
  return false;
}
}  // namespace

CachePath::WritePlan Dispatch::invalidate_before_write(ClientConn* c, const resp::Frame& f,
                                                     const CommandInfo* ci) {
  // Also without a cache when reads may go to replicas: the write's reply records its keys
  // for them (Server::invalidate_after_write).
  if (!ci) {
    // Not in the command table (newer than it, a module's): it may write anything. The cache
    // learns of it from the tracking link; reads from replicas must wait for it.
    if (!srv_.router().reads_replicas()) return {};
    CachePath::WritePlan plan;
    plan.heap = new WriteInvalidation;
    plan.heap->scope = WriteInvalidation::Scope::Unknown;
    return plan;
  }
  if (!(srv_.cache_path().cache().enabled() || srv_.router().reads_replicas())) return {};
  WriteKeys w;
  switch (ci->role.flush) {
    case Flush::Db: w.scope = WriteInvalidation::Scope::Db; break;
    case Flush::All: w.scope = WriteInvalidation::Scope::All; break;
    default: break;
  }
  // The key specs' write bit, not the command's write flag: EVAL/FCALL and PFCOUNT write their
  // keys without the flag.
  auto& idx = write_keys_scratch_;
  idx.clear();
  if (w.scope == WriteInvalidation::Scope::Keys) command_keys(*ci, f, idx, /*write_only=*/true);
  w.args = idx;
  w.any_db = ci->role.keys_any_db;  // MOVE and COPY ... DB: a key in another db
  // Inside a transaction, a queued SELECT moves the writes queued after it.
  uint32_t db = static_cast<uint32_t>(c->in_multi ? c->multi_db : c->db);
  return srv_.cache_path().invalidate_before_write(db, f, w);
}

// A read that may go to a replica: its keys, for the router to check against the writes the
// replicas have not applied yet. Keys are not known for a command without key specs (KEYS,
// SCAN, DBSIZE read the whole keyspace) or with a spec respite cannot follow.
void Dispatch::read_keys(const CommandInfo* ci, const resp::Frame& f, RouteRequest& rr) {
  rr.keys_known = false;
  if (!ci || ci->nspecs == 0) return;
  for (uint8_t i = 0; i < ci->nspecs; ++i)
    if (ci->specs[i].begin == KeySpec::Begin::Unknown || ci->specs[i].find == KeySpec::Find::Unknown)
      return;
  auto& idx = read_keys_scratch_;
  idx.clear();
  command_keys(*ci, f, idx);
  read_key_views_.clear();
  for (uint32_t i : idx) read_key_views_.push_back(f.arg(i));
  rr.keys = read_key_views_;
  rr.keys_known = true;
}

int Dispatch::keys_slot(const resp::Frame& f, const CommandInfo* ci) {
  if (ci && ci->nspecs == 0 &&
      (ci->name == "ssubscribe" || ci->name == "sunsubscribe" || ci->name == "spublish")) {
    // Shard channels hash like keys (the table carries no key specs for them): SPUBLISH's
    // channel, every channel of SSUBSCRIBE/SUNSUBSCRIBE.
    const size_t last = ci->name == "spublish" ? std::min<size_t>(f.argc(), 2) : f.argc();
    int slot = -1;
    for (size_t i = 1; i < last; ++i) {
      const int s = key_slot(f.arg(i));
      if (slot < 0) slot = s;
      else if (s != slot) return -2;
    }
    return slot;
  }
  if (!ci || ci->nspecs == 0) return -1;
  auto& idx = read_keys_scratch_;  // every key's argv index stays here for cluster_split
  idx.clear();
  command_keys(*ci, f, idx);
  int slot = -1;
  for (uint32_t i : idx) {
    const int s = key_slot(f.arg(i));
    if (slot < 0) slot = s;
    else if (s != slot) return -2;
  }
  return slot;
}

bool Dispatch::cluster_slot(ClientConn* c, const resp::Frame& f, const CommandInfo* ci,
                            RouteRequest& rr) {
  auto plan = [&] { return invalidate_before_write(c, f, ci); };
  const int slot = keys_slot(f, ci);
  // No keys: any master, or every master for DBSIZE, KEYS, SCAN ... (cluster_split.h).
  if (slot == -1 && (!ci || ci->nspecs == 0)) return !(ci && cluster_fan_out(srv_, c, f, *ci, plan));
  if (slot == -2) {
    // MGET, MSET, DEL ... are split by slot (cluster_split.h); the rest gets Redis Cluster's
    // answer.
    if (cluster_split(srv_, c, f, *ci, read_keys_scratch_, plan)) return false;
    error(c, "CROSSSLOT Keys in request don't hash to the same slot");
    return false;
  }
  rr.slot = slot;  // -1: no keys, any master
  return true;
}

void Dispatch::forward(ClientConn* c, const resp::Frame& f, const CommandInfo* ci) {
  const Pin pin = pin_of(f, ci);
  Node* pin_node = nullptr;
  const bool ends_multi = pin == Pin::Exec || pin == Pin::Discard;
  if (srv_.router().cluster() && (c->in_multi || pin == Pin::Multi) &&
      cluster_transaction(c, f, ci, pin))
    return;
  bool needs_pin = pin == Pin::Multi || pin == Pin::Watch || pin == Pin::Blocking ||
                   pin == Pin::Stream || pin == Pin::Sticky || pin == Pin::Aside;
  UpstreamConn* target = c->pinned;
  // Cluster: a keyed request on a shared connection (see the order rule below).
  bool cluster_keyed = false;
  if (!target) {
    // The router names the node (the one node today); nothing of the request is copied for it.
    RouteRequest rr;
    // Scripts, even read-only ones, stay on the primary: a script may read keys it did not
    // declare, and Redis does not replicate SCRIPT LOAD (EVALSHA_RO on a replica: NOSCRIPT).
    rr.write = !ci || !ci->is(CommandFlag::kReadonly) || (ci->acl_categories & kAclScripting);
    rr.pinned = needs_pin;
    rr.db = static_cast<uint32_t>(c->db);
    // (Only commands without key specs are answered by every master: INFO, CONFIG, SCRIPT ...)
    if (srv_.router().cluster() && !needs_pin && ci && ci->nspecs == 0 &&
        cluster_broadcast(srv_, c, f, ci))
      return;
    if (srv_.router().routes_by_key() && !cluster_slot(c, f, ci, rr)) return;
    cluster_keyed = srv_.router().cluster() && rr.slot >= 0 && !needs_pin;
    if (!rr.write && !needs_pin && srv_.router().reads_replicas()) read_keys(ci, f, rr);
    Node* node = srv_.router().route(rr);
    if (needs_pin) {
      pin_node = node;
    } else {
      // Cluster: a replica's reads go on its READONLY connections, and only they do.
      const bool cluster_replica = srv_.router().cluster() && node->role == Node::Role::Replica;
      target = cluster_replica ? node->read_conn(c->proto, c->id) : node->shared_conn(c->proto, c->id);
      if (node->role == Node::Role::Replica) {
        // A replica this loop cannot reach yet (backing off): the primary (Cluster: the slot's
        // master) answers instead.
        Node* master = srv_.router().cluster() ? srv_.router().slot_node(static_cast<uint16_t>(rr.slot))
                                               : srv_.router().primary();
        if (!target) {
          target = master->shared_conn(c->proto, c->id);
        } else {
          // (Cluster: counted when the replica answers it, UpstreamConn::deliver.)
          if (!cluster_replica) srv_.stats().replica_reads++;
          // Not the slot's master connection: the per-slot order rule below does not hold, so
          // this read waits for the client's replies owed elsewhere (a write of its key among
          // them is recorded in the ledger on its reply, and is routed again then).
          cluster_keyed = false;
        }
      } else if (!rr.write && srv_.router().read_from() == ReadFrom::Replica &&
                 srv_.now() >= next_fallback_log_ms_ && !srv_.router().any_replica_healthy()) {
        // --read-from replica asked for replicas: say (at most every 10 s) that none answers.
        next_fallback_log_ms_ = srv_.now() + 10000;
        log(LogLevel::Warning, "read-from replica: no replica takes reads, the primary answers");
      }
    }
  }
  // Per-client order: never send to a new connection while replies are owed on another, nor
  // past this client's reads still waiting on cache fetches. Cluster: a keyed request may go to
  // its slot's master while others are owed elsewhere (pipelines to several masters stay
  // pipelines, as with a cluster client): requests of one slot share a connection and keep
  // their order, and replies keep theirs; keyless requests (PUBLISH after a SET) still wait.
  // A read of this client on a Cluster replica is out: the per-slot order rule does not cover
  // it (a write of its key to the master would overtake it), so nothing else goes elsewhere.
  if (c->inflight > 0 && c->replica_read_out) cluster_keyed = false;
  if ((c->inflight > 0 && c->last_conn != target && !cluster_keyed) || c->flights_waiting > 0) {
    c->stall();
    return;
  }
  // The client's answer is due --upstream-timeout-ms after the request arrived
  // (ClientConn::arrived_ms), even if it was held behind this client's cache misses first; the
  // connection itself still gets a whole timeout from the send (UpstreamConn::forward).
  uint64_t answer_by = 0;
  if (pin != Pin::Blocking && pin != Pin::Stream && !c->streaming)
    answer_by = c->arrived_ms() + static_cast<uint64_t>(srv_.config().upstream_timeout_ms);
  if ((c->pinned || needs_pin || !ci || !ci->is(CommandFlag::kReadonly)) && srv_.writes_held()) {
    // Sentinel is failing the primary over: what may write would be lost with the old one. A
    // transaction fails whole: its EXEC goes as DISCARD (-EXECABORT), as after any refusal.
    if (c->in_multi) c->multi_failed = true;
    if (!(c->in_multi && ends_multi)) {
      c->immediate_reply() += upstream_error(kFailover);
      return;
    }
  }
  if (!target && needs_pin) {
    c->pinned = target = srv_.open_pinned(c, pin_node, pin == Pin::Aside ? 0 : -1);
  }
  if (!target) {
    c->immediate_reply() += upstream_error(kReconnecting);
    return;
  }
  const bool was_in_multi = c->in_multi;
  // A command the table does not know may write anything. Its invalidations come from the
  // links alone, which with fills from replicas may be the replica's, seconds later: the
  // barrier waits for them (without replicas the primary's link is as fast as its reply).
  const bool unkeyed_write =
      writes_unknown_keys(f, ci) || (!ci && srv_.cache_path().fills_from_replicas());
  const bool is_exec = pin == Pin::Exec && was_in_multi;
  uint8_t after = 0;
  int exec_db = -1;
  uint32_t exec_pos = 0;
  std::string_view exec_replacement;
  if (is_exec) {
    if (c->multi_failed) {
      // A command of this transaction was refused before it reached Redis: discard what was
      // queued and answer EXEC as Redis answers a transaction with a refused command.
      exec_replacement = "*1\r\n$7\r\nDISCARD\r\n";
      after |= UpstreamConn::kAfterExecAbort;
    } else {
      if (c->multi_select_db >= 0) {
        after |= UpstreamConn::kAfterExec;
        exec_db = c->multi_select_db;
        exec_pos = c->multi_select_pos;
      }
      if (c->multi_barrier) after |= UpstreamConn::kAfterBarrier;
    }
  } else if (was_in_multi && !ends_multi && pin != Pin::Multi && pin != Pin::Watch) {
    // (MULTI and WATCH inside a transaction are refused by Redis, not queued.)
    // Queued: remember what EXEC's reply must tell us about (a SELECT moves the client; a
    // script's writes need the tracking barrier).
    long long n;
    if (ci && ci->role.local == Local::Select && f.argc() == 2 && parse_ll(f.arg(1), n) && n >= 0 &&
        n < srv_.databases()) {
      c->multi_select_db = c->multi_db = static_cast<int>(n);
      c->multi_select_pos = c->multi_count;
    }
    if (unkeyed_write) c->multi_barrier = true;
    c->multi_count++;
  } else if (unkeyed_write) {
    after |= UpstreamConn::kAfterBarrier;
  }
  switch (pin) {
    case Pin::Multi:
      if (!c->in_multi) {
        c->in_multi = true;
        c->multi_failed = c->multi_barrier = false;
        c->multi_select_db = -1;
        c->multi_db = c->db;
        c->multi_count = 0;
      }
      break;
    case Pin::Exec:
    case Pin::Discard:
      if (c->in_multi) {
        c->in_multi = c->watching = false;
        c->multi_failed = c->multi_barrier = false;
        c->multi_deferred = false;
        c->multi_slot = -1;
        c->multi_count = 0;
        c->multi_select_db = -1;
      }
      break;
    case Pin::Watch:
      if (!c->in_multi) c->watching = true;
      break;
    case Pin::Unwatch:
      if (!c->in_multi) c->watching = false;
      break;
    case Pin::Stream: c->streaming = true; break;
    case Pin::Sticky: c->sticky_pin = true; break;
    default: break;
  }
  srv_.stats().forwarded_commands++;
  CachePath::WritePlan plan = invalidate_before_write(c, f, ci);
  if (c->in_multi || ends_multi) {
    // A transaction's writes happen at EXEC: remember them and invalidate again on its reply.
    if (plan.key_arg >= 0) {
      plan.heap = new WriteInvalidation;
      plan.heap->db = plan.db;
      plan.heap->keys.emplace_back(plan.db, std::string(f.arg(static_cast<size_t>(plan.key_arg))));
      plan.key_arg = -1;
    }
    if (WriteInvalidation* inv = plan.heap) {
      if (!c->multi_writes) c->multi_writes = new WriteInvalidation(*inv);
      else if (inv->scope != WriteInvalidation::Scope::Keys || c->multi_writes->scope != WriteInvalidation::Scope::Keys)
        c->multi_writes->scope = WriteInvalidation::Scope::All;
      else c->multi_writes->keys.insert(c->multi_writes->keys.end(), inv->keys.begin(), inv->keys.end());
      delete inv;
      plan.heap = nullptr;
    }
    if (ends_multi && c->multi_writes) {
      plan.heap = c->multi_writes;
      c->multi_writes = nullptr;
      srv_.cache_path().invalidate_now(*plan.heap);
    }
  }
  auto attach = [&](UpstreamConn* t) {
    if (plan.heap) t->set_reply_invalidation(plan.heap);
    else if (plan.key_arg >= 0)
      t->set_reply_invalidation_key(plan.db, f.arg(static_cast<size_t>(plan.key_arg)), plan.flights_at);
  };
  std::string encoded;
  std::string_view raw = exec_replacement.empty() ? wire(f, encoded) : exec_replacement;
  Forwarded r;
  r.client = c;
  r.raw = raw;
  r.db = c->db;
  if (c->streaming) {
    r.seq = kStreamSeq;
    target->forward(r);
    attach(target);
    return;
  }
  r.seq = c->reserve_slot();
  r.answer_by = answer_by;
  r.frame = &f;
  r.after = after;
  r.write = is_exec || unkeyed_write || !ci || ci->is(kWrite);
  if (after & UpstreamConn::kAfterExec) {
    r.exec_db = exec_db;
    r.exec_pos = exec_pos;
    r.exec_gen = c->db_gen;
  }
  // Only a request on a shared connection can be sent again elsewhere (a pinned client's state
  // lives on its connection).
  r.keep_for_retry = !c->pinned && after == 0 && srv_.router().follows_redirects();
  target->forward(r);
  attach(target);
  c->last_conn = target;
  if (target->readonly()) c->replica_read_out = true;
  c->inflight++;
}

std::string_view Dispatch::wire(const resp::Frame& f, std::string& encoded) const {
  if (!wire_override_.empty()) return wire_override_;
  if (!original_name_.empty()) {
    // rename-command: the upstream knows the command by its own name.
    encoded = fmt::format("*{}\r\n${}\r\n{}\r\n", f.argc(), original_name_.size(), original_name_);
    for (size_t i = 1; i < f.argc(); ++i)
      encoded += fmt::format("${}\r\n{}\r\n", f.arg(i).size(), f.arg(i));
    return encoded;
  }
  if (f.is_inline()) {
    UpstreamConn::encode_command(encoded, f);
    return encoded;
  }
  return f.raw();
}

namespace {
// A request sent again (after MOVED, ASK or TRYAGAIN), its bytes kept for a further retry; a
// write's second invalidation goes with it.
void send_again(UpstreamConn* t, Requester* client, uint64_t seq, std::string_view raw, int db,
                uint64_t answer_by, bool write, uint8_t redirects, bool asked,
                WriteInvalidation* inv) {
  if (asked) t->asking(db);
  Forwarded f;
  f.client = client;
  f.seq = seq;
  f.raw = raw;
  f.db = db;
  f.answer_by = answer_by;
  f.write = write;
  f.keep_for_retry = true;
  f.redirects = redirects;
  f.asked = asked;
  t->forward(f);
  if (inv) t->set_reply_invalidation(inv);
}
}  // namespace

void Dispatch::retry_due(uint64_t now) {
  if (delayed_.empty()) return;
  std::vector<Delayed> due;
  for (size_t i = 0; i < delayed_.size();) {
    if (delayed_[i].due_ms <= now) {
      due.push_back(std::move(delayed_[i]));
      delayed_[i] = std::move(delayed_.back());
      delayed_.pop_back();
    } else {
      ++i;
    }
  }
  for (Delayed& d : due) {
    Node* node = srv_.router().find(d.target);
    UpstreamConn* t = node && !d.client->closed() ? node->shared_conn(d.proto, d.client->id) : nullptr;
    if (!t) {
      if (!d.client->closed()) {
        d.client->complete(d.seq, "-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
        d.client->on_forwarded_done(nullptr);
      }
      if (d.inv) srv_.invalidate_after_write(d.inv);
    } else {
      // After ASKING again when it went to the importing node after ASKING.
      send_again(t, d.client, d.seq, d.raw, d.db, d.answer_by, d.write, d.redirects, d.asked, d.inv);
    }
    static_cast<ClientConn*>(d.client)->on_flight_done();
    d.client->unref();
  }
}

void Dispatch::drop_delayed() {
  for (Delayed& d : delayed_) {
    if (d.inv) srv_.invalidate_after_write(d.inv);
    d.client->unref();
  }
  delayed_.clear();
}

bool Dispatch::redirect(const Redirect& r) {
  if (r.again) {
    // -TRYAGAIN: the slot is moving and some keys are already elsewhere; the same node soon
    // answers either the request or ASK. The reply slot waits meanwhile, and so do the
    // client's later requests (flights_waiting): one of the same slot must not overtake it.
    auto* c = static_cast<ClientConn*>(r.client);  // the only Requester
    // A later request of the client already sent may have run meanwhile (it was redirected
    // too, and not told to try again): sent again now, this one would overtake it. The client
    // gets TRYAGAIN then, as from Redis: a command that failed, nothing reordered.
    if (c->inflight > 1) return false;
    c->on_redirected();
    c->ref();
    c->flights_waiting++;
    delayed_.push_back({r.client, r.seq, std::string(r.raw), r.db, r.proto, r.answer_by, r.write,
                        std::string(r.target), r.redirects, r.inv, srv_.now() + kTryAgainMs,
                        r.asked});
    return true;
  }
  // A node respite does not know yet: the client gets the reply as Redis gave it (in Cluster
  // mode the router meets it: every node of the cluster is one respite may send to).
  // A read lost with a replica's connection: sent again to the master only if nothing the
  // client sent after it is out (a later write of its key may have run already).
  if (r.lost && static_cast<ClientConn*>(r.client)->inflight > 1) return false;
  Router& router = srv_.router();
  Node* node = r.lost             ? router.master_of(r.lost)
               : router.cluster() ? router.find_or_make(r.target)
                                  : router.find(r.target);
  if (!node) return false;
  long long slot;
  if (router.cluster() && parse_ll(r.slot, slot) && slot >= 0 && slot < kClusterSlots) {
    // The slot has moved: this loop sends it there from now on, and the map is read again.
    // ASK: it is moving; replicas may lack its keys (Router::redirected).
    if (r.ask) router.redirected(static_cast<uint16_t>(slot), node);
    else router.moved(static_cast<uint16_t>(slot), node);
  }
  UpstreamConn* t = node->shared_conn(r.proto, r.client->id);
  if (!t) return false;
  // The client's later requests wait until this one is answered, wherever they go: its order
  // no longer rests on one connection.
  r.client->on_redirected();
  // ASK: the slot is moving; only this request goes there, after ASKING.
  send_again(t, r.client, r.seq, r.raw, r.db, r.answer_by, r.write, r.redirects, r.ask, r.inv);
  return true;
}

// An upstream that refuses CONFIG GET databases: SELECT n is tried on the client's shared
// connection (and undone there) before the client moves, so a SELECT Redis would refuse never
// becomes the shared connection's own SELECT, whose failure would fail every client on it. The
// client's requests after it wait (as behind a cache miss); its reply is Redis's own.
void Dispatch::select_by_trying(ClientConn* c, int n) {
  UpstreamConn* u = srv_.shared_conn(c->proto, c->id);
  if (!u || c->inflight > 0 || c->flights_waiting > 0) {
    if (!u) {
      c->immediate_reply() += upstream_error(kReconnecting);
      return;
    }
    return c->stall();  // after what this client has in flight, in order
  }
  class Trial final : public ReplySink {
   public:
    Trial(Dispatch* s, ClientConn* c, int n) : s_(s), c_(c), n_(n), seq_(c->reserve_slot()) {
      c->ref();
      c->barriers++;         // no cache reads in the old db meanwhile
      c->flights_waiting++;  // nor forwards
    }
    void on_reply(std::string_view reply, bool failed) override {
      if (++got_ == 1) {
        ok_ = !failed && reply == "+OK\r\n";
        first_.assign(failed ? upstream_error(reply) : std::string(reply));
        return;
      }
      if (ok_) {
        s_->verified_db_max_ = std::max(s_->verified_db_max_, n_);
        c_->db = n_;
        c_->db_gen++;
      }
      c_->barriers--;
      c_->complete(seq_, first_);
      c_->on_flight_done();
      c_->unref();
      delete this;
    }

   private:
    Dispatch* s_;
    ClientConn* c_;
    int n_;
    uint64_t seq_;
    int got_ = 0;
    bool ok_ = false;
    std::string first_;
  };
  u->probe_select(new Trial(this, c, n), n);
}

}  // namespace respite
