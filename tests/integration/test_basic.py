"""Pass-through basics: plain commands, pipelines, transactions, WATCH, SELECT, INFO, PROXY INFO."""

import subprocess
import threading

import harness
from harness import (HOST, REDIS_CLI, ProxyTestCase, RawConn, assert_same_as_redis, encode_command,
                     parse_info, proxy_info, respite_only)


class Basic(ProxyTestCase):

    def test_set_get(self):
        c = self.px()
        self.assertTrue(c.set("respite:basic:a", "b"))
        self.assertEqual(c.get("respite:basic:a"), b"b")
        self.assertIsNone(c.get("respite:basic:missing"))
        self.assertEqual(self.up().get("respite:basic:a"), b"b", "the write reached the upstream")
        self.assertEqual(c.delete("respite:basic:a"), 1)
        self.assertIsNone(c.get("respite:basic:a"))

    def test_redis_cli_set_get(self):
        out = subprocess.run([REDIS_CLI, "-h", HOST, "-p", str(self.port), "set", "respite:basic:cli", "v1"],
                             capture_output=True, timeout=10)
        self.assertEqual(out.stdout.strip(), b"OK", out)
        out = subprocess.run([REDIS_CLI, "-h", HOST, "-p", str(self.port), "get", "respite:basic:cli"],
                             capture_output=True, timeout=10)
        self.assertEqual(out.stdout.strip(), b"v1", out)

    def test_local_commands_like_redis(self):
        data = (encode_command("PING") + encode_command("PING", "hi") + encode_command("ECHO", "e") +
                encode_command("CLIENT", "SETNAME", "conn-a") + encode_command("CLIENT", "GETNAME") +
                encode_command("QUIT"))
        assert_same_as_redis(self, self.port, self.upstream.port, data, expect_close=True,
                             expected=b"+PONG\r\n$2\r\nhi\r\n$1\r\ne\r\n+OK\r\n$6\r\nconn-a\r\n+OK\r\n")

    def test_info_is_answered_by_upstream(self):
        with RawConn(self.port) as c:
            info = parse_info(c.call("INFO", "server"))
            everything = parse_info(c.call("INFO"))
        self.assertIn("redis_version", info)
        self.assertEqual(info.get("tcp_port"), str(self.upstream.port))
        self.assertIn("redis_version", everything)

    @respite_only
    def test_proxy_info(self):
        conns = [RawConn(self.port) for _ in range(3)]
        try:
            for c in conns:
                self.assertEqual(c.call("PING"), "PONG")
            before = proxy_info(self.port)
            for key in ("connected_clients", "total_commands_processed", "upstream_connected"):
                self.assertIn(key, before, f"PROXY INFO lacks {key}: {before}")
            self.assertGreaterEqual(int(before["connected_clients"]), 3)
            for _ in range(10):
                conns[0].call("PING")
            after = proxy_info(self.port)
            self.assertGreaterEqual(int(after["total_commands_processed"]),
                                    int(before["total_commands_processed"]) + 10)
            self.assertIn(after["upstream_connected"].strip(), ("1", "yes", "true", "up"))
        finally:
            for c in conns:
                c.close()

    def test_redis_cli_pipe_2000(self):
        key = "respite:basic:pipe"
        self.up().delete(key)
        cmds = b"".join(encode_command("RPUSH", key, str(i)) for i in range(2000))
        out = subprocess.run([REDIS_CLI, "-h", HOST, "-p", str(self.port), "--pipe"], input=cmds,
                             capture_output=True, timeout=60)
        text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
        self.assertEqual(out.returncode, 0, text)
        self.assertIn("errors: 0, replies: 2000", text)
        self.assertEqual(self.up().lrange(key, 0, -1), [str(i).encode() for i in range(2000)])

    def test_raw_pipeline_2000_in_order(self):
        # Local (ECHO, PING) and forwarded (SET, GET, INCR) commands interleaved in one write:
        # every reply must come back, in request order.
        ctr = "respite:basic:ctr"
        self.up().set(ctr, 0)
        cmds, expected = [], []
        for i in range(500):
            k = f"respite:basic:p{i}"
            cmds += [encode_command("SET", k, f"v{i}"), encode_command("ECHO", f"e{i}"),
                     encode_command("GET", k), encode_command("INCR", ctr)]
            expected += [b"+OK\r\n", b"$%d\r\ne%d\r\n" % (len(f"e{i}"), i),
                         b"$%d\r\nv%d\r\n" % (len(f"v{i}"), i), b":%d\r\n" % (i + 1)]
        with RawConn(self.port, timeout=20) as c:
            c.send(b"".join(cmds))
            got = c.read_raw_replies(2000, timeout=20)
        self.assertEqual(len(got), 2000)
        for n, (g, e) in enumerate(zip(got, expected)):
            self.assertEqual(g, e, f"reply {n} out of order or wrong")

    def test_redis_py_pipeline(self):
        p = self.px().pipeline(transaction=False)
        for i in range(2000):
            p.set(f"respite:basic:rp{i}", i)
            p.get(f"respite:basic:rp{i}")
        res = p.execute()
        self.assertEqual(res[1::2], [str(i).encode() for i in range(2000)])

    def test_concurrent_clients_each_in_order(self):
        errors = []

        def worker(n):
            try:
                with RawConn(self.port, timeout=20) as c:
                    c.call("SET", f"respite:basic:w{n}", 0)
                    for _ in range(10):
                        c.send(encode_command("INCR", f"respite:basic:w{n}") * 20 +
                               encode_command("ECHO", f"w{n}"))
                        c.read_replies(21, timeout=20)
                    v = c.call("GET", f"respite:basic:w{n}")
                    if v != b"200":
                        errors.append((n, v))
            except Exception as e:  # noqa: BLE001
                errors.append((n, repr(e)))

        ts = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in ts), "workers hung")
        self.assertEqual(errors, [])

    def test_select_db_isolation(self):
        key = "respite:basic:db"
        self.up().delete(key)
        self.upstream.client(db=1).delete(key)
        with RawConn(self.port) as a, RawConn(self.port) as b:
            self.assertEqual(a.call("SELECT", 1), "OK")
            self.assertEqual(a.call("SET", key, "in-db1"), "OK")
            self.assertEqual(a.call("GET", key), b"in-db1")
            self.assertIsNone(b.call("GET", key), "db 0 client sees db 1's key")
            self.assertIsNone(self.up().get(key))
            self.assertEqual(self.upstream.client(db=1).get(key), b"in-db1")
            self.assertEqual(a.call("SELECT", 0), "OK")
            self.assertIsNone(a.call("GET", key))
            self.assertEqual(a.call("SELECT", 1), "OK")
            # interleave clients in different dbs
            b.call("SET", key, "in-db0")
            for _ in range(50):
                a.send(encode_command("GET", key))
                b.send(encode_command("GET", key))
            self.assertEqual(a.read_replies(50), [b"in-db1"] * 50)
            self.assertEqual(b.read_replies(50), [b"in-db0"] * 50)
        with RawConn(self.port) as c:
            self.assertEqual(c.call("SELECT", 16).startswith("ERR"), True)
            self.assertEqual(c.call("SELECT", "x"), "ERR value is not an integer or out of range")

    def test_select_many_clients_many_dbs(self):
        errors = []

        def worker(n):
            db = n % 8
            try:
                with RawConn(self.port, timeout=20) as c:
                    c.call("SELECT", db)
                    c.call("SET", f"respite:basic:mdb{n}", f"db{db}")
                    for _ in range(20):
                        c.send(encode_command("GET", f"respite:basic:mdb{n}") * 10)
                        got = c.read_replies(10)
                        if got != [f"db{db}".encode()] * 10:
                            errors.append((n, got[:2]))
                            return
            except Exception as e:  # noqa: BLE001
                errors.append((n, repr(e)))

        ts = [threading.Thread(target=worker, args=(n,)) for n in range(24)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])
        for n in range(24):
            self.assertEqual(self.upstream.client(db=n % 8).get(f"respite:basic:mdb{n}"),
                             f"db{n % 8}".encode())


