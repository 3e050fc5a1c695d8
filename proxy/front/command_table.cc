// Lookup and key extraction over the generated table in command_table.inc.
//
// The table is a constexpr array sorted by name; lookup folds the name to lowercase into a stack
// buffer and binary-searches it, so a lookup never allocates. Key extraction follows Redis 7's
// getKeysUsingKeySpecs, with one deliberate difference: a spec that does not fit the request
// (bad numkeys, keyword missing, positions beyond argv) is skipped on its own instead of voiding
// the other specs. Redis rejects such a request anyway, and for invalidation returning the keys
// the valid specs still find is the safe side.
#include "proxy/front/command_table.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>

#include "proxy/ops/text.h"

namespace respite {
namespace {

// Builders for the entries of command_table.inc (the generator writes calls to these).
// A spec's mode: kSpecWrite (its keys are modified: invalidation) and the permissions an ACL
// key check asks of its keys (Redis's ACLSelectorCheckKey: access needs read, insert, update
// and delete need write; a spec with neither, like EXISTS's, passes any pattern that matches).
constexpr uint8_t kSpecRead = 0;
constexpr uint8_t kSpecWrite = 1;
constexpr uint8_t kSpecAclRead = 2;
constexpr uint8_t kSpecAclWrite = 4;

constexpr KeySpec index_begin(int16_t index, uint8_t mode) {
  KeySpec s;
  s.begin = KeySpec::Begin::Index;
  s.index = index;
  s.write = (mode & kSpecWrite) != 0;
  s.acl = static_cast<uint8_t>(mode >> 1);
  return s;
}

constexpr KeySpec keyword_begin(std::string_view keyword, int16_t start_from, uint8_t mode) {
  KeySpec s;
  s.begin = KeySpec::Begin::Keyword;
  s.keyword = keyword;
  s.start_from = start_from;
  s.write = (mode & kSpecWrite) != 0;
  s.acl = static_cast<uint8_t>(mode >> 1);
  return s;
}

constexpr KeySpec with_range(KeySpec s, int16_t lastkey, int16_t keystep, int16_t limit) {
  s.find = KeySpec::Find::Range;
  s.lastkey = lastkey;
  s.keystep = keystep;
  s.limit = limit;
  return s;
}

constexpr KeySpec with_keynum(KeySpec s, int16_t keynumidx, int16_t firstkey, int16_t keystep) {
  s.find = KeySpec::Find::Keynum;
  s.keynumidx = keynumidx;
  s.firstkey = firstkey;
  s.keystep = keystep;
  return s;
}

constexpr KeySpec index_range(int16_t index, int16_t lastkey, int16_t keystep, int16_t limit,
                              uint8_t mode) {
  return with_range(index_begin(index, mode), lastkey, keystep, limit);
}

constexpr KeySpec index_keynum(int16_t index, int16_t keynumidx, int16_t firstkey,
                               int16_t keystep, uint8_t mode) {
  return with_keynum(index_begin(index, mode), keynumidx, firstkey, keystep);
}

constexpr KeySpec keyword_range(std::string_view keyword, int16_t start_from, int16_t lastkey,
                                int16_t keystep, int16_t limit, uint8_t mode) {
  return with_range(keyword_begin(keyword, start_from, mode), lastkey, keystep, limit);
}

constexpr KeySpec keyword_keynum(std::string_view keyword, int16_t start_from,
                                 int16_t keynumidx, int16_t firstkey, int16_t keystep,
                                 uint8_t mode) {
  return with_keynum(keyword_begin(keyword, start_from, mode), keynumidx, firstkey, keystep);
}

// Begin or find type "unknown": the keys cannot be found from the spec (SORT's BY/GET/STORE).
constexpr KeySpec unknown_spec(uint8_t mode) {
  KeySpec s;
  s.write = (mode & kSpecWrite) != 0;
  s.acl = static_cast<uint8_t>(mode >> 1);
  return s;
}

#include "proxy/front/command_table.inc"

// --- respite's roles ---------------------------------------------------------------------------
//
// The one place that says what respite does with a command beyond forwarding it (the enums in
// command_table.h explain each role). A command without a row is forwarded as is, pinned if Redis
// flags it blocking (Pin::Blocking), and invalidates the keys of its write key specs.
struct RoleRow {
  std::string_view name;
  CommandRoles role;
};

constexpr RoleRow kRoles[] = {
    // Connection-level commands respite answers itself (Server::dispatch).
    {"quit", {.local = Local::Quit}},                  // OK, then close after the replies owed
    {"reset", {.local = Local::Reset}},                // drops the pinned connection, state reset
    {"auth", {.local = Local::Auth}},                  // against respite's requirepass
    {"hello", {.local = Local::Hello}},                 // respite's protocol and identity
    {"ping", {.local = Local::Ping}},
    {"echo", {.local = Local::Echo}},
    {"select", {.local = Local::Select}},              // the client's db is respite's
    {"sync", {.local = Local::Sync, .reply = Reply::Stream}},   // refused: no replication
    {"psync", {.local = Local::Sync, .reply = Reply::Stream}},  // refused: no replication
    {"replconf", {.local = Local::ReplconfAck}},       // ACK/GETACK get no reply, as in Redis
    // PROXY: respite's own (proxy_command).
    {"acl", {.local = Local::Acl}},                    // respite's users, every subcommand
    {"proxy", {.local = Local::Proxy}},                // no or an unknown subcommand: an error
    {"proxy|cache", {.local = Local::ProxyCache}},     // CACHE FLUSH
    {"proxy|config", {.local = Local::ProxyConfig}},   // CONFIG GET/SET/REWRITE
    {"proxy|debug", {.local = Local::ProxyDebug}},     // DEBUG ALLOCATIONS
    {"proxy|help", {.local = Local::ProxyHelp}},
    {"proxy|info", {.local = Local::ProxyInfo}},
    {"proxy|slowlog", {.local = Local::ProxySlowlog}},
    // CLIENT: the caller's identity is respite's; LIST/KILL/UNBLOCK are about respite's clients
    // (client_command). The CLIENT subcommands without a Local are forwarded.
    {"client|caching", {.pin = Pin::Sticky}},          // tracking state of the connection
    {"client|getname", {.local = Local::ClientGetname}},
    {"client|id", {.local = Local::ClientId}},
    {"client|info", {.local = Local::ClientInfo}},
    {"client|kill", {.local = Local::ClientKill}},
    {"client|list", {.local = Local::ClientList}},
    {"client|no-evict", {.local = Local::ClientNoEvict, .pin = Pin::Sticky}},  // pinned if forwarded
    {"client|no-touch", {.local = Local::ClientNoTouch, .pin = Pin::Sticky}},  // forwarded from 7.2
    {"client|reply", {.local = Local::ClientReply}},
    {"client|setinfo", {.local = Local::ClientSetinfo}},
    {"client|setname", {.local = Local::ClientSetname}},
    {"client|tracking", {.pin = Pin::Sticky}},         // tracking state of the connection
    {"client|unblock", {.local = Local::ClientUnblock}},
    // CLUSTER: in cluster mode respite answers as a one-node cluster (cluster_command); every
    // subcommand without a row here shares the container's role (with_roles). The slot's keys
    // are the cluster's: forwarded.
    {"cluster", {.local = Local::Cluster}},
    {"cluster|countkeysinslot", {}},
    {"cluster|getkeysinslot", {}},
    // Pub/sub and MONITOR: more than one reply, so never on a shared connection.
    {"subscribe", {.pin = Pin::Stream, .reply = Reply::PerArgument}},
    {"psubscribe", {.pin = Pin::Stream, .reply = Reply::PerArgument}},
    {"ssubscribe", {.pin = Pin::Stream, .reply = Reply::PerArgument}},
    {"unsubscribe", {.local = Local::Unsubscribe, .reply = Reply::PerArgument}},
    {"punsubscribe", {.local = Local::Unsubscribe, .reply = Reply::PerArgument}},
    {"sunsubscribe", {.local = Local::Unsubscribe, .reply = Reply::PerArgument}},
    {"monitor", {.pin = Pin::Stream, .reply = Reply::Stream}},
    // Transactions: the state lives on the pinned connection.
    {"multi", {.pin = Pin::Multi}},
    {"exec", {.pin = Pin::Exec}},
    {"discard", {.pin = Pin::Discard}},
    {"watch", {.pin = Pin::Watch}},
    {"unwatch", {.pin = Pin::Unwatch}},
    // Other connection state upstream, and blocking without Redis's blocking flag.
    {"readonly", {.pin = Pin::Sticky}},
    {"readwrite", {.pin = Pin::Sticky}},
    {"wait", {.pin = Pin::Blocking}},                  // waits for replicas
    {"xread", {.pin = Pin::BlockOption}},              // blocks only with BLOCK
    {"xreadgroup", {.pin = Pin::BlockOption}},         // blocks only with BLOCK
    {"script|kill", {.pin = Pin::Aside}},              // while a script holds the shared connection
    {"function|kill", {.pin = Pin::Aside}},            // while a function holds it
    // The cache.
    {"get", {.cache = Cache::Get}},
    {"mget", {.cache = Cache::Mget}},
    // Invalidation beyond the write key specs.
    {"flushdb", {.flush = Flush::Db}},
    {"flushall", {.flush = Flush::All}},
    {"swapdb", {.flush = Flush::All}},                 // two whole dbs change places
    {"eval", {.flush = Flush::UnknownKeys}},           // a script may write undeclared keys
    {"evalsha", {.flush = Flush::UnknownKeys}},
    {"fcall", {.flush = Flush::UnknownKeys}},
    {"sort", {.flush = Flush::UnknownKeysIfStore}},    // STORE's key: see sort_store_keys
    {"move", {.keys_any_db = true}},                   // writes the key in the target db too
    {"copy", {.keys_any_db = true}},                   // COPY ... DB n: the copy is in db n
};

constexpr size_t kNotFound = std::size(kGenerated);

constexpr size_t generated_index(std::string_view lower) {
  const CommandInfo* it =
      std::lower_bound(std::begin(kGenerated), std::end(kGenerated), lower,
                       [](const CommandInfo& c, std::string_view n) { return c.name < n; });
  return (it != std::end(kGenerated) && it->name == lower)
             ? static_cast<size_t>(it - std::begin(kGenerated))
             : kNotFound;
}

constexpr bool role_rows_name_commands() {
  for (size_t i = 0; i < std::size(kRoles); ++i) {
    if (generated_index(kRoles[i].name) == kNotFound) return false;
    for (size_t j = 0; j < i; ++j)
      if (kRoles[j].name == kRoles[i].name) return false;
  }
  return true;
}
static_assert(role_rows_name_commands(),
              "kRoles: a row names no command of the table, or a command twice");

constexpr bool has_row(std::string_view name) {
  for (const RoleRow& r : kRoles)
    if (r.name == name) return true;
  return false;
}

// The generated entries with their roles, built at compile time: a role is a byte of the entry
// the lookup returns.
constexpr std::array<CommandInfo, std::size(kGenerated)> with_roles() {
  std::array<CommandInfo, std::size(kGenerated)> t{};
  for (size_t i = 0; i < t.size(); ++i) t[i] = kGenerated[i];
  for (const RoleRow& r : kRoles) t[generated_index(r.name)].role = r.role;
  // A subcommand without a row takes its container's Local, when the container has one.
  for (CommandInfo& c : t) {
    size_t bar = c.name.find('|');
    if (bar == std::string_view::npos || has_row(c.name)) continue;
    c.role.local = t[generated_index(c.name.substr(0, bar))].role.local;
  }
  for (CommandInfo& c : t)
    if (c.is(kBlocking) && c.role.pin == Pin::None) c.role.pin = Pin::Blocking;
  return t;
}

constexpr std::array<CommandInfo, std::size(kGenerated)> kCommands = with_roles();

constexpr const CommandInfo* kBegin = kCommands.data();
constexpr const CommandInfo* kEnd = kCommands.data() + kCommands.size();

// --- compile-time checks of the generated data ------------------------------------------------

constexpr bool table_is_well_formed() {
  for (const CommandInfo* c = kBegin; c != kEnd; ++c) {
    if (c->name.empty() || c->name.size() > kMaxCommandName) return false;
    for (char ch : c->name) {
      if (ch >= 'A' && ch <= 'Z') return false;  // lookup folds input to lowercase
    }
    // Strictly increasing: binary search needs it and names must be unique.
    if (c + 1 != kEnd && !(c->name < (c + 1)->name)) return false;
    if (c->arity == 0) return false;
    for (uint8_t i = 0; i < c->nspecs; ++i) {
      if (c->specs[i].keystep < 1) return false;  // key loops advance by keystep
    }
    const CommandRoles& r = c->role;
    // The cache answers reads only.
    if (r.cache != Cache::None && !c->is(kReadonly)) return false;
    // A command with more or fewer replies than one never reaches a shared connection: it pins
    // the client to a stream, or respite answers it (or refuses it) itself.
    if (r.reply != Reply::One && r.pin != Pin::Stream && r.local != Local::Unsubscribe &&
        r.local != Local::Sync)
      return false;
    // A command answered locally and also pinned would be answered twice.
    if (r.local != Local::None && r.pin != Pin::None && r.pin != Pin::Sticky) return false;
  }
  return true;
}
static_assert(table_is_well_formed(),
              "command_table.inc or kRoles is malformed: regenerate the table with "
              "scripts/gen-command-table, or check the roles");

constexpr const CommandInfo* find_exact(std::string_view lower) {
  const CommandInfo* it = std::lower_bound(
      kBegin, kEnd, lower, [](const CommandInfo& c, std::string_view n) { return c.name < n; });
  return (it != kEnd && it->name == lower) ? it : nullptr;
}

// Commands whose key specs are incomplete in Redis 7 (the generator refuses a Redis whose set
// differs). Redis falls back to a hand-written getkeys function for them; so do we.
constexpr size_t index_of(std::string_view lower) {
  const CommandInfo* c = find_exact(lower);
  return c != nullptr ? static_cast<size_t>(c - kBegin) : std::size(kCommands);
}
static_assert(index_of("sort") < std::size(kCommands) &&
              index_of("migrate") < std::size(kCommands));
constexpr const CommandInfo* kSort = &kCommands[index_of("sort")];
constexpr const CommandInfo* kMigrate = &kCommands[index_of("migrate")];

// --- helpers ----------------------------------------------------------------------------------

// Every command runs a lookup, and the binary search over the sorted table cost about nine
// string compares (~290 instructions a GET under callgrind). This open-addressing index over
// the same entries, built once, costs one hash and usually one compare.
constexpr uint64_t name_hash(std::string_view lower) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a
  for (char c : lower) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

class NameIndex {
 public:
  static constexpr size_t kSlots = 2048;  // a power of two, over twice the entries
  static_assert(std::size(kCommands) * 2 <= kSlots);

