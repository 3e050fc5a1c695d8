// Redis 7.0's ACL rules (acl.c: ACLSetUser, ACLSetSelector, ACLDescribeUser), without selectors
// and first-argument rules.
#include "proxy/front/acl/acl_user.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "proxy/front/acl/glob.h"
#include "proxy/front/acl/sha256.h"
#include "proxy/front/command_table.h"
#include "proxy/ops/text.h"

namespace respite {

namespace {

constexpr std::string_view kSyntax = "Syntax error";
constexpr std::string_view kUnknownName = "Unknown command or category name in ACL";
constexpr std::string_view kKeysAfterAll =
    "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have "
    "any effect. Try 'resetkeys' to start with an empty list of patterns";
constexpr std::string_view kChannelsAfterAll =
    "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not "
    "have any effect. Try 'resetchannels' to start with an empty list of channels";
constexpr std::string_view kNoSuchPassword =
    "The password you are trying to remove from the user does not exist";
constexpr std::string_view kBadHash =
    "The password hash must be exactly 64 characters and contain only lowercase hexadecimal "
    "characters";

bool valid_hash(std::string_view h) {
  if (h.size() != 64) return false;
  for (char c : h)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// Whether table entry `sub` is a subcommand of container `c` ("client|kill" of "client").
bool is_sub_of(std::string_view sub, std::string_view c) {
  return sub.size() > c.size() + 1 && sub.compare(0, c.size(), c) == 0 && sub[c.size()] == '|';
}

// Whether a table entry is one of Redis 7.0's own: respite's PROXY family and the subcommands of
// later Redis versions (the generator's EXTRA_ENTRIES) would tip ACL LIST's choice of categories
// away from Redis's.
bool in_redis_70(std::string_view n) {
  return n != "proxy" && n.substr(0, 6) != "proxy|" && n != "client|setinfo" &&
         n != "client|no-touch";
}

}  // namespace

int acl_category_bit(std::string_view name) {
  for (size_t i = 0; i < std::size(kAclCategoryNames); ++i)
    if (ieq(name, kAclCategoryNames[i])) return static_cast<int>(i);
  return -1;
}

AclUser::AclUser(std::string name) : name_(std::move(name)), cmd_bits_((command_count() + 63) / 64) {}

void AclUser::set_all_commands(bool allow) {
  std::fill(cmd_bits_.begin(), cmd_bits_.end(), allow ? ~uint64_t{0} : 0);
  allcommands_ = allow;
}

void AclUser::set_command(size_t index, bool allow) {
  auto set = [&](size_t i) {
    if (allow) cmd_bits_[i / 64] |= uint64_t{1} << (i % 64);
    else cmd_bits_[i / 64] &= ~(uint64_t{1} << (i % 64));
  };
  set(index);
  const CommandInfo& c = command_at(index);
  if (!c.has_subcommands) return;
  // The table is sorted by name: a container's subcommands follow it.
  for (size_t i = index + 1; i < command_count() && is_sub_of(command_at(i).name, c.name); ++i)
    set(i);
}

void AclUser::set_category(int b, bool allow) {
  const uint32_t mask = uint32_t{1} << b;
  for (size_t i = 0; i < command_count(); ++i)
    if (command_at(i).acl_categories & mask) set_command(i, allow);
}

std::string AclUser::apply(std::string_view op) {
  if (ieq(op, "on")) {
    enabled_ = true;
  } else if (ieq(op, "off")) {
    enabled_ = false;
  } else if (ieq(op, "nopass")) {
    nopass_ = true;
    passwords_.clear();
  } else if (ieq(op, "resetpass")) {
    nopass_ = false;
    passwords_.clear();
  } else if (!op.empty() && (op[0] == '>' || op[0] == '#' || op[0] == '<' || op[0] == '!')) {
    std::string digest;
    if (op[0] == '>' || op[0] == '<') {
      digest = sha256_hex(op.substr(1));
    } else {
      if (!valid_hash(op.substr(1))) return std::string(kBadHash);
      digest = std::string(op.substr(1));
    }
    auto it = std::find(passwords_.begin(), passwords_.end(), digest);
    if (op[0] == '>' || op[0] == '#') {
      if (it == passwords_.end()) passwords_.push_back(digest);
    } else {
      if (it == passwords_.end()) return std::string(kNoSuchPassword);
      passwords_.erase(it);
    }
    nopass_ = false;
  } else if (ieq(op, "allkeys") || op == "~*") {
    allkeys_ = true;
    keys_.assign(1, AclKeyPattern{"*", kKeyNeedsRead | kKeyNeedsWrite});
  } else if (ieq(op, "resetkeys")) {
    allkeys_ = false;
    keys_.clear();
  } else if (!op.empty() && (op[0] == '~' || op[0] == '%')) {
    uint8_t perms = 0;
    size_t at = 0;
    if (op[0] == '%') {
      for (at = 1; at < op.size() && op[at] != '~'; ++at) {
        char c = ascii_lower(op[at]);
        // As Redis: each of R and W at most once (%RR~x is a syntax error).
        if (c == 'r' && !(perms & kKeyNeedsRead)) perms |= kKeyNeedsRead;
        else if (c == 'w' && !(perms & kKeyNeedsWrite)) perms |= kKeyNeedsWrite;
        else return std::string(kSyntax);
      }
      if (perms == 0 || at == op.size()) return std::string(kSyntax);
    } else {
      perms = kKeyNeedsRead | kKeyNeedsWrite;
    }
    if (allkeys_) return std::string(kKeysAfterAll);
    std::string pattern(op.substr(at + 1));
    auto it = std::find_if(keys_.begin(), keys_.end(),
                           [&](const AclKeyPattern& k) { return k.pattern == pattern; });
    if (it != keys_.end()) it->perms |= perms;  // as Redis: one entry per pattern
    else keys_.push_back({std::move(pattern), perms});
  } else if (ieq(op, "allchannels") || op == "&*") {
    allchannels_ = true;
    channels_.clear();
  } else if (ieq(op, "resetchannels")) {
    allchannels_ = false;
    channels_.clear();
  } else if (!op.empty() && op[0] == '&') {
    if (allchannels_) return std::string(kChannelsAfterAll);
    std::string pattern(op.substr(1));
    if (std::find(channels_.begin(), channels_.end(), pattern) == channels_.end())
      channels_.push_back(std::move(pattern));
  } else if (ieq(op, "allcommands") || ieq(op, "+@all")) {
    set_all_commands(true);
  } else if (ieq(op, "nocommands") || ieq(op, "-@all")) {
    set_all_commands(false);
  } else if (op.size() >= 2 && (op[0] == '+' || op[0] == '-')) {
    const bool allow = op[0] == '+';
    std::string_view name = op.substr(1);
    if (name[0] == '@') {
      int b = acl_category_bit(name.substr(1));
      if (b < 0) return std::string(kUnknownName);
      set_category(b, allow);
    } else {
      // "container|sub" names a subcommand; Redis 7.0's first-argument rules (+select|0) are
      // not supported and refused as unknown.
      size_t bar = name.find('|');
      const CommandInfo* ci = bar == std::string_view::npos
                                  ? lookup_command(name)
                                  : lookup_command(name.substr(0, bar), name.substr(bar + 1));
      if (ci == nullptr) return std::string(kUnknownName);
      if (bar != std::string_view::npos && ci->name.find('|') == std::string_view::npos)
        return std::string(kUnknownName);
      set_command(command_index(*ci), allow);
    }
  } else if (ieq(op, "sanitize-payload") || ieq(op, "skip-sanitize-payload")) {
    // Only shown: respite runs no RESTORE of its own (the upstream checks payloads).
    sanitize_ = ieq(op, "sanitize-payload") ? 1 : 2;
  } else if (ieq(op, "reset")) {
    // Redis 7.0 with acl-pubsub-default resetchannels (its default).
    nopass_ = false;
    passwords_.clear();
    allkeys_ = false;
    keys_.clear();
    allchannels_ = false;
    channels_.clear();
    enabled_ = false;
    sanitize_ = 1;
    set_all_commands(false);
  } else {
    return std::string(kSyntax);
  }
  return "";
}

bool AclUser::password_ok(std::string_view password) const {
  if (nopass_) return true;
  const std::string digest = sha256_hex(password);
  bool ok = false;
  for (const std::string& p : passwords_) ok |= secret_equal(digest, p);  // no early exit
  return ok;
}

bool AclUser::may_run(const CommandInfo& cmd) const {
  return bit(command_index(cmd));
}

bool AclUser::may_access_key(std::string_view key, uint8_t needs) const {
  if (allkeys_) return true;
  for (const AclKeyPattern& k : keys_) {
    if ((k.perms & needs) != needs) continue;
    if (glob_match(k.pattern, key)) return true;
  }
  return false;
}

bool AclUser::may_use_channel(std::string_view channel, bool is_pattern) const {
  if (allchannels_) return true;
  for (const std::string& c : channels_) {
    // A PSUBSCRIBE pattern must be one of the user's patterns literally (Redis: a pattern that
    // matches the allowed ones could still match channels they do not).
    if (is_pattern ? c == channel : glob_match(c, channel)) return true;
  }
  return false;
}

bool AclUser::reads_all_keys() const {
  if (allkeys_) return true;
  for (const AclKeyPattern& k : keys_)
    if (k.pattern == "*" && (k.perms & kKeyNeedsRead)) return true;
  return false;
}

bool AclUser::unrestricted() const {
  if (!allcommands_ || !allkeys_ || !allchannels_) return false;
  for (size_t i = 0; i < command_count(); ++i)
    if (!bit(i)) return false;
  return true;
}

std::vector<std::string_view> AclUser::flags() const {
  std::vector<std::string_view> f;
  f.push_back(enabled_ ? "on" : "off");
  if (nopass_) f.push_back("nopass");
  if (sanitize_ == 2) f.push_back("skip-sanitize-payload");
  if (sanitize_ == 1) f.push_back("sanitize-payload");
  return f;
}

std::string AclUser::describe_keys() const {
  std::string out;
  for (const AclKeyPattern& k : keys_) {
    if (!out.empty()) out.push_back(' ');
    if (k.perms == kKeyNeedsRead) out += "%R";
    else if (k.perms == kKeyNeedsWrite) out += "%W";
    out += "~" + k.pattern;
  }
  return out;
}

std::string AclUser::describe_channels() const {
  if (allchannels_) return "&*";
  std::string out;
  for (const std::string& c : channels_) {
    if (!out.empty()) out.push_back(' ');
    out += "&" + c;
  }
  return out;
}

// Redis 7.0's ACLDescribeSelectorCommandRules: the rules are derived from the bits, not kept
// as given. From +@all (if the user may run future commands) or -@all, the category that best
// fits what is left (more commands alike than different, the fewest different) is applied, as
// long as one fits; then single commands, subcommands after their container, fix the rest.
// Redis visits commands in its dict's order, respite in name order: the same rules, possibly
// listed in another order.
std::string AclUser::describe_commands() const {
  const bool additive = !allcommands_;
  AclUser fake("");
  fake.set_all_commands(!additive);
  AclUser rest("");  // the user's bits, minus the categories already described
  rest.cmd_bits_ = cmd_bits_;
  std::string out = additive ? "-@all" : "+@all";
  bool applied[std::size(kAclCategoryNames)] = {};
  while (true) {
    int best = -1;
    size_t mindiff = SIZE_MAX, maxsame = 0;
    for (size_t b = 0; b < std::size(kAclCategoryNames); ++b) {
      if (applied[b]) continue;
      const uint32_t mask = uint32_t{1} << b;
      size_t on = 0, off = 0;
      for (size_t i = 0; i < command_count(); ++i)
        if ((command_at(i).acl_categories & mask) && in_redis_70(command_at(i).name))
          (rest.bit(i) ? on : off)++;
      const size_t diff = additive ? off : on, same = additive ? on : off;
      if (same > diff && (diff < mindiff || (diff == mindiff && same > maxsame))) {
        best = static_cast<int>(b);
        mindiff = diff;
        maxsame = same;
      }
    }
    if (best < 0) break;
    fake.set_category(best, additive);
    rest.set_category(best, !additive);
    applied[best] = true;
    out += fmt::format(" {}@{}", additive ? '+' : '-', kAclCategoryNames[best]);
  }
  for (size_t i = 0; i < command_count(); ++i) {
    if (bit(i) == fake.bit(i)) continue;
    out += fmt::format(" {}{}", bit(i) ? '+' : '-', command_at(i).name);
    fake.set_command(i, bit(i));
  }
  return out;
}

std::string AclUser::describe() const {
  std::string out = fmt::format("user {}", name_);
  for (std::string_view f : flags()) out += fmt::format(" {}", f);
  for (const std::string& p : passwords_) out += fmt::format(" #{}", p);
  if (std::string k = describe_keys(); !k.empty()) out += " " + k;
  if (allchannels_) out += " &*";
  else out += " resetchannels" + (channels_.empty() ? std::string() : " " + describe_channels());
  out += " " + describe_commands();
  return out;
}

}  // namespace respite
