#include <catch2/catch.hpp>

#include <cctype>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "proxy/front/command_table.h"
#include "request_builder.h"

using respite::CommandInfo;
using respite::lookup_command;
using respite::test::TestRequest;
using Keys = std::vector<uint32_t>;

namespace {

const CommandInfo& must_lookup(const TestRequest& r) {
  const CommandInfo* c = lookup_command(r.frame());
  REQUIRE(c != nullptr);
  return *c;
}

Keys keys_of(const TestRequest& r, bool write_only = false) {
  Keys out;
  respite::command_keys(must_lookup(r), r.frame(), out, write_only);
  return out;
}

Keys write_keys_of(const TestRequest& r) { return keys_of(r, true); }

}  // namespace

TEST_CASE("table holds commands and subcommands", "[command_table]") {
  // Redis 7.0 has ~240 commands and ~125 subcommands; the exact figure depends on the version.
  CHECK(respite::command_count() > 300);
  const CommandInfo* get = lookup_command("get");
  REQUIRE(get != nullptr);
  CHECK(get->name == "get");
  const CommandInfo* kill = lookup_command("client", "kill");
  REQUIRE(kill != nullptr);
  CHECK(kill->name == "client|kill");
}

TEST_CASE("GET: arity 2, readonly, key at 1", "[command_table]") {
  TestRequest r{"GET", "k"};
  const CommandInfo& c = must_lookup(r);
  CHECK(c.name == "get");
  CHECK(c.arity == 2);
  CHECK(c.is(respite::kReadonly));
  CHECK(c.is(respite::kFast));
  CHECK_FALSE(c.is(respite::kWrite));
  CHECK_FALSE(c.has_subcommands);
  CHECK(keys_of(r) == Keys{1});
  CHECK(write_keys_of(r).empty());
  CHECK(respite::arity_ok(c, 2));
  CHECK_FALSE(respite::arity_ok(c, 1));
  CHECK_FALSE(respite::arity_ok(c, 3));
}

TEST_CASE("SET writes its key, negative arity is a minimum", "[command_table]") {
  TestRequest r{"SET", "k", "v", "EX", "10"};
  const CommandInfo& c = must_lookup(r);
  CHECK(c.arity == -3);
  CHECK(c.is(respite::kWrite));
  CHECK(c.is(respite::kDenyoom));
  CHECK_FALSE(c.is(respite::kReadonly));
  CHECK(keys_of(r) == Keys{1});
  CHECK(write_keys_of(r) == Keys{1});
  CHECK(respite::arity_ok(c, 3));
  CHECK(respite::arity_ok(c, 5));
  CHECK_FALSE(respite::arity_ok(c, 2));
}

TEST_CASE("MSET/MSETNX keys every other argument, MGET all of them", "[command_table]") {
  TestRequest mset{"MSET", "a", "1", "b", "2", "c", "3"};
  CHECK(keys_of(mset) == Keys{1, 3, 5});
  CHECK(write_keys_of(mset) == Keys{1, 3, 5});
  TestRequest msetnx{"msetnx", "a", "1", "b", "2"};
  CHECK(write_keys_of(msetnx) == Keys{1, 3});

  TestRequest mget{"MGET", "a", "b", "c"};
  const CommandInfo& c = must_lookup(mget);
  CHECK(c.is(respite::kReadonly));
  CHECK(keys_of(mget) == Keys{1, 2, 3});
  CHECK(write_keys_of(mget).empty());
}

TEST_CASE("DEL, GETDEL, UNLINK write their keys", "[command_table]") {
  TestRequest del{"DEL", "a", "b", "c"};
  CHECK(must_lookup(del).is(respite::kWrite));
  CHECK(write_keys_of(del) == Keys{1, 2, 3});
  TestRequest getdel{"GETDEL", "a"};
  CHECK(must_lookup(getdel).arity == 2);
  CHECK(write_keys_of(getdel) == Keys{1});
  TestRequest unlink{"UNLINK", "a", "b"};
  CHECK(write_keys_of(unlink) == Keys{1, 2});
}

TEST_CASE("RENAME writes both keys, COPY only the destination", "[command_table]") {
  TestRequest rename{"RENAME", "src", "dst"};
  CHECK(keys_of(rename) == Keys{1, 2});
  CHECK(write_keys_of(rename) == Keys{1, 2});

  TestRequest copy{"COPY", "src", "dst", "DB", "3", "REPLACE"};
  CHECK(keys_of(copy) == Keys{1, 2});
  CHECK(write_keys_of(copy) == Keys{2});
}

