// The CLIENT family, answered by respite: the client's identity (id, name, db, protocol) is
// respite's, not its upstream connection's.
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "proxy/front/local_commands.h"
#include "proxy/ops/log.h"
#include "proxy/front/server.h"
#include "proxy/ops/text.h"
#include "resp/reply_writer.h"
#include "resp/value.h"


namespace respite {

// ---- CLIENT ----
//
// CLIENT ID/GETNAME/SETNAME/SETINFO/INFO/REPLY/NO-EVICT act on the caller alone. CLIENT LIST,
// KILL and UNBLOCK are about respite's clients, never the upstream's connections (whose ids are
// another numbering): they look at every client of every loop. Contract of that cross-loop
// work (on_every_loop below):
//   - the caller's reply slot is reserved when the command is dispatched, so its replies stay
//     in order, and the caller holds a reference until the slot is completed;
//   - a part runs on each loop's own thread (the caller's loop synchronously, the others through
//     Server::post) and touches only that loop's clients; it may close them (KILL) but never the
//     caller, which only its own loop's finish may touch;
//   - finish runs on the caller's loop once every loop answered, and completes the slot exactly
//     once (possibly later still: UNBLOCK waits for the upstream's reply);
//   - a loop that has already ended (shutdown) drops posted work: the caller is then never
//     answered, which only happens while the process is exiting.
// With one loop everything runs inside dispatch.

namespace {

// Redis's getClientTypeByName. respite has no replication clients: master/replica/slave exist
// as names and match nobody.
enum class ClientType : int8_t { Any = -1, Normal, Replica, PubSub, Master };

bool parse_client_type(std::string_view s, ClientType& t) {
  if (ieq(s, "normal")) t = ClientType::Normal;
  else if (ieq(s, "slave") || ieq(s, "replica")) t = ClientType::Replica;
  else if (ieq(s, "pubsub")) t = ClientType::PubSub;
  else if (ieq(s, "master")) t = ClientType::Master;
  else return false;
  return true;
}

// Subscribed and MONITOR clients are both `streaming`: both count as pubsub here (Redis counts a
// MONITOR client as normal).
ClientType type_of(const ClientConn* c) {
  return c->streaming ? ClientType::PubSub : ClientType::Normal;
}

// An argument quoted in an error reply: as Redis's addReplyErrorFormat, no CR or LF.
std::string err_arg(std::string_view s) {
  std::string r(s);
  for (char& ch : r)
    if (ch == '\r' || ch == '\n') ch = ' ';
  return r;
}

std::string unknown_subcommand(std::string_view sub) {
  return fmt::format("ERR unknown subcommand '{}'. Try CLIENT HELP.", err_arg(sub.substr(0, 128)));
}

// One client in CLIENT LIST/INFO's format (Redis 7.0's fields, plus lib-name/lib-ver from 7.2
// as the upstream has them). Runs on the client's own loop. `cmd` is the last command when known
// (the caller's own CLIENT LIST/INFO); respite does not record other clients' last command, so
// they show "NULL" as a Redis client that has run none. Buffer and memory fields are 0.

// A reply slot of a client of the calling loop, completed later (see the contract above).
struct OwedReply {
  ClientConn* c;
  uint64_t seq;
  int proto;  // the caller's protocol when it asked (a later HELLO must not change this reply)
  explicit OwedReply(ClientConn* client) : c(client), seq(client->reserve_slot()), proto(client->proto) {
    c->ref();
  }
  void send(std::string_view bytes) {
    c->complete(seq, bytes);  // a no-op if the client has gone meanwhile
    c->unref();
  }
};

template <class Part>
struct Gather {
  Server* home = nullptr;
  std::unique_ptr<OwedReply> reply;
  std::vector<Part> parts;  // by loop index
  size_t waiting = 0;
  std::function<void(Gather&)> finish;
};

template <class Part>
void arrive(const std::shared_ptr<Gather<Part>>& g, size_t idx, Part p) {
  g->parts[idx] = std::move(p);
  if (--g->waiting == 0) g->finish(*g);
}

// Runs part(Server&) -> Part on every loop, then finish(Gather&) on the caller's loop.
template <class Part, class PartFn>
void on_every_loop(Server& srv, std::unique_ptr<OwedReply> reply, PartFn part,
                   std::function<void(Gather<Part>&)> finish) {
  auto g = std::make_shared<Gather<Part>>();
  g->home = &srv;
  g->reply = std::move(reply);
  const std::vector<Server*>& servers = srv.shared()->servers;
  g->parts.resize(servers.size());
  g->waiting = servers.size();
  g->finish = std::move(finish);
  for (Server* s : servers) {
    if (s == &srv) continue;
    s->post([s, g, part] {
      Part p = part(*s);
      g->home->post([g, idx = static_cast<size_t>(s->index()), p = std::move(p)]() mutable {
        arrive(g, idx, std::move(p));
      });
    });
  }
  arrive(g, static_cast<size_t>(srv.index()), part(srv));
}

template <class Part, class PartFn>
void on_every_loop(Server& srv, ClientConn* c, PartFn part, std::function<void(Gather<Part>&)> finish) {
  on_every_loop<Part>(srv, std::make_unique<OwedReply>(c), std::move(part), std::move(finish));
}

// Runs `fn` on `srv`'s loop after `ms` milliseconds.
void after_ms(Server& srv, uint64_t ms, std::function<void()> fn) {
  struct Delay {
    uv_timer_t timer;
    std::function<void()> fn;
  };
  auto* d = new Delay{{}, std::move(fn)};
  uv_timer_init(srv.loop(), &d->timer);
  d->timer.data = d;
  uv_timer_start(&d->timer, [](uv_timer_t* t) {
    auto* dd = static_cast<Delay*>(t->data);
    dd->fn();
    uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete static_cast<Delay*>(h->data); });
  }, ms, 0);
}

