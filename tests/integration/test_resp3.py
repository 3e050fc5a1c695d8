"""RESP3 via HELLO 3, on raw sockets: map reply to HELLO, `_` nulls, push messages, and RESP2 and
RESP3 clients side by side."""

import threading

import harness
from harness import ProxyTestCase, Push, RawConn, encode_command


def push(*parts):
    out = b">%d\r\n" % len(parts)
    for p in parts:
        out += b":%d\r\n" % p if isinstance(p, int) else b"$%d\r\n%s\r\n" % (len(p), p)
    return out


class Resp3(ProxyTestCase):

    def hello3(self, port=None):
        c = RawConn(port or self.port)
        c.cmd("HELLO", "3")
        raw = c.read_raw_replies(1)[0]
        self.assertTrue(raw.startswith(b"%"), f"HELLO 3 reply is not a map: {raw[:80]!r}")
        return c, harness.parse_reply(raw)[0]

    def test_hello3_map(self):
        c, m = self.hello3()
        with c:
            for k in (b"server", b"version", b"proto", b"id", b"mode", b"role", b"modules"):
                self.assertIn(k, m, f"HELLO map lacks {k!r}: {m}")
            self.assertEqual(m[b"proto"], 3)
            c.cmd("GET", "respite:r3:missing")
            self.assertEqual(c.read_raw_replies(1), [b"_\r\n"])

    def compare_after_hello(self, setup, data, n):
        """Same bytes after HELLO 3 on respite and on redis-server."""
        out = []
        for port in (self.upstream.port, self.port):
            c, _ = self.hello3(port)
            with c:
                for cmd in setup:
                    c.call(*cmd)
                c.send(data)
                out.append(b"".join(c.read_raw_replies(n)))
                self.assertEqual(c.read_for(0.1), b"")
        self.assertEqual(out[1], out[0], "RESP3 replies differ from redis-server")
        return out[0]

    def test_resp3_types_like_redis(self):
        setup = [("DEL", "respite:r3:h", "respite:r3:s", "respite:r3:z", "respite:r3:k"),
                 ("HSET", "respite:r3:h", "f", "v"), ("SADD", "respite:r3:s", "m"),
                 ("ZADD", "respite:r3:z", "1.5", "a"), ("SET", "respite:r3:k", "val")]
        cmds = [("GET", "respite:r3:missing"), ("GET", "respite:r3:k"), ("HGETALL", "respite:r3:h"),
                ("SMEMBERS", "respite:r3:s"), ("ZSCORE", "respite:r3:z", "a"),
                ("ZRANGE", "respite:r3:z", 0, -1, "WITHSCORES"), ("EXISTS", "respite:r3:k"),
                ("MGET", "respite:r3:k", "respite:r3:missing"), ("HGET", "respite:r3:h", "nope"),
                ("CONFIG", "GET", "maxmemory-policy"), ("LPOP", "respite:r3:nolist"),
                ("INCRBYFLOAT", "respite:r3:f", "0"), ("DEL", "respite:r3:f")]
        got = self.compare_after_hello(setup, b"".join(encode_command(*c) for c in cmds), len(cmds))
        self.assertTrue(got.startswith(b"_\r\n$3\r\nval\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n~1\r\n"), got[:80])
        self.assertIn(b",1.5\r\n", got)

    def test_resp3_transaction(self):
        setup = [("DEL", "respite:r3:th"), ("HSET", "respite:r3:th", "a", "1")]
        cmds = [("MULTI",), ("HGETALL", "respite:r3:th"), ("GET", "respite:r3:none"), ("EXEC",)]
        got = self.compare_after_hello(setup, b"".join(encode_command(*c) for c in cmds), 4)
        self.assertTrue(got.endswith(b"*2\r\n%1\r\n$1\r\na\r\n$1\r\n1\r\n_\r\n"), got)

    def test_resp3_pubsub_push(self):
        ch = b"respite:r3ch"
        with self.hello3()[0] as c:
            c.cmd("SUBSCRIBE", ch)
            self.assertEqual(c.read_raw_replies(1), [push(b"subscribe", ch, 1)])
            self.up().publish(ch, "direct")
            self.assertEqual(c.read_raw_replies(1), [push(b"message", ch, b"direct")])
            # RESP3 allows normal commands while subscribed
            self.up().set("respite:r3:sub", "ok")
            c.cmd("GET", "respite:r3:sub")
            self.assertEqual(c.read_raw_replies(1), [b"$2\r\nok\r\n"])
            with RawConn(self.port) as p:
                self.assertEqual(p.call("PUBLISH", ch, "proxied"), 1)
            self.assertEqual(c.read_replies(1), [Push([b"message", ch, b"proxied"])])
            c.cmd("PSUBSCRIBE", "respite:r3*")
            self.assertEqual(c.read_raw_replies(1), [push(b"psubscribe", b"respite:r3*", 2)])
            self.up().publish("respite:r3x", "p")
            self.assertEqual(c.read_raw_replies(1),
                             [push(b"pmessage", b"respite:r3*", b"respite:r3x", b"p")])
            c.cmd("UNSUBSCRIBE")
            self.assertEqual(c.read_raw_replies(1), [push(b"unsubscribe", ch, 1)])

    def test_hello_errors_and_back_to_resp2(self):
        with RawConn(self.port) as c:
            c.cmd("HELLO", "4")
            self.assertEqual(c.read_raw_replies(1), [b"-NOPROTO unsupported protocol version\r\n"])
            c.cmd("HELLO", "3", "SETNAME", "r3name")
            self.assertTrue(c.read_raw_replies(1)[0].startswith(b"%"))
            c.cmd("CLIENT", "GETNAME")
            self.assertEqual(c.read_raw_replies(1), [b"$6\r\nr3name\r\n"])
            c.cmd("GET", "respite:r3:missing")
            self.assertEqual(c.read_raw_replies(1), [b"_\r\n"])
            c.cmd("HELLO", "2")
            raw = c.read_raw_replies(1)[0]
            self.assertTrue(raw.startswith(b"*14\r\n"), raw[:40])
            c.cmd("GET", "respite:r3:missing")
            self.assertEqual(c.read_raw_replies(1), [b"$-1\r\n"])
            c.cmd("HGETALL", "respite:r3:missing")
            self.assertEqual(c.read_raw_replies(1), [b"*0\r\n"])

    def test_resp2_and_resp3_clients_side_by_side(self):
        self.up().delete("respite:r3:mixh")
        self.up().hset("respite:r3:mixh", "f", "v")
        errors = []

        def worker(n):
            try:
                if n % 2:
                    c, _ = self.hello3()
                    exp = [b"_\r\n", b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n", b"*2\r\n$1\r\nv\r\n_\r\n"]
                else:
                    c = RawConn(self.port)
                    exp = [b"$-1\r\n", b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n", b"*2\r\n$1\r\nv\r\n$-1\r\n"]
                with c:
                    for _ in range(30):
                        c.send(encode_command("GET", "respite:r3:nothing") +
                               encode_command("HGETALL", "respite:r3:mixh") +
                               encode_command("HMGET", "respite:r3:mixh", "f", "g"))
                        got = c.read_raw_replies(3)
                        if got != exp:
                            errors.append((n, got))
                            return
            except Exception as e:  # noqa: BLE001
                errors.append((n, repr(e)))

        ts = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])

    def test_client_tracking_push_resp3(self):
        key = "respite:r3:tracked"
        self.up().set(key, "v1")
        with self.hello3()[0] as c:
            c.cmd("CLIENT", "TRACKING", "on")
            self.assertEqual(c.read_raw_replies(1), [b"+OK\r\n"])
            c.cmd("GET", key)
            self.assertEqual(c.read_raw_replies(1), [b"$2\r\nv1\r\n"])
            self.up().set(key, "v2")
            self.assertEqual(c.read_raw_replies(1, timeout=3),
                             [b">2\r\n$10\r\ninvalidate\r\n*1\r\n$%d\r\n%s\r\n" % (len(key), key.encode())])
            c.cmd("GET", key)
            self.assertEqual(c.read_raw_replies(1), [b"$2\r\nv2\r\n"])


if __name__ == "__main__":
    harness.run_tests()
