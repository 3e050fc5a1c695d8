"""Stateful commands that pin a client: SUBSCRIBE/PSUBSCRIBE and blocking pops."""

import time

import harness
from harness import ProxyTestCase, RawConn, assert_same_as_redis, encode_command, parse_info


def msg(kind, *parts):
    out = b"*%d\r\n" % (len(parts) + 1) + b"$%d\r\n%s\r\n" % (len(kind), kind)
    for p in parts:
        if isinstance(p, int):
            out += b":%d\r\n" % p
        else:
            out += b"$%d\r\n%s\r\n" % (len(p), p)
    return out


class PubSub(ProxyTestCase):

    def wait_numsub(self, channel, n, timeout=3.0):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.up().pubsub_numsub(channel)[0][1]
            if got == n:
                return got
            time.sleep(0.02)
        return got

    def test_subscribed_mode_bytes_like_redis(self):
        data = (encode_command("SUBSCRIBE", "a", "b") + encode_command("PING") +
                encode_command("GET", "x") + encode_command("PING", "hi") +
                encode_command("UNSUBSCRIBE", "b", "a") + encode_command("SET", "respite:ps:x", "after") +
                encode_command("GET", "respite:ps:x"))
        assert_same_as_redis(
            self, self.port, self.upstream.port, data, nreplies=8, expect_close=False,
            expected=msg(b"subscribe", b"a", 1) + msg(b"subscribe", b"b", 2) +
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
            b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
            b"are allowed in this context\r\n"
            b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n" + msg(b"unsubscribe", b"b", 1) +
            msg(b"unsubscribe", b"a", 0) + b"+OK\r\n$5\r\nafter\r\n")

    def test_publish_direct_and_through_respite(self):
        with RawConn(self.port) as sub, RawConn(self.port) as pub:
            sub.cmd("SUBSCRIBE", "respite:ch")
            self.assertEqual(sub.read_raw_replies(1), [msg(b"subscribe", b"respite:ch", 1)])
            self.assertEqual(self.up().publish("respite:ch", "direct"), 1)
            self.assertEqual(sub.read_raw_replies(1), [msg(b"message", b"respite:ch", b"direct")])
            self.assertEqual(pub.call("PUBLISH", "respite:ch", "via-respite"), 1)
            self.assertEqual(sub.read_raw_replies(1), [msg(b"message", b"respite:ch", b"via-respite")])
            # many messages in order
            p = self.up().pipeline(transaction=False)
            for i in range(300):
                p.publish("respite:ch", f"m{i}")
            p.execute()
            got = sub.read_raw_replies(300, timeout=10)
            self.assertEqual(got, [msg(b"message", b"respite:ch", f"m{i}".encode()) for i in range(300)])
            sub.cmd("UNSUBSCRIBE", "respite:ch")
            self.assertEqual(sub.read_raw_replies(1), [msg(b"unsubscribe", b"respite:ch", 0)])
            self.assertEqual(sub.call("PING"), "PONG")

    def test_many_subscribers(self):
        subs = [RawConn(self.port) for _ in range(8)]
        try:
            for s in subs:
                s.cmd("SUBSCRIBE", "respite:many")
                self.assertEqual(s.read_raw_replies(1), [msg(b"subscribe", b"respite:many", 1)])
            with RawConn(self.port) as pub:
                self.assertEqual(pub.call("PUBLISH", "respite:many", "x"), 8)
            for s in subs:
                self.assertEqual(s.read_raw_replies(1), [msg(b"message", b"respite:many", b"x")])
        finally:
            for s in subs:
                s.close()
        self.assertEqual(self.wait_numsub("respite:many", 0), 0,
                         "closing subscribers did not unsubscribe upstream")

    def test_psubscribe(self):
        with RawConn(self.port) as sub:
            sub.cmd("PSUBSCRIBE", "news.*")
            self.assertEqual(sub.read_raw_replies(1), [msg(b"psubscribe", b"news.*", 1)])
            self.up().publish("news.tech", "t1")
            self.up().publish("other", "no")
            self.px().publish("news.art", "a1")
            self.assertEqual(sub.read_raw_replies(2), [
                msg(b"pmessage", b"news.*", b"news.tech", b"t1"),
                msg(b"pmessage", b"news.*", b"news.art", b"a1")])
            self.assertEqual(sub.read_for(0.2), b"")
            sub.cmd("PUNSUBSCRIBE")
            self.assertEqual(sub.read_raw_replies(1), [msg(b"punsubscribe", b"news.*", 0)])

    def test_reset_leaves_subscribed_mode(self):
        with RawConn(self.port) as c:
            c.cmd("SUBSCRIBE", "respite:reset")
            c.read_replies(1)
            self.assertEqual(c.call("RESET"), "RESET")
            c.call("SET", "respite:ps:r", "1")
            self.assertEqual(c.call("GET", "respite:ps:r"), b"1")
        self.assertEqual(self.wait_numsub("respite:reset", 0), 0)

    def test_redis_py_pubsub(self):
        p = self.px().pubsub(ignore_subscribe_messages=True)
        p.subscribe("respite:py")
        self.assertIsNone(p.get_message(timeout=0.5))  # consumes the subscribe confirmation
        self.up().publish("respite:py", "hello")
        m = None
        deadline = time.monotonic() + 5
        while m is None and time.monotonic() < deadline:
            m = p.get_message(timeout=0.5)
        self.assertIsNotNone(m)
        self.assertEqual(m["data"], b"hello")
        p.close()

    def test_other_clients_unaffected(self):
        with RawConn(self.port) as sub, RawConn(self.port) as other:
            sub.cmd("SUBSCRIBE", "respite:iso")
            sub.read_replies(1)
            other.call("SET", "respite:ps:iso", "v")
            self.assertEqual(other.call("GET", "respite:ps:iso"), b"v")
            self.assertEqual(sub.read_for(0.1), b"")