// ---- CLIENT LIST ----

using ListPart = std::vector<std::pair<uint64_t, std::string>>;  // (id, line)

void client_list(Server& srv, ClientConn* c, const resp::Frame& f) {
  ClientType type = ClientType::Any;
  std::vector<uint64_t> ids;  // CLIENT LIST ID ...: in the order asked, repeats included
  bool by_id = false;
  if (f.argc() == 4 && ieq(f.arg(2), "type")) {
    if (!parse_client_type(f.arg(3), type))
      return error(c, fmt::format("ERR Unknown client type '{}'", err_arg(f.arg(3))));
  } else if (f.argc() > 3 && ieq(f.arg(2), "id")) {
    by_id = true;
    for (size_t i = 3; i < f.argc(); ++i) {
      long long id;
      if (!parse_ll(f.arg(i), id)) return error(c, "ERR Invalid client ID");
      if (id > 0) ids.push_back(static_cast<uint64_t>(id));
    }
  } else if (f.argc() != 2) {
    return error(c, "ERR syntax error");
  }
  std::vector<uint64_t> wanted = ids;
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
  uint64_t me = c->id;
  auto part = [type, by_id, wanted, me](Server& s) {
    ListPart out;
    for (ClientConn* cl : s.clients()) {
      if (type != ClientType::Any && type_of(cl) != type) continue;
      if (by_id && !std::binary_search(wanted.begin(), wanted.end(), cl->id)) continue;
      out.emplace_back(cl->id, client_info_line(s, cl, cl->id == me ? "client|list" : ""));
    }
    return out;
  };
  on_every_loop<ListPart>(srv, c, part, [by_id, ids](Gather<ListPart>& g) {
    std::vector<std::pair<uint64_t, std::string>*> all;
    for (ListPart& p : g.parts)
      for (auto& e : p) all.push_back(&e);
    std::sort(all.begin(), all.end(), [](auto* a, auto* b) { return a->first < b->first; });
    std::string text;
    if (by_id) {
      for (uint64_t id : ids) {
        auto it = std::lower_bound(all.begin(), all.end(), id,
                                   [](auto* e, uint64_t v) { return e->first < v; });
        if (it != all.end() && (*it)->first == id) text += (*it)->second;
      }
    } else {
      for (auto* e : all) text += e->second;
    }
    std::string out;
    resp::Writer(out, g.reply->proto).verbatim("txt", text);
    g.reply->send(out);
  });
}

// ---- CLIENT KILL ----

struct KillFilter {
  std::string addr, laddr;
  bool has_addr = false, has_laddr = false;
  ClientType type = ClientType::Any;
  uint64_t id = 0;  // 0: any
  bool skipme = true;
  uint64_t me = 0;
  const AclUser* user = nullptr;  // USER: nullptr for any
};

struct KillPart {
  int64_t killed = 0;
  bool me = false;  // the caller matched (SKIPME no, or the old form naming it)
};

