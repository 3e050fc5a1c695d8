// respite's users (Redis 7.0's ACL, without selectors): who a client is, what it may run and
// touch, and the log of what was refused. Built once at start from `requirepass`, the config
// file's `user` lines or --aclfile, and read-only afterwards, so every loop reads it without a
// lock; only the log is shared mutable state (a mutex).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/front/acl/acl_user.h"
#include "proxy/front/command_table.h"
#include "resp/request_parser.h"

namespace respite {

struct Config;

// Why a command was refused (Redis's ACL_DENIED_*).
enum class AclDenial : uint8_t { None, Command, Key, Channel, Auth };

struct AclVerdict {
  AclDenial why = AclDenial::None;
  uint32_t arg = 0;  // the key or channel refused (argv index)
};

// One ACL LOG entry, Redis 7.0's fields.
struct AclLogEntry {
  uint64_t count = 1;
  AclDenial reason = AclDenial::None;
  bool in_multi = false;  // context: "multi" or "toplevel"
  std::string object;     // the command's full name, the key, the channel, or "auth"
  std::string username;
  uint64_t ctime_ms = 0;  // the latest occurrence
  std::string client_info;
};

class Acl {
 public:
  Acl();  // the default user alone: on nopass ~* &* +@all (no authentication, as Redis)

  // Builds the users: the default user (`requirepass` gives it that password), then the config
  // file's `user` lines or the users file (not both, as Redis). "" or an error naming the line.
  std::string load(const Config& cfg);
  bool loaded() const { return loaded_; }

  const AclUser& default_user() const { return *users_.front(); }
  const AclUser* find(std::string_view name) const;
  // Users by name (ACL LIST, ACL USERS).
  std::vector<const AclUser*> sorted() const;
  // AUTH/HELLO AUTH: the user when it exists, is on and the password is one of its own (or it
  // is nopass); nullptr otherwise (WRONGPASS).
  const AclUser* authenticate(std::string_view name, std::string_view password) const;
  // Redis's authRequired: new clients must AUTH unless the default user is on and nopass.
  bool auth_required() const;
  // Protected mode's test (Redis 7.0's): the default user is nopass, whether on or off.
  bool no_passwords() const { return default_user().nopass(); }

  // Redis's ACLCheckAllPerm for one request (`ci` nullptr: a command the table lacks).
  // `scratch` is reused between calls.
  static AclVerdict check(const AclUser& u, const CommandInfo* ci, const resp::Frame& f,
                          std::vector<AclKey>& scratch);
  // EVAL, FCALL and the like, FUNCTION LOAD/RESTORE: commands that run (or register) code,
  // which respite cannot check; only an unrestricted user may run them.
  static bool runs_code(const CommandInfo& ci);
  // Redis 7.0's SORT/SORT_RO refusal of BY with a pattern and of GET for a user that cannot
  // read every key (its own error, not NOPERM, and not logged), or "" when allowed.
  static std::string_view sort_refusal(const AclUser& u, const CommandInfo& ci,
                                       const resp::Frame& f);
  // The NOPERM text for a refusal of `ci` ("set", "client|kill").
  static std::string denial_text(AclDenial why, const CommandInfo* ci, std::string_view name);

  // ACL LOG: newest first, at most kLogMax entries; like entries within 60 s are counted in one.
  static constexpr size_t kLogMax = 128;
  void log(AclLogEntry e);
  std::vector<AclLogEntry> log_entries(size_t count) const;
  void log_reset();

 private:
  // `quoting`: words as sdssplitargs splits them (config file lines), else on spaces alone
  // (users file lines, as Redis's ACLLoadFromFile).
  std::string add_user_line(std::string_view line, std::vector<std::string>& seen, bool quoting);
  std::vector<std::unique_ptr<AclUser>> users_;  // [0] is "default"
  bool loaded_ = false;
  mutable std::mutex log_mu_;
  std::deque<AclLogEntry> log_;
};

// Redis's sdssplitargs, enough for `user` lines and rename-command: words split on spaces,
// "double" (with \" \\ \n \t \xHH escapes) and 'single' quoted words. False on an unbalanced quote.
bool split_args(std::string_view line, std::vector<std::string>& out);

}  // namespace respite
