"""Users and ACL: respite's users from a users file (Redis's aclfile format), compared with a
redis-server loading the same file; the check in front of the cache (a restricted user gets no
cached value of a key it may not read); ACL WHOAMI/LIST/GETUSER/LOG; protected mode; and
rename-command / deny-command."""

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import unittest

import redis

import harness
from harness import (RawConn, RedisServer, Respite, RespError, assert_same_as_redis,
                     encode_command, proxy_info, respite_only, wait_link_up)

USERS = """\
user default on nopass ~* &* +@all
user ro on >ropw ~* +@read
user app on >apppw ~app:* &news.* +@all -flushall
user rw on >rwpw %R~r:* %W~w:* ~both:* +@all
user gone off >gonepw ~* +@all
user rall on >rallpw %R~* +@all
"""

NOPERM_CMD = "NOPERM this user has no permissions to run the '{}' command"
NOPERM_KEY = "NOPERM this user has no permissions to access one of the keys used as arguments"
NOPERM_CHANNEL = ("NOPERM this user has no permissions to access one of the channels used as "
                  "arguments")
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


def users_file() -> str:
    fd, path = tempfile.mkstemp(prefix="respite-acl-", suffix=".acl")
    with os.fdopen(fd, "w") as f:
        f.write(USERS)
    return path


def auth(user: str, password: str) -> bytes:
    return encode_command("AUTH", user, password)