KillPart kill_on(Server& s, const KillFilter& k) {
  KillPart r;
  std::vector<ClientConn*> victims;
  for (ClientConn* cl : s.clients()) {
    if (k.has_addr && cl->peer != k.addr) continue;
    if (k.has_laddr && cl->stream_io().local_name() != k.laddr) continue;
    if (k.type != ClientType::Any && type_of(cl) != k.type) continue;
    if (k.user != nullptr && cl->user != k.user) continue;
    if (k.id != 0 && cl->id != k.id) continue;
    if (cl->id == k.me) {
      if (k.skipme) continue;
      r.me = true;  // closed by the caller's loop after its reply is queued
    } else {
      victims.push_back(cl);
    }
    ++r.killed;
  }
  for (ClientConn* v : victims) {  // close() unlists from s.clients(): not while iterating it
    log(LogLevel::Verbose, "client id={} addr={} killed by CLIENT KILL", v->id, v->peer);
    v->close();  // and its pinned upstream connection with it
  }
  return r;
}

// Redis 7.0's clientKillCommand: the old form CLIENT KILL addr:port (+OK, "No such client", may
// kill the caller) and the filter form (ID, TYPE, USER, ADDR, LADDR, SKIPME; an integer count).
void client_kill(Server& srv, ClientConn* c, const resp::Frame& f) {
  KillFilter k;
  k.me = c->id;
  bool old_form = f.argc() == 3;
  if (old_form) {
    k.addr = std::string(f.arg(2));
    k.has_addr = true;
    k.skipme = false;  // with the old form a client may kill itself
  } else {
    for (size_t i = 2; i < f.argc(); i += 2) {
      bool more = i + 1 < f.argc();
      std::string_view opt = f.arg(i);
      if (ieq(opt, "id") && more) {
        long long id;
        if (!parse_ll(f.arg(i + 1), id) || id < 1)
          return error(c, "ERR client-id should be greater than 0");
        k.id = static_cast<uint64_t>(id);
      } else if (ieq(opt, "type") && more) {
        if (!parse_client_type(f.arg(i + 1), k.type))
          return error(c, fmt::format("ERR Unknown client type '{}'", err_arg(f.arg(i + 1))));
      } else if (ieq(opt, "addr") && more) {
        k.addr = std::string(f.arg(i + 1));
        k.has_addr = true;
      } else if (ieq(opt, "laddr") && more) {
        k.laddr = std::string(f.arg(i + 1));
        k.has_laddr = true;
      } else if (ieq(opt, "user") && more) {
        // respite's users (fixed at start: the pointer names the user on every loop).
        k.user = srv.shared()->acl.find(f.arg(i + 1));
        if (k.user == nullptr)
          return error(c, fmt::format("ERR No such user '{}'", err_arg(f.arg(i + 1))));
      } else if (ieq(opt, "skipme") && more) {
        if (ieq(f.arg(i + 1), "yes")) k.skipme = true;
        else if (ieq(f.arg(i + 1), "no")) k.skipme = false;
        else return error(c, "ERR syntax error");
      } else {
        return error(c, "ERR syntax error");
      }
    }
  }
  on_every_loop<KillPart>(srv, c, [k](Server& s) { return kill_on(s, k); },
                          [old_form](Gather<KillPart>& g) {
                            int64_t killed = 0;
                            bool me = false;
                            for (const KillPart& p : g.parts) {
                              killed += p.killed;
                              me |= p.me;
                            }
                            std::string out;
                            resp::Writer w(out, g.reply->proto);
                            if (!old_form) w.integer(killed);
                            else if (killed == 0) w.error("ERR No such client");
                            else w.simple("OK");
                            ClientConn* caller = g.reply->c;
                            caller->ref();
                            g.reply->send(out);
                            // As Redis's CLIENT_CLOSE_AFTER_REPLY: after the reply is written.
                            if (me) caller->close_after_flush();
                            caller->unref();
                          });
}

// ---- CLIENT UNBLOCK ----

// A client blocked through respite is blocked upstream on its pinned connection: that
// connection's upstream id (asked first on every pinned connection, learn_upstream_client_id)
// is what the upstream can unblock. Part: the pinned connection's upstream id of the client
// with the wanted id on that loop, or -1 (no such client, not pinned, or id not known yet: a
// command sent on a connection still connecting cannot be blocked upstream yet).
void unblock_attempt(Server& srv, std::unique_ptr<OwedReply> reply, uint64_t target,
                     std::string_view reason, int tries);

