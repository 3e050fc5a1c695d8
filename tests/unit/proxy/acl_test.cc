// The ACL module's pieces: Redis's glob matcher, SHA-256, the rule parser and its ACL LIST
// text, and the permission check of a request.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "proxy/front/acl/acl.h"
#include "proxy/front/acl/acl_user.h"
#include "proxy/front/acl/glob.h"
#include "proxy/front/acl/sha256.h"
#include "proxy/front/command_table.h"
#include "proxy/ops/config.h"
#include "request_builder.h"

using respite::Acl;
using respite::AclDenial;
using respite::AclUser;
using respite::glob_match;
using respite::test::TestRequest;

namespace {

AclUser user_with(std::initializer_list<std::string_view> rules) {
  AclUser u("u");
  for (std::string_view r : rules) REQUIRE(u.apply(r) == "");
  return u;
}

AclDenial check(const AclUser& u, const TestRequest& r) {
  std::vector<respite::AclKey> scratch;
  return Acl::check(u, respite::lookup_command(r.frame()), r.frame(), scratch).why;
}

}  // namespace

TEST_CASE("glob: Redis stringmatch cases", "[acl]") {
  CHECK(glob_match("*", ""));
  CHECK(glob_match("*", "anything"));
  CHECK(glob_match("app:*", "app:1"));
  CHECK_FALSE(glob_match("app:*", "secret:x"));
  CHECK(glob_match("h?llo", "hello"));
  CHECK_FALSE(glob_match("h?llo", "hllo"));
  CHECK(glob_match("h[ae]llo", "hallo"));
  CHECK_FALSE(glob_match("h[ae]llo", "hillo"));
  CHECK(glob_match("h[^e]llo", "hallo"));
  CHECK_FALSE(glob_match("h[^e]llo", "hello"));
  CHECK(glob_match("h[a-b]llo", "hbllo"));
  CHECK(glob_match("h[b-a]llo", "hallo"));  // ends in either order
  CHECK(glob_match("a\\*b", "a*b"));
  CHECK_FALSE(glob_match("a\\*b", "axb"));
  CHECK(glob_match("a[\\]]b", "a]b"));
  CHECK(glob_match("ab\\", "ab\\"));  // a trailing backslash is itself
  CHECK(glob_match("a[bc", "ab"));     // a class the pattern ends in is closed there
  CHECK(glob_match("*a*b*c*", "xxaxxbxxcxx"));
  CHECK_FALSE(glob_match("*a*b*c*", "xxaxxcxxbxx"));
  CHECK(glob_match("HELLO", "hello", true));
  CHECK_FALSE(glob_match("HELLO", "hello"));
}

TEST_CASE("glob: a pathological pattern ends quickly", "[acl]") {
  // Exponential for a naive backtracker (and Redis limits its nesting for this reason).
  std::string pattern;
  for (int i = 0; i < 200; ++i) pattern += "*a";
  pattern += "b";
  std::string s(20000, 'a');
  CHECK_FALSE(glob_match(pattern, s));
}