TEST_CASE("EVAL, EVALSHA, FCALL: numkeys keys", "[command_table]") {
  TestRequest eval{"EVAL", "return 1", "2", "k1", "k2", "arg"};
  const CommandInfo& c = must_lookup(eval);
  CHECK(c.is(respite::kMovableKeys));
  CHECK(keys_of(eval) == Keys{3, 4});
  CHECK(write_keys_of(eval) == Keys{3, 4});

  TestRequest none{"EVAL", "return 1", "0", "arg"};
  CHECK(keys_of(none).empty());

  TestRequest evalsha{"evalsha", "0123456789abcdef0123456789abcdef01234567", "1", "k", "a"};
  CHECK(keys_of(evalsha) == Keys{3});

  TestRequest fcall{"FCALL", "fn", "3", "a", "b", "c"};
  CHECK(keys_of(fcall) == Keys{3, 4, 5});

  TestRequest eval_ro{"EVAL_RO", "return 1", "1", "k"};
  CHECK(must_lookup(eval_ro).is(respite::kReadonly));
  CHECK(keys_of(eval_ro) == Keys{3});
  CHECK(write_keys_of(eval_ro).empty());
}

TEST_CASE("malformed numkeys yields no keys from that spec", "[command_table]") {
  for (const char* bad : {"3", "-1", "abc", "", "01", "+1", " 1", "1 ", "2147483647",
                          "99999999999999999999", "9223372036854775807", "18446744073709551617"}) {
    INFO("numkeys '" << bad << "'");
    TestRequest eval{"EVAL", "s", bad, "k1", "k2"};
    Keys out;
    respite::command_keys(must_lookup(eval), eval.frame(), out);
    CHECK(out.empty());
    CHECK(out.capacity() <= 16);  // nothing sized from the declared count
  }
  // numkeys present but nothing after it
  TestRequest eval{"EVAL", "s", "1"};
  CHECK(keys_of(eval).empty());
  TestRequest bare{"EVAL", "s"};
  CHECK(keys_of(bare).empty());
  // The destination of ZUNIONSTORE is found by its own spec even when numkeys is bad.
  TestRequest z{"ZUNIONSTORE", "dst", "5", "a", "b"};
  CHECK(keys_of(z) == Keys{1});
}

TEST_CASE("ZUNIONSTORE: destination plus numkeys sources", "[command_table]") {
  TestRequest z{"ZUNIONSTORE", "dst", "2", "a", "b", "WEIGHTS", "1", "2"};
  CHECK(keys_of(z) == Keys{1, 3, 4});
  CHECK(write_keys_of(z) == Keys{1});
  TestRequest zunion{"ZUNION", "2", "a", "b", "WITHSCORES"};
  CHECK(keys_of(zunion) == Keys{2, 3});
  CHECK(write_keys_of(zunion).empty());
}

