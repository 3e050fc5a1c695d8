// Cluster commands split by slot or sent to every master, and their replies merged
// (cluster_split.h). One ClusterOp per client request: it holds the client the way any request
// respite answers later does (a reference, a reserved reply slot, flights_waiting so the
// client's later requests wait for it, barriers so the cache does not answer them meanwhile),
// and its Parts are the ReplySinks of the requests it sends on the nodes' shared connections.
#include "proxy/front/cluster_split.h"

#include <uv.h>

#include <algorithm>
#include <charconv>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/front/client.h"
#include "proxy/front/command_table.h"
#include "proxy/front/server.h"
#include "proxy/ops/text.h"
#include "proxy/upstream/cluster_map.h"
#include "proxy/upstream/forwarded.h"
#include "resp/reply_view.h"
#include "resp/reply_writer.h"

namespace respite {

namespace {

// How the parts' replies become the client's.
enum class Kind : uint8_t {
  None,
  Mget,       // values in request order
  AllOk,      // +OK when every part said +OK (MSET, FLUSHALL, FLUSHDB)
  Sum,        // the sum of the parts' integers (DEL, UNLINK, EXISTS, TOUCH, DBSIZE)
  Concat,     // the parts' arrays as one (KEYS)
  RandomKey,  // one master after another until one has a key
  Scan,       // one master's SCAN, its cursor re-encoded
};

// The only place command names are compared: the command table's entry (its lowercase name),
// on the cross-slot and keyless paths of cluster mode only. `pairs`: each key is followed by its
// value (MSET).
Kind split_kind(const CommandInfo& ci, bool& pairs) {
  const std::string_view n = ci.name;
  pairs = false;
  if (n == "mget") return Kind::Mget;
  if (n == "mset") {
    pairs = true;
    return Kind::AllOk;
  }
  if (n == "del" || n == "unlink" || n == "exists" || n == "touch") return Kind::Sum;
  return Kind::None;
}

Kind fan_out_kind(const CommandInfo& ci) {
  const std::string_view n = ci.name;
  if (n == "dbsize") return Kind::Sum;
  if (n == "keys") return Kind::Concat;
  if (n == "flushall" || n == "flushdb") return Kind::AllOk;
  if (n == "randomkey") return Kind::RandomKey;
  if (n == "scan") return Kind::Scan;
  return Kind::None;
}

constexpr std::string_view kMalformed = "unexpected reply from a cluster node";

bool is_error_reply(std::string_view r) { return !r.empty() && (r[0] == '-' || r[0] == '!'); }

// Reads `reply` as a flat array of strings or nils, calling `each(item)` per element. False when
// it is anything else. The declared count is only compared with what follows, never allocated.
template <class F>
bool each_string(std::string_view reply, F&& each) {
  resp::ReplyView v(reply);
  resp::ReplyItem it;
  if (!v.next(it) || it.type != '*' || it.null) return false;
  for (int64_t i = 0; i < it.n; ++i) {
    resp::ReplyItem e;
    if (!v.next(e) || e.is_aggregate() || e.is_error()) return false;
    each(e);
  }
  return v.at_end();
}

class ClusterOp {
 public:
  struct Part final : ReplySink {
    ClusterOp* op = nullptr;
    std::string raw;       // the request, kept for a retry
    Node* node = nullptr;
    int slot = -1;         // split parts: the slot of their keys (-1: a fan-out part, redirects
                           // are not followed: no key, no slot that could have moved)
    uint32_t nkeys = 0;    // split parts: how many keys (the MGET reply's length)
    uint8_t tries = 0;     // sends after the first (MOVED, ASK, TRYAGAIN)
    bool ask = false;      // sent after ASKING (a TRYAGAIN sends it so again)
    bool failed = false;   // `reply` is respite's error (the connection failed)
    std::string reply;
    void on_reply(std::string_view r, bool f) override { op->landed(*this, r, f); }
  };