class Transactions(ProxyTestCase):

    def test_multi_exec_redis_py(self):
        p = self.px().pipeline(transaction=True)
        p.set("respite:tx:a", 1).incr("respite:tx:a").get("respite:tx:a")
        self.assertEqual(p.execute(), [True, 2, b"2"])

    def test_multi_exec_bytes_like_redis(self):
        data = (encode_command("SET", "respite:tx:b", "0") + encode_command("MULTI") +
                encode_command("INCR", "respite:tx:b") + encode_command("PING") +
                encode_command("GET", "respite:tx:b") + encode_command("EXEC") +
                encode_command("MULTI") + encode_command("SET", "respite:tx:b", "9") +
                encode_command("DISCARD") + encode_command("GET", "respite:tx:b") +
                encode_command("MULTI") + encode_command("NOSUCH") + encode_command("EXEC") +
                encode_command("EXEC") + encode_command("DISCARD") + encode_command("GET", "respite:tx:b"))
        assert_same_as_redis(
            self, self.port, self.upstream.port, data, nreplies=16, expect_close=False,
            expected=b"+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n:1\r\n+PONG\r\n$1\r\n1\r\n"
                     b"+OK\r\n+QUEUED\r\n+OK\r\n$1\r\n1\r\n+OK\r\n"
                     b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n"
                     b"-EXECABORT Transaction discarded because of previous errors.\r\n"
                     b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n$1\r\n1\r\n")

    def test_multi_isolated_from_other_clients(self):
        with RawConn(self.port) as a, RawConn(self.port) as b:
            a.call("SET", "respite:tx:iso", "before")
            self.assertEqual(a.call("MULTI"), "OK")
            self.assertEqual(a.call("SET", "respite:tx:iso", "inside"), "QUEUED")
            # another client is not affected by a's open transaction
            self.assertEqual(b.call("GET", "respite:tx:iso"), b"before")
            self.assertEqual(b.call("PING"), "PONG")
            self.assertEqual(a.call("EXEC"), ["OK"])
            self.assertEqual(b.call("GET", "respite:tx:iso"), b"inside")

    def test_watch_conflict_through_respite(self):
        key = "respite:tx:w"
        with RawConn(self.port) as a, RawConn(self.port) as b:
            a.call("SET", key, "1")
            self.assertEqual(a.call("WATCH", key), "OK")
            self.assertEqual(b.call("SET", key, "2"), "OK")
            self.assertEqual(a.call("MULTI"), "OK")
            self.assertEqual(a.call("SET", key, "3"), "QUEUED")
            a.cmd("EXEC")
            self.assertEqual(a.read_raw_replies(1), [b"*-1\r\n"])
            self.assertEqual(b.call("GET", key), b"2")
            # and without a conflict the transaction runs
            self.assertEqual(a.call("WATCH", key), "OK")
            self.assertEqual(a.call("MULTI"), "OK")
            self.assertEqual(a.call("SET", key, "4"), "QUEUED")
            self.assertEqual(a.call("EXEC"), ["OK"])
            self.assertEqual(b.call("GET", key), b"4")

    def test_watch_conflict_direct_write(self):
        key = "respite:tx:wd"
        with RawConn(self.port) as a:
            a.call("SET", key, "1")
            self.assertEqual(a.call("WATCH", key), "OK")
            self.up().set(key, "direct")
            self.assertEqual(a.call("MULTI"), "OK")
            self.assertEqual(a.call("INCR", key), "QUEUED")
            self.assertIsNone(a.call("EXEC"))
            self.assertEqual(a.call("GET", key), b"direct")

    def test_unwatch(self):
        key = "respite:tx:uw"
        with RawConn(self.port) as a, RawConn(self.port) as b:
            a.call("SET", key, "1")
            a.call("WATCH", key)
            self.assertEqual(a.call("UNWATCH"), "OK")
            b.call("SET", key, "2")
            a.call("MULTI")
            a.call("SET", key, "3")
            self.assertEqual(a.call("EXEC"), ["OK"])

    def test_watch_with_redis_py(self):
        c = self.px()
        c.set("respite:tx:py", 10)
        import redis
        with c.pipeline() as p:
            p.watch("respite:tx:py")
            self.px().set("respite:tx:py", 11)
            p.multi()
            p.incr("respite:tx:py")
            with self.assertRaises(redis.WatchError):
                p.execute()
        self.assertEqual(c.get("respite:tx:py"), b"11")

    def test_transaction_in_selected_db(self):
        with RawConn(self.port) as a:
            a.call("SELECT", 2)
            a.call("MULTI")
            a.call("SET", "respite:tx:db", "two")
            self.assertEqual(a.call("EXEC"), ["OK"])
        self.assertEqual(self.upstream.client(db=2).get("respite:tx:db"), b"two")
        self.assertIsNone(self.up().get("respite:tx:db"))


if __name__ == "__main__":
    harness.run_tests()