TEST_CASE("XREAD/XREADGROUP: keys after STREAMS, half of the rest", "[command_table]") {
  TestRequest xread{"XREAD", "COUNT", "2", "streams", "s1", "s2", "0", "0"};
  const CommandInfo& c = must_lookup(xread);
  CHECK(c.is(respite::kBlocking));
  CHECK(keys_of(xread) == Keys{4, 5});
  TestRequest one{"XREAD", "STREAMS", "s1", "$"};
  CHECK(keys_of(one) == Keys{2});
  TestRequest missing{"XREAD", "COUNT", "2", "s1", "0"};
  CHECK(keys_of(missing).empty());
  TestRequest last{"XREAD", "COUNT", "2", "STREAMS"};
  CHECK(keys_of(last).empty());

  TestRequest group{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", "s2", ">", ">"};
  CHECK(must_lookup(group).is(respite::kWrite));
  CHECK(keys_of(group) == Keys{5, 6});
}

TEST_CASE("GEORADIUS STORE/STOREDIST are keyword specs", "[command_table]") {
  TestRequest g{"GEORADIUS", "k", "0", "0", "1", "km", "STORE", "dst"};
  CHECK(keys_of(g) == Keys{1, 7});
  CHECK(write_keys_of(g) == Keys{7});
  TestRequest gd{"GEORADIUS", "k", "0", "0", "1", "km", "COUNT", "3", "storedist", "d"};
  CHECK(write_keys_of(gd) == Keys{9});
  TestRequest plain{"GEORADIUS", "k", "0", "0", "1", "km"};
  CHECK(keys_of(plain) == Keys{1});
  CHECK(write_keys_of(plain).empty());
}

TEST_CASE("SORT: source key, STORE destination found by walking options", "[command_table]") {
  TestRequest plain{"SORT", "list"};
  const CommandInfo& c = must_lookup(plain);
  CHECK(c.is(respite::kWrite));
  CHECK(c.is(respite::kMovableKeys));
  CHECK(keys_of(plain) == Keys{1});
  CHECK(write_keys_of(plain).empty());

  TestRequest store{"SORT", "list", "BY", "w_*", "LIMIT", "0", "10", "GET", "o_*", "ALPHA",
                    "store", "dst"};
  CHECK(keys_of(store) == Keys{1, 11});
  CHECK(write_keys_of(store) == Keys{11});

  // "store" as a pattern or a LIMIT argument is not the STORE option.
  TestRequest tricky{"SORT", "list", "GET", "store", "BY", "store", "LIMIT", "store", "store"};
  CHECK(write_keys_of(tricky).empty());
  TestRequest dangling{"SORT", "list", "STORE"};
  CHECK(write_keys_of(dangling).empty());

  TestRequest ro{"SORT_RO", "list", "BY", "w_*", "GET", "#"};
  CHECK(must_lookup(ro).is(respite::kReadonly));
  CHECK(keys_of(ro) == Keys{1});
  CHECK(write_keys_of(ro).empty());
}

TEST_CASE("MIGRATE: single key or the KEYS list", "[command_table]") {
  TestRequest single{"MIGRATE", "h", "6379", "key", "0", "5000"};
  CHECK(must_lookup(single).is(respite::kWrite));
  CHECK(keys_of(single) == Keys{3});
  CHECK(write_keys_of(single) == Keys{3});

  // AUTH's password "keys" is not the KEYS option; a key named "keys" is still a key.
  TestRequest multi{"MIGRATE", "h", "6379", "", "0", "5000", "COPY", "AUTH", "keys", "KEYS",
                    "a", "keys", "b"};
  CHECK(keys_of(multi) == Keys{10, 11, 12});
  TestRequest auth2{"MIGRATE", "h", "6379", "", "0", "5000", "AUTH2", "keys", "KEYS", "KEYS",
                    "a"};
  CHECK(keys_of(auth2) == Keys{10});
  TestRequest shortreq{"MIGRATE", "h", "6379", "k"};
  CHECK(keys_of(shortreq).empty());
}

TEST_CASE("BLPOP/BRPOP: last argument is the timeout", "[command_table]") {
  TestRequest b{"BLPOP", "a", "b", "0"};
  const CommandInfo& c = must_lookup(b);
  CHECK(c.is(respite::kBlocking));
  CHECK(keys_of(b) == Keys{1, 2});
  CHECK(write_keys_of(b) == Keys{1, 2});
  TestRequest timeout_only{"BRPOP", "0"};
  CHECK(keys_of(timeout_only).empty());
}

TEST_CASE("LMPOP/BLMPOP/ZMPOP: numkeys keys", "[command_table]") {
  TestRequest l{"LMPOP", "2", "a", "b", "LEFT", "COUNT", "3"};
  CHECK(keys_of(l) == Keys{2, 3});
  CHECK(write_keys_of(l) == Keys{2, 3});
  TestRequest bl{"BLMPOP", "0.5", "1", "a", "RIGHT"};
  CHECK(keys_of(bl) == Keys{3});
  TestRequest z{"ZMPOP", "1", "z", "MIN"};
  CHECK(keys_of(z) == Keys{2});
}

TEST_CASE("subcommands: OBJECT ENCODING has a key, CLIENT KILL none", "[command_table]") {
  TestRequest obj{"OBJECT", "encoding", "k"};
  const CommandInfo& o = must_lookup(obj);
  CHECK(o.name == "object|encoding");
  CHECK(o.arity == 3);
  CHECK(o.is(respite::kReadonly));
  CHECK(keys_of(obj) == Keys{2});
  CHECK(respite::arity_ok(o, 3));
  CHECK_FALSE(respite::arity_ok(o, 2));

  TestRequest kill{"client", "KILL", "ID", "7"};
  const CommandInfo& k = must_lookup(kill);
  CHECK(k.name == "client|kill");
  CHECK(k.is(respite::kAdmin));
  CHECK(keys_of(kill).empty());

  const CommandInfo* client = lookup_command("CLIENT");
  REQUIRE(client != nullptr);
  CHECK(client->has_subcommands);
  CHECK(client->nspecs == 0);
  // Unknown or missing subcommands give the container entry.
  CHECK(lookup_command("client", "no-such-subcommand") == client);
  CHECK(lookup_command("client", std::string(500, 'x')) == client);
  CHECK(lookup_command("client") == client);
  TestRequest bare{"CLIENT"};
  CHECK(lookup_command(bare.frame()) == client);
  // Subcommands are looked up only for containers.
  CHECK(lookup_command("get", "encoding")->name == "get");
}

TEST_CASE("unknown commands and names that are not commands", "[command_table]") {
  CHECK(lookup_command("nosuchcommand") == nullptr);
  CHECK(lookup_command("") == nullptr);
  CHECK(lookup_command("ge") == nullptr);
  CHECK(lookup_command("gett") == nullptr);
  CHECK(lookup_command(std::string(100000, 'g')) == nullptr);
  CHECK(lookup_command(std::string("get\0", 4)) == nullptr);
  CHECK(lookup_command("g\xc3\xa9t") == nullptr);
  // "container|sub" is how the table names subcommands, not something a client can send.
  CHECK(lookup_command("client|kill") == nullptr);
  CHECK(lookup_command("CLIENT|KILL", "x") == nullptr);

  TestRequest unknown{"FOO", "bar"};
  CHECK(lookup_command(unknown.frame()) == nullptr);
  TestRequest empty{};
  CHECK(lookup_command(empty.frame()) == nullptr);
}

TEST_CASE("lookup is case-insensitive", "[command_table]") {
  const CommandInfo* get = lookup_command("get");
  REQUIRE(get != nullptr);
  CHECK(lookup_command("GET") == get);
  CHECK(lookup_command("gEt") == get);
  const CommandInfo* enc = lookup_command("object", "encoding");
  REQUIRE(enc != nullptr);
  CHECK(lookup_command("Object", "ENCODING") == enc);
  CHECK(lookup_command("OBJECT", "eNcOdInG") == enc);
  TestRequest r{"zUnIoNsToRe", "d", "1", "a"};
  CHECK(keys_of(r) == Keys{1, 3});
}

TEST_CASE("BITOP: destination written, sources read", "[command_table]") {
  TestRequest r{"BITOP", "AND", "dst", "a", "b"};
  CHECK(keys_of(r) == Keys{2, 3, 4});
  CHECK(write_keys_of(r) == Keys{2});
}

TEST_CASE("keys are appended to what the caller already has", "[command_table]") {
  TestRequest r{"MGET", "a", "b"};
  Keys out{42};
  respite::command_keys(must_lookup(r), r.frame(), out);
  CHECK(out == Keys{42, 1, 2});
}

TEST_CASE("random argv never yields a position outside argv", "[command_table]") {
  const char* names[] = {"get", "set", "mset", "mget", "del", "eval", "evalsha", "fcall",
                         "zunionstore", "zinterstore", "zdiffstore", "zunion", "sintercard",
                         "xread", "xreadgroup", "sort", "sort_ro", "migrate", "blpop",
                         "brpop", "bzpopmin", "lmpop", "blmpop", "zmpop", "bzmpop", "georadius",
                         "georadiusbymember", "bitop", "rename", "copy", "object", "memory",
                         "xinfo", "client", "smove", "lmove", "blmove", "msetnx", "touch",
                         "pfmerge", "sinterstore", "geosearchstore", "restore", "set"};
  const char* tokens[] = {"0", "1", "2", "3", "-1", "100000", "STREAMS", "KEYS", "STORE",
                          "STOREDIST", "BY", "GET", "LIMIT", "AUTH", "AUTH2", "encoding",
                          "usage", "stream", "k", ""};
  std::mt19937 rng(12345);
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<std::string> argv;
    argv.emplace_back(names[rng() % std::size(names)]);
    const size_t n = rng() % 12;
    for (size_t i = 0; i < n; ++i) argv.emplace_back(tokens[rng() % std::size(tokens)]);
    TestRequest r(argv);
    const CommandInfo* c = lookup_command(r.frame());
    REQUIRE(c != nullptr);
    Keys out;
    respite::command_keys(*c, r.frame(), out);
    for (uint32_t k : out) {
      INFO(argv[0] << " argc " << argv.size() << " key " << k);
      REQUIRE(k >= 1);
      REQUIRE(k < argv.size());
    }
    Keys w;
    respite::command_keys(*c, r.frame(), w, true);
    REQUIRE(w.size() <= out.size());
  }
}

