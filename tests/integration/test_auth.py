"""AUTH: --requirepass on respite (compared byte for byte with a redis-server that has the same
requirepass), and respite authenticating to a password-protected upstream."""

import contextlib
import time
import unittest

import harness
from harness import (DIRECT, RawConn, RedisServer, Respite, RespError, assert_same_as_redis,
                     encode_command, respite_only)

NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


class RequirePass(unittest.TestCase):
    """respite --requirepass secret in front of an upstream without a password; `ref` is a
    redis-server with requirepass secret, the reference for the bytes."""

    @classmethod
    def setUpClass(cls):
        stack = contextlib.ExitStack()
        cls.addClassCleanup(stack.close)
        cls.upstream = stack.enter_context(RedisServer())
        cls.ref = stack.enter_context(RedisServer(password="secret"))
        if DIRECT:
            cls.proxy = None
            cls.port = cls.ref.port
        else:
            cls.proxy = stack.enter_context(Respite(cls.upstream, ["--requirepass", "secret"]))
            cls.port = cls.proxy.port

    def tearDown(self):
        if self.proxy:
            self.proxy.assert_alive()

    def same(self, data, nreplies=None, expected=None, expect_close=None):
        return assert_same_as_redis(self, self.port, self.ref.port, data, nreplies, expected,
                                    expect_close)

    def test_noauth_before_auth(self):
        self.same(encode_command("GET", "k") + encode_command("SET", "k", "v") + encode_command("PING"),
                  nreplies=3, expected=NOAUTH * 3, expect_close=False)

    def test_wrongpass(self):
        self.same(encode_command("AUTH", "nope") + encode_command("AUTH", "default", "nope") +
                  encode_command("GET", "k"),
                  nreplies=3, expected=WRONGPASS * 2 + NOAUTH, expect_close=False)

    def test_auth_then_commands(self):
        self.same(encode_command("GET", "respite:auth:k") + encode_command("AUTH", "secret") +
                  encode_command("SET", "respite:auth:k", "v") + encode_command("GET", "respite:auth:k"),
                  nreplies=4, expected=NOAUTH + b"+OK\r\n+OK\r\n$1\r\nv\r\n", expect_close=False)
        self.same(encode_command("AUTH", "default", "secret") + encode_command("PING"),
                  nreplies=2, expected=b"+OK\r\n+PONG\r\n", expect_close=False)

    def test_auth_syntax_error(self):
        self.same(encode_command("AUTH", "a", "b", "c"), nreplies=1,
                  expected=b"-ERR syntax error\r\n", expect_close=False)

    def test_hello_before_auth(self):
        self.same(encode_command("HELLO", "3"), nreplies=1, expect_close=False,
                  expected=b"-NOAUTH HELLO must be called with the client already authenticated, "
                           b"otherwise the HELLO AUTH <user> <pass> option can be used to authenticate "
                           b"the client and select the RESP protocol version at the same time\r\n")

    def test_hello_with_auth(self):
        with RawConn(self.port) as c:
            c.cmd("HELLO", "3", "AUTH", "default", "wrong")
            self.assertEqual(c.read_raw_replies(1), [WRONGPASS])
            c.cmd("HELLO", "3", "AUTH", "default", "secret")
            self.assertTrue(c.read_raw_replies(1)[0].startswith(b"%"))
            c.cmd("GET", "respite:auth:none")
            self.assertEqual(c.read_raw_replies(1), [b"_\r\n"])

    def test_unauthenticated_limits(self):
        # Redis 7.0.15 (Debian) limits what an unauthenticated client may declare.
        self.same(b"*100\r\n", expect_close=True,
                  expected=b"-ERR Protocol error: unauthenticated multibulk length\r\n")
        self.same(b"*1\r\n$20000\r\n", expect_close=True,
                  expected=b"-ERR Protocol error: unauthenticated bulk length\r\n")

    def test_redis_py_with_password(self):
        import redis
        c = redis.Redis(host=harness.HOST, port=self.port, password="secret", socket_timeout=5)
        self.assertTrue(c.set("respite:auth:py", "1"))
        self.assertEqual(c.get("respite:auth:py"), b"1")
        bad = redis.Redis(host=harness.HOST, port=self.port, socket_timeout=5)
        with self.assertRaises(redis.AuthenticationError):
            bad.get("x")