  NameIndex() {
    slots_.fill(0);
    for (size_t i = 0; i < std::size(kCommands); ++i) {
      size_t s = name_hash(kCommands[i].name) & (kSlots - 1);
      while (slots_[s] != 0) s = (s + 1) & (kSlots - 1);
      slots_[s] = static_cast<uint16_t>(i + 1);
    }
  }
  const CommandInfo* find(std::string_view lower) const {
    for (size_t s = name_hash(lower) & (kSlots - 1); slots_[s] != 0; s = (s + 1) & (kSlots - 1)) {
      const CommandInfo& c = kCommands[slots_[s] - 1];
      if (c.name == lower) return &c;
    }
    return nullptr;
  }

 private:
  std::array<uint16_t, kSlots> slots_;
};

const CommandInfo* find_indexed(std::string_view lower) {
  static const NameIndex index;
  return index.find(lower);
}

// A key count as Redis's string2ll accepts it, limited to [0, max]: no sign, no leading zeros,
// no spaces. A count above `max` (more keys than arguments) is rejected before it is used for
// anything, so a client's declared count never drives a loop or an allocation.
bool parse_count(std::string_view s, int64_t max, int64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  if (s.size() > 1 && s[0] == '0') return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v > max) return false;
  out = v;
  return true;
}

// Keys of one spec (Begin/Find known), appended to `out`; nothing if the spec does not fit.
void spec_keys(const KeySpec& s, const resp::Frame& f, int64_t argc, std::vector<uint32_t>& out) {
  int64_t first = 0;
  if (s.begin == KeySpec::Begin::Index) {
    first = s.index >= 0 ? s.index : argc + s.index;
  } else {
    // Keyword search as Redis 7 does it: forward from start_from up to argc-2, or (start_from
    // <= 0) backward from argc+start_from down to 2. A keyword in the last argument could not
    // be followed by keys anyway; index 1 is never taken on the backward search.
    if (s.start_from > 0) {
      for (int64_t i = s.start_from; i < argc - 1; ++i) {
        if (ieq(f.arg(static_cast<size_t>(i)), s.keyword)) {
          first = i + 1;
          break;
        }
      }
    } else {
      for (int64_t i = argc + s.start_from; i > 1 && i < argc; --i) {
        if (ieq(f.arg(static_cast<size_t>(i)), s.keyword)) {
          first = i + 1;
          break;
        }
      }
    }
    if (first == 0) return;  // keyword absent: an optional clause that was not given
  }
  if (first < 1 || first >= argc) return;  // argv[0] is the command name, never a key

  int64_t last;
  if (s.find == KeySpec::Find::Range) {
    if (s.lastkey >= 0) {
      last = first + s.lastkey;
    } else if (s.limit > 1) {
      // Keys take 1/limit of what follows (XREAD STREAMS k1 k2 id1 id2).
      last = first + (argc - first) / s.limit + s.lastkey;
    } else {
      last = argc + s.lastkey;
    }
  } else {
    const int64_t at = first + s.keynumidx;
    int64_t n = 0;
    if (at >= argc || !parse_count(f.arg(static_cast<size_t>(at)), argc, n)) return;
    first += s.firstkey;
    // n counts keys, so with a keystep above 1 they span (n-1)*keystep+1 arguments (Redis 7.0
    // computes first+n-1 here; every built-in keynum spec has keystep 1, where both agree).
    last = first + (n - 1) * s.keystep;
  }
  if (last < first || last >= argc) return;  // no keys (numkeys 0) or a malformed request
  for (int64_t i = first; i <= last; i += s.keystep) out.push_back(static_cast<uint32_t>(i));
}

// SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
//      [STORE destination]
// STORE can only be told from a pattern or a LIMIT argument spelled "store" by walking the
// options with their arities, as SORT itself parses them. Every STORE target is returned (SORT
// keeps the last one; a superset is harmless for invalidation).
void sort_store_keys(const resp::Frame& f, int64_t argc, std::vector<uint32_t>& out) {
  for (int64_t i = 2; i < argc; ++i) {
    std::string_view a = f.arg(static_cast<size_t>(i));
    if (ieq(a, "limit")) {
      i += 2;
    } else if (ieq(a, "by") || ieq(a, "get")) {
      i += 1;
    } else if (ieq(a, "store") && i + 1 < argc) {
      out.push_back(static_cast<uint32_t>(++i));
    }
  }
}

// MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw] [AUTH2 user pw] [KEYS key ...]
// The spec searches "KEYS" backwards and so stops at a key named "keys"; walking the options
// forwards, as MIGRATE parses them, does not. All keys are written (moved away) unless COPY is
// given; they are reported as written either way.
void migrate_keys(const resp::Frame& f, int64_t argc, std::vector<uint32_t>& out) {
  if (argc < 6) return;
  if (!f.arg(3).empty()) out.push_back(3);
  for (int64_t i = 6; i < argc; ++i) {
    std::string_view a = f.arg(static_cast<size_t>(i));
    if (ieq(a, "auth")) {
      i += 1;
    } else if (ieq(a, "auth2")) {
      i += 2;
    } else if (ieq(a, "keys")) {
      for (int64_t k = i + 1; k < argc; ++k) out.push_back(static_cast<uint32_t>(k));
      return;
    }
  }
}

// Redis 7.0's bitfieldGetKeys: BITFIELD only reads its key when every subcommand is GET or
// OVERFLOW (with their arguments); anything else, a syntax error included, counts as a write.
bool bitfield_readonly(const resp::Frame& f, int64_t argc) {
  for (int64_t i = 2; i < argc; ++i) {
    const int64_t left = argc - i - 1;
    std::string_view a = f.arg(static_cast<size_t>(i));
    if (ieq(a, "get") && left >= 2) i += 2;
    else if (ieq(a, "overflow") && left >= 1) i += 1;
    else return false;
  }
  return true;
}

}  // namespace