TEST_CASE("command table: every entry is found by its name, in any case, and by its parts") {
  for (size_t i = 0; i < respite::command_count(); ++i) {
    const CommandInfo& c = respite::command_at(i);
    INFO(c.name);
    const size_t bar = c.name.find('|');
    if (bar == std::string_view::npos) {
      CHECK(lookup_command(c.name) == &c);
      std::string upper(c.name);
      for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      CHECK(lookup_command(upper) == &c);
      CHECK(lookup_command(std::string(c.name) + "x") != &c);
    } else {
      CHECK(lookup_command(c.name.substr(0, bar), c.name.substr(bar + 1)) == &c);
      CHECK(lookup_command(c.name) == nullptr);  // "client|kill" is not a command name
    }
  }
}

TEST_CASE("ACL categories come from Redis", "[command_table]") {
  const CommandInfo* get = lookup_command("get");
  REQUIRE(get != nullptr);
  CHECK(get->acl_categories == (respite::kAclRead | respite::kAclString | respite::kAclFast));
  const CommandInfo* flushall = lookup_command("flushall");
  REQUIRE(flushall != nullptr);
  CHECK(flushall->acl_categories ==
        (respite::kAclKeyspace | respite::kAclWrite | respite::kAclSlow | respite::kAclDangerous));
  const CommandInfo* kill = lookup_command("client", "kill");
  REQUIRE(kill != nullptr);
  CHECK((kill->acl_categories & respite::kAclAdmin) != 0);
  CHECK((kill->acl_categories & respite::kAclConnection) != 0);
}

