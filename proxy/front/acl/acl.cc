#include "proxy/front/acl/acl.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "proxy/ops/config.h"
#include "proxy/ops/text.h"

namespace respite {

bool split_args(std::string_view s, std::vector<std::string>& out) {
  size_t i = 0;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    c = ascii_lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  while (true) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
    if (i == s.size()) return true;
    std::string word;
    bool dq = false, sq = false;
    for (; i < s.size(); ++i) {
      char c = s[i];
      if (dq) {
        if (c == '\\' && i + 3 < s.size() && s[i + 1] == 'x' && hex(s[i + 2]) >= 0 && hex(s[i + 3]) >= 0) {
          word.push_back(static_cast<char>(hex(s[i + 2]) * 16 + hex(s[i + 3])));
          i += 3;
        } else if (c == '\\' && i + 1 < s.size()) {
          char e = s[++i];
          word.push_back(e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e == 'b' ? '\b' : e == 'a' ? '\a' : e);
        } else if (c == '"') {
          // As sdssplitargs: a closing quote must be followed by a space or the end.
          if (i + 1 < s.size() && s[i + 1] != ' ' && s[i + 1] != '\t') return false;
          dq = false;
          ++i;
          break;
        } else {
          word.push_back(c);
        }
      } else if (sq) {
        if (c == '\\' && i + 1 < s.size() && s[i + 1] == '\'') {
          word.push_back('\'');
          ++i;
        } else if (c == '\'') {
          if (i + 1 < s.size() && s[i + 1] != ' ' && s[i + 1] != '\t') return false;
          sq = false;
          ++i;
          break;
        } else {
          word.push_back(c);
        }
      } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        break;
      } else if (c == '"') {
        dq = true;
      } else if (c == '\'') {
        sq = true;
      } else {
        word.push_back(c);
      }
    }
    if (dq || sq) return false;
    out.push_back(std::move(word));
  }
}

Acl::Acl() {
  users_.push_back(std::make_unique<AclUser>("default"));
  for (std::string_view r : {"on", "nopass", "~*", "&*", "+@all"}) users_[0]->apply(r);
}

const AclUser* Acl::find(std::string_view name) const {
  for (const auto& u : users_)
    if (u->name() == name) return u.get();
  return nullptr;
}

std::vector<const AclUser*> Acl::sorted() const {
  std::vector<const AclUser*> v;
  for (const auto& u : users_) v.push_back(u.get());
  std::sort(v.begin(), v.end(), [](const AclUser* a, const AclUser* b) { return a->name() < b->name(); });
  return v;
}

const AclUser* Acl::authenticate(std::string_view name, std::string_view password) const {
  const AclUser* u = find(name);
  // The password is checked for a missing or disabled user too, so that the time taken does
  // not tell which users exist.
  bool ok = (u ? *u : default_user()).password_ok(password);
  if (u == nullptr || !u->enabled() || !ok) return nullptr;
  return u;
}

bool Acl::auth_required() const {
  const AclUser& d = default_user();
  return !d.nopass() || !d.enabled();
}

// One `user NAME rule...` declaration (the words after "user"), from a new user's state (the
// default user's too, as Redis resets it); each name may be declared once.
std::string Acl::add_user_line(std::string_view line, std::vector<std::string>& seen,
                               bool quoting) {
  std::vector<std::string> w;
  if (!quoting) {
    // Redis's ACLLoadFromFile splits a users file's line on spaces alone: quotes are part of
    // the words (so a quoted rule is a syntax error, as there).
    for (size_t i = 0; i < line.size();) {
      size_t e = line.find(' ', i);
      if (e == std::string_view::npos) e = line.size();
      if (e > i) w.emplace_back(line.substr(i, e - i));
      i = e + 1;
    }
  } else if (!split_args(line, w)) {
    return "Unbalanced quotes in configuration line";
  }
  if (w.empty()) return "User declaration without a name";
  const std::string& name = w[0];
  for (char c : name)
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return "Usernames can't contain spaces";
  if (std::find(seen.begin(), seen.end(), name) != seen.end())
    return fmt::format("Duplicate user '{}' found", name);
  seen.push_back(name);
  AclUser u(name);  // the default user too starts from nothing (Redis resets it)
  for (size_t i = 1; i < w.size(); ++i) {
    std::string err = u.apply(w[i]);
    if (!err.empty()) {
      // A password rule (>pw, <pw, #hash, !hash) is never repeated: this text goes to the log.
      const bool secret = w[i][0] == '>' || w[i][0] == '<' || w[i][0] == '#' || w[i][0] == '!';
      return fmt::format("Error in user declaration '{}': {}",
                         secret ? w[i].substr(0, 1) + "<redacted>" : w[i], err);
    }
  }
  if (AclUser* existing = const_cast<AclUser*>(find(name))) *existing = std::move(u);
  else users_.push_back(std::make_unique<AclUser>(std::move(u)));
  return "";
}

