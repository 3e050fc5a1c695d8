"""Coherence for writes whose keys respite cannot know from the arguments.

- A script that writes a key it did not declare (EVAL ... 0, EVALSHA, FCALL, also inside
  MULTI/EXEC), SORT ... STORE: the reply is held until the invalidation Redis made for it went
  through the tracking link, so 1,000 rounds of "EVAL writes a cached key, then GET" on the
  same connection and from a second one read no stale value.
- SWAPDB made directly on Redis (Redis 7.0 sends no invalidation for it): respite sees the call
  count change in INFO commandstats and flushes; the old db 0 value is served for at most about
  one poll (100 ms) instead of the whole cache TTL.

Every loop is bounded by a count or a deadline.
"""

from __future__ import annotations

import time
import unittest

from harness import (DIRECT, ProxyTestCase, RawConn, RespError, proxy_info, respite_only,
                     wait_link_up)

SET_SCRIPT = "return redis.call('SET', 'respite:uk:k', ARGV[1])"


class UnkeyedWrites(ProxyTestCase):
    def wait_tracking_up(self, timeout: float = 10.0):
        if DIRECT:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proxy_info(self.port)["tracking_link"] == "up":
                return
            time.sleep(0.02)
        self.fail("tracking link never came up")

    def setUp(self):
        super().setUp()
        self.wait_tracking_up()

    def rounds(self, write, n: int = 1000):
        """`write(a, i)` makes key respite:uk:k hold str(i) through connection a; counts the
        stale reads on a and on a second connection b, both of which read (and so cache) the key
        before every write."""
        key = "respite:uk:k"
        stale = []
        with RawConn(self.port) as a, RawConn(self.port) as b:
            a.call("SET", key, "start")
            for i in range(n):
                a.call("GET", key)
                b.call("GET", key)
                write(a, i)
                want = str(i).encode()
                for who, c in (("same", a), ("other", b)):
                    got = c.call("GET", key)
                    if got != want:
                        stale.append((i, who, got))
        return stale

    def test_eval_writing_an_undeclared_key(self):
        def write(a, i):
            self.assertEqual(a.call("EVAL", SET_SCRIPT, 0, i), "OK")
        stale = self.rounds(write)
        self.assertEqual(stale[:5], [], f"{len(stale)} stale reads in 1000 rounds")

    def test_evalsha_and_fcall(self):
        with RawConn(self.port) as c:
            sha = c.call("SCRIPT", "LOAD", SET_SCRIPT).decode()
            lib = ("#!lua name=respite_uk\n"
                   "redis.register_function('uk_set', function(keys, args) "
                   "return redis.call('SET', 'respite:uk:k', args[1]) end)")
            r = c.call("FUNCTION", "LOAD", "REPLACE", lib)
            self.assertNotIsInstance(r, RespError)

        def write(a, i):
            if i % 2:
                self.assertEqual(a.call("EVALSHA", sha, 0, i), "OK")
            else:
                self.assertEqual(a.call("FCALL", "uk_set", 0, i), "OK")
        stale = self.rounds(write, 400)
        self.assertEqual(stale[:5], [], f"{len(stale)} stale reads in 400 rounds")

    def test_eval_inside_multi(self):
        def write(a, i):
            self.assertEqual(a.call("MULTI"), "OK")
            self.assertEqual(a.call("EVAL", SET_SCRIPT, 0, i), "QUEUED")
            self.assertEqual(a.call("EXEC"), ["OK"])
        stale = self.rounds(write, 300)
        self.assertEqual(stale[:5], [], f"{len(stale)} stale reads in 300 rounds")

    def test_sort_store(self):
        with RawConn(self.port) as c, RawConn(self.port) as d:
            for i in range(100):
                c.call("DEL", "respite:uk:list")
                c.call("RPUSH", "respite:uk:list", i + 2, i + 1)
                c.call("SET", "respite:uk:dst", "old")
                self.assertEqual(d.call("GET", "respite:uk:dst"), b"old")  # cached
                self.assertEqual(c.call("SORT", "respite:uk:list", "STORE", "respite:uk:dst"), 2)
                got = d.call("GET", "respite:uk:dst")
                self.assertIsInstance(got, RespError, "a list now: WRONGTYPE, not the old string")

    @respite_only
    def test_barrier_is_counted(self):
        before = int(proxy_info(self.port)["tracking_barriers"])
        with RawConn(self.port) as c:
            self.assertEqual(c.call("EVAL", SET_SCRIPT, 0, "x"), "OK")
        self.assertEqual(int(proxy_info(self.port)["tracking_barriers"]), before + 1)


class SwapdbBehindRespite(ProxyTestCase):
    def test_swapdb_on_redis_reaches_the_cache(self):
        key = "respite:uk:swap"
        with RawConn(self.upstream.port) as up:
            up.call("SELECT", 0)
            up.call("SET", key, "db0")
            up.call("SELECT", 1)
            up.call("SET", key, "db1")
            with RawConn(self.port) as c:
                if not DIRECT:  # the link of c's own loop (each loop has one)
                    self.assertTrue(wait_link_up(c), "tracking link never came up")
                for _ in range(3):
                    self.assertEqual(c.call("GET", key), b"db0")  # cached from now on
                before = proxy_info(self.port).get("swapdb_flushes")
                self.assertEqual(up.call("SWAPDB", 0, 1), "OK")
                t0 = time.monotonic()
                got = None
                while time.monotonic() - t0 < 5:
                    got = c.call("GET", key)
                    if got == b"db1":
                        break
                    time.sleep(0.005)
                window = time.monotonic() - t0
                print(f"\nSWAPDB on Redis reached respite's cache after {window * 1000:.0f} ms")
                self.assertEqual(got, b"db1", "old db 0 value still served 5 s after SWAPDB "
                                              "(cache-ttl-ms is 10 s)")
                if not DIRECT:
                    # Every loop polls the upstream for SWAPDB, but the count they saw is shared
                    # and a reply to an older poll is not applied: the cache the loops share is
                    # flushed once, with --threads 2 as with one loop. (A second flush needs two
                    # loops' polls to reach Redis in the other order than they were numbered,
                    # within microseconds of the SWAPDB.)
                    info = proxy_info(self.port)
                    flushes = int(info["swapdb_flushes"]) - int(before)
                    self.assertEqual(flushes, 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
