// Coherence beyond what a write's own keys say: the tracking barrier for writes respite cannot
// key (EVAL, FCALL, SORT ... STORE), and SWAPDB made directly on Redis, which sends no
// invalidation (Redis 7.0), seen as a change of its call count in INFO commandstats.
#include <fmt/format.h>

#include <charconv>
#include <functional>

#include "proxy/ops/log.h"
#include "proxy/server.h"

namespace respite {

namespace {

// A ReplySink that runs a function once and frees itself.
class OnceSink final : public ReplySink {
 public:
  explicit OnceSink(std::function<void()> f) : f_(std::move(f)) {}
  void on_reply(std::string_view, bool) override {
    auto f = std::move(f_);
    delete this;
    f();
  }

 private:
  std::function<void()> f_;
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

void Server::link_ping(std::function<void()> done) {
  if (!trk().link || !trk().up) return done();  // no link: this loop caches nothing
  // The link is subscribed: PING is one of the commands it may send, and Redis answers it
  // after every invalidation it has written there so far.
  trk().link->request(new OnceSink(std::move(done)), "*1\r\n$4\r\nPING\r\n", 0);
}

void Server::tracking_barrier(Requester* c, uint64_t seq, std::string_view reply) {
  stats_.tracking_barriers++;
  auto* b = new Barrier{c, seq, std::string(reply), shared_->servers.size() + 1};
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
  for (Server* s : shared_->servers) {
    if (s == this) {
      link_ping(part_done);
    } else {
      // Each loop has its own link (its fetch connection's keys are reported there).
      s->post([s, origin = this, part_done] {
        s->link_ping([origin, part_done] { origin->post(part_done); });
      });
    }
  }
  part_done();  // the +1 taken while the parts were sent
}

void Server::poll_swapdb(UpstreamConn* via) {
  if (!via) {  // the timer's poll: on the first shared connection, one at a time
    if (swapdb_poll_pending_ || !(via = node_->first_ready())) return;
  }
  if (!swapdb_sink_) {
    auto on_info = [this](std::string_view reply, bool failed) {
      swapdb_poll_pending_ = false;
      if (failed) return;
      int64_t n = swapdb_calls(reply);
      if (n < 0) {
        if (swapdb_calls_ != -2)
          log(LogLevel::Warning,
              "the upstream refuses INFO commandstats: a SWAPDB made directly on Redis reaches "
              "the cache only when entries expire (cache-ttl-ms)");
        swapdb_calls_ = -2;
        return;
      }
      if (swapdb_calls_ >= 0 && n != swapdb_calls_) {
        stats_.swapdb_flushes++;
        log(LogLevel::Notice, "SWAPDB ran on the upstream ({} -> {} calls): cache flushed",
            swapdb_calls_, n);
        cache_->flush_all(cache::Source::kTracking);
      }
      swapdb_calls_ = n;
    };
    swapdb_sink_ = std::make_unique<FnSink<decltype(on_info)>>(on_info);
  }
  swapdb_poll_pending_ = true;
  via->request(swapdb_sink_.get(), "*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n", 0);
}

}  // namespace respite