TEST_CASE("entries not in Redis 7.0's COMMAND: PROXY, CLIENT SETINFO and NO-TOUCH", "[command_table]") {
  const CommandInfo* proxy = lookup_command("proxy");
  REQUIRE(proxy != nullptr);
  CHECK(proxy->has_subcommands);
  CHECK(lookup_command("PROXY", "info")->name == "proxy|info");
  CHECK(lookup_command("proxy", "config")->name == "proxy|config");
  CHECK(lookup_command("proxy", "nosuch") == proxy);
  CHECK(lookup_command("client", "setinfo")->name == "client|setinfo");
  CHECK(lookup_command("client", "no-touch")->name == "client|no-touch");
}

// ---- respite's roles ----

namespace {

using respite::Cache;
using respite::CommandRoles;
using respite::Flush;
using respite::Local;
using respite::Pin;
using respite::Reply;

const CommandRoles& role_of(std::string_view name, std::string_view sub = {}) {
  const CommandInfo* c = lookup_command(name, sub);
  REQUIRE(c != nullptr);
  return c->role;
}

bool has(const CommandInfo& c, uint32_t acl) { return (c.acl_categories & acl) != 0; }

}  // namespace

TEST_CASE("roles: commands respite answers itself", "[command_table]") {
  CHECK(role_of("QUIT").local == Local::Quit);
  CHECK(role_of("reset").local == Local::Reset);
  CHECK(role_of("auth").local == Local::Auth);
  CHECK(role_of("hello").local == Local::Hello);
  CHECK(role_of("ping").local == Local::Ping);
  CHECK(role_of("echo").local == Local::Echo);
  CHECK(role_of("select").local == Local::Select);
  CHECK(role_of("sync").local == Local::Sync);
  CHECK(role_of("psync").local == Local::Sync);
  CHECK(role_of("replconf").local == Local::ReplconfAck);
  CHECK(role_of("client", "id").local == Local::ClientId);
  CHECK(role_of("CLIENT", "KILL").local == Local::ClientKill);
  CHECK(role_of("client", "reply").local == Local::ClientReply);
  CHECK(role_of("client", "setinfo").local == Local::ClientSetinfo);  // Redis 7.2's, added
  CHECK(role_of("client", "no-touch").local == Local::ClientNoTouch);
  CHECK(role_of("proxy").local == Local::Proxy);
  CHECK(role_of("proxy", "info").local == Local::ProxyInfo);
  CHECK(role_of("proxy", "nosuch").local == Local::Proxy);  // the container: an error reply
  CHECK(role_of("proxy", "config").local == Local::ProxyConfig);
  CHECK(role_of("proxy", "slowlog").local == Local::ProxySlowlog);
  CHECK(role_of("cluster").local == Local::Cluster);
  CHECK(role_of("CLUSTER", "SLOTS").local == Local::Cluster);
  CHECK(role_of("cluster", "failover").local == Local::Cluster);  // refused by cluster_command
  CHECK(role_of("cluster", "myshardid").local == Local::Cluster);  // 7.2's: the container
  CHECK(role_of("cluster", "countkeysinslot").local == Local::None);  // the cluster's keys
  CHECK(role_of("cluster", "getkeysinslot").local == Local::None);
  // Forwarded as is.
  CHECK(role_of("set").local == Local::None);
  CHECK(role_of("client", "pause").local == Local::None);
  CHECK(role_of("client").local == Local::None);  // CLIENT alone, or an unknown subcommand
  CHECK(role_of("config", "get").local == Local::None);
}