class Blocking(ProxyTestCase):

    def test_blpop_unblocks_on_push_through_respite(self):
        key = "respite:bl:a"
        self.up().delete(key)
        with RawConn(self.port, timeout=10) as a, RawConn(self.port) as b:
            a.cmd("BLPOP", key, 0)  # no timeout: only the push can answer it
            time.sleep(0.2)
            self.assertEqual(b.call("LPUSH", key, "x"), 1)
            self.assertEqual(a.read_reply(timeout=10), [key.encode(), b"x"])
            self.assertEqual(a.call("PING"), "PONG")

    def test_blpop_unblocks_on_direct_push(self):
        key = "respite:bl:d"
        self.up().delete(key)
        with RawConn(self.port, timeout=10) as a:
            a.cmd("BLPOP", key, 5)
            time.sleep(0.2)
            self.up().rpush(key, "y")
            self.assertEqual(a.read_reply(timeout=5), [key.encode(), b"y"])

    def test_blpop_timeout_nil(self):
        key = "respite:bl:none"
        self.up().delete(key)
        got = assert_same_as_redis(self, self.port, self.upstream.port,
                                   encode_command("BLPOP", key, "0.5") + encode_command("PING"),
                                   nreplies=2, expect_close=False, expected=b"*-1\r\n+PONG\r\n",
                                   timeout=10)
        self.assertEqual(got, b"*-1\r\n+PONG\r\n")

    def test_others_served_while_blocked(self):
        key = "respite:bl:other"
        self.up().delete(key)
        # A blocks with no timeout: if it stalled C, C's calls would wait for ever (and time
        # out); they are all answered while A is still blocked (A gets the value pushed after).
        with RawConn(self.port, timeout=10) as a, RawConn(self.port) as c:
            a.cmd("BLPOP", key, 0)
            time.sleep(0.1)
            for i in range(200):
                self.assertEqual(c.call("SET", "respite:bl:k", i), "OK")
                self.assertEqual(c.call("GET", "respite:bl:k"), str(i).encode())
            self.assertEqual(a.read_for(0.05), b"", "A answered before the push")
            c.call("RPUSH", key, "z")
            self.assertEqual(a.read_reply(timeout=10), [key.encode(), b"z"])

    def test_many_blockers(self):
        key = "respite:bl:many"
        self.up().delete(key)
        conns = [RawConn(self.port, timeout=10) for _ in range(20)]
        try:
            for c in conns:
                c.cmd("BLPOP", key, 5)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                if int(parse_info(self._info_clients())["blocked_clients"]) >= 20:
                    break
                time.sleep(0.02)
            self.up().rpush(key, *[f"i{i}" for i in range(20)])
            got = sorted(c.read_reply(timeout=5)[1] for c in conns)
            self.assertEqual(got, sorted(f"i{i}".encode() for i in range(20)))
        finally:
            for c in conns:
                c.close()

    def _info_clients(self):
        with RawConn(self.upstream.port) as c:
            return c.call("INFO", "clients")

    def test_blocked_client_disconnect_releases_upstream(self):
        key = "respite:bl:gone"
        self.up().delete(key)
        a = RawConn(self.port, timeout=10)
        a.cmd("BLPOP", key, 10)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and int(parse_info(self._info_clients())["blocked_clients"]) < 1:
            time.sleep(0.02)
        self.assertGreaterEqual(int(parse_info(self._info_clients())["blocked_clients"]), 1)
        a.close()
        deadline = time.monotonic() + 3
        blocked = None
        while time.monotonic() < deadline:
            blocked = int(parse_info(self._info_clients())["blocked_clients"])
            if blocked == 0:
                break
            time.sleep(0.02)
        self.assertEqual(blocked, 0, "upstream connection of a gone client still blocked")
        self.up().rpush(key, "kept")
        self.assertEqual(self.up().lrange(key, 0, -1), [b"kept"])

    def test_brpoplpush_and_blmove(self):
        src, dst = "respite:bl:src", "respite:bl:dst"
        self.up().delete(src, dst)
        with RawConn(self.port, timeout=10) as a:
            a.cmd("BLMOVE", src, dst, "LEFT", "RIGHT", 5)
            time.sleep(0.1)
            self.px().rpush(src, "m")
            self.assertEqual(a.read_reply(timeout=5), b"m")
            self.assertEqual(self.up().lrange(dst, 0, -1), [b"m"])


if __name__ == "__main__":
    harness.run_tests()
