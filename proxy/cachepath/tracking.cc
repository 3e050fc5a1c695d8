// The tracking service: the invalidation link and the fetch connection's lifecycle, barriers
// for writes with unknown keys, and the SWAPDB poll (see tracking.h).
#include "proxy/cachepath/tracking.h"

#include <fmt/format.h>

#include <charconv>
#include <functional>

#include "proxy/cachepath/cache_path.h"
#include "proxy/ops/log.h"
#include "proxy/ops/text.h"
#include "resp/reply_view.h"
#include "resp/value.h"

namespace respite {

namespace {

// A ReplySink that frees itself, then runs a function (which may post or complete replies).
// A link's PING that failed (the link lost, or no answer in time) may not have delivered the
// invalidations before it: the cache is flushed before `f` releases anything.
class PingSink final : public ReplySink {
 public:
  PingSink(std::function<void()> f, CacheStore* cache) : f_(std::move(f)), cache_(cache) {}
  void on_reply(std::string_view, bool failed) override {
    auto f = std::move(f_);
    if (failed) cache_->flush_all(cache::Source::kLocal);
    delete this;
    f();
  }

 private:
  std::function<void()> f_;
  CacheStore* cache_;
};

// One held reply and the loops whose links have still to answer.
struct Barrier {
  Requester* client;  // holds a reference
  uint64_t seq;
  std::string reply;
  size_t remaining;
};

// Redis's `cmdstat_swapdb:calls=N` from INFO commandstats: N, 0 when SWAPDB never ran, -1
// when the reply is not INFO text (an error: INFO refused).
int64_t swapdb_calls(std::string_view reply) {
  if (reply.empty() || reply[0] == '-' || reply[0] == '!') return -1;
  constexpr std::string_view kField = "cmdstat_swapdb:calls=";
  size_t at = reply.find(kField);
  if (at == std::string_view::npos) return 0;
  const char* b = reply.data() + at + kField.size();
  int64_t n = 0;
  auto [p, ec] = std::from_chars(b, reply.data() + reply.size(), n);
  return ec == std::errc() ? n : -1;
}

}  // namespace

// The mode is read from the loop's settings (the Server's, made before its cache path); it is
// fixed for the process (PROXY CONFIG SET refuses it).
Tracking::Tracking(CacheShared* shared, Loop* loop, UpstreamHost* host, Router* router,
                   Node* node, int replica, WriteLedger* ledger)
    : shared_(shared),
      loop_(loop),
      host_(host),
      router_(router),
      node_(node),
      replica_(replica),
      ledger_(ledger),
      ttl_(host->config().cache_coherence == CacheCoherence::Ttl) {}

void Tracking::tick(uint64_t now) {
  if (stopping_ || !shared_->cache->enabled()) return;
  Node::Tracking& t = node().tracking;
  if (replica_ >= 0) {
    // A replica the monitor does not trust (down, loading, its own link down: it may not apply
    // writes for a while) keeps nothing in the cache: what it said goes, and its link with it.
    if (!ledger_->health(replica_).healthy.load(std::memory_order_relaxed)) {
      if (t.link) {
        log(LogLevel::Notice, "replica {} takes no reads: cache filled from it flushed",
            node().name());
        close_link();
      }
      if (ttl_ && t.fetch) t.fetch->close();
      return;
    }
    // Only the first loop's replica monitor opens connections to replicas: here the others.
    if (!node().connected()) node().shared_conn(2, 0);
  }
  if (cluster_node() && !node().connected()) node().shared_conn(2, 0);
  if (ttl_) {
    // No link. The fetch connection is opened here, not per miss: an upstream that is down
    // costs no connection attempt per read (reads go the forwarded way meanwhile).
    if (!t.fetch && node().connected()) fetch_conn();
  } else if (!t.link && now >= t.next_attempt_ms && node().connected()) {
    start_link();
  }
  if (now >= next_swapdb_poll_ms_ && !cluster_node()) {
    next_swapdb_poll_ms_ = now + kSwapdbPollMs;
    if (serving()) poll_swapdb();
  }
}

UpstreamConn* Tracking::fetch_conn() {
  Node::Tracking& t = node().tracking;
  if (t.fetch) return t.fetch;
  if (ttl_) {
    if (!node().connected()) return nullptr;
    t.fetch = new UpstreamConn(host_, &node(), 2, nullptr, 0);
    t.fetch->connect();
    return t.fetch;  // nullptr when the connect failed at once
  }
  if (!link_subscribed_ || t.link_id < 0) return nullptr;
  // A cluster node's link was asked on a connection of its own; the fetch connection is then
  // tracked on the same node (CLIENT TRACKING's REDIRECT names a client of this node).
  UpstreamConn* f = t.fetch = new UpstreamConn(host_, &node(), 2, nullptr, 0);
  // A request, not a handshake: a refusal is then told from a lost connection. Fetches queued
  // behind it (a reopen while up) are failed by the close a refusal brings, never filled
  // untracked: replies come in order.
  f->request(once_sink([this, f](std::string_view reply, bool failed) {
               if (!failed) on_tracking_reply(f, reply);
             }),
             fmt::format("*5\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\non\r\n$8\r\nREDIRECT\r\n${}\r\n{}\r\n",
                         std::to_string(t.link_id).size(), t.link_id),
             0);
  f->connect();
  return t.fetch;
}

void Tracking::on_tracking_reply(UpstreamConn* f, std::string_view reply) {
  Node::Tracking& t = node().tracking;
  if (!reply.empty() && reply[0] == '-') {
    refuse("CLIENT TRACKING", reply);
    if (t.fetch == f) f->close();
    close_link();  // link_lost: the cache is flushed and the link asked again later
    return;
  }
  if (t.fetch != f || !link_subscribed_) return;  // a connection or a link since replaced
  if (!t.up)
    log(LogLevel::Verbose, "invalidation link up on {} (client id {})", node().name(), t.link_id);
  t.up = true;
  t.backoff_ms = 0;
  refused_ = false;
  replica_refusal_said_ = false;
  if (replica_ < 0 && shared_->tracking_refusal_said.exchange(false))
    log(LogLevel::Notice, "the upstream accepts CLIENT TRACKING now: the cache is on");
}

void Tracking::refuse(std::string_view what, std::string_view reply) {
  std::string_view msg = reply.substr(1, reply.find('\r') - 1);
  // A server loading its data or running a script refuses nothing for good: the usual backoff.
  if (msg.starts_with("LOADING") || msg.starts_with("BUSY")) return;
  refused_ = true;
  if (replica_ >= 0) {  // the cache goes on with the primary and the other replicas
    if (!replica_refusal_said_)
      log(LogLevel::Warning, "replica {} refuses CLIENT TRACKING ({}: {}): cache fills read from "
          "the primary or other replicas (asked again every {} s)", node().name(), what, msg,
          kRefusedRetryMs / 1000);
    replica_refusal_said_ = true;
    return;
  }
  if (shared_->tracking_refusal_said.exchange(true)) return;
  log(LogLevel::Warning,
      "the upstream refuses CLIENT TRACKING ({}: {}): the cache is off and reads are forwarded "
      "to the upstream (tracking is asked again every {} s); cache-coherence ttl caches without "
      "tracking, each entry for at most cache-ttl-ms ({} ms), writes made elsewhere seen when "
      "it expires",
      what, msg, kRefusedRetryMs / 1000, host_->config().cache_ttl_ms);
}

void Tracking::fetch_lost() {
  // Redis forgets what a connection tracked when it goes: entries it fetched would no longer be
  // invalidated, so they go too. Entries fetched without tracking (ttl) never depended on it,
  // and nothing was fetched before the link was up (a refusal of CLIENT TRACKING closes the
  // fetch connection: no flush at every attempt).
  if (!ttl_ && node().tracking.up) flush_filled();
}

namespace {
bool slot_listed(const void* ctx, std::string_view key) {
  return (*static_cast<const std::vector<bool>*>(ctx))[key_slot(key)];
}
}  // namespace

void Tracking::flush_filled() {
  if (!cluster_node()) return shared_->cache->flush_all(cache::Source::kLocal);
  // The slots this loop sends to the node (fills read where requests go). Taken before the
  // cache's locks: the router may not be asked under them.
  std::vector<bool> mine = router_->slots_of(node_);
  shared_->cache->flush_keys_if(slot_listed, &mine, cache::Source::kLocal);
}

void Tracking::close_link() {
  if (node().tracking.link) node().tracking.link->close();
}

void Tracking::link_ping(std::function<void()> done) {
  if (!node().tracking.link || !node().tracking.up) return done();  // no link: this loop caches nothing
  // The link is subscribed: PING is one of the commands it may send, and Redis answers it
  // after every invalidation it has written there so far.
  node().tracking.link->request(new PingSink(std::move(done), shared_->cache.get()), "*1\r\n$4\r\nPING\r\n", 0);
}

void Tracking::barrier(Requester* c, uint64_t seq, std::string_view reply, uint64_t mark) {
  host_->stats().tracking_barriers++;
  auto* b = new Barrier{c, seq, std::string(reply), shared_->paths.size() + 1};
  c->ref();
  c->barriers++;
  // Runs on this loop once per part; the last one releases the reply.
  auto part_done = [b] {
    if (--b->remaining > 0) return;
    Requester* cl = b->client;
    cl->barriers--;
    cl->complete(b->seq, b->reply);
    cl->unref();
    delete b;
  };
  for (CachePath* p : shared_->paths) {
    if (&p->tracking() == this) {
      p->coherence_ping(mark, part_done);
    } else {
      // Each loop has its own links (its fetch connections' keys are reported there).
      p->tracking().loop_->post([p, origin = this, mark, part_done] {
        p->coherence_ping(mark, [origin, part_done] { origin->loop_->post(part_done); });
      });
    }
  }
  part_done();  // the +1 taken while the parts were sent
}

void Tracking::poll_swapdb(UpstreamConn* via) {
  const bool timer = !via;
  if (timer) {  // the timer's poll: on the first shared connection, one at a time
    if (swapdb_poll_pending_ || !(via = node().first_ready())) return;
    swapdb_poll_pending_ = true;
  }
  CacheShared::SwapdbCount& count = *shared_->swapdb[static_cast<size_t>(replica_ + 1)];
  const uint64_t poll = ++count.polls;
  auto on_info = [this, &count, poll, timer](std::string_view reply, bool failed) {
    if (timer) swapdb_poll_pending_ = false;
    if (failed) return;
    int64_t n = swapdb_calls(reply);
    if (n < 0) {
      if (!swapdb_refused_)
        log(LogLevel::Warning,
            "the upstream refuses INFO commandstats: a SWAPDB made directly on Redis reaches "
            "the cache only when entries expire (cache-ttl-ms)");
      swapdb_refused_ = true;
      return;
    }
    int64_t before;
    {
      std::lock_guard<std::mutex> lock(count.mu);
      if (poll < count.applied) return;  // a newer poll's count is in already
      count.applied = poll;
      before = count.calls;
      count.calls = n;
    }
    if (before >= 0 && n != before) {
      host_->stats().swapdb_flushes++;
      log(LogLevel::Notice, "SWAPDB ran on {} ({} -> {} calls): cache flushed", node().name(),
          before, n);
      shared_->cache->flush_all(cache::Source::kTracking);
    }
  };
  via->request(once_sink(std::move(on_info)), "*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n", 0);
}


void Tracking::start_link() {
  node().tracking.link = new UpstreamConn(host_, &node(), 2, nullptr, 0);
  node().tracking.link_id = -1;
  link_subscribed_ = false;
  if (!link_msg_sink_) {
    auto on_message = [this](std::string_view reply, bool failed) {
      if (failed) return;
      // ["message", "__redis__:invalidate", [keys...] | nil], read in place: one arrives for
      // every write of a key the cache read, so it must not cost allocations.
      resp::ReplyView view(reply);
      resp::ReplyItem it;
      if (!view.next(it) || it.type != '*' || it.n != 3) return;
      if (!view.next(it) || !it.is_string() || !ieq(it.str, "message")) return;
      if (!view.next(it) || !view.next(it)) return;  // the channel, then the keys
      if (it.null) {
        shared_->cache->flush_all(cache::Source::kTracking);  // FLUSHALL/FLUSHDB upstream
        return;
      }
      if (!it.is_aggregate()) return;
      resp::ReplyItem key;
      for (int64_t i = 0; i < it.n && view.next(key); ++i)
        if (key.is_string()) shared_->cache->invalidate(cache::kAllDbs, key.str, cache::Source::kTracking);
    };
    link_msg_sink_ = std::make_unique<FnSink<decltype(on_message)>>(on_message);
    auto on_id = [this](std::string_view reply, bool failed) {
      resp::Value v;
      if (!failed && resp::decode(reply, v).status == resp::ScanResult::Status::Ok && v.type == ':')
        node().tracking.link_id = v.integer;
      else if (!failed && !reply.empty() && reply[0] == '-')
        refuse("CLIENT ID", reply);  // e.g. CLIENT renamed away
    };
    link_id_sink_ = std::make_unique<FnSink<decltype(on_id)>>(on_id);
    auto on_sub = [this](std::string_view reply, bool failed) {
      if (failed || reply.empty() || reply[0] == '-' || node().tracking.link_id < 0) {
        // Refused, or no answer in time (the link then starts over; when the connection
        // itself failed it is already going).
        if (!failed && !reply.empty() && reply[0] == '-') refuse("SUBSCRIBE", reply);
        if (node().tracking.link && !node().tracking.link->closed()) node().tracking.link->close();
        return;
      }
      // Up once the fetch connection is tracked (on_tracking_reply): an upstream that takes
      // CLIENT ID but refuses TRACKING never gets a fill read untracked.
      link_subscribed_ = true;
      fetch_conn();
    };
    link_sub_sink_ = std::make_unique<FnSink<decltype(on_sub)>>(on_sub);
  }
  node().tracking.link->stream_sink = link_msg_sink_.get();
  node().tracking.link->request(link_id_sink_.get(), "*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n", 0);
  if (!cluster_node()) poll_swapdb(node().tracking.link);  // before SUBSCRIBE: INFO is not allowed on a subscribed connection
  node().tracking.link->request(link_sub_sink_.get(), "*2\r\n$9\r\nSUBSCRIBE\r\n$20\r\n__redis__:invalidate\r\n", 0);
  node().tracking.link->connect();
}

void Tracking::link_lost(const char* why) {
  if (node().tracking.up && !stopping_) {
    if (cluster_node())
      log(LogLevel::Warning, "invalidation link to {} down ({}): its slots flushed", node().name(), why);
    else if (replica_ < 0)
      log(LogLevel::Warning, "invalidation link down ({}): cache flushed, reads go upstream", why);
    else
      log(LogLevel::Warning,
          "invalidation link to replica {} down ({}): cache flushed, fills go elsewhere",
          node().name(), why);
  }
  // Nothing was filled through a link that never came up (fills wait for up()): a node that
  // refuses tracking must not flush the cache at every attempt.
  if (node().tracking.up) flush_filled();
  node().tracking.up = false;
  node().tracking.link_id = -1;
  link_subscribed_ = false;
  if (node().tracking.fetch) {
    // Fetches in flight still answer their readers (the flush detached them: nothing they
    // bring is cached); the connection closes once they are done.
    UpstreamConn* f = node().tracking.fetch;
    node().tracking.fetch = nullptr;
    node().tracking.retired.push_back(f);
    f->retire();
  }
  if (refused_) {
    node().tracking.next_attempt_ms = loop_->now() + kRefusedRetryMs;
    return;
  }
  node().tracking.backoff_ms = std::min<uint64_t>(500, std::max<uint64_t>(50, node().tracking.backoff_ms * 2));
  node().tracking.next_attempt_ms = loop_->now() + node().tracking.backoff_ms;
}

}  // namespace respite