TEST_CASE("roles: pinning", "[command_table]") {
  CHECK(role_of("get").pin == Pin::None);
  CHECK(role_of("multi").pin == Pin::Multi);
  CHECK(role_of("exec").pin == Pin::Exec);
  CHECK(role_of("discard").pin == Pin::Discard);
  CHECK(role_of("watch").pin == Pin::Watch);
  CHECK(role_of("unwatch").pin == Pin::Unwatch);
  CHECK(role_of("blpop").pin == Pin::Blocking);     // from Redis's blocking flag
  CHECK(role_of("bzmpop").pin == Pin::Blocking);
  CHECK(role_of("wait").pin == Pin::Blocking);      // without the flag
  CHECK(role_of("xread").pin == Pin::BlockOption);  // only with BLOCK
  CHECK(role_of("xreadgroup").pin == Pin::BlockOption);
  CHECK(role_of("subscribe").pin == Pin::Stream);
  CHECK(role_of("ssubscribe").pin == Pin::Stream);
  CHECK(role_of("monitor").pin == Pin::Stream);
  CHECK(role_of("unsubscribe").pin == Pin::None);   // answered, or forwarded when subscribed
  CHECK(role_of("readonly").pin == Pin::Sticky);
  CHECK(role_of("client", "tracking").pin == Pin::Sticky);
  CHECK(role_of("client", "caching").pin == Pin::Sticky);
  CHECK(role_of("client", "no-touch").pin == Pin::Sticky);
  CHECK(role_of("script", "kill").pin == Pin::Aside);
  CHECK(role_of("function", "kill").pin == Pin::Aside);
  CHECK(role_of("script", "flush").pin == Pin::None);
}

TEST_CASE("roles: replies, cache, invalidation", "[command_table]") {
  CHECK(role_of("get").reply == Reply::One);
  CHECK(role_of("psubscribe").reply == Reply::PerArgument);
  CHECK(role_of("sunsubscribe").reply == Reply::PerArgument);
  CHECK(role_of("monitor").reply == Reply::Stream);

  CHECK(role_of("get").cache == Cache::Get);
  CHECK(role_of("mget").cache == Cache::Mget);
  CHECK(role_of("getex").cache == Cache::None);
  CHECK(role_of("getrange").cache == Cache::None);

  CHECK(role_of("set").flush == Flush::Keys);
  CHECK(role_of("flushdb").flush == Flush::Db);
  CHECK(role_of("flushall").flush == Flush::All);
  CHECK(role_of("swapdb").flush == Flush::All);
  CHECK(role_of("eval").flush == Flush::UnknownKeys);
  CHECK(role_of("fcall").flush == Flush::UnknownKeys);
  CHECK(role_of("eval_ro").flush == Flush::Keys);
  CHECK(role_of("sort").flush == Flush::UnknownKeysIfStore);
  CHECK(role_of("sort_ro").flush == Flush::Keys);

  CHECK(role_of("move").keys_any_db);
  CHECK(role_of("copy").keys_any_db);
  CHECK_FALSE(role_of("rename").keys_any_db);
}