void client_unblock(Server& srv, ClientConn* c, const resp::Frame& f) {
  std::string_view reason = "TIMEOUT";
  if (f.argc() == 4) {
    if (ieq(f.arg(3), "error")) reason = "ERROR";
    else if (!ieq(f.arg(3), "timeout"))
      return error(c, "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
  }
  long long id;
  if (!parse_ll(f.arg(2), id)) return error(c, "ERR value is not an integer or out of range");
  if (id < 1) {
    resp::Writer(c->immediate_reply(), c->proto).integer(0);
    return;
  }
  unblock_attempt(srv, std::make_unique<OwedReply>(c), static_cast<uint64_t>(id), reason, 0);
}

// One try of CLIENT UNBLOCK. A client whose blocking command went out on a pinned connection
// that has not yet told its upstream id (its CLIENT ID is answered right before the command
// blocks) is tried again a millisecond later, up to kUnblockTries times: answering 0 there
// would leave it blocked while the caller believes it was not.
constexpr int kUnblockTries = 200;
constexpr int64_t kIdPending = -2;

void unblock_attempt(Server& srv, std::unique_ptr<OwedReply> reply, uint64_t target,
                     std::string_view reason, int tries) {
  // Part: the target's pinned connection's upstream id (kIdPending while unknown, -1: no such
  // client or not pinned), and whether a command of its is in flight there.
  struct Part {
    int64_t id = -1;
    bool busy = false;
    std::string node;  // the pinned connection's node (Cluster: CLIENT UNBLOCK goes there)
  };
  auto part = [target](Server& s) -> Part {
    for (ClientConn* cl : s.clients())
      if (cl->id == target && cl->pinned && !cl->pinned->closed())
        return {cl->pinned->upstream_client_id >= 0 ? cl->pinned->upstream_client_id : kIdPending,
                cl->inflight > 0, cl->pinned->node()->name()};
    return {};
  };
  on_every_loop<Part>(srv, std::move(reply), part, [reason, target, tries](Gather<Part>& g) {
    // The loop that has the target decides: its id, else "pending" (kIdPending is below the
    // other loops' -1, so a plain maximum would lose it).
    Part found;
    for (const Part& p : g.parts)
      if (p.id >= 0 || (p.id == kIdPending && found.id < 0)) found = p;
    Server* home = g.home;
    auto again = [home, target, reason, tries](OwedReply* owed) {
      after_ms(*home, 1, [home, owed, target, reason, tries] {
        unblock_attempt(*home, std::unique_ptr<OwedReply>(owed), target, reason, tries + 1);
      });
    };
    if (found.id == kIdPending) {
      if (tries + 1 < kUnblockTries) return again(g.reply.release());
      found.id = -1;
    }
    if (found.id < 0) return g.reply->send(":0\r\n");  // not a blocked respite client
    // The node the target is blocked on (with Cluster, the one its key's slot named).
    Node* node = home->router().cluster() ? home->router().find_or_make(found.node) : nullptr;
    UpstreamConn* u = node ? node->shared_conn(2, g.reply->c->id) : home->shared_conn(2, g.reply->c->id);
    if (!u) return g.reply->send(upstream_error("reconnecting"));
    std::string req;
    resp::Writer(req, 2).command({"CLIENT", "UNBLOCK", std::to_string(found.id), reason});
    // The upstream answers :1 (it was blocked: its BLPOP now gets nil or -UNBLOCKED on the
    // pinned connection, relayed to its client) or :0; that is the caller's reply. A :0 while
    // the target's command is still in flight may mean it has not reached Redis yet (it went
    // out on its own connection, this one on a shared one): tried again, as for the id.
    OwedReply* owed = g.reply.release();
    bool busy = found.busy && tries + 1 < kUnblockTries;
    u->request(once_sink([owed, busy, again](std::string_view reply, bool failed) {
                 if (failed) owed->send(upstream_error(reply));
                 else if (busy && reply == ":0\r\n") return again(owed);
                 else owed->send(reply);
                 delete owed;
               }),
               req, owed->c->db);
  });
}

}  // namespace

