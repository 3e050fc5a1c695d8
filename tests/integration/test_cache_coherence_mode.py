"""cache-coherence tracking|ttl (issue 13, item 4): upstreams without CLIENT TRACKING.

- tracking, against a redis-server with CLIENT renamed away (ElastiCache 7.1 and Memorystore
  refuse tracking): respite serves every read and write correctly, forwarding reads; PROXY INFO
  and /metrics say the cache is off for lack of tracking (tracking_refused 1, cache_serving 0),
  cache_hits stays 0, and the log says why once.
- tracking, against a redis-server whose ACL refuses only CLIENT TRACKING (CLIENT ID works, so
  the link subscribes): reads are still answered (the fetch connection's refusal never reaches
  a client), and allowing TRACKING later brings the cache back within the retry period.
- ttl, against the CLIENT-less redis-server: a second GET is a cache hit, a value changed
  directly on Redis is served stale for at most cache-ttl-ms (bound: cache-ttl-ms plus this
  machine's lateness measured in the same test, harness.MachineDelay), a write through respite
  is seen at once from another connection, and no invalidation link is ever started.
- tracking against a normal redis-server still caches (sanity).

Upstream INFO commandstats is the witness of what reached Redis. Every wait is bounded.
"""

from __future__ import annotations

import sys
import time
import unittest
import urllib.request

from harness import (DIRECT, HOST, MachineDelay, RawConn, RedisServer, RespError, Respite,
                     commandstats, free_port, parse_info, run_tests)

RETRY_S = 5.0  # Tracking::kRefusedRetryMs: how often a refusing upstream is asked again


def info(c: RawConn) -> dict[str, str]:
    """PROXY INFO on `c`: per-loop fields (tracking_link, tracking_refused, cache_serving) are
    those of the loop serving `c`, so they are asked where the reads are made."""
    r = c.call("PROXY", "INFO")
    if isinstance(r, RespError) or r is None:
        return {}
    return parse_info(r)