@respite_only
class Users(unittest.TestCase):
    """respite --aclfile F in front of a plain upstream; `ref` is a redis-server --aclfile F."""

    @classmethod
    def setUpClass(cls):
        stack = contextlib.ExitStack()
        cls.addClassCleanup(stack.close)
        cls.path = users_file()
        cls.addClassCleanup(os.unlink, cls.path)
        cls.upstream = stack.enter_context(RedisServer())
        cls.ref = stack.enter_context(RedisServer(["--aclfile", cls.path]))
        cls.proxy = stack.enter_context(Respite(cls.upstream, ["--aclfile", cls.path]))
        cls.port = cls.proxy.port

    def tearDown(self):
        self.proxy.assert_alive()

    def client(self, user, password, **kw):
        c = redis.Redis(host=harness.HOST, port=self.port, username=user, password=password,
                        socket_timeout=5, **kw)
        self.addCleanup(c.close)
        return c

    def same(self, data, nreplies=None):
        return assert_same_as_redis(self, self.port, self.ref.port, data, nreplies)

    def test_texts_match_redis(self):
        cases = [
            auth("ro", "ropw") + encode_command("SET", "k", "v"),
            auth("ro", "ropw") + encode_command("CLIENT", "KILL", "ID", "99999"),
            auth("ro", "ropw") + encode_command("SET", "k"),
            auth("ro", "ropw") + encode_command("NOSUCHCMD", "a", "b"),
            auth("app", "apppw") + encode_command("GET", "secret:x"),
            auth("app", "apppw") + encode_command("MGET", "app:1", "secret:x"),
            auth("app", "apppw") + encode_command("FLUSHALL"),
            auth("app", "apppw") + encode_command("PUBLISH", "sport", "m"),
            auth("rw", "rwpw") + encode_command("GET", "w:1"),
            auth("rw", "rwpw") + encode_command("SET", "r:1", "v"),
            auth("rw", "rwpw") + encode_command("SET", "w:1", "v", "GET"),
            auth("app", "wrong"),
            auth("gone", "gonepw"),
            auth("nobody", "x"),
            encode_command("HELLO", "3", "AUTH", "app", "wrong"),
            encode_command("ACL", "WHOAMI", "extra"),
            encode_command("ACL", "NOSUCH"),
            encode_command("ACL", "LOG", "RESET", "x"),
            encode_command("ACL", "LOG", "1", "2"),
            encode_command("ACL", "CAT", "nosuch"),
            encode_command("ACL", "LIST"),
            encode_command("ACL", "USERS"),
            encode_command("ACL", "GETUSER", "app"),
            encode_command("ACL", "GETUSER", "rw"),
            encode_command("ACL", "GETUSER", "nosuch"),
            encode_command("ACL", "CAT"),
            encode_command("ACL", "DRYRUN", "ro", "SET", "k", "v"),
            encode_command("ACL", "DRYRUN", "ro", "GET", "k"),
            encode_command("ACL", "DRYRUN", "app", "GET", "secret:x"),
            encode_command("ACL", "DRYRUN", "app", "PUBLISH", "sport", "m"),
            encode_command("ACL", "DRYRUN", "nosuch", "GET", "k"),
            encode_command("ACL", "DRYRUN", "ro", "NOSUCHCMD"),
            encode_command("ACL", "DRYRUN", "ro", "SET", "k"),
            encode_command("ACL", "DRYRUN", "ro"),
        ]
        for data in cases:
            with self.subTest(data=data[:80]):
                self.same(data, nreplies=data.count(b"*"))

    def test_restricted_users_as_redis(self):
        # SORT's BY and GET patterns read any key: refused, with SORT's own texts, unless the
        # user may read every key; BITFIELD with only GET/OVERFLOW only reads; a wrong argument
        # count is answered before the ACL (its keys cannot be found).
        app, rw = ("AUTH", "app", "apppw"), ("AUTH", "rw", "rwpw")
        cases = [
            [app, ("SORT", "app:l", "BY", "app:w_*")],
            [app, ("SORT", "app:l", "BY", "nosort")],
            [app, ("SORT", "app:l", "GET", "#")],
            [app, ("SORT", "app:l", "LIMIT", "0", "5", "GET", "#")],
            [app, ("SORT", "app:l", "LIMIT", "x", "5", "GET", "#")],
            [app, ("SORT_RO", "app:l", "GET", "secret:*")],
            [app, ("SORT_RO", "app:l", "STORE", "app:d", "GET", "#")],
            [app, ("SORT", "secret:l", "GET", "#")],
            [rw, ("SORT_RO", "r:l", "BY", "x_*")],
            [("AUTH", "rall", "rallpw"), ("SORT_RO", "r:l", "BY", "x_*", "GET", "#")],
            [rw, ("BITFIELD", "r:bf", "GET", "u8", "0")],
            [rw, ("BITFIELD", "r:bf", "OVERFLOW", "SAT", "GET", "u8", "0")],
            [rw, ("BITFIELD", "r:bf", "SET", "u8", "0", "1")],
            [rw, ("BITFIELD", "r:bf", "GET", "u8")],
            [app, ("GET",)],
            [app, ("GET", "secret:x", "extra")],
            [app, ("CLIENT", "KILL")],
            [app, ("MULTI",), ("GET",), ("EXEC",)],
            # Refused when SORT runs, inside EXEC: the rest of the transaction runs.
            [app, ("MULTI",), ("SET", "app:m1", "a"), ("SORT", "app:l", "GET", "#"),
             ("SORT", "app:l", "BY", "app:w_*"), ("GET", "app:m1"), ("EXEC",)],
            [("CLIENT", "KILL", "USER", "nosuch")],
        ]
        for cmds in cases:
            with self.subTest(cmds=cmds):
                self.same(b"".join(encode_command(*c) for c in cmds), nreplies=len(cmds))

    def test_wrong_argument_count_is_not_forwarded_for_a_restricted_user(self):
        # Its keys cannot be found, so it cannot be checked: respite answers it as Redis would.
        up = self.upstream.client()
        up.config_resetstat()
        with RawConn(self.port) as c:
            self.assertEqual(c.call("AUTH", "app", "apppw"), "OK")
            for cmd in (("GET",), ("GET", "secret:x", "extra"), ("SET", "secret:x")):
                self.assertEqual(c.call(*cmd), RespError(
                    f"ERR wrong number of arguments for '{cmd[0].lower()}' command"))
        stats = up.info("commandstats")
        for name in ("cmdstat_get", "cmdstat_set"):
            self.assertEqual(stats.get(name, {}).get("rejected_calls", 0), 0, stats.get(name))

    def test_nul_after_a_keyword_hides_no_key(self):
        # Redis compares option keywords with strcasecmp, which stops at a NUL: "STREAMS\0" is
        # STREAMS to it, so respite's key finding must see the keys after it too.
        app, rw = ("AUTH", "app", "apppw"), ("AUTH", "rw", "rwpw")
        cases = [
            [app, ("XREAD", "COUNT", "5", b"STREAMS\0", "secret:s", "0")],
            [app, ("SORT_RO", "app:l", b"GET\0", "secret:*")],
            [app, ("SORT", "app:l", b"STORE\0x", "secret:dst")],
            [app, ("GEORADIUS", "app:g", "13", "38", "500", "km", b"store\0", "secret:geo")],
            [app, ("MIGRATE", "127.0.0.1", "1", "", "0", "1000", b"KEYS\0", "secret:mig")],
            [rw, ("SET", "w:1", "new", b"GET\0")],
        ]
        for cmds in cases:
            with self.subTest(cmds=cmds):
                self.same(b"".join(encode_command(*c) for c in cmds), nreplies=len(cmds))
        self.assertEqual(self.upstream.client().exists("secret:dst", "secret:geo"), 0)

    def test_nul_in_a_command_or_subcommand_name_is_never_forwarded(self):
        # Redis finds such a name only by the luck of a hash bucket; respite answers it as
        # unknown, for every user, and the upstream never sees it (no error counted there).
        up = self.upstream.client()
        up.set("secret:x", "s")
        up.config_resetstat()
        with RawConn(self.port) as c:
            self.assertEqual(c.call(b"GET\0x", "secret:x"), RespError(
                "ERR unknown command 'GET', with args beginning with: 'secret:x' "))
            # CLIENT REPLY OFF would silence the shared upstream connection for everyone.
            self.assertEqual(c.call("CLIENT", b"REPLY\0x", "OFF"), RespError(
                "ERR unknown subcommand 'REPLY'. Try CLIENT HELP."))
            self.assertEqual(c.call("AUTH", "app", "apppw"), "OK")
            for n in range(16):
                self.assertEqual(c.call("MEMORY", b"USAGE\0%d" % n, "secret:x"), RespError(
                    "ERR unknown subcommand 'USAGE'. Try MEMORY HELP."))
            # A subcommand the table does not know is not the container's to allow.
            self.assertEqual(c.call("CONFIG", "NOSUCHSUB", "x"), RespError(
                "ERR unknown subcommand 'NOSUCHSUB'. Try CONFIG HELP."))
        self.assertEqual(self.client("default", None).set("after", "1"), True)
        self.assertEqual(up.info("errorstats"), {}, "nothing refused upstream")

    def test_scripts_refused_to_restricted_users(self):
        # Redis checks each redis.call against the caller; respite cannot look inside a script
        # (the upstream runs it as respite's own user), so a restricted user runs none.
        self.upstream.client().set("secret:x", "s3cr3t")
        with RawConn(self.port) as c:
            self.assertEqual(c.call("ACL", "LOG", "RESET"), "OK")
            self.assertEqual(c.call("AUTH", "app", "apppw"), "OK")
            for cmd in (("EVAL", "return redis.call('get','secret:x')", "0"),
                        ("EVAL_RO", "return redis.call('get','secret:x')", "0"),
                        ("EVALSHA", "a" * 40, "0"), ("EVALSHA_RO", "a" * 40, "0"),
                        ("FCALL", "f", "0"), ("FCALL_RO", "f", "0"),
                        ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f', "
                                             "function() return 1 end)"),
                        ("FUNCTION", "RESTORE", "x")):
                with self.subTest(cmd=cmd[:2]):
                    name = cmd[0].lower() + ("|" + cmd[1].lower() if cmd[0] == "FUNCTION" else "")
                    self.assertEqual(c.call(*cmd), RespError(NOPERM_CMD.format(name)))
            c.call("AUTH", "default", "")
            entries = c.call("ACL", "LOG")
        objects = {dict(zip(e[::2], e[1::2]))[b"object"] for e in entries}
        self.assertIn(b"eval", objects)
        self.assertIn(b"function|load", objects)
        self.assertEqual(self.client("default", None).eval("return 7", 0), 7)

    def test_command_the_table_lacks_refused_to_a_key_limited_user(self):
        with RawConn(self.port) as c:
            self.assertEqual(c.call("AUTH", "app", "apppw"), "OK")
            self.assertEqual(c.call("NOSUCHCMD", "secret:x"),
                             RespError(NOPERM_CMD.format("nosuchcmd")))
        with RawConn(self.port) as c:  # an unrestricted user gets Redis's unknown command
            self.assertTrue(c.call("NOSUCHCMD", "x").startswith("ERR unknown command"))

    def test_acl_is_never_forwarded(self):
        # Queued in a transaction ACL SETUSER would run upstream as respite's own user: refused,
        # and the transaction aborts, as AUTH there.
        with RawConn(self.port) as c:
            self.assertEqual(c.call("MULTI"), "OK")
            self.assertTrue(c.call("ACL", "SETUSER", "hacker", "on", "nopass", "~*", "+@all")
                            .startswith("ERR ACL inside a transaction"))
            self.assertTrue(c.call("EXEC").startswith("EXECABORT"))
        self.assertNotIn("hacker", self.upstream.client().acl_users())
        # Subscribed: RESP2 refuses it as Redis does for any non-pub/sub command...
        self.same(encode_command("SUBSCRIBE", "news.a") + encode_command("ACL", "WHOAMI") +
                  encode_command("ACL", "SETUSER", "hacker", "on"), nreplies=3)
        self.assertNotIn("hacker", self.upstream.client().acl_users())

        # ...and RESP3 answers it (respite's users, not the upstream's).
        def subscribed_resp3(port, *cmd):
            with RawConn(port) as c:
                c.cmd("HELLO", "3")
                c.read_raw_replies(1)  # holds the connection's id: differs
                c.cmd("SUBSCRIBE", "news.a")
                c.read_raw_replies(1)
                c.cmd(*cmd)
                return c.read_raw_replies(1)
        with RawConn(self.port) as c:
            c.call("AUTH", "app", "apppw")
        for cmd in (("ACL", "WHOAMI"), ("ACL", "USERS"), ("ACL", "NOSUCH")):
            with self.subTest(cmd=cmd):
                self.assertEqual(subscribed_resp3(self.port, *cmd),
                                 subscribed_resp3(self.ref.port, *cmd))

    def test_client_kill_user(self):
        with RawConn(self.port) as a1, RawConn(self.port) as a2, RawConn(self.port) as d:
            for a in (a1, a2):
                self.assertEqual(a.call("AUTH", "app", "apppw"), "OK")
            self.assertEqual(d.call("PING"), "PONG")
            with RawConn(self.port) as k:
                self.assertEqual(k.call("CLIENT", "KILL", "USER", "app"), 2)
                self.assertEqual(k.call("CLIENT", "KILL", "USER", "rall"), 0)
            self.assertEqual(d.call("PING"), "PONG")  # the default user's client stays
            for a in (a1, a2):
                with self.assertRaises((ConnectionError, OSError, EOFError)):
                    a.call("PING")

    def test_resp3_shapes_match_redis(self):
        def after_hello(port, *cmd):
            with RawConn(port) as c:
                c.cmd("HELLO", "3")
                c.read_raw_replies(1)  # holds the connection's id: differs
                c.cmd(*cmd)
                return c.read_raw_replies(1)
        for cmd in (("ACL", "GETUSER", "app"), ("ACL", "GETUSER", "nosuch"),
                    ("ACL", "GETUSER", "default"), ("ACL", "LIST"), ("ACL", "WHOAMI")):
            with self.subTest(cmd=cmd):
                self.assertEqual(after_hello(self.port, *cmd), after_hello(self.ref.port, *cmd))

    def test_readonly_user_gets_noperm_on_set(self):
        ro = self.client("ro", "ropw")
        with self.assertRaises(redis.exceptions.NoPermissionError) as e:
            ro.set("k", "v")
        self.assertEqual(str(e.exception), NOPERM_CMD.format("set")[len("NOPERM "):])
        self.client("default", None).set("k", "v")
        self.assertEqual(ro.get("k"), b"v")

    def test_cached_key_is_not_served_to_a_user_without_its_permission(self):
        self.upstream.client().set("secret:x", "s3cr3t")
        with RawConn(self.port) as d:
            self.assertTrue(wait_link_up(d), "the invalidation link did not come up")
            self.assertEqual(d.call("GET", "secret:x"), b"s3cr3t")  # a miss fills the cache
            hits = int(proxy_info(self.port)["cache_hits"])
            self.assertEqual(d.call("GET", "secret:x"), b"s3cr3t")
            self.assertEqual(int(proxy_info(self.port)["cache_hits"]), hits + 1, "not cached")
        with RawConn(self.port) as a:
            self.assertEqual(a.call("AUTH", "app", "apppw"), "OK")
            self.assertEqual(a.call("GET", "secret:x"), RespError(NOPERM_KEY))
            self.assertEqual(a.call("MGET", "app:1", "secret:x"), RespError(NOPERM_KEY))
            self.assertEqual(a.call("GETRANGE", "secret:x", "0", "-1"), RespError(NOPERM_KEY))
        self.assertEqual(int(proxy_info(self.port)["cache_hits"]), hits + 1,
                         "a refused read touched the cache")

    def test_whoami_and_redis_py_login(self):
        self.assertEqual(self.client("default", None).acl_whoami(), "default")
        app = self.client("app", "apppw", decode_responses=True)
        self.assertEqual(app.acl_whoami(), "app")
        app.set("app:k", "v")
        self.assertEqual(app.get("app:k"), "v")
        self.assertEqual(self.client("rw", "rwpw").acl_whoami(), "rw")

    def test_read_and_write_key_permissions(self):
        rw = self.client("rw", "rwpw")
        rw.set("w:1", "v")                 # %W~: SET without GET only writes
        self.assertEqual(self.upstream.client().get("w:1"), b"v")
        self.upstream.client().set("r:1", "v")
        self.assertEqual(rw.get("r:1"), b"v")  # %R~
        with self.assertRaises(redis.exceptions.NoPermissionError):
            rw.get("w:1")
        with self.assertRaises(redis.exceptions.NoPermissionError):
            rw.set("r:1", "x")
        rw.set("both:1", "x")
        self.assertEqual(rw.get("both:1"), b"x")

    def test_channels(self):
        app = self.client("app", "apppw")
        self.assertEqual(app.publish("news.a", "m"), 0)
        with self.assertRaises(redis.exceptions.NoPermissionError):
            app.publish("sport", "m")
        with RawConn(self.port) as c:
            self.assertEqual(c.call("AUTH", "app", "apppw"), "OK")
            self.assertEqual(c.call("SUBSCRIBE", "sport"), RespError(NOPERM_CHANNEL))
            self.assertEqual(c.call("PSUBSCRIBE", "news.a*"), RespError(NOPERM_CHANNEL))
            c.cmd("SUBSCRIBE", "news.a")
            self.assertEqual(c.read_reply(), [b"subscribe", b"news.a", 1])
            # Subscribed: a refused SUBSCRIBE still gets its error, and the client stays.
            self.assertEqual(c.call("SUBSCRIBE", "sport"), RespError(NOPERM_CHANNEL))

    def test_acl_log(self):
        with RawConn(self.port) as c:
            self.assertEqual(c.call("ACL", "LOG", "RESET"), "OK")
            self.assertEqual(c.call("AUTH", "ro", "ropw"), "OK")
            for _ in range(2):
                self.assertEqual(c.call("SET", "k", "v"), RespError(NOPERM_CMD.format("set")))
            self.assertEqual(c.call("AUTH", "app", "nope"), RespError(WRONGPASS[1:-2].decode()))
            c.call("AUTH", "default", "")
            entries = c.call("ACL", "LOG")
        self.assertEqual(len(entries), 2)
        newest = dict(zip(entries[0][::2], entries[0][1::2]))
        self.assertEqual((newest[b"reason"], newest[b"object"], newest[b"username"]),
                         (b"auth", b"auth", b"app"))
        older = dict(zip(entries[1][::2], entries[1][1::2]))
        self.assertEqual((older[b"count"], older[b"reason"], older[b"context"], older[b"object"],
                          older[b"username"]), (2, b"command", b"toplevel", b"set", b"ro"))
        self.assertIn(b"user=ro", older[b"client-info"])
        with RawConn(self.port) as c:
            self.assertEqual(len(c.call("ACL", "LOG", "1")), 1)

    def test_wrong_password_and_reset(self):
        with RawConn(self.port) as c:
            self.assertEqual(c.call("AUTH", "app", "wrong"), RespError(WRONGPASS[1:-2].decode()))
            self.assertEqual(c.call("ACL", "WHOAMI"), b"default")
            self.assertEqual(c.call("AUTH", "gone", "gonepw"), RespError(WRONGPASS[1:-2].decode()))
            self.assertEqual(c.call("AUTH", "app", "apppw"), "OK")
            self.assertEqual(c.call("ACL", "WHOAMI"), b"app")
            self.assertEqual(c.call("RESET"), "RESET")
            self.assertEqual(c.call("ACL", "WHOAMI"), b"default")

    def test_hello_auth_of_a_pinned_client(self):
        # WATCH pins the client; HELLO 3 then switches the pinned connection's protocol, but
        # the AUTH is respite's: the upstream must not be asked to log in as app.
        with RawConn(self.port) as c:
            self.assertEqual(c.call("WATCH", "app:w"), "OK")
            reply = c.call("HELLO", "3", "AUTH", "app", "apppw")
            self.assertIsInstance(reply, dict, reply)
            self.assertEqual(reply[b"proto"], 3)
            self.assertEqual(c.call("ACL", "WHOAMI"), b"app")
            self.assertEqual(c.call("GET", "secret:x"), RespError(NOPERM_KEY))
            self.assertEqual(c.call("SET", "app:w", "1"), "OK")

    def test_auth_in_a_transaction_or_subscribed(self):
        # The upstream never sees a client's password: AUTH stays respite's while subscribed,
        # and is refused inside MULTI (which then aborts, as for any refused command).
        with RawConn(self.port) as c:
            c.cmd("SUBSCRIBE", "news.a")
            c.read_reply()
            c.cmd("AUTH", "app", "apppw")
            self.assertEqual(c.read_reply(), "OK")
        with RawConn(self.port) as c:
            self.assertEqual(c.call("MULTI"), "OK")
            self.assertTrue(c.call("AUTH", "app", "apppw").startswith("ERR AUTH"))
            self.assertTrue(c.call("HELLO", "2", "AUTH", "app", "apppw").startswith("ERR AUTH"))
            # AUTH\0 is AUTH to Redis (strcasecmp): the password never goes upstream either.
            self.assertTrue(c.call("HELLO", "2", b"AUTH\0", "app", "apppw").startswith("ERR AUTH"))
            self.assertTrue(c.call("EXEC").startswith("EXECABORT"))
            self.assertEqual(c.call("ACL", "WHOAMI"), b"default")

    def test_passwords_never_in_clear(self):
        with RawConn(self.port) as c:
            listing = b"\n".join(c.call("ACL", "LIST"))
            cfg = c.call("PROXY", "CONFIG", "GET", "*")
            info = c.call("PROXY", "INFO")
        for secret in (b"ropw", b"apppw", b"rwpw", b"gonepw"):
            self.assertNotIn(secret, listing)
            self.assertNotIn(secret, b"\n".join(x for x in cfg if isinstance(x, bytes)))
            self.assertNotIn(secret, info if isinstance(info, bytes) else info.encode())
        self.assertNotIn(b"apppw", Path_read(self.proxy.proc.log_path))


