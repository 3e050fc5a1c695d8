// Redis Cluster: the commands respite answers for the whole cluster although no single node
// could. Multi-key commands whose keys span slots (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH) are
// split by slot, each part sent to its slot's master, and the parts' replies merged as one Redis
// holding every key would answer. Keyless commands about the whole keyspace (DBSIZE, KEYS,
// FLUSHALL, FLUSHDB, RANDOMKEY, SCAN) go to every master and are merged the same way.
//
// Called from Dispatch::cluster_slot (forward.cc), only in cluster mode and only for clients
// without a pin (a transaction or a subscription sends everything on its own connection).
#pragma once

#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include "proxy/cachepath/cache_path.h"
#include "resp/request_parser.h"

namespace respite {

class ClientConn;
class Server;
struct CommandInfo;

// The caller's write invalidation (Dispatch::invalidate_before_write): run once, just before the
// parts are sent (never for a request that is stalled or refused), so a request held back and
// dispatched again is not invalidated twice. A non-owning reference to a callable that outlives
// the call it is passed to.
class WritePlanFn {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, WritePlanFn>>>
  WritePlanFn(F& f) : obj_(&f), call_([](void* o) { return (*static_cast<F*>(o))(); }) {}  // NOLINT
  CachePath::WritePlan operator()() const { return call_(obj_); }

 private:
  void* obj_;
  CachePath::WritePlan (*call_)(void*);
};

// A request whose keys (`keys`: argv indexes, in request order) span slots. True when it was
// taken: split and sent, held back behind the client's requests in flight (ClientConn::stall),
// or answered; false when the command is not one respite splits (the caller answers CROSSSLOT,
// as Redis Cluster does: MSETNX, SUNIONSTORE, ...).
//
// Each part is the command with the keys of one slot (MSET: their values too), in request order,
// on the shared connection of that slot's node. A part answered -MOVED (the slot map is told,
// and read again) or -ASK (ASKING first, the map unchanged) is sent where the reply says;
// -TRYAGAIN (keys of a slot being migrated) again a few ms later; at most kMaxRedirects sends
// more per part, after which the client gets that last error.
//
// The merged reply: MGET an array in request order; MSET +OK; DEL, UNLINK, EXISTS, TOUCH the sum
// of the parts' integers (a key named twice is in one part, so EXISTS counts it twice and DEL
// once, as Redis). Any part's error (the first in part order) or connection failure answers the
// whole request. A write is invalidated before (plan) and again once every part was answered.
bool cluster_split(Server& srv, ClientConn* c, const resp::Frame& f, const CommandInfo& ci,
                   std::span<const uint32_t> keys, WritePlanFn plan);

// A keyless request: true when it is one respite sends to every master (and it was sent, held
// back or answered), false for any other (the caller sends it to one master).
//
// DBSIZE sums; KEYS concatenates; FLUSHALL and FLUSHDB are +OK when every master said so (the
// cache is flushed by the plan, and again at the end); RANDOMKEY asks the masters one at a time
// in a random order until one has a key (else nil). SCAN walks the masters one after the other
// (Router::masters() order) with a cursor that is still one decimal integer: node cursor * 1024
// + master index. Redis's node cursor is below its keyspace table's size (the reverse binary
// iteration only counts within the table's mask), so it fits the 54 bits left while a node's
// table has fewer than 2^54 buckets, which no memory holds; a cursor beyond that, or more than
// 1024 masters, is answered with an error, never wrapped. A cursor naming a master beyond the
// current list: "ERR invalid cursor", as Redis answers a cursor it cannot parse. A change of the
// masters during a scan (resharding, failover) may repeat or miss keys, as with any cluster
// client that scans node by node.
bool cluster_fan_out(Server& srv, ClientConn* c, const resp::Frame& f, const CommandInfo& ci,
                     WritePlanFn plan);

// The largest node cursor the SCAN encoding carries (exclusive) and the number of masters.
inline constexpr unsigned kScanIndexBits = 10;
inline constexpr uint64_t kScanMaxNodeCursor = uint64_t{1} << (64 - kScanIndexBits);

}  // namespace respite