  ClusterOp(Server& srv, ClientConn* c, const CommandInfo& ci, Kind kind, size_t nparts)
      : srv_(srv), c_(c), kind_(kind), write_(ci.is(kWrite)), proto_(c->proto), db_(c->db),
        parts_(nparts) {
    for (Part& p : parts_) p.op = this;
  }

  std::vector<Part>& parts() { return parts_; }
  std::vector<uint32_t> part_of;  // Mget: key position -> its part
  std::vector<Node*> order;       // RandomKey: the masters still to ask, in order
  size_t scan_index = 0;          // Scan: the master asked, and how many there are
  size_t scan_masters = 0;

  // Takes the client's reply slot and hold, runs the write invalidation, and sends every part.
  // `this` may be gone on return.
  void start(const resp::Frame& f, WritePlanFn plan) {
    c_->ref();
    seq_ = c_->reserve_slot();
    c_->flights_waiting++;  // the client's next requests wait (ClientConn::on_flight_done)
    c_->barriers++;         // and the cache answers none of them meanwhile
    srv_.stats().forwarded_commands++;
    CachePath::WritePlan wp = plan();
    inv_ = wp.heap;
    if (!inv_ && wp.key_arg >= 0) {  // one written key (not a split: they have several)
      inv_ = new WriteInvalidation;
      inv_->db = wp.db;
      inv_->keys.emplace_back(wp.db, std::string(f.arg(static_cast<size_t>(wp.key_arg))));
    }
    waiting_ = parts_.size() + 1;  // +1: no part answered at once may finish us mid-loop
    for (Part& p : parts_) send(p);
    if (--waiting_ == 0) finish();
  }

 private:
  // Sends `p` to its node; a node without a connection up answers it at once.
  void send(Part& p) {
    UpstreamConn* u = p.node ? p.node->shared_conn(proto_, c_->id) : nullptr;
    if (!u) return settle(p, upstream_error(kReconnecting), true);
    if (p.ask) u->asking(db_);  // ASK: this request only, in the slot being imported
    u->request(&p, p.raw, db_);
  }

  void landed(Part& p, std::string_view reply, bool failed) {
    if (failed) {
      // As a forwarded write's failure says: the part may have run before its connection went.
      std::string why(reply);
      if (write_) why += "; the command may have been applied";
      return settle(p, upstream_error(why), true);
    }
    if (retry(p, reply)) return;
    if (kind_ == Kind::RandomKey && !order.empty()) {
      resp::ReplyView v(reply);
      resp::ReplyItem it;
      if (v.next(it) && it.null) {  // this master is empty: the next one
        p.node = order.back();
        order.pop_back();
        p.tries = 0;
        p.ask = false;
        return send(p);
      }
    }
    settle(p, reply, false);
  }

  void settle(Part& p, std::string_view reply, bool failed) {
    p.reply.assign(reply);
    p.failed = failed;
    if (--waiting_ == 0) finish();
  }

  // -MOVED, -ASK, -TRYAGAIN within the retry budget: sent again (true), else false.
  bool retry(Part& p, std::string_view reply) {
    if (reply.empty() || reply[0] != '-' || p.tries >= kMaxRedirects) return false;
    bool ask = false;
    std::string_view slot, target;
    if (p.slot >= 0 && parse_redirect(reply, ask, slot, target)) {
      Router& router = srv_.router();
      Node* n = router.find_or_make(target);
      if (!n) return false;
      long long s;
      if (!ask && parse_ll(slot, s) && s >= 0 && s < kClusterSlots) {
        // As Dispatch::redirect: this loop sends the slot there from now on; the map is re-read.
        router.moved(static_cast<uint16_t>(s), n);
        srv_.cluster_moved();
      } else if (ask && parse_ll(slot, s) && s >= 0 && s < kClusterSlots) {
        router.redirected(static_cast<uint16_t>(s), n);  // migrating: no replica reads of it
      }
      p.node->stats.redirects++;
      p.node = n;
      p.ask = ask;
      p.tries++;
      send(p);
      return true;
    }
    if (reply.starts_with("-TRYAGAIN")) {
      // A multi-key part in a slot being migrated whose keys are not all on one side yet: the
      // same node again (after ASKING if it was the importing one), 5, 10, 20 ... ms later.
      p.tries++;
      later(p, uint64_t{5} << (p.tries - 1));
      return true;
    }
    return false;
  }