def Path_read(p) -> bytes:
    with open(p, "rb") as f:
        return f.read()


EDGE_USERS = """\
user default on nopass ~* &* +@all
user a1 on %RW~* +@all
user a2 on ~a ~a %R~b ~b %W~c %R~c
user a3 on +@all -get +get
user a4 on -@all +get -@read +@string
user a5 on allkeys resetkeys ~x allchannels resetchannels &y &y
user a6 on >a >a nopass
user a7 on nopass >b
user a8 off +client +client|kill -client|list
user a9 on +@all -@dangerous +keys ~* &*
user b1 reset on >z resetpass
user b2 on +GET +Set -@WRITE
"""


@respite_only
class AclListLikeRedis(unittest.TestCase):
    """ACL LIST derives the rules from the bits as Redis 7.0 does; Redis lists single commands in
    its dict's (random) order, so each line is compared as a set of words, and respite's own
    PROXY subcommands (which Redis lacks) are left out."""

    def test_same_rules(self):
        fd, path = tempfile.mkstemp(suffix=".acl")
        with os.fdopen(fd, "w") as f:
            f.write(EDGE_USERS)
        self.addCleanup(os.unlink, path)
        with contextlib.ExitStack() as stack:
            up = stack.enter_context(RedisServer())
            ref = stack.enter_context(RedisServer(["--aclfile", path]))
            px = stack.enter_context(Respite(up, ["--aclfile", path]))
            with RawConn(ref.port) as r, RawConn(px.port) as p:
                want, got = r.call("ACL", "LIST"), p.call("ACL", "LIST")
        self.assertEqual(len(got), len(want))
        for w, g in zip(want, got):
            gw = {x for x in g.split() if not x.startswith((b"+proxy", b"-proxy"))}
            self.assertEqual(gw, set(w.split()), (w, g))


