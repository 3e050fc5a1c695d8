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
#include "proxy/front/server.h"
#include "proxy/ops/text.h"
#include "resp/reply_writer.h"

namespace respite {

namespace {


// Redis's glob-style matching (CONFIG GET patterns): * ? and [...] classes.
bool glob_match(std::string_view pat, std::string_view str) {
  size_t p = 0, s = 0, star_p = std::string_view::npos, star_s = 0;
  while (s < str.size()) {
    if (p < pat.size() && pat[p] == '*') {
      star_p = p++;
      star_s = s;
    } else if (p < pat.size() && (pat[p] == '?' || std::tolower(static_cast<unsigned char>(pat[p])) ==
                                                       std::tolower(static_cast<unsigned char>(str[s])))) {
      ++p;
      ++s;
    } else if (star_p != std::string_view::npos) {
      p = star_p + 1;
      s = ++star_s;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

}  // namespace

// ---- runtime-tunable settings (PROXY CONFIG GET/SET) ----

namespace {
struct Tunable {
  const char* name;
  std::string (*get)(Server&);
  bool (*set)(Server&, std::string_view);  // false: invalid value
};

bool set_int(std::string_view v, long long lo, long long hi, long long& out) {
  return parse_ll(v, out) && out >= lo && out <= hi;
}

const Tunable kTunables[] = {
    {"log-level", [](Server&) { return std::string(log_level_name(log_level())); },
     [](Server&, std::string_view v) {
       LogLevel l;
       if (!parse_log_level(lower(v), l)) return false;
       set_log_level(l);
       return true;
     }},
    {"upstream-timeout-ms", [](Server& s) { return std::to_string(s.config().upstream_timeout_ms); },
     [](Server& s, std::string_view v) {
       long long n;
       if (!set_int(v, 1, 3600000, n)) return false;
       s.config().upstream_timeout_ms = static_cast<int>(n);
       return true;
     }},
    {"maxclients", [](Server& s) { return std::to_string(s.config().maxclients); },
     [](Server& s, std::string_view v) {
       long long n;
       if (!set_int(v, 1, 1000000, n)) return false;
       s.config().maxclients = static_cast<int>(n);
       return true;
     }},
    {"cache-ttl-ms", [](Server& s) { return std::to_string(s.config().cache_ttl_ms); },
     [](Server& s, std::string_view v) {
       long long n;
       if (!set_int(v, 1, 1LL << 40, n)) return false;
       s.config().cache_ttl_ms = n;
       s.apply_cache_config();
       return true;
     }},
    {"cache-policy", [](Server& s) { return s.config().cache_policy; },
     [](Server& s, std::string_view v) {
       auto p = cache::parse_policy(v);
       if (!p) return false;
       s.config().cache_policy = std::string(cache::policy_name(*p));
       s.apply_cache_config();
       return true;
     }},
    {"xfetch-beta", [](Server& s) { return fmt::format("{}", s.config().xfetch_beta); },
     [](Server& s, std::string_view v) {
       double d;
       auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
       if (ec != std::errc() || p != v.data() + v.size() || d < 0 || d > 100) return false;
       s.config().xfetch_beta = d;
       s.apply_cache_config();
       return true;
     }},
    {"rate-limit", [](Server& s) { return std::to_string(s.config().rate_limit); },
     [](Server& s, std::string_view v) {
       long long n;
       if (!set_int(v, 0, 1LL << 40, n)) return false;
       s.config().rate_limit = n;
       return true;
     }},
    {"timeout", [](Server& s) { return std::to_string(s.config().timeout); },
     [](Server& s, std::string_view v) {
       long long n;
       if (!set_int(v, 0, 1LL << 40, n)) return false;
       s.config().timeout = n;
       return true;
     }},
    {"slowlog-log-slower-than", [](Server& s) { return std::to_string(s.config().slowlog_log_slower_than); },
     [](Server& s, std::string_view v) {
       long long n;
       if (!set_int(v, -1, 1LL << 40, n)) return false;
       s.config().slowlog_log_slower_than = n;
       return true;
     }},
    {"cache-max-memory", [](Server& s) { return std::to_string(s.config().cache_max_memory); },
     [](Server& s, std::string_view v) {
       uint64_t n;
       if (!parse_memory_size(std::string(v), n)) return false;
       s.config().cache_max_memory = n;
       s.apply_cache_config();
       return true;
     }},
};
}  // namespace

// PROXY CONFIG REWRITE: like Redis's CONFIG REWRITE, the file given with --config gets the
// current value of every runtime-tunable setting: an existing `name value` line is replaced in
// place (comments and everything else are kept), a missing one is appended. Written to a temporary
// file and renamed over the old one.
static std::string rewrite_config(Server& srv) {
  const std::string& path = srv.config().config_file;
  if (path.empty()) return "ERR The server is running without a config file";
  std::vector<std::string> lines;
  {
    std::ifstream in(path);
    if (!in) return fmt::format("ERR Rewriting config file: cannot read {}", path);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  for (const Tunable& t : kTunables) {
    std::string fresh = fmt::format("{} {}", t.name, t.get(srv));
    bool found = false;
    for (std::string& line : lines) {
      size_t b = line.find_first_not_of(" \t");
      if (b == std::string::npos || line[b] == '#') continue;
      size_t e = line.find_first_of(" \t", b);
      if (ieq(std::string_view(line).substr(b, e == std::string::npos ? e : e - b), t.name)) {
        if (!found) line = fresh;
        else line.clear();  // a repeated directive: the first one now holds the value
        found = true;
      }
    }
    if (!found) {
      if (std::find(lines.begin(), lines.end(), "# Generated by PROXY CONFIG REWRITE") == lines.end())
        lines.push_back("# Generated by PROXY CONFIG REWRITE");
      lines.push_back(fresh);
    }
  }
  std::string tmp = path + ".rewrite.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return fmt::format("ERR Rewriting config file: cannot write {}", tmp);
    for (const std::string& line : lines) out << line << '\n';
    if (!out.flush()) return "ERR Rewriting config file: write failed";
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return fmt::format("ERR Rewriting config file: {}", std::strerror(errno));
  return "";
}

// ---- PROXY ----

// `which`: the subcommand, from the command table (Local::Proxy: none, or one PROXY lacks).
static void proxy_command(Server& srv, ClientConn* c, const resp::Frame& f, Local which) {
  resp::Writer w(c->immediate_reply(), c->proto);
  if (f.argc() < 2) {
    w.error("ERR wrong number of arguments for 'proxy' command");
    return;
  }
  // A subcommand's own words (CONFIG GET, SLOWLOG LEN, ...) are its arguments.
  const bool two = f.argc() >= 3;
  if (which == Local::ProxyInfo) {
    std::string text = srv.info_text(f.argc() > 2 ? lower(f.arg(2)) : std::string());
    w.verbatim("txt", text);
  } else if (which == Local::ProxyConfig && two && ieq(f.arg(2), "get")) {
    if (f.argc() < 4) {
      w.error("ERR wrong number of arguments for 'proxy|config|get' command");
      return;
    }
    std::vector<std::pair<std::string, std::string>> found;
    for (const Tunable& t : kTunables) {
      for (size_t i = 3; i < f.argc(); ++i) {
        if (glob_match(f.arg(i), t.name)) {
          found.emplace_back(t.name, t.get(srv));
          break;
        }
      }
    }
    w.map(found.size());
    for (auto& [k, v] : found) {
      w.bulk(k);
      w.bulk(v);
    }
  } else if (which == Local::ProxyConfig && two && ieq(f.arg(2), "set")) {
    if (f.argc() < 5 || (f.argc() - 3) % 2 != 0) {
      w.error("ERR wrong number of arguments for 'proxy|config|set' command");
      return;
    }
    // Validate every pair first so a bad one changes nothing (as CONFIG SET does).
    std::vector<const Tunable*> which;
    for (size_t i = 3; i + 1 < f.argc(); i += 2) {
      const Tunable* hit = nullptr;
      for (const Tunable& t : kTunables)
        if (ieq(f.arg(i), t.name)) hit = &t;
      if (!hit) {
        w.error(fmt::format("ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                            f.arg(i)));
        return;
      }
      which.push_back(hit);
    }
    for (size_t k = 0; k < which.size(); ++k) {
      std::string_view val = f.arg(3 + 2 * k + 1);
      if (which[k]->set(srv, val)) {
        // Every loop holds its own copy of the settings: the others apply it on their thread.
        for (Server* other : srv.shared()->servers) {
          if (other == &srv) continue;
          other->post([other, t = which[k], v = std::string(val)] { t->set(*other, v); });
        }
      } else {
        w.error(fmt::format("ERR CONFIG SET failed (possibly related to argument '{}') - "
                            "invalid value '{}'",
                            which[k]->name, val));
        return;
      }
    }
    w.simple("OK");
  } else if (which == Local::ProxyConfig && f.argc() == 3 && ieq(f.arg(2), "rewrite")) {
    std::string err = rewrite_config(srv);
    if (err.empty()) w.simple("OK");
    else w.error(err);
  } else if (which == Local::ProxyHelp) {
    static const char* lines[] = {
        "PROXY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "INFO [<section>]",
        "    Return respite's own information and statistics (INFO format).",
        "CONFIG GET <pattern> [<pattern> ...]",
        "    Return the runtime-tunable settings matching the glob-style patterns.",
        "CONFIG SET <parameter> <value> [<parameter> <value> ...]",
        "    Change runtime-tunable settings.",
        "CONFIG REWRITE",
        "    Write the runtime-tunable settings back into the --config file.",
        "CACHE FLUSH",
        "    Empty respite's cache.",
        "SLOWLOG GET [<count>] | LEN | RESET",
        "    Forwarded commands whose upstream round trip exceeded slowlog-log-slower-than.",
        "DEBUG ALLOCATIONS",
        "    Heap allocations made by the process so far.",
        "HELP",
        "    Print this help.",
    };
    w.array(std::size(lines));
    for (const char* l : lines) w.simple(l);
  } else if (which == Local::ProxySlowlog && two) {
    std::lock_guard<std::mutex> lk(srv.shared()->slowlog_mu);
    auto& log = srv.shared()->slowlog;
    if (ieq(f.arg(2), "len")) {
      w.integer(static_cast<int64_t>(log.size()));
    } else if (ieq(f.arg(2), "reset")) {
      log.clear();
      w.simple("OK");
    } else if (ieq(f.arg(2), "get")) {
      long long n = 10;
      if (f.argc() > 3 && (!parse_ll(f.arg(3), n) || n < -1)) {
        w.error("ERR count should be greater than or equal to -1");
        return;
      }
      size_t count = n < 0 ? log.size() : std::min(log.size(), static_cast<size_t>(n));
      w.array(count);
      for (size_t i = 0; i < count; ++i) {
        const SlowEntry& e = log[i];
        w.array(6);
        w.integer(static_cast<int64_t>(e.id));
        w.integer(e.when);
        w.integer(static_cast<int64_t>(e.duration_us));
        w.array(e.arg.empty() ? 1 : 2);
        w.bulk(e.name);
        if (!e.arg.empty()) w.bulk(e.arg);
        w.bulk(e.peer);
        w.bulk(e.client_name);
      }
    } else {
      w.error(fmt::format("ERR unknown subcommand '{}'. Try PROXY HELP.", f.arg(2)));
    }
  } else if (which == Local::ProxyDebug && f.argc() == 3 && ieq(f.arg(2), "allocations")) {
    w.integer(static_cast<int64_t>(g_allocations.load(std::memory_order_relaxed)));
  } else if (which == Local::ProxyCache && f.argc() == 3 && ieq(f.arg(2), "flush")) {
    srv.flush_cache();
    w.simple("OK");
  } else {
    w.error(fmt::format("ERR unknown subcommand '{}'. Try PROXY HELP.", f.arg(1)));
  }
}


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

CachePath::WritePlan Server::invalidate_before_write(ClientConn* c, const resp::Frame& f,
                                                     const CommandInfo* ci) {
  if (!ci || !cache_path_.cache().enabled()) return {};
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
  return cache_path_.invalidate_before_write(db, f, w);
}

void Server::forward(ClientConn* c, const resp::Frame& f, const CommandInfo* ci) {
  const Pin pin = pin_of(f, ci);
  const bool ends_multi = pin == Pin::Exec || pin == Pin::Discard;
  bool needs_pin = pin == Pin::Multi || pin == Pin::Watch || pin == Pin::Blocking ||
                   pin == Pin::Stream || pin == Pin::Sticky || pin == Pin::Aside;
  UpstreamConn* target = c->pinned;
  if (!target && !needs_pin) target = shared_conn(c->proto, c->id);
  // Per-client order: never send to a new connection while replies are owed on another, nor
  // past this client's reads still waiting on cache fetches.
  if ((c->inflight > 0 && c->last_conn != target) || c->flights_waiting > 0) {
    c->stall();
    return;
  }
  // The client's answer is due --upstream-timeout-ms after the request arrived
  // (ClientConn::arrived_ms), even if it was held behind this client's cache misses first; the
  // connection itself still gets a whole timeout from the send (UpstreamConn::forward).
  uint64_t answer_by = 0;
  if (pin != Pin::Blocking && pin != Pin::Stream && !c->streaming)
    answer_by = c->arrived_ms() + static_cast<uint64_t>(cfg_.upstream_timeout_ms);
  if (!target && needs_pin) {
    c->pinned = target = open_pinned(c, pin == Pin::Aside ? 0 : -1);
  }
  if (!target) {
    error(c, "ERR upstream unavailable (reconnecting)");
    return;
  }
  const bool was_in_multi = c->in_multi;
  const bool unkeyed_write = writes_unknown_keys(f, ci);
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
        n < databases()) {
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
  stats_.forwarded_commands++;
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
      cache_path_.invalidate_now(*plan.heap);
    }
  }
  auto attach = [&](UpstreamConn* t) {
    if (plan.heap) t->set_reply_invalidation(plan.heap);
    else if (plan.key_arg >= 0)
      t->set_reply_invalidation_key(plan.db, f.arg(static_cast<size_t>(plan.key_arg)), plan.flights_at);
  };
  std::string_view raw = f.raw();
  std::string encoded;
  if (!exec_replacement.empty()) {
    raw = exec_replacement;
  } else if (f.is_inline()) {
    UpstreamConn::encode_command(encoded, f);
    raw = encoded;
  }
  if (c->streaming) {
    target->forward(c, kStreamSeq, raw, c->db, 0);
    attach(target);
    return;
  }
  uint64_t seq = c->reserve_slot();
  target->forward(c, seq, raw, c->db, answer_by, &f);
  target->set_after(after, is_exec || unkeyed_write || (ci && ci->is(kWrite)));
  if (after & UpstreamConn::kAfterExec) target->set_exec_select(exec_db, exec_pos, c->db_gen);
  attach(target);
  c->last_conn = target;
  c->inflight++;
}

// Token bucket per client connection: `rate-limit` tokens a second, bursts of up to one second's
// worth. A request that finds the bucket empty is refused (not queued).
bool Server::rate_allowed(ClientConn* c) {
  double rate = static_cast<double>(cfg_.rate_limit);
  uint64_t now_ms = now();
  if (c->rate_tokens < 0) {
    c->rate_tokens = rate;
    c->rate_refill_ms = now_ms;
  } else if (now_ms > c->rate_refill_ms) {
    c->rate_tokens = std::min(rate, c->rate_tokens + rate * static_cast<double>(now_ms - c->rate_refill_ms) / 1000.0);
    c->rate_refill_ms = now_ms;
  }
  if (c->rate_tokens < 1.0) {
    stats_.rate_limited++;
    return false;
  }
  c->rate_tokens -= 1.0;
  return true;
}

// An upstream that refuses CONFIG GET databases: SELECT n is tried on the client's shared
// connection (and undone there) before the client moves, so a SELECT Redis would refuse never
// becomes the shared connection's own SELECT, whose failure would fail every client on it. The
// client's requests after it wait (as behind a cache miss); its reply is Redis's own.
void Server::select_by_trying(ClientConn* c, int n) {
  UpstreamConn* u = shared_conn(c->proto, c->id);
  if (!u || c->inflight > 0 || c->flights_waiting > 0) {
    if (!u) return error(c, "ERR upstream unavailable (reconnecting)");
    return c->stall();  // after what this client has in flight, in order
  }
  class Trial final : public ReplySink {
   public:
    Trial(Server* s, ClientConn* c, int n) : s_(s), c_(c), n_(n), seq_(c->reserve_slot()) {
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
    Server* s_;
    ClientConn* c_;
    int n_;
    uint64_t seq_;
    int got_ = 0;
    bool ok_ = false;
    std::string first_;
  };
  u->probe_select(new Trial(this, c, n), n);
}

void Server::reset_client(ClientConn* c) {
  if (c->pinned) {
    UpstreamConn* u = c->pinned;
    c->pinned = nullptr;
    u->close();
  }
  c->in_multi = c->watching = c->streaming = c->sticky_pin = false;
  c->multi_failed = c->multi_barrier = false;
  c->multi_select_db = -1;
  c->db_gen++;
  c->multi_count = 0;
  delete c->multi_writes;
  c->multi_writes = nullptr;
  c->db = 0;
  c->proto = 2;
  c->name.clear();
  c->reply_mode = ClientConn::ReplyMode::On;
  if (!config().requirepass.empty()) c->set_authenticated(false);
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

void Server::dispatch(ClientConn* c, const resp::Frame& f) {
  stats_.total_commands_processed++;
  std::string_view cmd = f.arg(0);
  // The one lookup: its roles (command_table.h) decide everything below and in forward(); no
  // command name is compared after it.
  const CommandInfo* ci = lookup_command(f);
  static constexpr CommandRoles kUnknown;
  const CommandRoles& role = ci ? ci->role : kUnknown;

  // MULTI, EXEC and DISCARD are never refused: a refused MULTI would run what follows outside
  // a transaction, a refused EXEC or DISCARD would leave it open.
  if (cfg_.rate_limit > 0 && role.pin != Pin::Multi && role.pin != Pin::Exec &&
      role.pin != Pin::Discard && !rate_allowed(c)) {
    // As a command Redis refuses while queueing: the transaction is flagged and EXEC aborts.
    if (c->in_multi) c->multi_failed = true;
    if (c->streaming) {
      std::string e;
      resp::Writer(e, c->proto).error("ERR rate limit exceeded");
      c->stream_local(std::move(e), ClientConn::StreamAfter::None);
    } else {
      error(c, "ERR rate limit exceeded");
    }
    return;
  }

  // Redis's no-auth flag: AUTH, HELLO, QUIT, RESET.
  if (!c->authenticated && !(ci && ci->is(kNoAuth))) {
    error(c, "NOAUTH Authentication required.");
    return;
  }

  if (role.local != Local::None) {
    // In a transaction the upstream queues everything; subscribed, it answers in pub/sub form:
    // there only QUIT, RESET, SYNC and REPLCONF ACK are respite's.
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
        if (ours) return auth_command(*this, c, f);
        break;
      case Local::Hello:
        if (ours && hello_command(*this, c, f)) return;
        break;
      case Local::Select: {
        if (!ours) break;
        if (f.argc() != 2) return arity_error(c, cmd);
        long long n;
        if (!parse_ll(f.arg(1), n)) return error(c, "ERR value is not an integer or out of range");
        if (n < 0 || n >= databases()) return error(c, "ERR DB index is out of range");
        if (!c->pinned && !databases_known() && n > verified_db_max_)
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
        if (ours) return proxy_command(*this, c, f, role.local);
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
        if (ours && client_command(*this, c, f, role.local)) return;
        break;
    }
  }
  if (role.cache != Cache::None && cache_usable(c)) {
    uint32_t db = static_cast<uint32_t>(c->db);
    if (role.cache == Cache::Get && f.argc() == 2) return cache_path_.get(c, db, f.arg(1));
    if (role.cache == Cache::Mget && f.argc() >= 2) return cache_path_.mget(c, db, f);
  }
  forward(c, f, ci);
}

}  // namespace respite