  // Sends `p` again after `ms`: a one-shot timer freed in its close callback.
  void later(Part& p, uint64_t ms) {
    struct Later {
      uv_timer_t t;
      Part* p;
    };
    auto* l = new Later;
    l->p = &p;
    uv_timer_init(srv_.loop(), &l->t);
    l->t.data = l;
    uv_timer_start(
        &l->t,
        [](uv_timer_t* t) {
          auto* l = static_cast<Later*>(t->data);
          Part* p = l->p;
          uv_close(reinterpret_cast<uv_handle_t*>(t),
                   [](uv_handle_t* h) { delete static_cast<Later*>(h->data); });
          p->op->send(*p);  // the op waits for this part: it is alive
        },
        ms, 0);
  }

  // Every part answered: the client's reply, the write's second invalidation, the hold undone.
  void finish() {
    std::string out;
    merge(out);
    if (inv_) srv_.invalidate_after_write(inv_);  // applies and frees it
    c_->barriers--;
    c_->complete(seq_, out);
    c_->on_flight_done();
    c_->unref();
    delete this;
  }

  void merge(std::string& out) {
    // The first failure or error reply, in part order, answers everything.
    for (const Part& p : parts_)
      if (p.failed || is_error_reply(p.reply)) {
        out = p.reply;
        return;
      }
    resp::Writer w(out, proto_);
    switch (kind_) {
      case Kind::None: break;
      case Kind::Mget: return merge_mget(out);
      case Kind::AllOk:
        for (const Part& p : parts_)
          if (p.reply != "+OK\r\n") {
            out = p.reply;
            return;
          }
        return w.simple("OK");
      case Kind::Sum: {
        int64_t sum = 0;
        for (const Part& p : parts_) {
          resp::ReplyView v(p.reply);
          resp::ReplyItem it;
          if (!v.next(it) || it.type != ':' || !v.at_end()) return malformed(out);
          sum += it.n;
        }
        return w.integer(sum);
      }
      case Kind::Concat: {
        // Counted first, then written: nothing is sized from a declared count.
        size_t n = 0;
        for (const Part& p : parts_)
          if (!each_string(p.reply, [&](const resp::ReplyItem&) { ++n; })) return malformed(out);
        w.array(n);
        auto put = [&](const resp::ReplyItem& e) { e.null ? w.null() : w.bulk(e.str); };
        for (const Part& p : parts_) each_string(p.reply, put);
        return;
      }
      case Kind::RandomKey: out = parts_[0].reply; return;
      case Kind::Scan: return merge_scan(out);
    }
  }

  static void malformed(std::string& out) { out = upstream_error(kMalformed); }

  void merge_mget(std::string& out) {
    struct Val {
      std::string_view s;
      bool null;
    };
    std::vector<Val> vals;
    vals.reserve(part_of.size());  // the request's own key count, not a reply's
    std::vector<uint32_t> next(parts_.size());
    for (size_t i = 0; i < parts_.size(); ++i) {
      next[i] = static_cast<uint32_t>(vals.size());
      const size_t before = vals.size();
      bool ok = each_string(parts_[i].reply, [&](const resp::ReplyItem& e) {
        if (vals.size() - before < parts_[i].nkeys) vals.push_back({e.str, e.null});
      });
      if (!ok || vals.size() - before != parts_[i].nkeys) return malformed(out);
    }
    resp::Writer w(out, proto_);
    w.array(part_of.size());
    for (uint32_t p : part_of) {
      const Val& v = vals[next[p]++];
      if (v.null) w.null();
      else w.bulk(v.s);
    }
  }