@respite_only
class UpstreamPassword(harness.ProxyTestCase):
    upstream_password = "up-secret"
    respite_args = ["--upstream-password", "up-secret"]

    def test_plain_commands(self):
        with RawConn(self.port) as c:
            self.assertEqual(c.call("SET", "respite:up:k", "v"), "OK")
            self.assertEqual(c.call("GET", "respite:up:k"), b"v")
            self.assertIn(b"redis_version", c.call("INFO", "server"))
        self.assertEqual(self.up().get("respite:up:k"), b"v")

    def test_pinned_connections_authenticate_too(self):
        with RawConn(self.port) as c:
            c.call("MULTI")
            c.call("INCR", "respite:up:n")
            self.assertIsInstance(c.call("EXEC"), list)
            c.cmd("SUBSCRIBE", "respite:up:ch")
            self.assertEqual(c.read_replies(1)[0][0], b"subscribe")
            self.up().publish("respite:up:ch", "m")
            self.assertEqual(c.read_reply(), [b"message", b"respite:up:ch", b"m"])
        with RawConn(self.port, timeout=5) as c:
            self.up().delete("respite:up:list")
            c.cmd("BLPOP", "respite:up:list", 3)
            time.sleep(0.1)
            self.up().rpush("respite:up:list", "x")
            self.assertEqual(c.read_reply(), [b"respite:up:list", b"x"])
        with RawConn(self.port) as c:
            c.cmd("HELLO", "3")
            c.read_replies(1)
            self.assertEqual(c.call("SET", "respite:up:r3", "v"), "OK")
            self.assertEqual(c.call("GET", "respite:up:r3"), b"v")


@respite_only
class UpstreamUser(harness.ProxyTestCase):
    upstream_setup = [("ACL", "SETUSER", "app", "on", ">app-pw", "~*", "&*", "+@all")]
    upstream_password = "default-pw"
    respite_args = ["--upstream-user", "app", "--upstream-password", "app-pw",
                    "--requirepass", "client-pw"]

    def test_acl_user_and_client_password(self):
        with RawConn(self.port) as c:
            c.cmd("GET", "x")
            self.assertEqual(c.read_raw_replies(1), [NOAUTH])
            self.assertEqual(c.call("AUTH", "client-pw"), "OK")
            # ACL is respite's own: the client is respite's default user, whatever user
            # respite itself is upstream (the write below lands there as app).
            self.assertEqual(c.call("ACL", "WHOAMI"), b"default")
            self.assertEqual(c.call("SET", "respite:acl:k", "v"), "OK")
        self.assertEqual(self.up().get("respite:acl:k"), b"v")


@respite_only
class RefusedHandshake(unittest.TestCase):
    """An upstream that accepts TCP connections but refuses respite's handshake (a wrong
    --upstream-password: AUTH fails and the connection goes) is reconnected to with the backoff,
    not in a loop. Witness: the upstream's total_connections_received while a client keeps
    sending PING and GET through respite."""

    WARMUP_S = 1.0   # the backoff doubles from 50 ms to its 500 ms cap in 750 ms
    WINDOW_S = 2.0
    # Per loop at the cap: about two attempts a second of the shared connection and two of the
    # tracking link; twice that leaves room for a slow machine. Reconnecting at once after each
    # refusal was thousands a second.
    MAX_PER_S_PER_LOOP = 8

    def connections_while_busy(self, respite_args: list[str]) -> int:
        with RedisServer(password="right") as up, Respite(up, respite_args) as px:
            stats = up.client()
            with RawConn(px.port) as c:
                def busy(seconds: float):
                    end = time.monotonic() + seconds
                    for _ in range(1_000_000):
                        if time.monotonic() >= end:
                            return
                        self.assertEqual(c.call("PING"), "PONG")
                        self.assertIsInstance(c.call("GET", "respite:refused:k"), RespError)
                busy(self.WARMUP_S)
                before = int(stats.info("stats")["total_connections_received"])
                busy(self.WINDOW_S)
                after = int(stats.info("stats")["total_connections_received"])
            px.assert_alive()
        return after - before  # `stats` reads both on one connection, made before `before`

    def bound(self) -> int:
        loops = int(harness.THREADS) if harness.THREADS else 1
        return int(self.MAX_PER_S_PER_LOOP * self.WINDOW_S * loops)

    def test_wrong_upstream_password_backs_off(self):
        n = self.connections_while_busy(["--upstream-password", "wrong"])
        self.assertLessEqual(n, self.bound(), f"{n} connections in {self.WINDOW_S} s")

    def test_no_upstream_password_backs_off(self):
        # Connections stay up (each command is refused with -NOAUTH, the connection is not).
        n = self.connections_while_busy([])
        self.assertLessEqual(n, self.bound(), f"{n} connections in {self.WINDOW_S} s")


if __name__ == "__main__":
    harness.run_tests()