TEST_CASE("sha256: FIPS 180-4 vectors", "[acl]") {
  CHECK(respite::sha256_hex("") ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(respite::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(respite::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(respite::sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // 55, 56 and 64 bytes: the padding's one- and two-block cases.
  CHECK(respite::sha256_hex(std::string(55, 'a')).size() == 64);
  CHECK(respite::sha256_hex(std::string(56, 'a')) !=
        respite::sha256_hex(std::string(55, 'a')));
}

TEST_CASE("rules: ACL LIST text as Redis 7.0 writes it", "[acl]") {
  AclUser app("app");
  for (std::string_view r : {"on", ">apppw", "~app:*", "&news.*", "+@all", "-flushall"})
    REQUIRE(app.apply(r) == "");
  CHECK(app.describe() ==
        "user app on #71d3d4e36cf4bc4309fd7390ba79fc6a1d03d8d7b45ef26f04bcdff3ff116868 ~app:* "
        "resetchannels &news.* +@all -flushall");
  AclUser ro("ro");
  for (std::string_view r : {"on", ">ropw", "~*", "+@read"}) REQUIRE(ro.apply(r) == "");
  CHECK(ro.describe() ==
        "user ro on #f3d8f853b028f03793032c613ccfdd8a0941922f670b9bb8725f67a5d4b09ce8 ~* "
        "resetchannels -@all +@read");
  AclUser x("x");
  CHECK(x.describe() == "user x off resetchannels -@all");
  AclUser z("z");
  for (std::string_view r : {"on", "~a", "%R~b", "%RW~c", "%W~d", "+client|kill", "+@read"})
    REQUIRE(z.apply(r) == "");
  CHECK(z.describe() == "user z on ~a %R~b ~c %W~d resetchannels -@all +@read +client|kill");
  // The rules are derived from the bits, as Redis 7.0 does (redis-server gave these lines).
  auto commands = [](std::initializer_list<std::string_view> rules) {
    AclUser u("c");
    for (std::string_view r : rules) REQUIRE(u.apply(r) == "");
    return u.describe_commands();
  };
  CHECK(commands({"+get", "+set", "-get"}) == "-@all +set");
  CHECK(commands({"+@all", "-get", "+get"}) == "+@all");
  CHECK(commands({"-@all", "+get", "-@read", "+@string"}) == "-@all +@string");
  CHECK(commands({"+client", "+client|kill", "-client|list"}) == "-@all +client -client|list");
  CHECK(commands({"+GET", "+Set", "-@WRITE"}) == "-@all +get");
  AclUser b1("b1");
  for (std::string_view r : {"reset", "on", ">z", "resetpass"}) REQUIRE(b1.apply(r) == "");
  CHECK(b1.describe() == "user b1 on sanitize-payload resetchannels -@all");
}

TEST_CASE("rules: errors are Redis's texts and leave the user unchanged", "[acl]") {
  AclUser u("u");
  CHECK(u.apply("bogus") == "Syntax error");
  CHECK(u.apply("+nosuch") == "Unknown command or category name in ACL");
  CHECK(u.apply("+@nosuch") == "Unknown command or category name in ACL");
  CHECK(u.apply("#abc").rfind("The password hash must be exactly 64 characters", 0) == 0);
  CHECK(u.apply("<nope") == "The password you are trying to remove from the user does not exist");
  CHECK(u.apply("%X~a") == "Syntax error");
  CHECK(u.apply("%R") == "Syntax error");
  REQUIRE(u.apply("allkeys") == "");
  CHECK(u.apply("~b").rfind("Adding a pattern after the * pattern (or the 'allkeys' flag)", 0) == 0);
  REQUIRE(u.apply("allchannels") == "");
  CHECK(u.apply("&b").rfind("Adding a pattern after the * pattern (or the 'allchannels'", 0) == 0);
  CHECK(u.describe() == "user u off ~* &* -@all");
}

TEST_CASE("rules: passwords, nopass, resetpass, reset", "[acl]") {
  AclUser u("u");
  REQUIRE(u.apply(">one") == "");
  REQUIRE(u.apply("#" + respite::sha256_hex("two")) == "");
  CHECK(u.password_ok("one"));
  CHECK(u.password_ok("two"));
  CHECK_FALSE(u.password_ok("three"));
  REQUIRE(u.apply("<one") == "");
  CHECK_FALSE(u.password_ok("one"));
  REQUIRE(u.apply("!" + respite::sha256_hex("two")) == "");
  CHECK_FALSE(u.password_ok("two"));
  REQUIRE(u.apply("nopass") == "");
  CHECK(u.password_ok("anything"));
  REQUIRE(u.apply("resetpass") == "");
  CHECK_FALSE(u.password_ok("anything"));
  REQUIRE(u.apply("on") == "");
  REQUIRE(u.apply("reset") == "");
  CHECK_FALSE(u.enabled());
  CHECK(u.describe() == "user u off sanitize-payload resetchannels -@all");
}

TEST_CASE("check: commands, categories and subcommands", "[acl]") {
  AclUser ro = user_with({"on", "~*", "+@read"});
  CHECK(check(ro, TestRequest{"GET", "k"}) == AclDenial::None);
  CHECK(check(ro, TestRequest{"SET", "k", "v"}) == AclDenial::Command);
  CHECK(check(ro, TestRequest{"AUTH", "a", "b"}) == AclDenial::None);  // no-auth commands
  CHECK(check(ro, TestRequest{"NOSUCHCMD"}) == AclDenial::Command);
  AclUser all = user_with({"on", "~*", "&*", "+@all"});
  CHECK(all.unrestricted());
  CHECK(check(all, TestRequest{"NOSUCHCMD"}) == AclDenial::None);
  CHECK_FALSE(user_with({"on", "~*", "&*", "+@all", "-keys"}).unrestricted());
  AclUser kill = user_with({"on", "+client|kill"});
  CHECK(check(kill, TestRequest{"CLIENT", "KILL", "ID", "1"}) == AclDenial::None);
  CHECK(check(kill, TestRequest{"CLIENT", "LIST"}) == AclDenial::Command);
  AclUser client = user_with({"on", "+client", "-client|kill"});
  CHECK(check(client, TestRequest{"CLIENT", "LIST"}) == AclDenial::None);
  CHECK(check(client, TestRequest{"CLIENT", "KILL", "ID", "1"}) == AclDenial::Command);
  CHECK(Acl::denial_text(AclDenial::Command, respite::lookup_command("client", "kill"), "client") ==
        "NOPERM this user has no permissions to run the 'client|kill' command");
}

TEST_CASE("check: keys with read and write permissions", "[acl]") {
  AclUser app = user_with({"on", "~app:*", "+@all"});
  CHECK(check(app, TestRequest{"GET", "app:1"}) == AclDenial::None);
  CHECK(check(app, TestRequest{"GET", "secret:x"}) == AclDenial::Key);
  CHECK(check(app, TestRequest{"MGET", "app:1", "secret:x"}) == AclDenial::Key);
  CHECK(check(app, TestRequest{"PING"}) == AclDenial::None);  // no keys
  AclUser rw = user_with({"on", "%R~r:*", "%W~w:*", "+@all"});
  CHECK(check(rw, TestRequest{"GET", "r:1"}) == AclDenial::None);
  CHECK(check(rw, TestRequest{"GET", "w:1"}) == AclDenial::Key);
  CHECK(check(rw, TestRequest{"SET", "w:1", "v"}) == AclDenial::None);  // SET only writes...
  CHECK(check(rw, TestRequest{"SET", "w:1", "v", "GET"}) == AclDenial::Key);  // ...unless GET
  CHECK(check(rw, TestRequest{"SET", "r:1", "v"}) == AclDenial::Key);
  CHECK(check(rw, TestRequest{"EXISTS", "w:1", "r:1"}) == AclDenial::None);  // neither flag
  CHECK(check(rw, TestRequest{"COPY", "r:1", "w:2"}) == AclDenial::None);
  CHECK(check(rw, TestRequest{"COPY", "w:1", "w:2"}) == AclDenial::Key);
  CHECK(check(rw, TestRequest{"SORT", "r:1", "STORE", "r:2"}) == AclDenial::Key);
  CHECK(check(rw, TestRequest{"SORT", "r:1", "STORE", "w:2"}) == AclDenial::None);
}

TEST_CASE("check: channels and patterns", "[acl]") {
  AclUser u = user_with({"on", "&news.*", "+@all"});
  CHECK(check(u, TestRequest{"PUBLISH", "news.a", "m"}) == AclDenial::None);
  CHECK(check(u, TestRequest{"PUBLISH", "sport", "m"}) == AclDenial::Channel);
  CHECK(check(u, TestRequest{"SUBSCRIBE", "news.a", "sport"}) == AclDenial::Channel);
  CHECK(check(u, TestRequest{"PSUBSCRIBE", "news.*"}) == AclDenial::None);  // literally
  CHECK(check(u, TestRequest{"PSUBSCRIBE", "news.a*"}) == AclDenial::Channel);
  CHECK(check(u, TestRequest{"UNSUBSCRIBE", "sport"}) == AclDenial::None);
}

TEST_CASE("load: requirepass, user lines, errors naming the rule", "[acl]") {
  respite::Config cfg;
  {
    Acl acl;
    REQUIRE(acl.load(cfg) == "");
    CHECK_FALSE(acl.auth_required());
  }
  cfg.requirepass = "secret";
  {
    Acl acl;
    REQUIRE(acl.load(cfg) == "");
    CHECK(acl.auth_required());
    CHECK(acl.authenticate("default", "secret") != nullptr);
    CHECK(acl.authenticate("default", "wrong") == nullptr);
    CHECK(acl.default_user().describe() ==
          "user default on #2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b ~* "
          "&* +@all");
  }
  cfg.requirepass.clear();
  cfg.users = {"alice on >pw ~* +@read", "bob off >pw"};
  {
    Acl acl;
    REQUIRE(acl.load(cfg) == "");
    CHECK(acl.authenticate("alice", "pw") != nullptr);
    CHECK(acl.authenticate("bob", "pw") == nullptr);  // off
    CHECK(acl.authenticate("carol", "pw") == nullptr);
    CHECK(acl.sorted().size() == 3);
  }
  cfg.users = {"alice on >pw bogus"};
  {
    Acl acl;
    CHECK(acl.load(cfg) == "config file, user 'alice': Error in user declaration 'bogus': Syntax error");
  }
  cfg.users = {"alice on", "alice off"};
  {
    Acl acl;
    CHECK(acl.load(cfg).find("Duplicate user 'alice'") != std::string::npos);
  }
}

TEST_CASE("split_args: quotes as sdssplitargs", "[acl]") {
  std::vector<std::string> w;
  REQUIRE(respite::split_args("alice on \">a b\" '~x y' \"\\x41\"", w));
  CHECK(w == std::vector<std::string>{"alice", "on", ">a b", "~x y", "A"});
  w.clear();
  CHECK_FALSE(respite::split_args("alice \">open", w));
}

TEST_CASE("check: scripts and commands the table lacks need an unrestricted user", "[acl]") {
  AclUser app = user_with({"on", "~app:*", "+@all"});
  CHECK(check(app, TestRequest{"EVAL", "return 1", "0"}) == AclDenial::Command);
  CHECK(check(app, TestRequest{"EVALSHA_RO", "abc", "0"}) == AclDenial::Command);
  CHECK(check(app, TestRequest{"FCALL", "f", "0"}) == AclDenial::Command);
  CHECK(check(app, TestRequest{"FUNCTION", "LOAD", "code"}) == AclDenial::Command);
  CHECK(check(app, TestRequest{"FUNCTION", "LIST"}) == AclDenial::None);
  CHECK(check(app, TestRequest{"SCRIPT", "EXISTS", "abc"}) == AclDenial::None);
  CHECK(check(app, TestRequest{"NOSUCHCMD", "a"}) == AclDenial::Command);
  AclUser all = user_with({"on", "~*", "&*", "+@all"});
  CHECK(check(all, TestRequest{"EVAL", "return 1", "0"}) == AclDenial::None);
  CHECK(check(all, TestRequest{"NOSUCHCMD", "a"}) == AclDenial::None);
  AclUser nochan = user_with({"on", "~*", "+@all"});  // every key, no channel
  CHECK(check(nochan, TestRequest{"EVAL", "return 1", "0"}) == AclDenial::Command);
  CHECK(check(nochan, TestRequest{"NOSUCHCMD", "a"}) == AclDenial::Command);
}

TEST_CASE("check: SORT BY and GET patterns need every key readable", "[acl]") {
  auto refusal = [](const AclUser& u, const TestRequest& r) {
    return std::string(Acl::sort_refusal(u, *respite::lookup_command(r.frame()), r.frame()));
  };
  const std::string by = "ERR BY option of SORT denied due to insufficient ACL permissions.";
  const std::string get = "ERR GET option of SORT denied due to insufficient ACL permissions.";
  AclUser app = user_with({"on", "~app:*", "+@all"});
  CHECK(refusal(app, TestRequest{"SORT", "app:l", "BY", "app:w_*"}) == by);
  CHECK(refusal(app, TestRequest{"SORT", "app:l", "BY", "nosort"}).empty());
  CHECK(refusal(app, TestRequest{"SORT_RO", "app:l", "GET", "#"}) == get);
  CHECK(refusal(app, TestRequest{"SORT", "app:l", "LIMIT", "0", "1", "ALPHA", "GET", "#"}) == get);
  CHECK(refusal(app, TestRequest{"SORT", "app:l", "BOGUS", "GET", "#"}).empty());  // syntax first
  CHECK(refusal(app, TestRequest{"SORT_RO", "app:l", "STORE", "x", "GET", "#"}).empty());
  CHECK(refusal(user_with({"on", "%R~*", "+@all"}), TestRequest{"SORT", "a", "GET", "#"}).empty());
  CHECK(refusal(user_with({"on", "%W~*", "+@all"}), TestRequest{"SORT", "a", "GET", "#"}) == get);
}

TEST_CASE("check: BITFIELD with only GET and OVERFLOW reads", "[acl]") {
  AclUser r = user_with({"on", "%R~r:*", "+@all"});
  CHECK(check(r, TestRequest{"BITFIELD", "r:1", "GET", "u8", "0"}) == AclDenial::None);
  CHECK(check(r, TestRequest{"BITFIELD", "r:1", "OVERFLOW", "SAT", "GET", "u8", "0"}) == AclDenial::None);
  CHECK(check(r, TestRequest{"BITFIELD", "r:1", "SET", "u8", "0", "1"}) == AclDenial::Key);
  CHECK(check(r, TestRequest{"BITFIELD", "r:1", "GET", "u8"}) == AclDenial::Key);  // malformed
}

TEST_CASE("rules: R and W at most once, as Redis", "[acl]") {
  AclUser u("u");
  CHECK(u.apply("%RR~x") == "Syntax error");
  CHECK(u.apply("%WRW~x") == "Syntax error");
  CHECK(u.apply("%RW~x") == "");
}

TEST_CASE("load: password rules never repeated in errors", "[acl]") {
  respite::Config cfg;
  cfg.users = {"alice on >pw <otherpw"};
  {
    Acl acl;
    std::string err = acl.load(cfg);
    CHECK(err.find("otherpw") == std::string::npos);
    CHECK(err.find("'<<redacted>'") != std::string::npos);
  }
  cfg.users = {"alice on #0123"};
  {
    Acl acl;
    CHECK(acl.load(cfg).find("0123") == std::string::npos);
  }
}

TEST_CASE("log: a like entry from a loop whose clock is behind is grouped", "[acl]") {
  Acl acl;
  respite::AclLogEntry e;
  e.reason = AclDenial::Command;
  e.object = "set";
  e.username = "u";
  e.ctime_ms = 100000;
  acl.log(e);
  e.ctime_ms = 99990;  // another loop's clock, 10 ms behind
  acl.log(e);
  auto entries = acl.log_entries(10);
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].count == 2);
}

TEST_CASE("protected mode: the default user nopass even when off", "[acl]") {
  respite::Config cfg;
  cfg.users = {"default off nopass", "app on >pw ~* +@all"};
  Acl acl;
  REQUIRE(acl.load(cfg) == "");
  CHECK(acl.auth_required());
  CHECK(acl.no_passwords());
  cfg.users = {"default on >pw"};
  Acl acl2;
  REQUIRE(acl2.load(cfg) == "");
  CHECK_FALSE(acl2.no_passwords());
}
