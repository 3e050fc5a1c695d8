// The one command table: arity, flags, ACL categories and key specs of every Redis 7.0 command,
// generated from a live redis-server's COMMAND output by scripts/gen-command-table into
// command_table.inc, and respite's own roles of each (kRoles in command_table.cc). One lookup
// decides dispatch, pinning, cache reads, invalidation and routing: after it no command name is
// compared as a string.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "resp/request_parser.h"

namespace respite {

// Redis's command flags (COMMAND INFO), one bit each.
enum CommandFlag : uint32_t {
  kWrite = 1u << 0,
  kReadonly = 1u << 1,
  kDenyoom = 1u << 2,
  kModule = 1u << 3,
  kAdmin = 1u << 4,
  kPubsub = 1u << 5,
  kNoscript = 1u << 6,
  kBlocking = 1u << 7,
  kLoading = 1u << 8,
  kStale = 1u << 9,
  kSkipMonitor = 1u << 10,
  kSkipSlowlog = 1u << 11,
  kAsking = 1u << 12,
  kFast = 1u << 13,
  kNoAuth = 1u << 14,
  kMayReplicate = 1u << 15,
  kNoMandatoryKeys = 1u << 16,
  kNoMulti = 1u << 17,
  kMovableKeys = 1u << 18,
  kAllowBusy = 1u << 19,
};

// Redis's ACL categories (COMMAND INFO), one bit each, in ACL CAT's order (proxy/front/acl).
enum AclCategory : uint32_t {
  kAclKeyspace = 1u << 0,
  kAclRead = 1u << 1,
  kAclWrite = 1u << 2,
  kAclSet = 1u << 3,
  kAclSortedset = 1u << 4,
  kAclList = 1u << 5,
  kAclHash = 1u << 6,
  kAclString = 1u << 7,
  kAclBitmap = 1u << 8,
  kAclHyperloglog = 1u << 9,
  kAclGeo = 1u << 10,
  kAclStream = 1u << 11,
  kAclPubsub = 1u << 12,
  kAclAdmin = 1u << 13,
  kAclFast = 1u << 14,
  kAclSlow = 1u << 15,
  kAclBlocking = 1u << 16,
  kAclDangerous = 1u << 17,
  kAclConnection = 1u << 18,
  kAclTransaction = 1u << 19,
  kAclScripting = 1u << 20,
};

// ---- respite's roles of a command (set in command_table.cc, kRoles) ----

// Which of respite's handlers answers the command itself (Server::dispatch). Quit, Reset, Sync
// and ReplconfAck act in any state (Auth and Acl too, refused in a transaction); Unsubscribe
// only for a client not subscribed and not in a transaction; the others only outside a
// transaction and a subscription (there the upstream connection holds the state, and the
// command is forwarded to it).
enum class Local : uint8_t {
  None,         // forwarded
  Quit,         // QUIT
  Reset,        // RESET
  Auth,         // AUTH: respite's requirepass
  Hello,        // HELLO (forwarded when a pinned client switches protocol)
  Ping,         // PING
  Echo,         // ECHO
  Select,       // SELECT: the client's db is respite's (forwarded too when pinned)
  Unsubscribe,  // [P|S]UNSUBSCRIBE of a client subscribed to nothing (one reply per argument)
  Sync,         // SYNC, PSYNC: refused (respite is no master)
  ReplconfAck,  // REPLCONF ACK/GETACK: answered by nothing (other REPLCONFs are forwarded)
  Proxy,        // PROXY, PROXY <unknown>: arity or unknown-subcommand error
  ProxyInfo,
  ProxyConfig,
  ProxyHelp,
  ProxySlowlog,
  ProxyDebug,
  ProxyCache,
  ClientId,     // CLIENT <sub> that respite answers (client_command.cc); the other CLIENT
  ClientGetname,  // subcommands are forwarded
  ClientSetname,
  ClientSetinfo,  // from Redis 7.2 (forwarded to an older upstream, which refuses it)
  ClientInfo,
  ClientList,
  ClientKill,
  ClientUnblock,
  ClientNoEvict,
  ClientNoTouch,  // refused for an upstream before 7.2, forwarded (and pinned) from 7.2
  ClientReply,
  Acl,          // ACL <sub>: respite's users (front/acl/acl_command.cc), in any state: refused
                // in a transaction, answered or refused while subscribed, never forwarded
  Cluster,      // CLUSTER in cluster mode: respite as a one-node cluster (cluster_command.cc);
                // forwarded otherwise. Its subcommands without a row of their own share it.
};

// Which upstream connection a forwarded command needs, and what it does to the client's state
// (Server::forward).
enum class Pin : uint8_t {
  None,         // the client's connection: shared, or the pinned one if it has one
  Multi,        // MULTI: pins; a transaction starts
  Exec,         // EXEC: the transaction ends; its reply carries the queued writes
  Discard,      // DISCARD: the transaction ends
  Watch,        // WATCH: pins; the client is watching
  Unwatch,      // UNWATCH
  Blocking,     // may block upstream: pins, and the reply has no deadline (every command Redis
                // flags blocking, and WAIT)
  BlockOption,  // XREAD, XREADGROUP: Blocking with a BLOCK argument, None without
  Stream,       // SUBSCRIBE family, MONITOR: pins; replies become a stream
  Sticky,       // changes the connection upstream for good (READONLY, READWRITE, CLIENT
                // TRACKING/CACHING/NO-EVICT/NO-TOUCH): pins
  Aside,        // SCRIPT KILL, FUNCTION KILL: a connection of its own in db 0 (the shared one
                // is stuck behind the script), closed after the reply
};

// How many replies the command gets.
enum class Reply : uint8_t {
  One,          // one reply (every command but the following)
  PerArgument,  // one per channel/pattern (SUBSCRIBE and UNSUBSCRIBE families)
  Stream,       // a stream after the first reply (MONITOR; SYNC/PSYNC's replication stream)
};

// What a command's writes invalidate in the cache (Server::invalidate_before_write).
enum class Flush : uint8_t {
  Keys,                // the keys of its write key specs (none for a read)
  Db,                  // the client's database (FLUSHDB)
  All,                 // every database (FLUSHALL, SWAPDB)
  UnknownKeys,         // the declared keys, and keys respite cannot know (a script's): the reply
                       // waits for the tracking link (EVAL, EVALSHA, FCALL)
  UnknownKeysIfStore,  // SORT: as UnknownKeys when a STORE argument is given
};

// Whether the cache answers the command (CachePath::get / mget).
enum class Cache : uint8_t { None, Get, Mget };

struct CommandRoles {
  Local local = Local::None;
  Pin pin = Pin::None;
  Reply reply = Reply::One;
  Flush flush = Flush::Keys;
  Cache cache = Cache::None;
  bool keys_any_db = false;  // a written key may be in another db than the client's (MOVE, COPY)
};

// One key spec as Redis 7 describes it: where to start looking (begin_search) and how to find
// keys from there (find_keys).
struct KeySpec {
  enum class Begin : uint8_t { Unknown, Index, Keyword };
  enum class Find : uint8_t { Unknown, Range, Keynum };
  Begin begin = Begin::Unknown;
  int16_t index = 0;              // Begin::Index: argv position (negative counts from the end)
  std::string_view keyword;       // Begin::Keyword: look for this argument...
  int16_t start_from = 0;         // ...starting here (negative: search backwards from the end)
  Find find = Find::Unknown;
  int16_t lastkey = 0;            // Range: last key relative to begin (-1 = to the end)
  int16_t keystep = 1;            // Range / Keynum: step between keys
  int16_t limit = 0;              // Range with lastkey -1: 0 = all, n = 1/n of the remaining args
  int16_t keynumidx = 0;          // Keynum: where the key count is, relative to begin
  int16_t firstkey = 0;           // Keynum: first key relative to begin
  bool write = false;             // the spec's keys are written (RW/OW/RM/INSERT/DELETE/UPDATE)
  uint8_t acl = 0;                // kKeyNeedsRead (access) | kKeyNeedsWrite (insert/update/delete)
};

struct CommandInfo {
  std::string_view name;          // lowercase; subcommands are "container|sub", e.g. "client|kill"
  int arity = 0;                  // Redis's arity: n exact, -n at least n
  uint32_t flags = 0;             // CommandFlag bits
  uint32_t acl_categories = 0;    // AclCategory bits
  const KeySpec* specs = nullptr;
  uint8_t nspecs = 0;
  bool has_subcommands = false;   // "client", "config", ...: look up the subcommand
  CommandRoles role;              // respite's (command_table.cc, kRoles)