std::string Acl::load(const Config& cfg) {
  loaded_ = true;
  if (!cfg.requirepass.empty()) {
    AclUser& d = *users_[0];
    d.apply("resetpass");
    d.apply(">" + cfg.requirepass);
  }
  std::vector<std::string> seen;
  if (!cfg.aclfile.empty() && !cfg.users.empty())
    return "Configuring respite with users defined in the config file (user) and at the same "
           "time a users file (aclfile) is invalid: use one of the two";
  for (const std::string& line : cfg.users) {
    if (std::string err = add_user_line(line, seen, true); !err.empty()) {
      // The line's rules may hold a password: only its user's name is repeated.
      std::vector<std::string> w;
      split_args(line, w);
      return fmt::format("config file, user '{}': {}", w.empty() ? "" : w[0], err);
    }
  }
  if (cfg.aclfile.empty()) return "";
  std::ifstream in(cfg.aclfile);
  if (!in) return fmt::format("cannot open the users file '{}'", cfg.aclfile);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    size_t b = line.find_first_not_of(" \t\r\n");
    if (b == std::string::npos || line[b] == '#') continue;
    std::string_view body = std::string_view(line).substr(b);
    body = body.substr(0, body.find_last_not_of(" \t\r\n") + 1);  // as Redis's sdstrim
    if (body.substr(0, 5) != "user ") {
      // Redis's ACLLoadFromFile: every line must be a user declaration.
      return fmt::format("{}:{}: should start with user keyword", cfg.aclfile, lineno);
    }
    if (std::string err = add_user_line(body.substr(5), seen, false); !err.empty())
      return fmt::format("{}:{}: {}", cfg.aclfile, lineno, err);
  }
  return "";
}

bool Acl::runs_code(const CommandInfo& ci) {
  static constexpr std::string_view kCode[] = {"eval",     "evalsha",        "eval_ro",
                                               "evalsha_ro", "fcall",        "fcall_ro",
                                               "function|load", "function|restore"};
  return std::find(std::begin(kCode), std::end(kCode), ci.name) != std::end(kCode);
}

std::string_view Acl::sort_refusal(const AclUser& u, const CommandInfo& ci, const resp::Frame& f) {
  if (ci.name != "sort" && ci.name != "sort_ro") return {};
  if (u.reads_all_keys()) return {};
  // Redis 7.0's sortCommandGeneric walks the options in order and stops at the first error:
  // a syntax error before BY/GET is the upstream's to answer.
  const bool ro = ci.name == "sort_ro";
  for (size_t j = 2; j < f.argc(); ++j) {
    std::string_view a = f.arg(j);
    const size_t left = f.argc() - j - 1;
    long long n;
    if (ieq(a, "asc") || ieq(a, "desc") || ieq(a, "alpha")) continue;
    if (ieq(a, "limit") && left >= 2) {
      if (!parse_ll(f.arg(j + 1), n) || !parse_ll(f.arg(j + 2), n)) return {};
      j += 2;
    } else if (!ro && ieq(a, "store") && left >= 1) {
      ++j;
    } else if (ieq(a, "by") && left >= 1) {
      if (f.arg(j + 1).find('*') != std::string_view::npos)
        return "ERR BY option of SORT denied due to insufficient ACL permissions.";
      ++j;
    } else if (ieq(a, "get") && left >= 1) {
      return "ERR GET option of SORT denied due to insufficient ACL permissions.";
    } else {
      return {};
    }
  }
  return {};
}