// Returns true when handled locally. `which` is the subcommand, from the command table.
bool client_command(Server& srv, ClientConn* c, const resp::Frame& f, Local which) {
  if (f.argc() < 2) return false;
  std::string_view sub = f.arg(1);
  // Only the subcommands answered here take a reply slot; the rest are forwarded.
  auto w = [c] { return resp::Writer(c->immediate_reply(), c->proto); };
  if (which == Local::ClientId) {
    if (f.argc() != 2) arity_error(c, "client|id");
    else w().integer(static_cast<int64_t>(c->id));
  } else if (which == Local::ClientGetname) {
    if (f.argc() != 2) arity_error(c, "client|getname");
    else if (c->name.empty()) w().null();
    else w().bulk(c->name);
  } else if (which == Local::ClientSetname) {
    if (f.argc() != 3) return arity_error(c, "client|setname"), true;
    if (!valid_client_name(f.arg(2))) {
      w().error(kBadClientName);
      return true;
    }
    c->name = std::string(f.arg(2));
    w().simple("OK");
  } else if (which == Local::ClientSetinfo) {
    // SETINFO exists from Redis 7.2: before, the upstream's unknown-subcommand error is the answer.
    if (!version_at_least(srv.upstream_version, 7, 2)) return false;
    if (f.argc() != 4) return arity_error(c, "client|setinfo"), true;
    for (char ch : f.arg(3)) {
      if (ch < '!' || ch > '~') {
        w().error(fmt::format("ERR {} cannot contain spaces, newlines or special characters.",
                            lower(f.arg(2))));
        return true;
      }
    }
    if (ieq(f.arg(2), "lib-name")) c->lib_name = std::string(f.arg(3));
    else if (ieq(f.arg(2), "lib-ver")) c->lib_ver = std::string(f.arg(3));
    else {
      w().error(fmt::format("ERR Unrecognized option '{}'", f.arg(2)));
      return true;
    }
    w().simple("OK");
  } else if (which == Local::ClientInfo) {
    if (f.argc() != 2) arity_error(c, "client|info");
    else w().verbatim("txt", client_info_line(srv, c, "client|info"));
  } else if (which == Local::ClientList) {
    client_list(srv, c, f);
  } else if (which == Local::ClientKill) {
    if (f.argc() < 3) return arity_error(c, "client|kill"), true;
    // Commands run in order: a kill waits for the caller's requests in flight (as in Redis,
    // where a client's next command runs after the previous one finished).
    if (c->inflight > 0) return c->stall(), true;
    client_kill(srv, c, f);
  } else if (which == Local::ClientUnblock) {
    if (f.argc() < 3) return arity_error(c, "client|unblock"), true;
    if (f.argc() > 4) {
      w().error(fmt::format("ERR unknown subcommand or wrong number of arguments for '{}'. Try "
                            "CLIENT HELP.",
                            err_arg(sub)));
      return true;
    }
    // As KILL: after the caller's requests in flight (a client blocked itself cannot unblock
    // itself, as in Redis).
    if (c->inflight > 0) return c->stall(), true;
    client_unblock(srv, c, f);
  } else if (which == Local::ClientNoEvict) {
    // Client eviction (maxmemory-clients) is the upstream's, of its own connections: respite's
    // clients are never evicted, so this only validates, as Redis 7.0 does.
    if (f.argc() != 3) return arity_error(c, "client|no-evict"), true;
    if (ieq(f.arg(2), "on") || ieq(f.arg(2), "off")) w().simple("OK");
    else w().error("ERR syntax error");
  } else if (which == Local::ClientNoTouch) {
    // From Redis 7.2 (forwarded, and pinned: it changes how the connection's reads touch keys);
    // an older upstream does not know it.
    if (version_at_least(srv.upstream_version, 7, 2)) return false;
    w().error(unknown_subcommand(sub));
  } else if (which == Local::ClientReply) {
    if (f.argc() != 3) return arity_error(c, "client|reply"), true;
    if (ieq(f.arg(2), "on")) {
      c->reply_mode = ClientConn::ReplyMode::On;
      w().simple("OK");
    } else if (ieq(f.arg(2), "off")) {
      c->reply_mode = ClientConn::ReplyMode::Off;
    } else if (ieq(f.arg(2), "skip")) {
      if (c->reply_mode == ClientConn::ReplyMode::On) c->reply_mode = ClientConn::ReplyMode::Skip;
    } else {
      w().error("ERR syntax error");
    }
  } else {
    // Not ours: the writer reserved nothing (it only appends when used), forward it.
    return false;
  }
  return true;
}

std::string client_info_line(Server& srv, ClientConn* c, std::string_view cmd) {
  uint64_t now = srv.now();
  std::string flags;
  if (c->in_multi) flags.push_back('x');
  if (c->streaming) flags.push_back('P');
  if (flags.empty()) flags.push_back('N');
  int fd = c->stream_io().fd();
  std::string line = fmt::format(
      "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 "
      "multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 "
      "tot-mem=0 events=r cmd={} user={} redir=-1 resp={}",
      c->id, c->peer, c->stream_io().local_name(), fd, c->name, (now - c->created_ms) / 1000,
      (now - c->last_cmd_ms) / 1000, flags, c->db, c->in_multi ? 0 : -1,
      cmd.empty() ? std::string_view("NULL") : cmd, c->user->name(), c->proto);
  if (version_at_least(srv.upstream_version, 7, 2))
    line += fmt::format(" lib-name={} lib-ver={}", c->lib_name, c->lib_ver);
  line.push_back('\n');
  return line;
}

}  // namespace respite