TEST_CASE("command table: roles agree with what Redis says of each command", "[command_table]") {
  std::vector<bool> local_used(static_cast<size_t>(Local::Cluster) + 1);
  std::vector<bool> pin_used(static_cast<size_t>(Pin::Aside) + 1);
  for (size_t i = 0; i < respite::command_count(); ++i) {
    const CommandInfo& c = respite::command_at(i);
    const CommandRoles& r = c.role;
    INFO(c.name);
    local_used[static_cast<size_t>(r.local)] = true;
    pin_used[static_cast<size_t>(r.pin)] = true;
    const std::string_view container = c.name.substr(0, c.name.find('|'));

    // The cache answers reads of string keys only.
    if (r.cache != Cache::None) {
      CHECK(c.is(respite::kReadonly));
      CHECK(has(c, respite::kAclString));
      CHECK(c.nspecs == 1);
    }
    // Blocking: every command Redis flags blocking, and WAIT.
    if (c.is(respite::kBlocking)) {
      CHECK((r.pin == Pin::Blocking || r.pin == Pin::BlockOption));
    }
    if (r.pin == Pin::Blocking) CHECK((c.is(respite::kBlocking) || c.name == "wait"));
    if (r.pin == Pin::BlockOption) CHECK(c.is(respite::kBlocking));
    // Transactions are Redis's @transaction commands.
    const bool txn = r.pin == Pin::Multi || r.pin == Pin::Exec || r.pin == Pin::Discard ||
                     r.pin == Pin::Watch || r.pin == Pin::Unwatch;
    CHECK(txn == has(c, respite::kAclTransaction));
    // Streams: the subscribe family (Redis's pub/sub flag) and MONITOR.
    if (r.pin == Pin::Stream) CHECK((c.is(respite::kPubsub) || c.name == "monitor"));
    // Aside: a command Redis runs while a script is busy.
    if (r.pin == Pin::Aside) CHECK(c.is(respite::kAllowBusy));
    // More or fewer replies than one never reach a shared connection.
    if (r.reply != Reply::One)
      CHECK((r.pin == Pin::Stream || r.local == Local::Unsubscribe || r.local == Local::Sync));
    if (r.reply == Reply::PerArgument) CHECK(c.is(respite::kPubsub));
    // Invalidation: whole dbs for writes without keys; a tracking barrier for the writing
    // scripts and functions (Redis's @scripting commands with keys that are not read-only).
    if (r.flush == Flush::Db || r.flush == Flush::All) {
      CHECK(c.is(respite::kWrite));
      CHECK(c.nspecs == 0);
    }
    const bool writing_script = has(c, respite::kAclScripting) && c.is(respite::kMovableKeys) &&
                                !c.is(respite::kReadonly);
    CHECK(writing_script == (r.flush == Flush::UnknownKeys));
    if (r.keys_any_db) {
      CHECK(c.is(respite::kWrite));
      CHECK(has(c, respite::kAclKeyspace));
    }
    // Redis's no-auth commands are the ones respite lets an unauthenticated client run.
    const bool no_auth = r.local == Local::Auth || r.local == Local::Hello ||
                         r.local == Local::Quit || r.local == Local::Reset;
    CHECK(c.is(respite::kNoAuth) == no_auth);
    // Local handlers by family.
    switch (r.local) {
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
        CHECK(c.name.substr(0, 7) == "client|");
        break;
      case Local::Proxy:
      case Local::ProxyInfo:
      case Local::ProxyConfig:
      case Local::ProxyHelp:
      case Local::ProxySlowlog:
      case Local::ProxyDebug:
      case Local::ProxyCache:
        CHECK(container == "proxy");
        break;
      case Local::Cluster:
        CHECK(container == "cluster");
        break;
      case Local::Acl:
        CHECK(container == "acl");
        break;
      case Local::None:
        break;
      default:  // the others are whole commands
        CHECK(c.name.find('|') == std::string_view::npos);
        break;
    }
    if (container == "proxy") CHECK(r.local != Local::None);
  }
  // Every role is someone's (a role nobody has would be a handler nothing reaches).
  for (size_t i = 0; i < local_used.size(); ++i) {
    INFO("Local " << i);
    CHECK(local_used[i]);
  }
  for (size_t i = 0; i < pin_used.size(); ++i) {
    INFO("Pin " << i);
    CHECK(pin_used[i]);
  }
}
