// What the upstream side knows of the clients whose requests it carries, and of respite's own
// requests: a Requester (a client connection, implemented in front/) gets relayed replies in its
// reply order; a ReplySink gets the replies to respite's own commands. The cache path uses the
// same two, so neither it nor the upstream connections include the front end.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace respite {

class UpstreamConn;

// Sequence number for a request whose replies are streamed (subscribed or MONITOR clients).
constexpr uint64_t kStreamSeq = UINT64_MAX;

// The reply a client gets when the upstream could not answer: "-ERR upstream unavailable (why)".
std::string upstream_error(std::string_view why);
// Why, while no connection to the node is up (backing off after a failed connect).
inline constexpr std::string_view kReconnecting = "reconnecting";
// Why, while Sentinel is failing the primary over: writes are not sent to the old primary,
// which would drop them when it becomes a replica.
inline constexpr std::string_view kFailover = "failover in progress, not sent";
// The reason given when a request got no reply within --upstream-timeout-ms.
std::string timeout_reason(int timeout_ms);

// A client connection as the layers below the front end see it. Reference counted: every
// request in flight for it (upstream, cache flight, barrier) holds a reference.
class Requester {
 public:
  void ref() { ++refs_; }
  void unref() {
    if (--refs_ == 0) delete this;
  }
  virtual bool closed() const = 0;
  // A slot in the reply order for a reply that comes later (complete()).
  virtual uint64_t reserve_slot() = 0;
  // Where a reply made right now goes: after everything owed before it.
  virtual std::string& immediate_reply() = 0;
  // The reply to the request that took slot `seq` (replies are written in slot order).
  virtual void complete(uint64_t seq, std::string_view reply) = 0;
  // An out-of-band message on the connection pinned to this client (pub/sub, MONITOR).
  virtual void stream(std::string_view message) = 0;
  // A relayed request of this client on `conn` was answered (or failed).
  virtual void on_forwarded_done(UpstreamConn* conn) = 0;
  // One of its relayed requests is being sent again on another connection (MOVED/ASK).
  virtual void on_redirected() = 0;
  // EXEC's reply arrived: SELECTs the transaction ran move the client to their db.
  virtual void on_exec_reply(std::string_view reply, uint32_t pos, int new_db, uint32_t gen) = 0;
  // A cache miss of this client (a flight it waited on) was answered.
  virtual void on_flight_done() = 0;
  // The connection pinned to this client is closing: its state (transaction, subscriptions)
  // is gone with it.
  virtual void on_pinned_conn_closed(UpstreamConn* conn) = 0;

  uint64_t id = 0;
  int proto = 2;
  std::string name;  // CLIENT SETNAME
  std::string peer;  // "ip:port"
  uint32_t barriers = 0;  // replies held until the tracking links caught up (no cache use)
  uint32_t flights_waiting = 0;  // cache misses of this client not answered yet

 protected:
  virtual ~Requester() = default;

 private:
  int refs_ = 1;  // the connection's own reference, dropped when its handle has closed
};

// Receives a reply that respite itself asked for (cache fetches, control commands).
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  // `reply` is one complete RESP reply; with `failed` set (the connection failed or timed out
  // before it arrived) it is the reason instead, e.g. "timeout: no reply within 2000 ms".
  virtual void on_reply(std::string_view reply, bool failed) = 0;
};

// A ReplySink calling a function (control-plane replies).
template <class F>
class FnSink final : public ReplySink {
 public:
  explicit FnSink(F f) : f_(std::move(f)) {}
  void on_reply(std::string_view reply, bool failed) override { f_(reply, failed); }

 private:
  F f_;
};

// A ReplySink for one reply that deletes itself once called: an UpstreamConn calls a sink
// exactly once per request, with the reply or with the failure.
template <class F>
class OnceSink final : public ReplySink {
 public:
  explicit OnceSink(F f) : f_(std::move(f)) {}
  void on_reply(std::string_view reply, bool failed) override {
    f_(reply, failed);
    delete this;
  }

 private:
  F f_;
};
template <class F>
ReplySink* once_sink(F f) {
  return new OnceSink<F>(std::move(f));
}

// The cache keys a forwarded write touches, invalidated before it is sent and again when its
// reply arrives (a fill that raced the write is dropped either way).
struct WriteInvalidation {
  // Unknown: a command respite does not know wrote who knows what; the cache relies on the
  // tracking link for it, the replicas' record of acknowledged writes counts it as every key.
  enum class Scope : uint8_t { Keys, Db, All, Unknown } scope = Scope::Keys;
  uint32_t db = 0;  // cache::kAllDbs for keys whose db cannot be known (MOVE, COPY ... DB)
  std::vector<std::pair<uint32_t, std::string>> keys;  // (db, key)
};

}  // namespace respite