@respite_only
class UsersWithRequirepass(harness.ProxyTestCase):
    """requirepass and no users: the default user has that password, as in Redis."""

    respite_args = ["--requirepass", "pw"]

    def test_default_user_needs_the_password(self):
        with self.raw() as c:
            self.assertEqual(c.call("GET", "k"), RespError("NOAUTH Authentication required."))
            self.assertEqual(c.call("AUTH", "default", "pw"), "OK")
            self.assertEqual(c.call("ACL", "WHOAMI"), b"default")
            line = c.call("ACL", "LIST")[0]
            self.assertTrue(line.startswith(b"user default on #"), line)
            self.assertNotIn(b" pw", line)
            self.assertEqual(c.call("RESET"), "RESET")
            self.assertEqual(c.call("GET", "k"), RespError("NOAUTH Authentication required."))


def own_address() -> str | None:
    """A non-loopback address of this machine (no packet is sent), or None."""
    for target in ("192.0.2.1", "10.255.255.255", "203.0.113.1"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((target, 9))
                addr = s.getsockname()[0]
            if not addr.startswith("127."):
                return addr
        except OSError:
            continue
    return None


def exchange_at(addr: str, port: int, data: bytes, timeout: float = 3.0) -> tuple[bytes, bool]:
    """What respite answers at addr:port, and whether it closed the connection."""
    with socket.create_connection((addr, port), timeout=timeout) as s:
        if data:
            s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return buf, False
            except ConnectionResetError:  # closed with our request unread
                return buf, True
            if not chunk:
                return buf, True
            buf += chunk
            if buf.endswith(b"\r\n") and not buf.startswith(b"-DENIED"):
                return buf, False
        return buf, False


@respite_only
class ProtectedMode(unittest.TestCase):
    def start(self, args):
        stack = contextlib.ExitStack()
        self.addCleanup(stack.close)
        up = stack.enter_context(RedisServer())
        return stack.enter_context(Respite(up, ["--bind", "0.0.0.0"] + args))

    def setUp(self):
        self.addr = own_address()
        if self.addr is None:
            self.skipTest("this machine has no non-loopback address to connect from")

    def test_refused_from_another_address_without_password(self):
        p = self.start([])
        # As Redis, the refusal is written on accept: nothing is sent, so nothing unread makes
        # the close a reset.
        got, closed = exchange_at(self.addr, p.port, b"")
        self.assertTrue(got.startswith(b"-DENIED respite is running in protected mode"), got)
        self.assertIn(b"'--protected-mode no'", got)
        self.assertTrue(closed)
        with RawConn(p.port) as c:  # loopback is served
            self.assertEqual(c.call("PING"), "PONG")

    def test_refused_while_the_default_user_is_nopass_even_off(self):
        # Redis 7.0 protects whenever the default user is nopass, on or off.
        fd, path = tempfile.mkstemp(suffix=".acl")
        with os.fdopen(fd, "w") as f:
            f.write("user default off nopass ~* &* +@all\nuser app on >apppw ~* &* +@all\n")
        self.addCleanup(os.unlink, path)
        p = self.start(["--aclfile", path])
        got, closed = exchange_at(self.addr, p.port, b"")
        self.assertTrue(got.startswith(b"-DENIED respite is running in protected mode"), got)
        self.assertTrue(closed)

    def test_served_with_protected_mode_off_or_a_password(self):
        p = self.start(["--protected-mode", "no"])
        self.assertEqual(exchange_at(self.addr, p.port, encode_command("PING")),
                         (b"+PONG\r\n", False))
        p = self.start(["--requirepass", "pw"])
        self.assertEqual(exchange_at(self.addr, p.port, encode_command("PING"))[0],
                         b"-NOAUTH Authentication required.\r\n")


@respite_only
class RenameAndDeny(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        stack = contextlib.ExitStack()
        cls.addClassCleanup(stack.close)
        fd, cls.conf = tempfile.mkstemp(prefix="respite-", suffix=".conf")
        with os.fdopen(fd, "w") as f:
            f.write('rename-command FLUSHALL ""\n')
        cls.addClassCleanup(os.unlink, cls.conf)
        cls.upstream = stack.enter_context(RedisServer())
        cls.ref = stack.enter_context(RedisServer(["--rename-command", "keys", "mykeys",
                                                   "--rename-command", "flushall", ""]))
        cls.proxy = stack.enter_context(Respite(cls.upstream, [
            "--config", cls.conf, "--rename-command", "keys", "mykeys",
            "--deny-command", "debug"]))
        cls.port = cls.proxy.port

    def test_old_names_are_unknown_as_in_redis(self):
        for data in (encode_command("KEYS", "*"), encode_command("keys", "a\r\nb", "c"),
                     encode_command("FLUSHALL"), encode_command("flushall", "ASYNC")):
            with self.subTest(data=data):
                assert_same_as_redis(self, self.port, self.ref.port, data, 1)
        with RawConn(self.port) as c:
            self.assertEqual(c.call("DEBUG", "SLEEP", "0"),
                             RespError("ERR unknown command 'DEBUG', with args beginning with: "
                                       "'SLEEP' '0' "))

    def test_new_name_works(self):
        self.upstream.client().set("renamed:k", "v")
        with RawConn(self.port) as c:
            self.assertEqual(c.call("MYKEYS", "renamed:*"), [b"renamed:k"])
            self.assertEqual(c.call("PING"), "PONG")


@respite_only
class HttpLookup(unittest.TestCase):
    """The HTTP port's /lookup asks as a user too: Basic user:password (Bearer: the default
    user's password), and the user's key permissions hold before the cache is read."""

    @classmethod
    def setUpClass(cls):
        from test_http import HttpRespite
        stack = contextlib.ExitStack()
        cls.addClassCleanup(stack.close)
        fd, cls.path = tempfile.mkstemp(suffix=".acl")
        with os.fdopen(fd, "w") as f:
            f.write("user default on >defpw ~* &* +@all\nuser app on >apppw ~app:* +@all\n"
                    "user nocmd on >nopw ~* -@all\nuser nosel on >nspw ~* +@all -select\n")
        cls.addClassCleanup(os.unlink, cls.path)
        cls.upstream = stack.enter_context(RedisServer())
        cls.proxy = stack.enter_context(HttpRespite(cls.upstream, ["--aclfile", cls.path]))

    def get(self, path, user=None, password=None):
        import base64
        import http.client
        c = http.client.HTTPConnection(harness.HOST, self.proxy.http_port, timeout=5)
        headers = {}
        if user is not None:
            cred = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {cred}"
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    def test_lookup_checks_the_user(self):
        self.upstream.client().set("secret:x", "s")
        self.upstream.client().set("app:1", "a")
        self.assertEqual(self.get("/lookup?key=secret:x")[0], 401)  # default needs a password
        self.assertEqual(self.get("/lookup?key=secret:x", "default", "defpw")[0], 200)
        self.assertEqual(self.get("/lookup?key=app:1", "app", "apppw")[0], 200)
        status, body = self.get("/lookup?key=secret:x", "app", "apppw")
        self.assertEqual(status, 403)
        self.assertIn(NOPERM_KEY.encode(), body)
        status, body = self.get("/lookup?key=app:1", "nocmd", "nopw")
        self.assertEqual(status, 403)
        self.assertIn(NOPERM_CMD.format("get").encode(), body)
        self.assertEqual(self.get("/lookup?key=app:1", "app", "wrong")[0], 401)
        # Another database is what SELECT reaches: a user refused SELECT is refused it here.
        status, body = self.get("/lookup?key=app:1&db=1", "nosel", "nspw")
        self.assertEqual(status, 403)
        self.assertIn(NOPERM_CMD.format("select").encode(), body)
        self.assertEqual(self.get("/lookup?key=app:1&db=0", "nosel", "nspw")[0], 200)
        self.assertEqual(self.get("/lookup?key=app:1&db=1", "default", "defpw")[0], 404)
        # /metrics needs a password when the default user has one (no requirepass given).
        self.assertEqual(self.get("/metrics")[0], 401)
        self.assertEqual(self.get("/metrics", "default", "defpw")[0], 200)


@respite_only
class BadUsers(unittest.TestCase):
    def run_respite(self, *args) -> tuple[int, str]:
        p = subprocess.run([harness.respite_bin(), "--port", "0", *args], capture_output=True,
                           text=True, timeout=20)
        return p.returncode, p.stdout + p.stderr

    def run_with_users(self, text: str) -> tuple[str, int, str]:
        """respite --aclfile F, F holding `text`: (F, exit status, output)."""
        fd, path = tempfile.mkstemp(suffix=".acl")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return (path, *self.run_respite("--aclfile", path))

    def test_bad_rule_stops_start_naming_the_line(self):
        path, rc, out = self.run_with_users("user a on >x ~* +@all\nuser b on +nosuch\n")
        self.assertNotEqual(rc, 0)
        self.assertIn(f"{path}:2: Error in user declaration '+nosuch': Unknown command or "
                      f"category name in ACL", out)
        self.assertNotIn(">x", out)

    def test_password_rules_never_in_the_error(self):
        _, rc, out = self.run_with_users("user a on >x <notmine ~* +@all\n")
        self.assertNotEqual(rc, 0)
        self.assertIn("The password you are trying to remove from the user does not exist", out)
        self.assertNotIn("notmine", out)

    def test_users_file_words_are_not_quoted(self):
        # As Redis's ACLLoadFromFile (redis-server refuses the same files: "Syntax error").
        for line in ("user q on nopass '~ab' +@all", 'user q on nopass "~a b" +@all',
                     "user q on %RR~x"):
            with self.subTest(line=line):
                path, rc, out = self.run_with_users(line + "\n")
                self.assertNotEqual(rc, 0)
                self.assertIn(f"{path}:1: Error in user declaration", out)
                self.assertIn("Syntax error", out)

    def test_bad_user_line_in_config(self):
        rc, out = self.run_respite("--user", "b on >secretpw bogus")
        self.assertNotEqual(rc, 0)
        self.assertIn("Error in user declaration 'bogus': Syntax error", out)
        self.assertNotIn("secretpw", out)


if __name__ == "__main__":
    harness.run_tests()