  // A node's [cursor, [keys...]] with its cursor made the cluster's (cluster_split.h).
  void merge_scan(std::string& out) {
    resp::ReplyView v(parts_[0].reply);
    resp::ReplyItem top, cur, keys;
    uint64_t node_cursor = 0;
    if (!v.next(top) || top.type != '*' || top.n != 2 || !v.next(cur) || !cur.is_string() ||
        std::from_chars(cur.str.data(), cur.str.data() + cur.str.size(), node_cursor).ptr !=
            cur.str.data() + cur.str.size() ||
        !v.next(keys) || keys.type != '*' || keys.null)
      return malformed(out);
    uint64_t cursor;
    if (node_cursor == 0) {
      cursor = scan_index + 1 < scan_masters ? scan_index + 1 : 0;  // the next master, or done
    } else if (node_cursor >= kScanMaxNodeCursor) {
      out = "-ERR a cluster node's SCAN cursor is beyond respite's cursor encoding\r\n";
      return;
    } else {
      cursor = (node_cursor << kScanIndexBits) | scan_index;
    }
    resp::Writer w(out, proto_);
    w.array(2);
    char buf[24];
    auto end = std::to_chars(buf, buf + sizeof buf, cursor).ptr;
    w.bulk(std::string_view(buf, static_cast<size_t>(end - buf)));
    // The keys: checked and counted first (the declared count is then what follows), then
    // written from a second reading.
    for (int64_t k = 0; k < keys.n; ++k) {
      resp::ReplyItem e;
      if (!v.next(e) || e.is_aggregate() || e.is_error()) return malformed(out);
    }
    if (!v.at_end()) return malformed(out);
    w.array(static_cast<size_t>(keys.n));
    resp::ReplyView again(parts_[0].reply);
    resp::ReplyItem e;
    again.next(e);  // the pair, the cursor, the keys' header
    again.next(e);
    again.next(e);
    for (int64_t k = 0; k < keys.n && again.next(e); ++k) e.null ? w.null() : w.bulk(e.str);
  }

