// The cache path: GET and MGET answered from memory, misses collapsed into one upstream fetch per
// key (GET + PTTL per key, pipelined on the tracked fetch connection), writes invalidating before
// they are forwarded and again when acknowledged.
#include <fmt/format.h>

#include "proxy/cachepath/cache_path.h"

#include "proxy/ops/log.h"
#include "resp/reply_view.h"
#include "resp/reply_writer.h"
#include "resp/value.h"

namespace respite {

namespace {

void append_bulk_arg(std::string& out, std::string_view a) { resp::Writer(out, 2).bulk(a); }

const std::string kFetchFailed = upstream_error("fetch failed");

}  // namespace

// An MGET waiting for some of its keys. Hits are copied in when the request is parsed; misses
// arrive as their flights land. The reply is written once every position is known.
struct MgetAssembly {
  Requester* client;  // holds a reference
  uint64_t seq;
  uint32_t remaining;
  std::vector<std::string> values;
  std::vector<bool> missing;
  std::string error;  // a failed fetch fails the whole MGET, as a lost connection would
};

// One fetch on the fetch connection: GET k + PTTL k for each key (pipelined). GET per key, not
// MGET, because MGET answers nil for a key of another type where GET answers WRONGTYPE: the
// flight may be shared with GETs, and a nil must never be cached for a non-string key.
// Receives the 2n replies in order, then lands (or abandons) every flight.
class FetchBatch final : public ReplySink {
 public:
  explicit FetchBatch(CachePath* s) : srv_(s) {}
  // Batches are reused (CachePath::batch_pool_), keeping their buffers' capacity: a cache miss
  // then costs no short-lived allocations, which would otherwise be freed between the entries
  // filled meanwhile and fragment the heap (several bytes of RSS per cached entry).
  // Before going back to the pool: a reply far above the usual size is not kept.
  void trim() {
    for (std::string& g : gets_)
      if (g.capacity() > kKeepReplyBytes) std::string().swap(g);
    if (why_.capacity() > kKeepReplyBytes) std::string().swap(why_);
  }
  static constexpr size_t kKeepReplyBytes = 4096;
  // `keys` are kept only with Redis Cluster, where a fill answered MOVED/ASK is read again
  // elsewhere (CachePath::fill_elsewhere).
  void reset(std::span<const cache::FlightId> ids, std::span<const std::string_view> keys = {}) {
    ids_.assign(ids.begin(), ids.end());
    keys_.resize(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) keys_[i].assign(keys[i]);
    gets_.resize(ids_.size());
    pttls_.assign(ids_.size(), -1);
    got_ = 0;
    failed_ = false;
    why_.clear();
  }
  size_t replies() const { return 2 * ids_.size(); }
  const std::vector<cache::FlightId>& ids() const { return ids_; }
  std::string_view key(size_t i) const { return i < keys_.size() ? keys_[i] : std::string_view{}; }

  void on_reply(std::string_view reply, bool failed) override {
    size_t i = got_ / 2;
    if (failed) {
      if (!failed_) why_.assign(reply);
      failed_ = true;
    } else if (got_ % 2 == 0) {
      gets_[i].assign(reply);
    } else {
      resp::ReplyItem v;
      if (resp::ReplyView(reply).next(v) && v.type == ':') pttls_[i] = v.n;
    }
    if (++got_ == replies()) {
      srv_->fetch_landed(this, gets_, pttls_, failed_, why_);
      srv_->recycle(this);
    }
  }

