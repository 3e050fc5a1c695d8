"""CLIENT commands about clients and their ids (respite's clients, never the upstream's
connections): UNBLOCK of a client blocked upstream, KILL in every filter form, LIST/INFO; HELLO's
version is the upstream's; client names and SETINFO as Redis 7.0 has them.

Where it helps, the same scenario runs on the upstream redis-server directly as the control. The
class runs again with `--threads 2` (clients spread over both loops by SO_REUSEPORT; every test
uses several clients, so KILL and UNBLOCK reach clients of the other loop).
"""

import time

import harness
from harness import (DIRECT, ProxyTestCase, RawConn, RespError, assert_same_as_redis,
                     encode_command, parse_info, proxy_info, respite_only)


def info_fields(line) -> dict:
    if isinstance(line, (bytes, bytearray)):
        line = line.decode()
    return dict(kv.split("=", 1) for kv in line.strip().split(" "))


class ClientCommands(ProxyTestCase):

    def conns(self, n, port=None):
        cs = [RawConn(port or self.port, timeout=5) for _ in range(n)]
        for c in cs:
            self.addCleanup(c.close)
        return cs

    def upstream_blocked(self):
        with RawConn(self.upstream.port) as d:
            return int(parse_info(d.call("INFO", "clients"))["blocked_clients"])

    def wait_blocked(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.upstream_blocked() == n:
                return
            time.sleep(0.01)
        self.fail(f"upstream blocked_clients never became {n} (is {self.upstream_blocked()})")

    def wait_pinned(self, want: str, timeout: float = 10.0) -> bool:
        """Until PROXY INFO's pinned_clients is `want` (bounded)."""
        deadline = time.monotonic() + timeout
        while proxy_info(self.port)["pinned_clients"] != want:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def assert_closed(self, c, what):
        data, closed = c.read_until_close(timeout=3)
        self.assertTrue(closed, f"{what} was not closed (got {data!r})")

    # ---- UNBLOCK ----

    def unblock_scenario(self, port):
        """Blocked clients A_i (BLPOP 0), unblocked one by one by B: the observations."""
        n = 4
        keys = [f"respite:cc:unblock:{i}" for i in range(n)]
        with RawConn(self.upstream.port) as d:
            d.call("DEL", *keys)
        blocked = self.conns(n, port)
        b = self.conns(1, port)[0]
        ids = [a.call("CLIENT", "ID") for a in blocked]
        # not blocked yet: 0, and an id nobody has
        got = {"not_blocked": b.call("CLIENT", "UNBLOCK", ids[0]),
               "no_such_id": b.call("CLIENT", "UNBLOCK", 987654321)}
        for a, k in zip(blocked, keys):
            a.cmd("BLPOP", k, 0)
        self.wait_blocked(n)
        replies = []
        for i, (a, aid) in enumerate(zip(blocked, ids)):
            reason = ["TIMEOUT"] if i % 2 == 0 else []
            r = b.call("CLIENT", "UNBLOCK", aid, *reason)
            # BLPOP 0 never times out: a reply at all is the unblocking.
            replies.append((r, a.read_reply(timeout=10)))
        got["timeout"] = replies
        self.wait_blocked(0)
        # ERROR: the blocked command fails with -UNBLOCKED
        a = blocked[0]
        a.cmd("BLPOP", keys[0], 0)
        self.wait_blocked(1)
        got["error"] = (b.call("CLIENT", "UNBLOCK", ids[0], "ERROR"), a.read_reply(timeout=10))
        # unblocked once: now it is not blocked
        got["again"] = b.call("CLIENT", "UNBLOCK", ids[0])
        got["usable"] = [x.call("PING") for x in blocked]
        return got

    def test_unblock(self):
        expected = {"not_blocked": 0, "no_such_id": 0,
                    "timeout": [(1, None)] * 4,
                    "error": (1, "UNBLOCKED client unblocked via CLIENT UNBLOCK"),
                    "again": 0, "usable": ["PONG"] * 4}
        self.assertEqual(self.unblock_scenario(self.upstream.port), expected,
                         "redis-server itself behaves differently (test bug)")
        self.assertEqual(self.unblock_scenario(self.port), expected)
        # errors, byte for byte
        data = (encode_command("CLIENT", "UNBLOCK") + encode_command("CLIENT", "UNBLOCK", "1", "foo") +
                encode_command("CLIENT", "UNBLOCK", "abc") +
                encode_command("CLIENT", "UNBLOCK", "abc", "foo") +
                encode_command("CLIENT", "unblock", "1", "2", "3") +
                encode_command("CLIENT", "UNBLOCK", "-5") +
                encode_command("CLIENT", "UNBLOCK", "987654321", "error"))
        assert_same_as_redis(
            self, self.port, self.upstream.port, data, nreplies=7, expect_close=False,
            expected=b"-ERR wrong number of arguments for 'client|unblock' command\r\n"
                     b"-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"
                     b"-ERR value is not an integer or out of range\r\n"
                     b"-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"
                     b"-ERR unknown subcommand or wrong number of arguments for 'unblock'. "
                     b"Try CLIENT HELP.\r\n"
                     b":0\r\n:0\r\n")

    # ---- KILL ----

    def test_kill_id(self):
        others = self.conns(6)
        victims = self.conns(4)
        killer = self.conns(1)[0]
        key = "respite:cc:kill:blocked"
        self.up().delete(key)
        ids = [v.call("CLIENT", "ID") for v in victims]
        for o in others:
            self.assertEqual(o.call("PING"), "PONG")
        # one victim blocked upstream: its pinned connection goes with it
        victims[0].cmd("BLPOP", key, 0)
        self.wait_blocked(1)
        for v, vid in zip(victims, ids):
            self.assertEqual(killer.call("CLIENT", "KILL", "ID", vid), 1)
            self.assert_closed(v, f"client id={vid}")
            self.assertEqual(killer.call("CLIENT", "KILL", "ID", vid), 0, "killed twice")
        self.wait_blocked(0)
        for o in others:
            self.assertEqual(o.call("PING"), "PONG", "a client that was not named was killed")
        # the shared upstream connection is unharmed: reads and writes through it work
        self.up().set("respite:cc:kill:k", "v1")
        self.assertEqual(others[0].call("GET", "respite:cc:kill:k"), b"v1")
        self.assertEqual(others[1].call("SET", "respite:cc:kill:k", "v2"), "OK")
        self.assertEqual(self.up().get("respite:cc:kill:k"), b"v2")
        # nothing was pushed to the list by a departed client
        self.up().rpush(key, "kept")
        self.assertEqual(self.up().lrange(key, 0, -1), [b"kept"])

    def kill_forms_scenario(self, port):
        """KILL by address (old form), ADDR, LADDR, TYPE, USER, SKIPME: the observations."""
        got = {}
        v1, v2, v3, v4, sub, killer, bystander = self.conns(7, port)
        addr = lambda c: info_fields(c.call("CLIENT", "INFO"))["addr"]
        laddr = info_fields(killer.call("CLIENT", "INFO"))["laddr"]
        a1 = addr(v1)
        got["old_form"] = killer.call("CLIENT", "KILL", a1)
        self.assert_closed(v1, "old form victim")
        got["old_form_again"] = killer.call("CLIENT", "KILL", a1)
        got["addr"] = killer.call("CLIENT", "KILL", "ADDR", addr(v2))
        self.assert_closed(v2, "ADDR victim")
        id3 = v3.call("CLIENT", "ID")
        got["laddr_other"] = killer.call("CLIENT", "KILL", "LADDR", "127.0.0.1:1", "ID", id3)
        got["laddr"] = killer.call("CLIENT", "KILL", "LADDR", laddr, "ID", id3)
        self.assert_closed(v3, "LADDR victim")
        id4 = v4.call("CLIENT", "ID")
        got["user"] = killer.call("CLIENT", "KILL", "USER", "default", "ID", id4, "SKIPME", "yes")
        self.assert_closed(v4, "USER victim")
        sub_id = sub.call("CLIENT", "ID")
        sub.cmd("SUBSCRIBE", "respite:cc:ch")
        sub.read_reply()
        sid = bystander.call("CLIENT", "ID")  # id of a normal client
        got["type_normal_sub"] = killer.call("CLIENT", "KILL", "TYPE", "normal", "ID", sub_id)
        got["type_master"] = killer.call("CLIENT", "KILL", "TYPE", "master", "ID", sid)
        got["type_replica"] = killer.call("CLIENT", "KILL", "TYPE", "replica", "ID", sid)
        got["type_pubsub"] = killer.call("CLIENT", "KILL", "TYPE", "pubsub", "ID", sub_id)
        self.assert_closed(sub, "pubsub victim")
        got["bystander"] = bystander.call("PING")
        # SKIPME: by default the caller is spared; SKIPME no kills it after its reply
        kid = killer.call("CLIENT", "ID")
        got["skipme_default"] = killer.call("CLIENT", "KILL", "ID", kid)
        got["skipme_yes"] = killer.call("CLIENT", "KILL", "ID", kid, "SKIPME", "yes")
        got["skipme_no"] = killer.call("CLIENT", "KILL", "ID", kid, "SKIPME", "no")
        self.assert_closed(killer, "SKIPME no caller")
        # the old form may kill the caller itself
        got["old_form_self"] = bystander.call("CLIENT", "KILL", addr(bystander))
        self.assert_closed(bystander, "old form caller")
        return got

    def test_kill_forms(self):
        expected = {"old_form": "OK", "old_form_again": "ERR No such client", "addr": 1,
                    "laddr_other": 0, "laddr": 1, "user": 1, "type_normal_sub": 0,
                    "type_master": 0, "type_replica": 0, "type_pubsub": 1, "bystander": "PONG",
                    "skipme_default": 0, "skipme_yes": 0, "skipme_no": 1, "old_form_self": "OK"}
        self.assertEqual(self.kill_forms_scenario(self.upstream.port), expected,
                         "redis-server itself behaves differently (test bug)")
        self.assertEqual(self.kill_forms_scenario(self.port), expected)
        # errors, byte for byte
        data = b"".join(encode_command(*a) for a in [
            ("CLIENT", "KILL"), ("CLIENT", "KILL", "ID", "0"), ("CLIENT", "KILL", "ID", "abc"),
            ("CLIENT", "KILL", "ID", "-3"), ("CLIENT", "KILL", "ID", "987654321", "TYPE"),
            ("CLIENT", "KILL", "TYPE", "foo"), ("CLIENT", "KILL", "type", "normal", "skipme", "maybe"),
            ("CLIENT", "KILL", "USER", "nobody"), ("CLIENT", "KILL", "BOGUS", "x"),
            ("CLIENT", "KILL", "MAXAGE", "5"), ("CLIENT", "KILL", "1.2.3.4:5"),
            ("CLIENT", "KILL", "id"), ("CLIENT", "KILL", "1.2.3.4:5", "a", "b"),
            ("CLIENT", "KILL", "ID", "987654321"), ("CLIENT", "KILL", "ADDR", "1.2.3.4:5"),
            ("CLIENT", "KILL", "TYPE", "slave", "ID", "987654321"), ("PING",)])
        assert_same_as_redis(
            self, self.port, self.upstream.port, data, nreplies=17, expect_close=False,
            expected=b"-ERR wrong number of arguments for 'client|kill' command\r\n" +
            b"-ERR client-id should be greater than 0\r\n" * 3 + b"-ERR syntax error\r\n"
            b"-ERR Unknown client type 'foo'\r\n-ERR syntax error\r\n"
            b"-ERR No such user 'nobody'\r\n" + b"-ERR syntax error\r\n" * 2 +
            b"-ERR No such client\r\n" * 2 + b"-ERR syntax error\r\n" + b":0\r\n" * 3 +
            b"+PONG\r\n")

    # ---- LIST / INFO ----

    def test_list_and_info(self):
        cs = self.conns(6)
        names = [f"cc-list-{i}" for i in range(len(cs))]
        ids = []
        for c, n in zip(cs, names):
            self.assertEqual(c.call("CLIENT", "SETNAME", n), "OK")
            ids.append(c.call("CLIENT", "ID"))
        sub = self.conns(1)[0]
        sub.cmd("SUBSCRIBE", "respite:cc:list")
        sub.read_reply()
        for c, n, i in zip(cs, names, ids):
            listing = c.call("CLIENT", "LIST").decode()
            lines = {int(f["id"]): f for f in map(info_fields, listing.splitlines())}
            for other_id, other_name in zip(ids, names):
                self.assertIn(other_id, lines, f"client id={other_id} missing from {listing}")
                self.assertEqual(lines[other_id]["name"], other_name)
            self.assertEqual(lines[i]["cmd"], "client|list")
            me = info_fields(c.call("CLIENT", "INFO"))
            self.assertEqual((int(me["id"]), me["name"], me["cmd"], me["db"]),
                             (i, n, "client|info", "0"))
            self.assertEqual(me["laddr"], f"127.0.0.1:{self.port}")
        # ID filter: in the order asked, unknown ids skipped, repeats repeated
        asked = [ids[3], 987654321, ids[1], ids[3]]
        got = [int(info_fields(l)["id"]) for l in
               cs[0].call("CLIENT", "LIST", "ID", *asked).decode().splitlines()]
        self.assertEqual(got, [ids[3], ids[1], ids[3]])
        # TYPE filter
        normal = {int(info_fields(l)["id"]) for l in
                  cs[0].call("CLIENT", "LIST", "TYPE", "normal").decode().splitlines()}
        pubsub = [info_fields(l) for l in
                  cs[0].call("CLIENT", "LIST", "TYPE", "PubSub").decode().splitlines()]
        self.assertTrue(set(ids) <= normal)
        self.assertEqual(len(pubsub), 1)
        self.assertNotIn(int(pubsub[0]["id"]), normal)
        self.assertEqual(cs[0].call("CLIENT", "LIST", "TYPE", "master"), b"")
        # the same fields, in the same order, as the upstream's own line
        with RawConn(self.upstream.port) as d:
            ref = list(info_fields(d.call("CLIENT", "INFO")))
        self.assertEqual(list(info_fields(cs[0].call("CLIENT", "INFO"))), ref)
        # a killed client leaves the list
        self.assertEqual(cs[0].call("CLIENT", "KILL", "ID", ids[5]), 1)
        listing = cs[0].call("CLIENT", "LIST").decode()
        self.assertNotIn(f"id={ids[5]} ", listing)
        # errors, byte for byte
        data = b"".join(encode_command(*a) for a in [
            ("CLIENT", "LIST", "ID"), ("CLIENT", "LIST", "ID", "abc"), ("CLIENT", "LIST", "ID", "1", "x"),
            ("CLIENT", "LIST", "TYPE", "foo"), ("CLIENT", "LIST", "TYPE"), ("CLIENT", "LIST", "foo"),
            ("CLIENT", "LIST", "TYPE", "normal", "x"), ("CLIENT", "LIST", "ID", "0", "-1"),
            ("CLIENT", "INFO", "x")])
        assert_same_as_redis(
            self, self.port, self.upstream.port, data, nreplies=9, expect_close=False,
            expected=b"-ERR syntax error\r\n" + b"-ERR Invalid client ID\r\n" * 2 +
            b"-ERR Unknown client type 'foo'\r\n" + b"-ERR syntax error\r\n" * 3 +
            b"$0\r\n\r\n-ERR wrong number of arguments for 'client|info' command\r\n")

    # ---- HELLO, names, SETINFO, NO-EVICT/NO-TOUCH ----

    def test_hello_version_is_upstreams(self):
        with RawConn(self.upstream.port) as d:
            version = parse_info(d.call("INFO", "server"))["redis_version"]
        with RawConn(self.port) as c:
            hello = c.call("HELLO", "3")
            self.assertEqual(hello[b"version"], version.encode())
            hello = c.call("HELLO", "2")
            self.assertEqual(dict(zip(hello[::2], hello[1::2]))[b"version"], version.encode())
        if not DIRECT:
            self.assertEqual(proxy_info(self.port)["upstream_version"], version)

    def test_client_names_like_redis(self):
        cases = [("CLIENT", "SETNAME", "a b"), ("CLIENT", "SETNAME", "a\nb"),
                 ("HELLO", "3", "SETNAME", "a\r\nb"), ("HELLO", "2", "SETNAME", "a b"),
                 ("HELLO", "2", "SETNAME", "x y", "bogus"), ("HELLO", "2", "SETNAME", "ok", "bogus"),
                 ("CLIENT", "GETNAME")]
        data = b"".join(encode_command(*a) for a in cases)
        bad = b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
        assert_same_as_redis(
            self, self.port, self.upstream.port, data, nreplies=len(cases), expect_close=False,
            # Redis 7.0 names the client as it parses SETNAME, even when a later option fails
            expected=bad * 5 + b"-ERR Syntax error in HELLO option 'bogus'\r\n$2\r\nok\r\n")

    def test_setinfo_no_evict_no_touch_like_upstream(self):
        cases = [("CLIENT", "SETINFO", "lib-name", "x"), ("CLIENT", "setinfo", "lib-ver", "1"),
                 ("CLIENT", "NO-EVICT", "on"), ("CLIENT", "no-evict", "OFF"),
                 ("CLIENT", "NO-EVICT", "maybe"), ("CLIENT", "NO-EVICT"),
                 ("CLIENT", "NO-TOUCH", "on"), ("CLIENT", "no-touch", "off"), ("PING",)]
        data = b"".join(encode_command(*a) for a in cases)
        # Earlier tests' clients are gone, and so are their pins (each loop publishes its count
        # every 10 ms): until PROXY INFO shows none.
        if not DIRECT:
            self.assertTrue(self.wait_pinned("0"), "pins of earlier tests' clients remain")
        assert_same_as_redis(
            self, self.port, self.upstream.port, data, nreplies=len(cases), expect_close=False,
            expected=b"-ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.\r\n"
                     b"-ERR unknown subcommand 'setinfo'. Try CLIENT HELP.\r\n"
                     b"+OK\r\n+OK\r\n-ERR syntax error\r\n"
                     b"-ERR wrong number of arguments for 'client|no-evict' command\r\n"
                     b"-ERR unknown subcommand 'NO-TOUCH'. Try CLIENT HELP.\r\n"
                     b"-ERR unknown subcommand 'no-touch'. Try CLIENT HELP.\r\n+PONG\r\n")
        if not DIRECT:
            # answered without pinning the client to a dedicated upstream connection
            with RawConn(self.port) as c:
                c.cmd("CLIENT", "NO-EVICT", "on")
                c.cmd("CLIENT", "NO-TOUCH", "on")
                c.read_replies(2)
                # c stays connected: pinned, it would stay counted
                self.assertTrue(self.wait_pinned("0"), "CLIENT NO-EVICT/NO-TOUCH pinned the client")
            # CLIENT HELP is the upstream's
            with RawConn(self.port) as c, RawConn(self.upstream.port) as d:
                self.assertEqual(c.call("CLIENT", "HELP"), d.call("CLIENT", "HELP"))


class ClientCommandsThreads(ClientCommands):
    """The same with two event loops: clients of the other loop are found, listed, killed and
    unblocked too."""
    respite_args = ["--threads", "2"]


if __name__ == "__main__":
    harness.run_tests()