const CommandInfo* lookup_command(std::string_view name, std::string_view sub) {
  if (name.empty() || name.size() > kMaxCommandName) return nullptr;
  // Room for "container|sub"; anything longer than the longest name cannot match.
  char buf[kMaxCommandName];
  size_t n = 0;
  for (char c : name) {
    // "client|kill" is a table key, not a command a client can send.
    if (c == '|') return nullptr;
    buf[n++] = ascii_lower(c);
  }
  const CommandInfo* cmd = find_indexed(std::string_view(buf, n));
  if (cmd == nullptr || !cmd->has_subcommands || sub.empty()) return cmd;
  if (n + 1 + sub.size() > kMaxCommandName) return cmd;
  buf[n++] = '|';
  for (char c : sub) buf[n++] = ascii_lower(c);
  const CommandInfo* subcmd = find_indexed(std::string_view(buf, n));
  return subcmd != nullptr ? subcmd : cmd;
}

const CommandInfo* lookup_command(const resp::Frame& f) {
  if (f.argc() == 0) return nullptr;
  return lookup_command(f.arg(0), f.argc() > 1 ? f.arg(1) : std::string_view{});
}

void command_keys(const CommandInfo& cmd, const resp::Frame& f, std::vector<uint32_t>& out,
                  bool write_only) {
  // The parser caps argc below 2^31, so argv positions fit uint32_t and int64_t math is exact.
  const int64_t argc = static_cast<int64_t>(f.argc());
  if (&cmd == kMigrate) {
    migrate_keys(f, argc, out);
    return;
  }
  // Most commands have one key at a fixed position (GET, SET, INCR, EXPIRE, ...): the general
  // walk below gives the same answer, with more branches on every request.
  if (cmd.nspecs == 1) {
    const KeySpec& s = cmd.specs[0];
    if (s.begin == KeySpec::Begin::Index && s.find == KeySpec::Find::Range && s.lastkey == 0 &&
        s.index > 0) {
      if ((!write_only || s.write) && s.index < argc) out.push_back(static_cast<uint32_t>(s.index));
      return;
    }
  }
  for (uint8_t i = 0; i < cmd.nspecs; ++i) {
    const KeySpec& s = cmd.specs[i];
    if (write_only && !s.write) continue;
    if (s.begin == KeySpec::Begin::Unknown || s.find == KeySpec::Find::Unknown) {
      // SORT's only unknown write spec is STORE; its (and SORT_RO's) unknown read spec is the
      // BY/GET patterns, whose keys come from the data, not from argv.
      if (&cmd == kSort && s.write) sort_store_keys(f, argc, out);
      continue;
    }
    spec_keys(s, f, argc, out);
  }
}