  constexpr bool is(CommandFlag f) const { return (flags & f) != 0; }
};

// Case-insensitive lookup by name; for a container command give the subcommand too (it is then
// looked up as "container|sub"; unknown subcommands return the container entry). nullptr if the
// command is unknown.
const CommandInfo* lookup_command(std::string_view name, std::string_view sub = {});

// Convenience: looks up argv[0] (and argv[1] for containers).
const CommandInfo* lookup_command(const resp::Frame& f);

// Appends the argv indices of the keys of request `f` (Redis's getKeysUsingKeySpecs). Indices out
// of range are skipped: a malformed request yields fewer keys, never a crash. `write_only` keeps
// only keys of write specs.
void command_keys(const CommandInfo& cmd, const resp::Frame& f, std::vector<uint32_t>& out,
                  bool write_only = false);

// What an ACL key pattern must allow for a key of a spec (KeySpec::acl; Redis's
// ACLSelectorCheckKey): %R~ patterns give read, %W~ write, ~ both.
inline constexpr uint8_t kKeyNeedsRead = 1;
inline constexpr uint8_t kKeyNeedsWrite = 2;
struct AclKey {
  uint32_t index;  // argv position
  uint8_t needs;   // kKeyNeedsRead | kKeyNeedsWrite
};
// The keys of request `f` with the permissions each needs, as Redis's ACL check finds them
// (key specs; SORT's STORE and MIGRATE's keys by walking their options). Out-of-range positions
// are skipped, as in command_keys.
void command_acl_keys(const CommandInfo& cmd, const resp::Frame& f, std::vector<AclKey>& out);

// The entry's position in the table (command_at(command_index(c)) == c).
size_t command_index(const CommandInfo& cmd);

// Arity check as Redis does it: false -> "-ERR wrong number of arguments for '%s' command".
bool arity_ok(const CommandInfo& cmd, size_t argc);

// Number of entries (for tests).
size_t command_count();
const CommandInfo& command_at(size_t i);  // i < command_count(), in name order

}  // namespace respite
