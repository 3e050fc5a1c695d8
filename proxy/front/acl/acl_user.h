// One ACL user and Redis 7.0's rule syntax for it (ACL SETUSER / `user` lines): what it may run,
// which keys and channels it may touch, and its passwords (SHA-256 digests only).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace respite {

struct CommandInfo;

// Redis's ACL categories in ACL CAT's order: bit i of CommandInfo::acl_categories is
// kAclCategoryNames[i].
inline constexpr std::string_view kAclCategoryNames[] = {
    "keyspace", "read",   "write",     "set",     "sortedset", "list",      "hash",
    "string",   "bitmap", "hyperloglog", "geo",   "stream",    "pubsub",    "admin",
    "fast",     "slow",   "blocking",  "dangerous", "connection", "transaction", "scripting"};
// The bit of a category name (case-insensitive), -1 if there is none.
int acl_category_bit(std::string_view name);

struct AclKeyPattern {
  std::string pattern;
  uint8_t perms;  // kKeyNeedsRead | kKeyNeedsWrite (command_table.h): %R~, %W~, ~ is both
};

class AclUser {
 public:
  // Redis's new user: off, no password (so nobody can log in as it), no keys, no channels,
  // no commands.
  explicit AclUser(std::string name);

  // Applies one rule as Redis's ACLSetUser does; "" or Redis's error text for it (ACL SETUSER's
  // "Syntax error", "Unknown command or category name in ACL", ...). A failed rule leaves the
  // user as it was.
  std::string apply(std::string_view rule);

  // Redis's ACL LIST line: "user <name> on|off [nopass] #<sha256>... <keys> <channels>
  // <commands>". Passwords appear only as their digests.
  std::string describe() const;
  // ACL GETUSER's parts: the flags, the keys, the channels and the command rules as Redis
  // shows them.
  std::vector<std::string_view> flags() const;
  std::string describe_keys() const;
  std::string describe_channels() const;
  std::string describe_commands() const;

  // True if the password's digest is one of the user's (constant time per digest), or the user
  // is nopass. Says nothing of on/off.
  bool password_ok(std::string_view password) const;

  // The command (a table entry: a subcommand's own entry, or the container's for a subcommand
  // the table lacks) is allowed.
  bool may_run(const CommandInfo& cmd) const;
  bool may_run_unknown() const { return allcommands_; }  // Redis's "future commands" bit
  // key/channel checks (Redis's ACLSelectorCheckKey / ACLCheckChannelAgainstList).
  bool may_access_key(std::string_view key, uint8_t needs) const;
  bool may_use_channel(std::string_view channel, bool is_pattern) const;

  // Every command, key and channel: dispatch skips the checks for such a user.
  bool unrestricted() const;
  bool all_keys() const { return allkeys_; }
  bool all_channels() const { return allchannels_; }
  // Redis's ACLSelectorHasUnrestrictedKeyAccess for reads: allkeys, or a `*` pattern that
  // grants read (`%R~*`). SORT's BY and GET patterns need it.
  bool reads_all_keys() const;

  const std::string& name() const { return name_; }
  bool enabled() const { return enabled_; }
  bool nopass() const { return nopass_; }
  bool has_passwords() const { return !passwords_.empty(); }
  const std::vector<std::string>& passwords() const { return passwords_; }

 private:
  void set_all_commands(bool allow);
  void set_command(size_t index, bool allow);  // and a container's subcommands
  void set_category(int bit, bool allow);
  bool bit(size_t index) const { return (cmd_bits_[index / 64] >> (index % 64)) & 1; }

  std::string name_;
  bool enabled_ = false;
  bool nopass_ = false;
  std::vector<std::string> passwords_;  // lowercase hex SHA-256 digests, in the order given
  bool allkeys_ = false;
  std::vector<AclKeyPattern> keys_;
  bool allchannels_ = false;
  std::vector<std::string> channels_;
  bool allcommands_ = false;  // +@all was the last word on commands (future commands too)
  std::vector<uint64_t> cmd_bits_;  // by command_index()
  uint8_t sanitize_ = 0;  // 1: sanitize-payload, 2: skip-sanitize-payload (shown only)
};

}  // namespace respite