def wait_info(c: RawConn, field: str, value: str, timeout: float = 10.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        i = info(c)
        if i.get(field) == value or time.monotonic() >= deadline:
            return i
        time.sleep(0.02)


def get_calls(port: int) -> int:
    return commandstats(port).get("get", 0)


def refusal_lines(proxy: Respite) -> list[str]:
    proxy.proc.log.flush()
    text = proxy.proc.log_path.read_text(errors="replace")
    return [ln for ln in text.splitlines() if "refuses CLIENT TRACKING" in ln]


def start(tc_cls, redis_args: list[str], respite_args: list[str]):
    tc_cls.upstream = RedisServer(redis_args).start()
    tc_cls.addClassCleanup(tc_cls.upstream.close)
    tc_cls.proxy = Respite(tc_cls.upstream, respite_args).start()
    tc_cls.addClassCleanup(tc_cls.proxy.close)
    tc_cls.port = tc_cls.proxy.port


NO_CLIENT = ["--rename-command", "CLIENT", ""]


@unittest.skipIf(DIRECT, "RESPITE_DIRECT=1: respite-specific test")
class TrackingRefused(unittest.TestCase):
    """--cache-coherence tracking in front of a redis-server without CLIENT."""

    @classmethod
    def setUpClass(cls):
        cls.http_port = free_port()
        start(cls, NO_CLIENT, ["--cache-coherence", "tracking", "--http-port", str(cls.http_port)])

    def tearDown(self):
        self.proxy.assert_alive()

    def refused_conn(self) -> RawConn:
        c = RawConn(self.port)
        i = wait_info(c, "tracking_refused", "1")
        self.assertEqual(i.get("tracking_refused"), "1", f"refusal never shown: {i}")
        return c

    def test_serves_reads_and_writes_without_the_cache(self):
        with self.refused_conn() as c, RawConn(self.upstream.port) as direct:
            i = info(c)
            self.assertEqual(i["cache_coherence"], "tracking")
            self.assertEqual(i["cache_serving"], "0")
            self.assertEqual(i["tracking_link"], "down")
            self.assertEqual(i["cache_enabled"], "1")
            hits0, calls0 = int(i["cache_hits"]), get_calls(self.upstream.port)
            self.assertEqual(c.call("SET", "cm:r:a", "1"), "OK")
            for _ in range(5):
                self.assertEqual(c.call("GET", "cm:r:a"), b"1")
            self.assertEqual(c.call("MGET", "cm:r:a", "cm:r:none"), [b"1", None])
            # Written directly on Redis: the next read sees it (nothing is cached to go stale).
            self.assertEqual(direct.call("SET", "cm:r:a", "2"), "OK")
            self.assertEqual(c.call("GET", "cm:r:a"), b"2")
            self.assertEqual(c.call("MULTI"), "OK")
            self.assertEqual(c.call("INCR", "cm:r:n"), "QUEUED")
            self.assertEqual(c.call("EXEC"), [1])
            i = info(c)
            self.assertEqual(int(i["cache_hits"]), hits0)
            self.assertEqual(int(i["cache_hits"]), 0)
            self.assertEqual(i["cache_keys"], "0")
            self.assertEqual(get_calls(self.upstream.port) - calls0, 6, "every GET forwarded")

    def test_said_once_in_the_log_and_config(self):
        with self.refused_conn() as c:
            lines = refusal_lines(self.proxy)
            self.assertEqual(len(lines), 1, lines)
            for part in ("the cache is off", "reads are forwarded", "cache-coherence ttl",
                         "cache-ttl-ms", "CLIENT ID"):
                self.assertIn(part, lines[0])
            self.assertIn(" # ", lines[0])  # warning level (Redis's marks: . - * #)
            log = self.proxy.proc.log_path.read_text(errors="replace")
            self.assertIn("cache-coherence tracking", log)  # the startup settings
            self.assertEqual(c.call("PROXY", "CONFIG", "GET", "cache-coherence"),
                             [b"cache-coherence", b"tracking"])
            r = c.call("PROXY", "CONFIG", "SET", "cache-coherence", "ttl")
            self.assertIsInstance(r, RespError)
            self.assertIn("immutable", r)

    def test_metrics_show_the_refusal(self):
        self.refused_conn().close()
        deadline = time.monotonic() + 10
        while True:  # /metrics is answered by one loop; with --threads 2 wait for both
            with urllib.request.urlopen(f"http://{HOST}:{self.http_port}/metrics", timeout=5) as r:
                body = r.read().decode()
            if "respite_tracking_refused 1\n" in body or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        self.assertIn("respite_tracking_refused 1\n", body)
        self.assertIn("respite_cache_serving 0\n", body)


@unittest.skipIf(DIRECT, "RESPITE_DIRECT=1: respite-specific test")
class TrackingRefusedByAcl(unittest.TestCase):
    """CLIENT ID allowed, CLIENT TRACKING refused: the link subscribes, the fetch connection is
    refused. Then the ACL allows it and the cache comes back."""

    @classmethod
    def setUpClass(cls):
        start(cls, [], ["--cache-coherence", "tracking"])

    def test_refused_then_allowed(self):
        with RawConn(self.upstream.port) as direct:
            self.assertEqual(direct.call("ACL", "SETUSER", "default", "-client|tracking"), "OK")
        # respite started before the ACL changed: its link may be up already. A new link is
        # what the refusal concerns: restart it by killing respite's link connection.
        with RawConn(self.upstream.port) as direct:
            direct.call("CLIENT", "KILL", "TYPE", "pubsub")
        delay = MachineDelay()
        try:
            with RawConn(self.port) as c:
                i = wait_info(c, "tracking_refused", "1")
                self.assertEqual(i.get("tracking_refused"), "1", i)
                self.assertEqual(i["cache_serving"], "0")
                hits0 = int(i["cache_hits"])
                self.assertEqual(c.call("SET", "cm:acl:a", "x"), "OK")
                for _ in range(5):
                    self.assertEqual(c.call("GET", "cm:acl:a"), b"x")
                self.assertEqual(c.call("MGET", "cm:acl:a", "cm:acl:none"), [b"x", None])
                self.assertEqual(int(info(c)["cache_hits"]), hits0)
                with RawConn(self.upstream.port) as direct:
                    self.assertEqual(direct.call("ACL", "SETUSER", "default", "+client|tracking"),
                                     "OK")
                allowed = time.monotonic()
                bound = delay.allow(RETRY_S)
                i = wait_info(c, "cache_serving", "1", timeout=bound + 5)
                took = time.monotonic() - allowed
                self.assertEqual(i.get("cache_serving"), "1", i)
                sys.stderr.write(f"\n  tracking allowed -> cache serving: {took * 1000:.0f} ms "
                                 f"({delay.describe(RETRY_S)})\n")
                self.assertLessEqual(took, delay.allow(RETRY_S), delay.describe(RETRY_S))
                self.assertEqual(i["tracking_refused"], "0")
                self.assertEqual(i["tracking_link"], "up")
                c.call("GET", "cm:acl:a")
                self.assertEqual(c.call("GET", "cm:acl:a"), b"x")
                self.assertGreater(int(info(c)["cache_hits"]), hits0)
        finally:
            delay.stop()
        self.proxy.assert_alive()


@unittest.skipIf(DIRECT, "RESPITE_DIRECT=1: respite-specific test")
class TtlMode(unittest.TestCase):
    """--cache-coherence ttl in front of the same CLIENT-less redis-server."""

    TTL_MS = 500

    @classmethod
    def setUpClass(cls):
        start(cls, NO_CLIENT, ["--cache-coherence", "ttl", "--cache-ttl-ms", str(cls.TTL_MS),
                               "--xfetch-beta", "0"])

    def tearDown(self):
        self.proxy.assert_alive()

    def serving_conn(self) -> RawConn:
        c = RawConn(self.port)
        i = wait_info(c, "cache_serving", "1")
        self.assertEqual(i.get("cache_serving"), "1", i)
        return c

    def test_info_and_no_link(self):
        with self.serving_conn() as c:
            i = info(c)
            self.assertEqual(i["cache_coherence"], "ttl")
            self.assertEqual(i["tracking_link"], "off")
            self.assertEqual(i["tracking_refused"], "0")
            self.assertEqual(c.call("PROXY", "CONFIG", "GET", "cache-coherence"),
                             [b"cache-coherence", b"ttl"])
        stats = commandstats(self.upstream.port)
        self.assertNotIn("subscribe", stats, "an invalidation link was started")
        self.assertEqual(refusal_lines(self.proxy), [])

    def test_second_get_is_a_hit(self):
        # An attempt counts only if it ran well inside the entry's cache-ttl-ms (a stalled
        # machine may outlast it: then the reads were rightly misses); at most 5 attempts.
        ttl = self.TTL_MS / 1000
        with self.serving_conn() as c:
            for attempt in range(5):
                key = f"cm:t:hit:{attempt}"
                self.assertEqual(c.call("SET", key, "v"), "OK")
                hits0, calls0 = int(info(c)["cache_hits"]), get_calls(self.upstream.port)
                start = time.monotonic()
                self.assertEqual(c.call("GET", key), b"v")
                self.assertEqual(c.call("GET", key), b"v")
                self.assertEqual(c.call("MGET", key, key), [b"v", b"v"])
                if time.monotonic() - start < ttl / 2:
                    break
            self.assertEqual(int(info(c)["cache_hits"]) - hits0, 3)
            self.assertEqual(get_calls(self.upstream.port) - calls0, 1)

    def test_direct_write_seen_within_cache_ttl(self):
        key = "cm:t:direct"
        ttl = self.TTL_MS / 1000
        delay = MachineDelay()
        try:
            with self.serving_conn() as c, RawConn(self.upstream.port) as direct:
                delay.measured()
                self.assertEqual(c.call("SET", key, "old"), "OK")
                self.assertEqual(c.call("GET", key), b"old")  # the fill
                filled = time.monotonic()  # the entry landed before this reply
                self.assertEqual(direct.call("SET", key, "new"), "OK")
                first = c.call("GET", key)
                first_at = time.monotonic() - filled
                stale = 0
                seen_new = None
                deadline = filled + 10
                while time.monotonic() < deadline:
                    got = c.call("GET", key)
                    if got == b"new":
                        seen_new = time.monotonic() - filled
                        break
                    self.assertEqual(got, b"old")
                    stale += 1
                    time.sleep(0.005)
                self.assertIsNotNone(seen_new, "the new value never came")
                if first_at < ttl / 2:  # read well inside the entry's life: from the cache
                    self.assertEqual(first, b"old", "a direct write was seen at once: not cached?")
                    self.assertGreater(stale, 0)
                sys.stderr.write(f"\n  direct write: {stale} stale reads, new value after "
                                 f"{seen_new * 1000:.0f} ms from the fill ({delay.describe(ttl)})\n")
                self.assertLessEqual(seen_new, delay.allow(ttl), delay.describe(ttl))
        finally:
            delay.stop()

    def test_write_through_respite_seen_at_once(self):
        key = "cm:t:ryw"
        stale = []
        with self.serving_conn() as a, self.serving_conn() as b:
            a.call("SET", key, "start")
            for i in range(300):
                a.call("GET", key)
                b.call("GET", key)  # both cached
                self.assertEqual(a.call("SET", key, str(i)), "OK")
                want = str(i).encode()
                for who, conn in (("other", b), ("same", a)):
                    got = conn.call("GET", key)
                    if got != want:
                        stale.append((i, who, got))
            self.assertGreater(int(info(a)["cache_hits"]), 0)
        self.assertEqual(stale[:5], [], f"{len(stale)} stale reads in 300 rounds")


@unittest.skipIf(DIRECT, "RESPITE_DIRECT=1: respite-specific test")
class TrackingNormal(unittest.TestCase):
    """--cache-coherence tracking (the default) against a normal redis-server still caches."""

    @classmethod
    def setUpClass(cls):
        start(cls, [], ["--cache-coherence", "tracking"])

    def test_caches_and_sees_direct_writes(self):
        with RawConn(self.port) as c, RawConn(self.upstream.port) as direct:
            i = wait_info(c, "cache_serving", "1")
            self.assertEqual(i.get("cache_serving"), "1", i)
            self.assertEqual(i["tracking_link"], "up")
            self.assertEqual(i["tracking_refused"], "0")
            self.assertEqual(i["cache_coherence"], "tracking")
            self.assertEqual(c.call("SET", "cm:n:a", "1"), "OK")
            hits0, calls0 = int(info(c)["cache_hits"]), get_calls(self.upstream.port)
            for _ in range(5):
                self.assertEqual(c.call("GET", "cm:n:a"), b"1")
            self.assertEqual(int(info(c)["cache_hits"]) - hits0, 4)
            self.assertEqual(get_calls(self.upstream.port) - calls0, 1)
            # Tracking: a direct write reaches the cache through the link (bounded wait).
            self.assertEqual(direct.call("SET", "cm:n:a", "2"), "OK")
            deadline = time.monotonic() + 5
            while c.call("GET", "cm:n:a") != b"2" and time.monotonic() < deadline:
                time.sleep(0.005)
            self.assertEqual(c.call("GET", "cm:n:a"), b"2")
        self.assertEqual(refusal_lines(self.proxy), [])


if __name__ == "__main__":
    run_tests()