 private:
  CachePath* srv_;
  std::vector<cache::FlightId> ids_;
  std::vector<std::string> keys_;
  std::vector<std::string> gets_;  // each GET's raw reply
  std::vector<int64_t> pttls_;
  size_t got_ = 0;
  bool failed_ = false;
  std::string why_;
};

CachePath::CachePath(CacheShared* shared, Loop* loop, UpstreamHost* host, Router* router)
    : shared_(shared),
      cache_(shared->cache.get()),
      loop_(loop),
      host_(host),
      router_(router),
      tracking_(shared, loop, host, router) {}

CachePath::~CachePath() {
  for (FetchBatch* b : batch_pool_) delete b;
}

void CachePath::get(Requester* c, uint32_t db, std::string_view key) {
  cache::Micros now = loop_->micros();
  // The reply is encoded while the cache holds the entry (other loops may evict it).
  cache::Lookup r = cache_->get_with(db, key, now, [&](const cache::Lookup& v) {
    resp::Writer w(c->immediate_reply(), c->proto);
    if (v.kind == cache::LookupKind::kHit) w.bulk(v.value);
    else w.null();
  });
  if (r.kind != cache::LookupKind::kMiss) {
    if (r.refresh) {
      cache::FlightId id = cache_->start_refresh(db, key, now);
      if (id != cache::kNoFlight) send_fetch(db, {&key, 1}, {&id, 1});
    }
    return;
  }
  CacheWaiter w;
  w.owner = this;
  w.client = c;
  w.seq = c->reserve_slot();
  c->ref();
  c->flights_waiting++;
  cache::Join j = cache_->join(db, key, w, now);
  if (j.started) send_fetch(db, {&key, 1}, {&j.id, 1});
}

namespace {
// A plain upstream GET for a ValueReader when the cache cannot be used.
class DirectRead final : public ReplySink {
 public:
  explicit DirectRead(ValueReader* r) : r_(r) {}
  void on_reply(std::string_view reply, bool failed) override {
    resp::Value v;
    if (failed)
      r_->on_value(false, {}, upstream_error(reply));
    else if (resp::decode(reply, v).status != resp::ScanResult::Status::Ok)
      r_->on_value(false, {}, kFetchFailed);
    else if (v.is_error()) r_->on_value(false, {}, reply);
    else r_->on_value(v.is_null(), v.str, {});
    delete this;
  }

