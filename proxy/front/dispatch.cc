// Dispatch: what happens to one parsed request. respite answers connection-level commands itself
// (PING, ECHO, HELLO, AUTH, SELECT, CLIENT SETNAME/..., QUIT, RESET, PROXY), pins clients whose
// state lives on an upstream connection (transactions, pub/sub, blocking commands, MONITOR,
// tracking), and forwards everything else as the original bytes.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "proxy/ops/alloc_count.h"
#include "proxy/front/command_table.h"
#include "proxy/front/local_commands.h"
#include "proxy/ops/log.h"
#include "proxy/front/dispatch.h"
#include "proxy/front/server.h"
#include "proxy/ops/text.h"
#include "resp/reply_writer.h"


namespace respite {

// Token bucket per client connection: `rate-limit` tokens a second, bursts of up to one second's
// worth. A request that finds the bucket empty is refused (not queued).
bool Dispatch::rate_allowed(ClientConn* c) {
  double rate = static_cast<double>(srv_.config().rate_limit);
  uint64_t now_ms = srv_.now();
  if (c->rate_tokens < 0) {
    c->rate_tokens = rate;
    c->rate_refill_ms = now_ms;
  } else if (now_ms > c->rate_refill_ms) {
    c->rate_tokens = std::min(rate, c->rate_tokens + rate * static_cast<double>(now_ms - c->rate_refill_ms) / 1000.0);
    c->rate_refill_ms = now_ms;
  }
  if (c->rate_tokens < 1.0) {
    srv_.stats().rate_limited++;
    return false;
  }
  c->rate_tokens -= 1.0;
  return true;
}

void Dispatch::reset_client(ClientConn* c) {
  if (c->pinned) {
    UpstreamConn* u = c->pinned;
    c->pinned = nullptr;
    u->close();
  }
  c->in_multi = c->watching = c->streaming = c->sticky_pin = false;
  c->multi_failed = c->multi_barrier = false;
  c->multi_deferred = false;
  c->multi_slot = -1;
  c->multi_held.clear();
  c->multi_held_count = 0;
  c->multi_select_db = -1;
  c->db_gen++;
  c->multi_count = 0;
  delete c->multi_writes;
  c->multi_writes = nullptr;
  c->db = 0;
  c->proto = 2;
  c->name.clear();
  c->reply_mode = ClientConn::ReplyMode::On;
  // As Redis's RESET: back to the default user, unauthenticated if it needs a password.
  const Acl& acl = srv_.shared()->acl;
  c->set_user(&acl.default_user());
  if (acl.auth_required()) c->set_authenticated(false);
}

namespace {
constexpr std::string_view kAuthInMulti =
    "ERR AUTH (or HELLO with AUTH) inside a transaction or a subscription is not supported by "
    "respite: authenticate before MULTI";
constexpr std::string_view kAclInMulti =
    "ERR ACL inside a transaction is not supported by respite: its users are respite's, not "
    "the upstream's";
bool has_auth_option(const resp::Frame& f) {
  for (size_t i = 2; i < f.argc(); ++i)
    if (ieq(f.arg(i), "auth")) return true;
  return false;
}
}  // namespace

void Dispatch::refuse(ClientConn* c, std::string_view msg) {
  // As a command Redis refuses while queueing: the transaction is flagged and EXEC aborts.
  if (c->in_multi) c->multi_failed = true;
  if (c->streaming) {
    std::string e;
    resp::Writer(e, c->proto).error(msg);
    c->stream_local(std::move(e), ClientConn::StreamAfter::None);
  } else {
    error(c, msg);
  }
}

bool Dispatch::acl_allows(ClientConn* c, const resp::Frame& f, const CommandInfo* ci) {
  // Redis answers an unknown command and a wrong argument count before it asks the ACL; both
  // are answered here, as Redis does (a wrong count's keys cannot be found).
  if (ci != nullptr && !arity_ok(*ci, f.argc())) {
    refuse(c, fmt::format("ERR wrong number of arguments for '{}' command", ci->name));
    return false;
  }
  AclVerdict v = Acl::check(*c->user, ci, f, acl_scratch_);
  if (v.why == AclDenial::None) {
    if (ci == nullptr) return true;
    std::string_view sort = Acl::sort_refusal(*c->user, *ci, f);
    if (sort.empty()) return true;
    if (c->in_multi) {
      // Redis refuses BY/GET when SORT runs, inside EXEC: the transaction's other commands run
      // and EXEC's reply holds SORT's error in its place. The upstream queues, in its place, a
      // script that answers exactly that error.
      constexpr std::string_view kScript = "return redis.error_reply(ARGV[1])";
      wire_override_ = fmt::format("*4\r\n$4\r\nEVAL\r\n${}\r\n{}\r\n$1\r\n0\r\n${}\r\n{}\r\n",
                                   kScript.size(), kScript, sort.size(), sort);
      return true;
    }
    refuse(c, sort);  // SORT's own error: not an ACL denial, not logged
    return false;
  }
  if (ci == nullptr && !c->user->may_run_unknown()) {
    unknown_command(c, f);
    return false;
  }
  AclLogEntry e;
  e.reason = v.why;
  e.in_multi = c->in_multi;
  e.object = v.why == AclDenial::Command ? (ci ? std::string(ci->name) : lower(f.arg(0)))
                                         : std::string(f.arg(v.arg));
  e.username = c->user->name();
  e.ctime_ms = srv_.now();
  e.client_info = acl_client_info(srv_, c, ci ? ci->name : std::string_view());
  srv_.shared()->acl.log(std::move(e));
  refuse(c, Acl::denial_text(v.why, ci, f.arg(0)));
  return false;
}

// redis.conf's rename-command and respite's deny-command, read once: a name that is refused
// maps to "", a new name to the command's own.
void Dispatch::build_names() {
  names_built_ = true;
  const Config& cfg = srv_.config();
  for (size_t i = 0; i + 1 < cfg.rename_commands.size(); i += 2) {
    std::string from = lower(cfg.rename_commands[i]), to = lower(cfg.rename_commands[i + 1]);
    names_.emplace_back(from, "");
    if (!to.empty()) names_.emplace_back(to, from);
  }
  for (const std::string& d : cfg.deny_commands) names_.emplace_back(lower(d), "");
  // A later rule for a name wins (rename-command A B then B A swaps nothing: B is A's name).
  std::reverse(names_.begin(), names_.end());
}

const std::string* Dispatch::renamed(std::string_view name) const {
  for (const auto& [n, orig] : names_)
    if (ieq(name, n)) return &orig;
  return nullptr;
}

void Dispatch::unknown_command(ClientConn* c, const resp::Frame& f) {
  // Redis's processCommand text: the name (at most 128 bytes) and the arguments quoted, until
  // 128 bytes of them; newlines become spaces.
  // Like Redis's %s, each name ends at its first NUL.
  auto cut = [](std::string_view a, size_t max) { return a.substr(0, a.find('\0')).substr(0, max); };
  std::string args;
  for (size_t i = 1; i < f.argc() && args.size() < 128; ++i)
    args += fmt::format("'{}' ", cut(f.arg(i), 128 - args.size()));
  std::string msg = fmt::format("ERR unknown command '{}', with args beginning with: {}",
                                cut(f.arg(0), 128), args);
  for (char& ch : msg)
    if (ch == '\r' || ch == '\n') ch = ' ';
  refuse(c, msg);
}

namespace {
// What Redis answers an (un)subscribed-from-nothing client: one message per channel named, or
// one with a nil channel when none is named, each with a count of 0. Written as one reply
// (CLIENT REPLY SKIP drops all of it, as Redis drops the command's output). `kind`: the
// command's name ("unsubscribe", "punsubscribe", "sunsubscribe"), which is the reply's kind.
void unsubscribe_locally(ClientConn* c, const resp::Frame& f, std::string_view kind) {
  std::string out;
  resp::Writer w(out, c->proto);
  size_t n = f.argc() > 1 ? f.argc() - 1 : 1;
  for (size_t i = 0; i < n; ++i) {
    w.push(3);
    w.bulk(kind);
    if (f.argc() > 1) w.bulk(f.arg(i + 1));
    else w.null();
    w.integer(0);
  }
  c->immediate_reply().append(out);
}
}  // namespace

void Dispatch::dispatch(ClientConn* c, const resp::Frame& f) {
  srv_.stats().total_commands_processed++;
  std::string_view cmd = f.arg(0);
  // The one lookup: its roles (command_table.h) decide everything below and in forward(); no
  // command name is compared after it.
  const CommandInfo* ci;
  original_name_ = {};
  wire_override_.clear();
  if (!names_built_) build_names();
  // A NUL in a command name: Redis finds such a name only by the chance of a hash bucket (its
  // lookup hashes every byte but compares up to the NUL). respite never forwards it: it would
  // pass respite's rename, deny and ACL checks under an unknown name and then run upstream as
  // the command they were meant to stop.
  if (cmd.find('\0') != std::string_view::npos) return unknown_command(c, f);
  const std::string* orig = names_.empty() ? nullptr : renamed(cmd);
  if (orig == nullptr) {
    ci = lookup_command(f);
  } else if (orig->empty()) {
    return unknown_command(c, f);
  } else {
    ci = lookup_command(*orig, f.argc() > 1 ? f.arg(1) : std::string_view{});
    original_name_ = *orig;  // forward() sends the command under its own name
  }
  // A container (CLIENT, CONFIG, XINFO ...) whose subcommand the table does not know: the entry
  // found is the container's, whose rules (ACL, roles) are not the subcommand's. Answered as
  // Redis 7.0 answers it, unless an unrestricted user sends it to a newer upstream that may know
  // it; never forwarded when the name has a NUL (see above), when the user is restricted (its
  // rules cannot be checked), or for CLIENT (a subcommand may change the state of the shared
  // upstream connection, e.g. CLIENT REPLY OFF would leave every client waiting).
  if (ci && ci->has_subcommands && f.argc() > 1 &&
      (!c->acl_unrestricted || ci->name == "client" ||
       f.arg(1).find('\0') != std::string_view::npos)) {
    // Redis's text, its %.128s ending the names at a NUL; newlines become spaces.
    std::string_view sub = f.arg(1).substr(0, f.arg(1).find('\0'));
    std::string msg = fmt::format("ERR unknown subcommand '{}'. Try {} HELP.", sub.substr(0, 128),
                                  upper(f.arg(0)));
    for (char& ch : msg)
      if (ch == '\r' || ch == '\n') ch = ' ';
    return refuse(c, msg);
  }
  static constexpr CommandRoles kUnknown;
  const CommandRoles& role = ci ? ci->role : kUnknown;

  // MULTI, EXEC and DISCARD are never refused: a refused MULTI would run what follows outside
  // a transaction, a refused EXEC or DISCARD would leave it open.
  if (srv_.config().rate_limit > 0 && role.pin != Pin::Multi && role.pin != Pin::Exec &&
      role.pin != Pin::Discard && !rate_allowed(c)) {
    return refuse(c, "ERR rate limit exceeded");
  }

  // Redis's no-auth flag: AUTH, HELLO, QUIT, RESET.
  if (!c->authenticated && !(ci && ci->is(kNoAuth))) {
    error(c, "NOAUTH Authentication required.");
    return;
  }
  if (!c->acl_unrestricted && !acl_allows(c, f, ci)) return;

  if (role.local != Local::None) {
    // In a transaction the upstream queues everything; subscribed, it answers in pub/sub form:
    // there only QUIT, RESET, SYNC, REPLCONF ACK, AUTH and ACL are respite's (AUTH and ACL
    // never reach the upstream: refused in a transaction).
    const bool ours = !c->in_multi && !c->streaming;
    switch (role.local) {
      case Local::None:
        break;
      case Local::Quit: {
        std::string ok;
        resp::Writer(ok, c->proto).simple("OK");
        // A streaming client may still be owed replies the stream has not brought yet.
        if (c->streaming) return c->stream_local(std::move(ok), ClientConn::StreamAfter::Quit);
        c->immediate_reply().append(ok);
        c->close_after_flush();
        return;
      }
      case Local::Reset:
        if (c->streaming) {
          return c->stream_local("+RESET\r\n", ClientConn::StreamAfter::Reset);
        }
        if (c->inflight > 0) {
          c->stall();  // after what is owed: then the pinned connection can go
          return;
        }
        reset_client(c);
        resp::Writer(c->immediate_reply(), c->proto).simple("RESET");
        return;
      case Local::Unsubscribe:
        // Commands whose reply count is not one never reach a shared connection, where an
        // extra or a missing reply would be handed to another client's request.
        if (ours) return unsubscribe_locally(c, f, ci->name);
        break;
      case Local::Sync: {
        std::string e;
        resp::Writer w(e, c->proto);
        if (c->in_multi) {
          c->multi_failed = true;  // as Redis flags a transaction with a refused command
          w.error("ERR Command not allowed inside a transaction");
        } else {
          w.error("NOMASTERLINK Can't SYNC while not connected with my master");
        }
        if (c->streaming) return c->stream_local(std::move(e), ClientConn::StreamAfter::None);
        c->immediate_reply().append(e);
        return;
      }
      case Local::ReplconfAck:
        // REPLCONF ACK and GETACK are answered by nothing, in Redis too.
        if (f.argc() >= 2 && (ieq(f.arg(1), "ack") || ieq(f.arg(1), "getack"))) return;
        break;
      case Local::Ping:
        if (!ours) break;
        if (f.argc() > 2) return arity_error(c, cmd);
        {
          resp::Writer w(c->immediate_reply(), c->proto);
          if (f.argc() == 2) w.bulk(f.arg(1));
          else w.simple("PONG");
        }
        return;
      case Local::Echo:
        if (!ours) break;
        if (f.argc() != 2) return arity_error(c, cmd);
        resp::Writer(c->immediate_reply(), c->proto).bulk(f.arg(1));
        return;
      case Local::Auth:
        // Always respite's: the upstream must never see a client's password. Queued in a
        // transaction Redis would run it at EXEC; respite refuses it there instead.
        if (c->in_multi) return refuse(c, kAuthInMulti);
        if (c->streaming) {
          std::string reply;
          auth_command(srv_, c, f, &reply);
          return c->stream_local(std::move(reply), ClientConn::StreamAfter::None);
        }
        return auth_command(srv_, c, f);
      case Local::Hello:
        if (!ours && has_auth_option(f)) return refuse(c, kAuthInMulti);
        if (ours) {
          if (hello_command(srv_, c, f)) return;
          // A pinned client switching protocol: its connection switches too, but AUTH and
          // SETNAME were respite's (the upstream must not see a client's password).
          wire_override_ = fmt::format("*2\r\n$5\r\nHELLO\r\n$1\r\n{}\r\n", c->proto);
        }
        break;
      case Local::Select: {
        if (!ours) break;
        if (f.argc() != 2) return arity_error(c, cmd);
        long long n;
        if (!parse_ll(f.arg(1), n)) return error(c, "ERR value is not an integer or out of range");
        if (srv_.router().cluster() && n != 0)
          return error(c, "ERR SELECT is not allowed in cluster mode");
        if (n < 0 || n >= srv_.databases()) return error(c, "ERR DB index is out of range");
        if (!c->pinned && !srv_.databases_known() && n > verified_db_max_)
          return select_by_trying(c, static_cast<int>(n));
        if (c->pinned) {
          forward(c, f, ci);  // the pinned connection switches database itself
          if (!c->stalled()) {
            c->db = static_cast<int>(n);
            c->db_gen++;
          }
          return;
        }
        c->db = static_cast<int>(n);
        c->db_gen++;
        resp::Writer(c->immediate_reply(), c->proto).simple("OK");
        return;
      }
      case Local::Proxy:
      case Local::ProxyInfo:
      case Local::ProxyConfig:
      case Local::ProxyHelp:
      case Local::ProxySlowlog:
      case Local::ProxyDebug:
      case Local::ProxyCache:
        if (ours) return proxy_command(srv_, c, f, role.local);
        break;
      case Local::ClientId:
      case Local::ClientGetname:
      case Local::ClientSetname:
      case Local::ClientSetinfo:
      case Local::ClientInfo:
      case Local::ClientList:
      case Local::ClientKill:
      case Local::ClientUnblock:
      case Local::ClientNoEvict:
      case Local::ClientNoTouch:
      case Local::ClientReply:
        if (ours && client_command(srv_, c, f, role.local)) return;
        break;
      case Local::Acl:
        // Never forwarded: the upstream's users are not the clients' (a queued ACL SETUSER
        // would change them as respite's own upstream user).
        if (c->in_multi) return refuse(c, kAclInMulti);
        if (c->streaming) {
          // As Redis for a subscribed client: refused in RESP2, answered in RESP3.
          if (c->proto == 2 && ci->name != "acl") {
            return refuse(c, fmt::format("ERR Can't execute '{}': only (P|S)SUBSCRIBE / "
                                         "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in "
                                         "this context",
                                         ci->name));
          }
          std::string reply;
          acl_command(srv_, c, f, &reply);
          return c->stream_local(std::move(reply), ClientConn::StreamAfter::None);
        }
        return acl_command(srv_, c, f);
      case Local::Cluster:
        if (ours && srv_.config().cluster) return cluster_command(srv_, c, f);
        break;
    }
  }
  if (role.cache != Cache::None && srv_.cache_usable(c)) {
    uint32_t db = static_cast<uint32_t>(c->db);
    if (role.cache == Cache::Get && f.argc() == 2) return srv_.cache_path().get(c, db, f.arg(1));
    if (role.cache == Cache::Mget && f.argc() >= 2) return srv_.cache_path().mget(c, db, f);
  }
  forward(c, f, ci);
}

}  // namespace respite