  Server& srv_;
  ClientConn* c_;
  Kind kind_;
  bool write_;  // MSET, DEL, UNLINK, FLUSHALL, FLUSHDB
  int proto_;  // the reply is in the protocol of the request (a HELLO pipelined after it
  int db_;     // changes the later ones only)
  uint64_t seq_ = 0;
  size_t waiting_ = 0;
  WriteInvalidation* inv_ = nullptr;
  std::vector<Part> parts_;
};

void encode_arg(std::string& out, std::string_view a) { resp::Writer(out, 2).bulk(a); }

// Held back behind the client's requests in flight (on any connection, or cache misses): the
// parts go to several connections, and none may overtake what the client sent before.
bool must_wait(ClientConn* c) {
  if (c->inflight == 0 && c->flights_waiting == 0) return false;
  c->stall();
  return true;
}

}  // namespace

bool cluster_split(Server& srv, ClientConn* c, const resp::Frame& f, const CommandInfo& ci,
                   std::span<const uint32_t> keys, WritePlanFn plan) {
  bool pairs;
  const Kind kind = split_kind(ci, pairs);
  if (kind == Kind::None || keys.size() < 2) return false;
  // MSET with a key but no value: Redis Cluster refuses it as CROSSSLOT before looking.
  if (pairs && (f.argc() % 2 != 1 || keys.size() * 2 + 1 != f.argc())) return false;
  if (must_wait(c)) return true;
  // Parts by slot, keys in request order within each (a stable sort of (slot, position)).
  std::vector<std::pair<uint16_t, uint32_t>> by_slot;
  by_slot.reserve(keys.size());
  for (uint32_t j = 0; j < keys.size(); ++j) by_slot.emplace_back(key_slot(f.arg(keys[j])), j);
  std::stable_sort(by_slot.begin(), by_slot.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t nparts = 0;
  for (size_t i = 0; i < by_slot.size(); ++i)
    if (i == 0 || by_slot[i].first != by_slot[i - 1].first) ++nparts;
  auto* op = new ClusterOp(srv, c, ci, kind, nparts);
  op->part_of.resize(keys.size());
  size_t i = 0;
  for (ClusterOp::Part& p : op->parts()) {
    const uint16_t slot = by_slot[i].first;
    size_t e = i;
    while (e < by_slot.size() && by_slot[e].first == slot) ++e;
    p.slot = slot;
    p.node = srv.router().slot_node(slot);
    p.nkeys = static_cast<uint32_t>(e - i);
    resp::Writer(p.raw, 2).array(1 + p.nkeys * (pairs ? 2 : 1));
    encode_arg(p.raw, srv.dispatch().wire_name(f));  // a renamed command: its own name
    for (; i < e; ++i) {
      const uint32_t j = by_slot[i].second;
      op->part_of[j] = static_cast<uint32_t>(&p - op->parts().data());
      encode_arg(p.raw, f.arg(keys[j]));
      if (pairs) encode_arg(p.raw, f.arg(keys[j] + 1));
    }
  }
  op->start(f, plan);
  return true;
}

bool cluster_fan_out(Server& srv, ClientConn* c, const resp::Frame& f, const CommandInfo& ci,
                     WritePlanFn plan) {
  const Kind kind = fan_out_kind(ci);
  if (kind == Kind::None) return false;
  const std::vector<Node*>& masters = srv.router().masters();
  if (masters.empty()) return false;  // no map yet: one node answers what it can
  if (kind == Kind::Scan) {
    if (f.argc() < 2) return false;  // Redis's arity error
    uint64_t cursor = 0;
    const std::string_view a = f.arg(1);
    if (masters.size() > (size_t{1} << kScanIndexBits)) {
      resp::Writer(c->immediate_reply(), c->proto)
          .error("ERR SCAN through respite covers at most 1024 cluster masters");
      return true;
    }
    if (std::from_chars(a.data(), a.data() + a.size(), cursor).ptr != a.data() + a.size() ||
        a.empty() || (cursor & ((uint64_t{1} << kScanIndexBits) - 1)) >= masters.size()) {
      resp::Writer(c->immediate_reply(), c->proto).error("ERR invalid cursor");
      return true;
    }
    if (must_wait(c)) return true;
    auto* op = new ClusterOp(srv, c, ci, kind, 1);
    op->scan_index = cursor & ((uint64_t{1} << kScanIndexBits) - 1);
    op->scan_masters = masters.size();
    ClusterOp::Part& p = op->parts()[0];
    p.node = masters[op->scan_index];
    resp::Writer(p.raw, 2).array(f.argc());
    encode_arg(p.raw, srv.dispatch().wire_name(f));  // a renamed command: its own name
    char buf[24];
    auto end = std::to_chars(buf, buf + sizeof buf, cursor >> kScanIndexBits).ptr;
    encode_arg(p.raw, std::string_view(buf, static_cast<size_t>(end - buf)));
    for (size_t i = 2; i < f.argc(); ++i) encode_arg(p.raw, f.arg(i));
    op->start(f, plan);
    return true;
  }
  if (must_wait(c)) return true;
  std::string encoded;
  const std::string raw(srv.dispatch().wire(f, encoded));  // a renamed command: its own name
  if (kind == Kind::RandomKey) {
    auto* op = new ClusterOp(srv, c, ci, kind, 1);
    op->order.assign(masters.begin(), masters.end());
    static thread_local std::minstd_rand rng{std::random_device{}()};
    std::shuffle(op->order.begin(), op->order.end(), rng);
    ClusterOp::Part& p = op->parts()[0];
    p.node = op->order.back();
    op->order.pop_back();
    p.raw = raw;
    op->start(f, plan);
    return true;
  }
  auto* op = new ClusterOp(srv, c, ci, kind, masters.size());
  for (size_t i = 0; i < masters.size(); ++i) {
    op->parts()[i].node = masters[i];
    op->parts()[i].raw = raw;
  }
  op->start(f, plan);
  return true;
}

}  // namespace respite