 private:
  ValueReader* r_;
};
}  // namespace

void CachePath::read_key(uint32_t db, std::string_view key, ValueReader* reader) {
  if (usable()) {
    cache::Micros now = loop_->tick_micros();  // HTTP lookups run outside the check phase
    std::string& value = mget_value_scratch_;
    value.clear();
    cache::Lookup r = cache_->get_with(db, key, now, [&](const cache::Lookup& v) {
      if (v.kind == cache::LookupKind::kHit) value.assign(v.value);
    });
    if (r.kind != cache::LookupKind::kMiss) {
      reader->on_value(r.kind == cache::LookupKind::kNegative, value, {});
      return;
    }
    CacheWaiter w;
    w.owner = this;
    w.reader = reader;
    cache::Join j = cache_->join(db, key, w, now);
    if (j.started) send_fetch(db, {&key, 1}, {&j.id, 1});
    return;
  }
  UpstreamConn* u = router_->for_fill(db, key)->shared_conn(2, 0);
  if (!u) {
    reader->on_value(false, {}, upstream_error(kReconnecting));
    return;
  }
  std::string req = "*2\r\n$3\r\nGET\r\n";
  append_bulk_arg(req, key);
  u->request(new DirectRead(reader), req, static_cast<int>(db));
}

// Looks `key` up and, on a hit (value or cached nil), appends its reply to `out`; `*payload` is
// where the value starts in `out` (for a hit) and `*refresh` whether XFetch asks for an early
// refresh. The value is copied while the cache holds it.
cache::LookupKind CachePath::lookup_into(uint32_t db, std::string_view key, cache::Micros now,
                                      std::string& out, int proto, size_t* payload,
                                      bool* refresh) {
  cache::Lookup r = cache_->get_with(db, key, now, [&](const cache::Lookup& v) {
    if (v.kind == cache::LookupKind::kHit) {
      resp::Writer(out, proto).bulk(v.value);  // a bulk in both protocols
      *payload = out.size() - v.value.size() - 2;
    } else {
      resp::Writer(out, proto).null();
    }
  });
  *refresh = r.refresh;
  return r.kind;
}

void CachePath::mget(Requester* c, uint32_t db, const resp::Frame& f) {
  cache::Micros now = loop_->micros();
  size_t n = f.argc() - 1;
  // One lookup per key. Hits are encoded into a reusable scratch buffer; when every key hits
  // (the common case) that is the reply, with no allocation. At the first miss the request
  // becomes an assembly that waits for the flights of the missing keys.
  std::string& enc = mget_scratch_;
  enc.clear();
  resp::Writer(enc, c->proto).array(n);
  auto& spans = mget_spans_;  // per key: payload (offset, length) in `enc`; offset SIZE_MAX: nil
  spans.clear();
  std::vector<std::string_view> refresh_keys;
  std::vector<cache::FlightId> refresh_ids;
  auto maybe_refresh = [&](std::string_view key, bool refresh) {
    if (!refresh) return;
    cache::FlightId id = cache_->start_refresh(db, key, now);
    if (id != cache::kNoFlight) {
      refresh_keys.push_back(key);
      refresh_ids.push_back(id);
    }
  };
  size_t i = 0;
  for (; i < n; ++i) {
    size_t payload = SIZE_MAX;
    bool refresh = false;
    std::string_view key = f.arg(i + 1);
    cache::LookupKind k = lookup_into(db, key, now, enc, c->proto, &payload, &refresh);
    if (k == cache::LookupKind::kMiss) break;
    spans.emplace_back(payload, payload == SIZE_MAX ? 0 : enc.size() - payload - 2);
    maybe_refresh(key, refresh);
  }
  if (i == n) {
    c->immediate_reply().append(enc);
    if (!refresh_keys.empty()) send_fetch(db, refresh_keys, refresh_ids);
    return;
  }
  auto* m = new MgetAssembly{c, c->reserve_slot(), 0, std::vector<std::string>(n),
                             std::vector<bool>(n, false), {}};
  c->ref();
  c->flights_waiting++;
  // The keys before the miss: their values are in `enc`.
  for (size_t k = 0; k < i; ++k) {
    if (spans[k].first == SIZE_MAX) m->missing[k] = true;
    else m->values[k].assign(enc, spans[k].first, spans[k].second);
  }
  std::vector<std::string_view> fetch_keys;
  std::vector<cache::FlightId> fetch_ids;
  m->remaining = static_cast<uint32_t>(n - i) + 1;  // +1 until the loop is done
  for (size_t k = i; k < n; ++k) {
    std::string_view key = f.arg(k + 1);
    std::string& tmp = mget_value_scratch_;
    tmp.clear();
    size_t payload = SIZE_MAX;
    bool refresh = false;
    // The first key is known to miss; the others are looked up once here.
    cache::LookupKind kind =
        k == i ? cache::LookupKind::kMiss : lookup_into(db, key, now, tmp, 2, &payload, &refresh);
    if (kind == cache::LookupKind::kHit) {
      m->values[k].assign(tmp, payload, tmp.size() - payload - 2);
      --m->remaining;
      maybe_refresh(key, refresh);
    } else if (kind == cache::LookupKind::kNegative) {
      m->missing[k] = true;
      --m->remaining;
      maybe_refresh(key, refresh);
    } else {
      CacheWaiter w;
      w.owner = this;
      w.mget = m;
      w.index = static_cast<uint32_t>(k);
      cache::Join j = cache_->join(db, key, w, now);
      if (j.started) {
        fetch_keys.push_back(key);
        fetch_ids.push_back(j.id);
      }
    }
  }
  fetch_keys.insert(fetch_keys.end(), refresh_keys.begin(), refresh_keys.end());
  fetch_ids.insert(fetch_ids.end(), refresh_ids.begin(), refresh_ids.end());
  if (!fetch_keys.empty()) send_fetch(db, fetch_keys, fetch_ids);
  // Release the +1 (answers now if every missing key's flight has landed meanwhile).
  CacheWaiter done;
  done.mget = m;
  done.index = UINT32_MAX;
  answer_waiter(done, false, {}, {}, false);
}

void CachePath::recycle(FetchBatch* b) {
  if (batch_pool_.size() >= kBatchPoolMax) {
    delete b;
    return;
  }
  b->trim();
  batch_pool_.push_back(b);
}

void CachePath::send_fetch(uint32_t db, std::span<const std::string_view> keys,
                        std::span<const cache::FlightId> ids) {
  // Sequentially consistent, like the load in invalidate_key_after_write: with a write's
  // record in the WriteLedger (read by fill_tracking below) either this fill sees the write or
  // the write's second invalidation sees this fill; relaxed, both could miss on a weakly
  // ordered CPU and a replica's old value be cached after the acknowledgement.
  shared_->flights_started.fetch_add(ids.size());
  auto fail_all = [&] {
    for (cache::FlightId id : ids) {
      cache::Landing<CacheWaiter> l = cache_->abandon(id);
      for (CacheWaiter& w : l.waiters) deliver_waiter(w, false, {}, kFetchFailed, false);
    }
  };
  if (router_->cluster()) return send_cluster_fetch(db, keys, ids);
  UpstreamConn* fetch = nullptr;
  if (!replica_tracking_.empty()) fetch = fill_tracking(db, keys)->fetch_conn();
  if (!fetch) fetch = tracking_.fetch_conn();
  if (!fetch) return fail_all();
  send_batch(fetch, db, keys, ids);
}

void CachePath::send_batch(UpstreamConn* fetch, uint32_t db, std::span<const std::string_view> keys,
                           std::span<const cache::FlightId> ids) {
  std::string& req = fetch_scratch_;
  req.clear();
  for (std::string_view k : keys) {
    req.append("*2\r\n$3\r\nGET\r\n");
    append_bulk_arg(req, k);
    req.append("*2\r\n$4\r\nPTTL\r\n");
    append_bulk_arg(req, k);
  }
  FetchBatch* batch;
  if (batch_pool_.empty()) {
    batch = new FetchBatch(this);
  } else {
    batch = batch_pool_.back();
    batch_pool_.pop_back();
  }
  if (router_->cluster()) batch->reset(ids, keys);
  else batch->reset(ids);
  fetch->request(batch, req, static_cast<int>(db), batch->replies());
}

void CachePath::fetch_landed(FetchBatch* b, const std::vector<std::string>& gets,
                          const std::vector<int64_t>& pttls, bool failed, std::string_view why) {
  const auto& ids = b->ids();
  cache::Micros now = loop_->micros();
  // One Landing for all of this batch's flights, and landing_ (with its capacity) unless a
  // delivery re-entered here: filling the cache then allocates nothing but the entries.
  cache::Landing<CacheWaiter> local;
  const bool mine = !landing_busy_;
  cache::Landing<CacheWaiter>& l = mine ? landing_ : local;
  landing_busy_ = true;
  std::string failure;  // the error for failed fetches, made on first use
  auto failure_text = [&]() -> std::string_view {
    if (failure.empty())
      failure = failed && !why.empty() ? upstream_error(why) : std::string(kFetchFailed);
    return failure;
  };
  for (size_t i = 0; i < ids.size(); ++i) {
    resp::ReplyItem v;  // the GET reply, read in place (a bulk, nil, or an error)
    bool ok = !failed && resp::ReplyView(gets[i]).next(v) && !v.is_aggregate();
    if (!ok || (!v.null && v.type != '$' && !v.is_error())) {
      cache_->abandon(ids[i], l);
      for (CacheWaiter& w : l.waiters) deliver_waiter(w, false, {}, failure_text(), false);
      continue;
    }
    if (v.is_error() && router_->cluster() &&
        (gets[i].starts_with("-MOVED ") || gets[i].starts_with("-ASK "))) {
      fill_elsewhere(ids[i], b->key(i), gets[i]);
      continue;
    }
    if (v.is_error()) {
      // e.g. WRONGTYPE: relayed to GETs, nil for MGET positions (as MGET does), never cached.
      cache_->abandon(ids[i], l);
      for (CacheWaiter& w : l.waiters) deliver_waiter(w, false, {}, gets[i], true);
      continue;
    }
    cache::Fetched fx;
    fx.missing = v.null;
    fx.value = v.str;
    fx.pttl_ms = pttls[i];
    cache_->land(ids[i], fx, now, l);
    std::shared_ptr<const std::string> shared_value;  // one copy for every other loop
    for (CacheWaiter& w : l.waiters) deliver_waiter(w, fx.missing, fx.value, {}, false, &shared_value);
  }
  if (mine) landing_busy_ = false;
}

void CachePath::deliver_waiter(CacheWaiter& w, bool missing, std::string_view value,
                            std::string_view error, bool key_error,
                            std::shared_ptr<const std::string>* shared_value) {
  if (!w.owner || w.owner == this) return answer_waiter(w, missing, value, error, key_error);
  // The waiter joined from another loop: answer it there (its client and MGET are that loop's).
  // The value is copied once per landing for all of them, not once per waiter.
  std::shared_ptr<const std::string> v;
  if (shared_value) {
    if (!*shared_value) *shared_value = std::make_shared<const std::string>(value);
    v = *shared_value;
  } else {
    v = std::make_shared<const std::string>(value);
  }
  CachePath* owner = w.owner;
  owner->loop_->post([owner, w, missing, v, e = std::string(error), key_error]() mutable {
    owner->answer_waiter(w, missing, *v, e, key_error);
  });
}

// Answers one waiter: a value (`missing` for nil), or `error` (a complete error reply).
void CachePath::answer_waiter(CacheWaiter& w, bool missing, std::string_view value,
                           std::string_view error, bool key_error) {
  if (w.reader) {
    w.reader->on_value(missing, value, error);
    return;
  }
  if (w.client) {
    Requester* c = w.client;
    // A client closed meanwhile (e.g. at its output limit while earlier waiters of this very
    // flight were answered) gets nothing: no copy of the value is made for it.
    if (!c->closed()) {
      scratch_.clear();
      if (!error.empty()) scratch_.assign(error);
      else {
        resp::Writer wr(scratch_, c->proto);
        if (missing) wr.null();
        else wr.bulk(value);
      }
      c->complete(w.seq, scratch_);
      if (scratch_.capacity() > kKeepScratch) std::string().swap(scratch_);
    }
    c->on_flight_done();
    c->unref();
    return;
  }
  MgetAssembly* m = w.mget;
  if (w.index != UINT32_MAX && !m->client->closed()) {
    if (key_error) {
      m->missing[w.index] = true;  // MGET answers nil for a key holding another type
    } else if (!error.empty()) {
      if (m->error.empty()) m->error.assign(error);
    } else if (missing) {
      m->missing[w.index] = true;
    } else {
      m->values[w.index].assign(value);
    }
  }
  if (--m->remaining > 0) return;
  Requester* c = m->client;
  if (!c->closed()) {
    scratch_.clear();
    if (!m->error.empty()) scratch_.assign(m->error);
    else {
      resp::Writer wr(scratch_, c->proto);
      wr.array(m->values.size());
      for (size_t i = 0; i < m->values.size(); ++i) {
        if (m->missing[i]) wr.null();
        else wr.bulk(m->values[i]);
      }
    }
    c->complete(m->seq, scratch_);
    if (scratch_.capacity() > kKeepScratch) std::string().swap(scratch_);
  }
  c->on_flight_done();
  c->unref();
  delete m;
}

// ---- writes ----

CachePath::WritePlan CachePath::invalidate_before_write(uint32_t db, const resp::Frame& f,
                                                        const WriteKeys& w) {
  WritePlan plan;
  // Without a cache the plan still names the keys when replicas take reads (their record of
  // acknowledged writes is kept from the reply); the cache's own steps are no-ops then.
  const bool cache_on = cache_->enabled();
  if (!cache_on && !router_->reads_replicas()) return plan;
  plan.db = db;
  plan.flights_at = shared_->flights_started.load();
  if (w.scope != WriteInvalidation::Scope::Keys) {
    plan.heap = new WriteInvalidation;
    plan.heap->db = plan.db;
    plan.heap->scope = w.scope;
    if (cache_on) apply_invalidation(*plan.heap, cache::Source::kLocal);
    return plan;
  }
  if (w.args.empty()) return plan;
  if (w.args.size() == 1 && !w.any_db) {
    plan.key_arg = static_cast<int>(w.args[0]);
    if (cache_on) cache_->invalidate(plan.db, f.arg(w.args[0]), cache::Source::kLocal);
    return plan;
  }
  plan.heap = new WriteInvalidation;
  plan.heap->db = plan.db;
  uint32_t key_db = w.any_db ? cache::kAllDbs : plan.db;
  for (uint32_t i : w.args) plan.heap->keys.emplace_back(key_db, std::string(f.arg(i)));
  if (cache_on) apply_invalidation(*plan.heap, cache::Source::kLocal);
  return plan;
}

void CachePath::invalidate_key_after_write(uint32_t db, std::string_view key, uint64_t flights_at) {
  // Only a fetch started after the first invalidation can have raced the write.
  if (cache_->enabled() && shared_->flights_started.load() != flights_at)
    cache_->invalidate(db, key, cache::Source::kLocal);
}

void CachePath::apply_invalidation(const WriteInvalidation& inv, cache::Source src) {
  switch (inv.scope) {
    case WriteInvalidation::Scope::All: cache_->flush_all(src); break;
    case WriteInvalidation::Scope::Db: cache_->flush_db(inv.db, src); break;
    case WriteInvalidation::Scope::Unknown: break;  // the tracking link tells the cache
    case WriteInvalidation::Scope::Keys:
      for (const auto& [db, key] : inv.keys) cache_->invalidate(db, key, src);
      break;
  }
}

void CachePath::invalidate_after_write(WriteInvalidation* inv) {
  if (cache_->enabled()) apply_invalidation(*inv, cache::Source::kLocal);
  delete inv;
}

}  // namespace respite