void command_acl_keys(const CommandInfo& cmd, const resp::Frame& f, std::vector<AclKey>& out) {
  const int64_t argc = static_cast<int64_t>(f.argc());
  // Reused: ACL checks of a restricted user's every request should not allocate.
  thread_local std::vector<uint32_t> idx;
  idx.clear();
  if (&cmd == kMigrate) {
    migrate_keys(f, argc, idx);
    for (uint32_t i : idx) out.push_back({i, kKeyNeedsRead | kKeyNeedsWrite});  // RW access delete
    return;
  }
  for (uint8_t i = 0; i < cmd.nspecs; ++i) {
    const KeySpec& s = cmd.specs[i];
    idx.clear();
    if (s.begin == KeySpec::Begin::Unknown || s.find == KeySpec::Find::Unknown) {
      // SORT's STORE target (its BY/GET patterns name no argv key), as Redis's sortGetKeys.
      if (&cmd == kSort && s.write) sort_store_keys(f, argc, idx);
      for (uint32_t k : idx) out.push_back({k, kKeyNeedsWrite});
      continue;
    }
    spec_keys(s, f, argc, idx);
    uint8_t needs = s.acl;
    if (cmd.name == "set") {
      // Redis's setGetKeys (the spec's variable_flags): SET reads the old value only with GET.
      needs = kKeyNeedsWrite;
      for (int64_t a = 3; a < argc; ++a)
        if (ieq(f.arg(static_cast<size_t>(a)), "get")) needs |= kKeyNeedsRead;
    } else if (cmd.name == "bitfield" && bitfield_readonly(f, argc)) {
      needs = kKeyNeedsRead;  // Redis's bitfieldGetKeys: only GET and OVERFLOW read the key
    }
    for (uint32_t k : idx) out.push_back({k, needs});
  }
}

size_t command_index(const CommandInfo& cmd) { return static_cast<size_t>(&cmd - kCommands.data()); }

bool arity_ok(const CommandInfo& cmd, size_t argc) {
  if (cmd.arity >= 0) return argc == static_cast<size_t>(cmd.arity);
  return argc >= static_cast<size_t>(-static_cast<int64_t>(cmd.arity));
}

size_t command_count() { return std::size(kCommands); }
const CommandInfo& command_at(size_t i) { return kCommands[i]; }

}  // namespace respite
