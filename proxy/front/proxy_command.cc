// PROXY: respite's own admin command (INFO, CONFIG GET/SET/REWRITE, CACHE, SLOWLOG, DEBUG, HELP).
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
  bool (*set)(Server&, std::string_view);  // false: invalid value; nullptr: fixed at start
  // A tls-* setting: set() only stores it on the loop that runs the command; once every pair
  // is stored the new context is made from them together (a new certificate and its key in
  // one CONFIG SET) and handed to every loop (Server::reload_tls).
  bool tls = false;
};

template <std::string TlsSettings::*F>
std::string get_tls(Server& s) {
  return s.config().tls.*F;
}
template <std::string TlsSettings::*F>
bool set_tls(Server& s, std::string_view v) {
  s.config().tls.*F = std::string(v);
  return true;
}

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
    // Fixed at start: an entry cached under ttl was never tracked and would stay stale after a
    // switch to tracking; a switch the other way would weaken the promise clients were given.
    // Either needs every loop's link and fetch connection replaced at once: a restart does that.
    {"cache-coherence",
     [](Server& s) { return std::string(cache_coherence_name(s.config().cache_coherence)); },
     nullptr},
    {"cache-max-memory", [](Server& s) { return std::to_string(s.config().cache_max_memory); },
     [](Server& s, std::string_view v) {
       uint64_t n;
       if (!parse_memory_size(std::string(v), n)) return false;
       s.config().cache_max_memory = n;
       s.apply_cache_config();
       return true;
     }},
    {"tls-port", [](Server& s) { return std::to_string(s.config().tls_port); }, nullptr, true},
    {"tls-cert-file", get_tls<&TlsSettings::cert_file>, set_tls<&TlsSettings::cert_file>, true},
    {"tls-key-file", get_tls<&TlsSettings::key_file>, set_tls<&TlsSettings::key_file>, true},
    {"tls-ca-cert-file", get_tls<&TlsSettings::ca_cert_file>, set_tls<&TlsSettings::ca_cert_file>,
     true},
    {"tls-ca-cert-dir", get_tls<&TlsSettings::ca_cert_dir>, set_tls<&TlsSettings::ca_cert_dir>,
     true},
    {"tls-auth-clients", get_tls<&TlsSettings::auth_clients>,
     [](Server& s, std::string_view v) {
       std::string m = lower(v);
       if (m != "yes" && m != "no" && m != "optional") return false;
       s.config().tls.auth_clients = m;
       return true;
     },
     true},
    {"tls-protocols", get_tls<&TlsSettings::protocols>, set_tls<&TlsSettings::protocols>, true},
    {"tls-ciphers", get_tls<&TlsSettings::ciphers>, set_tls<&TlsSettings::ciphers>, true},
    {"tls-ciphersuites", get_tls<&TlsSettings::ciphersuites>, set_tls<&TlsSettings::ciphersuites>,
     true},
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
    const std::string value = t.get(srv);
    // TLS settings never given stay out of the file (a file without TLS keeps none).
    const bool unset = t.tls && (value.empty() || value == "0");
    std::string fresh = fmt::format("{} {}", t.name, value);
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
    if (!found && !unset) {
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
void proxy_command(Server& srv, ClientConn* c, const resp::Frame& f, Local which) {
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
      if (!hit->set) {  // Redis's answer for an immutable parameter
        w.error(fmt::format("ERR CONFIG SET failed (possibly related to argument '{}') - can't "
                            "set immutable config",
                            hit->name));
        return;
      }
      which.push_back(hit);
    }
    const TlsSettings tls_before = srv.config().tls;
    const char* tls_first = nullptr;  // the first tls-* argument, for the error
    for (size_t k = 0; k < which.size(); ++k) {
      std::string_view val = f.arg(3 + 2 * k + 1);
      if (which[k]->set(srv, val)) {
        if (which[k]->tls) {
          if (!tls_first) tls_first = which[k]->name;
          continue;
        }
        // Every loop holds its own copy of the settings: the others apply it on their thread.
        for (Server* other : srv.shared()->servers) {
          if (other == &srv) continue;
          other->post([other, t = which[k], v = std::string(val)] { t->set(*other, v); });
        }
      } else {
        w.error(fmt::format("ERR CONFIG SET failed (possibly related to argument '{}') - "
                            "invalid value '{}'",
                            which[k]->name, val));
        srv.config().tls = tls_before;
        return;
      }
    }
    if (tls_first) {
      // The new certificates go to every loop, or none does: the old context stays.
      if (std::string err = srv.reload_tls(tls_before, srv.config().tls); !err.empty()) {
        srv.config().tls = tls_before;
        log(LogLevel::Warning, "CONFIG SET {}: TLS configuration not changed: {}", tls_first, err);
        w.error(fmt::format("ERR CONFIG SET failed (possibly related to argument '{}') - Unable "
                            "to update TLS configuration. Check server logs.",
                            tls_first));
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

}  // namespace respite