AclVerdict Acl::check(const AclUser& u, const CommandInfo* ci, const resp::Frame& f,
                      std::vector<AclKey>& scratch) {
  if (ci == nullptr) {
    // A command the table lacks (a module's, a later Redis's): its keys and channels cannot be
    // found, so only a user with every key and channel may run it.
    const bool ok = u.may_run_unknown() && u.all_keys() && u.all_channels();
    return ok ? AclVerdict{} : AclVerdict{AclDenial::Command, 0};
  }
  // As Redis: commands any client may run before AUTH (AUTH, HELLO, QUIT, RESET) are never
  // refused by command rules.
  if (!ci->is(kNoAuth) && !u.may_run(*ci)) return {AclDenial::Command, 0};
  // Redis checks each redis.call of a script against the caller; respite cannot see inside a
  // script (the upstream runs it as respite's own user), so a restricted user runs none.
  if (runs_code(*ci) && !u.unrestricted()) return {AclDenial::Command, 0};
  if (ci->nspecs > 0) {
    scratch.clear();
    command_acl_keys(*ci, f, scratch);
    for (const AclKey& k : scratch)
      if (!u.may_access_key(f.arg(k.index), k.needs)) return {AclDenial::Key, k.index};
  }
  // Channels (Redis's getChannelsFromCommand): the PUBLISH and SUBSCRIBE families; UNSUBSCRIBE
  // is never refused.
  std::string_view n = ci->name;
  size_t first = 1, last = 0;
  bool pattern = false;
  if (n == "publish" || n == "spublish") {
    last = f.argc() > 1 ? 1 : 0;
  } else if (n == "subscribe" || n == "ssubscribe" || n == "psubscribe") {
    last = f.argc() - 1;
    pattern = n == "psubscribe";
  }
  for (size_t i = first; i <= last && i < f.argc(); ++i)
    if (!u.may_use_channel(f.arg(i), pattern)) return {AclDenial::Channel, static_cast<uint32_t>(i)};
  return {};
}

std::string Acl::denial_text(AclDenial why, const CommandInfo* ci, std::string_view name) {
  switch (why) {
    case AclDenial::Key:
      return "NOPERM this user has no permissions to access one of the keys used as arguments";
    case AclDenial::Channel:
      return "NOPERM this user has no permissions to access one of the channels used as "
             "arguments";
    default:
      return fmt::format("NOPERM this user has no permissions to run the '{}' command",
                         ci ? ci->name : std::string_view(lower(name)));
  }
}

void Acl::log(AclLogEntry e) {
  std::lock_guard<std::mutex> lk(log_mu_);
  // Redis's ACLLogMatchEntry: the same refusal within 60 s counts in the existing entry (it
  // looks at the newest 10).
  constexpr uint64_t kGroupMs = 60000;
  for (size_t i = 0; i < log_.size() && i < 10; ++i) {
    AclLogEntry& o = log_[i];
    if (o.reason == e.reason && o.in_multi == e.in_multi && o.object == e.object &&
        o.username == e.username &&
        static_cast<int64_t>(e.ctime_ms - o.ctime_ms) <= static_cast<int64_t>(kGroupMs)) {
      o.count++;
      o.ctime_ms = e.ctime_ms;
      o.client_info = std::move(e.client_info);
      return;
    }
  }
  log_.push_front(std::move(e));
  while (log_.size() > kLogMax) log_.pop_back();
}

std::vector<AclLogEntry> Acl::log_entries(size_t count) const {
  std::lock_guard<std::mutex> lk(log_mu_);
  return std::vector<AclLogEntry>(log_.begin(), log_.begin() + static_cast<long>(std::min(count, log_.size())));
}

void Acl::log_reset() {
  std::lock_guard<std::mutex> lk(log_mu_);
  log_.clear();
}

}  // namespace respite
