"""Issue 6, fault tests: respite never crashes, never hangs and never acknowledges a write the
upstream did not acknowledge, whatever the upstream and the clients do.

test_lifecycle.py already covers a stopped upstream (one GET), 30 in-flight GETs on a killed
upstream, a subscriber whose upstream dies and serving again "eventually" (10 s). This file adds:

- UpstreamKilled: SIGKILL with GETs that miss the cache, SETs, MGETs and INCRs in flight from
  20 clients (all answered with errors within --upstream-timeout-ms, no connection closed), then
  served again within 1 s of the restart on the same port with the cache flushed across the gap
  (a value rewritten directly on the restarted upstream is read back through respite, a key
  cached before the gap reads as missing); the same with clients on pinned connections (BLPOP
  blocked with timeout 0, EXEC waiting, an open MULTI); 12 threads under continuous load while
  the upstream is killed and restarted (no wait over the timeout, no wrong value, every thread
  served again within 1 s).
- SlowUpstream (SIGSTOP/SIGCONT): every request of a pipeline fails within the timeout of its
  send; a timeout error says "timeout"; after SIGCONT the late replies are never delivered
  (values are unique per client and key); a write is acknowledged only after the upstream
  acknowledged it and a timed-out write gets an error, never +OK; with the default timeout a
  write fails in < 2.5 s (stopped or killed upstream) and writes are served again within 3 s of
  the restart.
- HeldRequestTimeout (a relay that holds a live upstream's replies): a request held behind its
  client's cache miss and sent late gets its timeout error at arrival + timeout, and the
  connection it shares stays up: another client's request sent after it gets its real reply,
  and the late reply is consumed, not delivered.
- ClientFaults (one respite for the class): clients that close mid-pipeline (10 x 10k GET/SET,
  upstream running or stopped): RSS, /proc/<pid>/fd and connected_clients back to baseline; a
  client that never reads, sending GETs of a 10 KB value (cache hits) or GETRANGEs of it
  (relayed upstream), is closed by --client-output-buffer-limit, respite's RSS stays < 300 MB
  (and the upstream's too), other clients keep a latency like the same scenario's on
  redis-server itself (measured first, in the same test); 3000 garbage inputs on fresh
  connections leave respite alive with RSS grown < 20 MB; huge declared counts and lengths are
  not allocated up front.
- Limits like Redis (byte for byte against a redis-server with the same settings): a 600 MB
  bulk header, exactly 512 MB and 2^31-1 elements (accepted, waiting), --client-query-buffer-limit
  and --proto-max-bulk-len at 1mb, and the unauthenticated limits of --requirepass at their exact
  boundaries (10/11 elements, 16384/16385 bytes) and lifted after AUTH.

Times: no bound here is a speed. "Within the timeout" and "served again within 1 s" are
deadlines of respite's own, allowed the machine's delay measured in the same test (MachineDelay:
redis-server's own timeouts observed by the same client code, all along the test, times
CONTROL_FACTOR); other clients' latency beside a never-reading client is compared with the same
scenario run on redis-server directly. A slow or busy machine widens the bounds instead of failing
the tests; each bound is printed with its parts.

Every loop is bounded by a count or a deadline; processes are stopped by pid by the harness.
About 50 s in all.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
import unittest

import harness
from harness import (CONTROL_FACTOR, CONTROL_SLACK_S, DIRECT, HOST, MachineDelay, ProxyTestCase,
                     RawConn, RedisServer, RespError, Respite, assert_same_as_redis,
                     encode_command, proxy_info, respite_only)

TIMEOUT_MS = 1000
TIMEOUT_S = TIMEOUT_MS / 1000
SLACK_S = CONTROL_SLACK_S  # scheduling slack on top of --upstream-timeout-ms
RESTART_S = 1.0         # served again this long after the upstream restarts (backoff cap 500 ms)
SERVE_WINDOW_S = 10.0   # how long "served again" is waited for before it counts as never
# No bound here is an absolute speed: each is a behaviour (a deadline of respite's own) plus
# CONTROL_FACTOR times a control measured in the same test on this machine, at the same time (see
# harness.MachineDelay and never_reading_client), so a slow or busy machine widens the bound
# instead of failing the test.
MB = 1 << 20
BULK_ERR = b"-ERR Protocol error: invalid bulk length\r\n"


# --------------------------------------------------------------------------------------------
# Helpers.


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def sanitized(pid: int) -> bool:
    """True when the process runs with AddressSanitizer (RESPITE_SANITIZE=ON): its quarantine
    keeps freed memory, so RSS bounds are reported but not asserted then."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return any("libasan" in line or "libclang_rt.asan" in line for line in f)
    except OSError:
        return False


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def warm_every_loop(tc: unittest.TestCase, port: int, upstream_port: int, tag: str):
    """Makes every event loop of respite open the upstream connections it opens lazily (the
    RESP3 shared connection and the cache's fetch connection; the RESP2 shared connection and
    the invalidation link open at start), so that a descriptor baseline taken afterwards holds
    them. Clients land on a loop by SO_REUSEPORT's hash, which the test cannot choose: it
    connects (a bounded number of times) until the upstream shows one of each per loop."""
    loops = int(proxy_info(port)["threads"])

    def have() -> tuple[int, int]:
        with RawConn(upstream_port) as d:
            listing = d.call("CLIENT", "LIST").decode()
        conns = [dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
                 for line in listing.splitlines()]
        me = [c for c in conns if c.get("cmd") != "client|list"]
        return (sum(1 for c in me if c.get("resp") == "3"),
                sum(1 for c in me if "t" in c.get("flags", "")))
    for i in range(50 * loops):
        with RawConn(port) as c:
            key = f"{tag}:warm:{i}"  # a new key: a cache miss, fetched on this loop
            tc.assertEqual(c.call("SET", key, "1"), "OK")
            tc.assertEqual(c.call("GET", key), b"1")
            c.call("HELLO", "3")
            tc.assertEqual(c.call("SET", key, "1"), "OK")
        resp3, fetch = have()
        if resp3 >= loops and fetch >= loops:
            return
    tc.fail(f"not every one of {loops} loops opened its connections: RESP3 {resp3}, fetch {fetch}")


def wait_until(pred, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def direct_set(port: int, pairs: dict, password: str | None = None):
    """Write keys straight on a redis-server (not through respite)."""
    with RawConn(port) as c:
        if password:
            c.call("AUTH", password)
        data = b"".join(encode_command("SET", k, v) for k, v in pairs.items())
        c.send(data)
        for r in c.read_replies(len(pairs)):
            assert r == "OK", r


def direct_get(port: int, key: str):
    with RawConn(port) as c:
        return c.call("GET", key)


def wait_tracking_up(port: int, timeout: float = 5.0) -> bool:
    """True when respite's invalidation link is up (a PROXY INFO without the field fails)."""
    def up():
        return proxy_info(port)["tracking_link"] == "up"
    return wait_until(up, timeout)


def make_cached(tc: unittest.TestCase, port: int, key: str, value: bytes):
    """SET through respite, then GET until PROXY INFO shows a cache hit for it (bounded)."""
    with RawConn(port) as c:
        tc.assertTrue(harness.wait_link_up(c), "the invalidation link of this client's loop is down")
        tc.assertEqual(c.call("SET", key, value), "OK")
        for _ in range(40):
            before = int(proxy_info(port)["cache_hits"])
            tc.assertEqual(c.call("GET", key), value)
            if int(proxy_info(port)["cache_hits"]) > before:
                return
            time.sleep(0.05)
    tc.fail(f"{key} never became a cache hit (PROXY INFO: {proxy_info(port)})")


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


class ProcsPerTest(unittest.TestCase):
    """A fresh upstream and respite per test (tests here kill and stop the upstream)."""

    respite_args = ["--upstream-timeout-ms", str(TIMEOUT_MS)]

    def setUp(self):
        self.stack = contextlib.ExitStack()
        self.addCleanup(self.stack.close)
        self.delay = MachineDelay()
        self.addCleanup(self.delay.stop)
        self.start(self.respite_args)

    def start(self, args):
        self.upstream = self.stack.enter_context(RedisServer())
        self.proxy = self.stack.enter_context(Respite(self.upstream, args))
        self.port = self.proxy.port
        # resume a stopped upstream before it is stopped by pid (cleanups run last-in first-out)
        self.stack.callback(self.upstream.resume_process)

    def tearDown(self):
        self.proxy.assert_alive()

    def conn(self, timeout: float = 10.0) -> RawConn:
        c = RawConn(self.port, timeout)
        self.stack.callback(c.close)
        return c

    def assert_served_again(self, took: float | None, base: float = RESTART_S, what: str = ""):
        """Served again after the restart within `base` (+ the machine's delay)."""
        self.assertIsNotNone(took, f"{what}not served within {SERVE_WINDOW_S:.0f} s of the "
                                   f"restart\n{self.proxy.log_tail()}")
        self.assertLess(took, self.delay.allow(base, slack=0),
                        f"{what}served again {took * 1000:.0f} ms after the restart "
                        f"({self.delay.describe(base, slack=0)})")

    def serve_again_time(self, within: float, key: str = "f:back") -> float | None:
        """Seconds until a SET + GET through a fresh connection succeeds (None if not within)."""
        t0 = time.monotonic()
        deadline = t0 + within
        n = 0
        while time.monotonic() < deadline:
            n += 1
            with contextlib.suppress(OSError, TimeoutError):
                with RawConn(self.port, timeout=TIMEOUT_S + 2) as c:
                    if c.call("SET", key, str(n)) == "OK" and c.call("GET", key) == str(n).encode():
                        return time.monotonic() - t0
            time.sleep(0.01)
        return None


# --------------------------------------------------------------------------------------------


@respite_only
class UpstreamKilled(ProcsPerTest):

    def await_errors(self, clients, t_kill, closing_ok=False):
        """Every client gets its owed replies, all errors, within the timeout of its send."""
        worst = 0.0
        texts = set()
        for c, n, kind, sent in clients:
            try:
                replies = c.read_replies(n, timeout=TIMEOUT_S + 3)
            except TimeoutError as e:
                self.fail(f"{kind} client: no answer after the upstream was killed: {e}\n"
                          f"{self.proxy.log_tail()}")
            took = time.monotonic() - (sent if kind != "BLPOP" else t_kill)
            worst = max(worst, took)
            for r in replies:
                self.assertIsInstance(r, RespError, f"{kind}: expected error replies, got {replies!r}")
                texts.add(str(r))
            self.assertLessEqual(took, self.delay.allow(TIMEOUT_S),
                                 f"{kind} client waited {took:.2f}s for its errors "
                                 f"({self.delay.describe(TIMEOUT_S)})")
            if not closing_ok:
                self.assertFalse(c.closed, f"{kind} client connection closed instead of an error")
        return worst, texts

    def test_kill_with_mixed_requests_in_flight(self):
        """GETs that miss the cache, SETs, MGETs and INCRs from 20 clients wait in a stopped
        upstream that is then killed: all answered with errors, nothing closed; the upstream
        restarted on the same port: served within 1 s, the cache flushed across the gap."""
        up = self.upstream.port
        misses = {f"f:miss:{i}": f"m{i}" for i in range(60)}
        direct_set(up, misses)                      # never read through respite: cache misses
        self.assertTrue(wait_tracking_up(self.port), proxy_info(self.port))
        make_cached(self, self.port, "f:cached:rewritten", b"old")
        make_cached(self, self.port, "f:cached:gone", b"old")

        clients = []                                # (conn, n replies owed, kind, sent at)
        self.upstream.pause_process()
        for i in range(8):
            c = self.conn()
            c.send(b"".join(encode_command("GET", f"f:miss:{i * 5 + j}") for j in range(5)))
            clients.append((c, 5, "GET", time.monotonic()))
        for i in range(6):
            c = self.conn()
            c.send(b"".join(encode_command("SET", f"f:set:{i}:{j}", "v") for j in range(5)))
            clients.append((c, 5, "SET", time.monotonic()))
        for i in range(4):
            c = self.conn()
            c.send(b"".join(encode_command("MGET", f"f:miss:{40 + i * 3}", f"f:miss:{41 + i * 3}",
                                           f"f:miss:{42 + i * 3}") for _ in range(3)))
            clients.append((c, 3, "MGET", time.monotonic()))
        for i in range(2):
            c = self.conn()
            c.send(encode_command("INCR", f"f:ctr:{i}") * 10)
            clients.append((c, 10, "INCR", time.monotonic()))
        time.sleep(0.2)
        t_kill = time.monotonic()
        self.upstream.kill()
        worst, texts = self.await_errors(clients, t_kill)
        print(f"\n  killed upstream: {len(clients)} clients answered with errors, worst wait "
              f"{worst * 1000:.0f} ms from their send; errors: {sorted(texts)}")
        self.proxy.assert_alive()

        # back on the same port: served again within 1 s, cache flushed across the gap
        self.upstream.restart_same_port()
        t_restart = time.monotonic()
        took = self.serve_again_time(SERVE_WINDOW_S)
        if took is not None:
            print(f"  restarted upstream: served again after {took * 1000:.0f} ms "
                  f"({self.delay.describe(RESTART_S, slack=0)})")
        self.assert_served_again(took)
        direct_set(self.upstream.port, {"f:cached:rewritten": "new"})
        with RawConn(self.port) as c:
            self.assertEqual(c.call("GET", "f:cached:rewritten"), b"new",
                             "stale value from before the gap served from the cache")
            self.assertIsNone(c.call("GET", "f:cached:gone"),
                              "a key cached before the gap is served although the new upstream "
                              "does not have it")
        # The connections that got errors work again, with their own replies. They are spread
        # over respite's event loops, each reconnecting on its own, and the fresh connections
        # above may all have reached one loop: a client still told "upstream unavailable" asks
        # again, and must be served within the same bound from the restart.
        latest = took
        for i, (c, _, kind, _) in enumerate(clients):
            r = c.call("SET", f"f:again:{i}", f"a{i}")
            while (isinstance(r, RespError) and r.startswith("ERR upstream unavailable") and
                   time.monotonic() - t_restart < SERVE_WINDOW_S):
                time.sleep(0.01)
                r = c.call("SET", f"f:again:{i}", f"a{i}")
                if r == "OK":
                    latest = max(latest, time.monotonic() - t_restart)
            self.assertEqual(r, "OK", kind)
            self.assertEqual(c.call("GET", f"f:again:{i}"), f"a{i}".encode(), kind)
        self.assert_served_again(latest, what="every client's loop ")

    def test_kill_with_blocked_and_transaction_clients(self):
        """Clients on pinned upstream connections when the upstream dies: a BLPOP blocked in it
        (timeout 0), a MULTI whose EXEC waits in the stopped upstream, a MULTI with queued
        commands and no EXEC yet. Each gets an error (a close afterwards is allowed, as Redis
        drops such state with the connection); respite survives and serves after the restart."""
        blpop = self.conn()
        blpop.call("DEL", "f:list")
        blpop.cmd("BLPOP", "f:list", "0")
        blpop2 = self.conn()
        blpop2.cmd("BLPOP", "f:list2", "0")
        multi = self.conn()
        self.assertEqual(multi.call("MULTI"), "OK")
        self.assertEqual(multi.call("SET", "f:tx", "1"), "QUEUED")
        self.assertEqual(multi.call("INCR", "f:txn"), "QUEUED")
        queued = self.conn()
        self.assertEqual(queued.call("MULTI"), "OK")
        self.assertEqual(queued.call("SET", "f:tx2", "1"), "QUEUED")
        time.sleep(0.1)                             # the BLPOPs reach the upstream and block
        self.upstream.pause_process()
        multi.cmd("EXEC")
        t_exec = time.monotonic()
        time.sleep(0.2)
        t_kill = time.monotonic()
        self.upstream.kill()
        clients = [(blpop, 1, "BLPOP", t_kill), (blpop2, 1, "BLPOP", t_kill),
                   (multi, 1, "EXEC", t_exec)]
        worst, texts = self.await_errors(clients, t_kill, closing_ok=True)
        # the client with an open MULTI learns it on its next command at the latest
        r = None
        with contextlib.suppress(TimeoutError, OSError):
            r = queued.call("EXEC", timeout=TIMEOUT_S + 3)
        self.assertTrue(isinstance(r, RespError) or queued.closed,
                        f"EXEC of a transaction whose upstream died: {r!r}")
        print(f"\n  killed upstream under pinned clients: errors {sorted(texts)}, EXEC after: {r!r}")
        self.proxy.assert_alive()
        self.upstream.restart_same_port()
        self.assert_served_again(self.serve_again_time(SERVE_WINDOW_S))
        with self.conn() as c:                      # pinned connections work again too
            self.assertEqual(c.call("MULTI"), "OK")
            self.assertEqual(c.call("INCR", "f:txn"), "QUEUED")
            self.assertEqual(c.call("EXEC"), [1])

    def test_kill_under_continuous_load(self):
        """12 threads in a SET/GET/MGET loop (each on its own keys) while the upstream is killed
        and restarted: no request waits longer than the timeout, every read is right, and every
        thread is served again within 1 s of the restart."""
        stop = threading.Event()
        events = {"kill": None, "restarted": None}
        problems: list[str] = []
        slow: list[tuple[float, str]] = []         # waits over TIMEOUT_S + SLACK_S, judged at the end
        first_ok_after: dict[int, float] = {}
        stats = {"ok": 0, "err": 0, "slowest": 0.0}
        lock = threading.Lock()

        def worker(tid: int):
            n = 0
            c = None
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                n += 1
                key, val = f"f:load:{tid}", f"{tid}:{n}"
                try:
                    if c is None:
                        c = RawConn(self.port, timeout=TIMEOUT_S + 3)
                    t0 = time.monotonic()
                    replies, waits = [], []
                    for cmd in (("SET", key, val), ("GET", key), ("MGET", key, f"f:load:none:{tid}")):
                        ts = time.monotonic()
                        replies.append(c.call(*cmd))
                        waits.append(time.monotonic() - ts)
                    r1, r2, r3 = replies
                    t1 = time.monotonic()
                except (OSError, TimeoutError) as e:
                    with lock:
                        problems.append(f"thread {tid}: {type(e).__name__}: {e}")
                    if c is not None:
                        c.close()
                    return
                with lock:
                    stats["slowest"] = max([stats["slowest"]] + waits)
                    if max(waits) > TIMEOUT_S + SLACK_S:
                        slow.append((max(waits), f"thread {tid}: a request waited "
                                                 f"{max(waits):.2f}s (replies {replies!r})"))
                ok = r1 == "OK" and not isinstance(r2, RespError) and not isinstance(r3, RespError)
                if r1 == "OK":
                    # the SET was acknowledged: a GET answered after it returns it, unless the
                    # upstream was restarted (empty) in between
                    lost_ok = events["kill"] is not None and t0 <= (events["restarted"] or 1e18)
                    for got in (r2, r3[0] if isinstance(r3, list) else r3):
                        if isinstance(got, RespError):
                            continue
                        if got != val.encode() and not (got is None and lost_ok):
                            with lock:
                                problems.append(f"thread {tid}: wrote {val!r}, read {got!r}")
                if not (isinstance(r1, RespError) or r1 == "OK") or \
                        not (isinstance(r2, (RespError, bytes)) or r2 is None) or \
                        not isinstance(r3, (RespError, list)):
                    with lock:
                        problems.append(f"thread {tid}: unexpected replies {replies!r}")
                with lock:
                    stats["ok" if ok else "err"] += 1
                    if ok and events["restarted"] is not None and tid not in first_ok_after:
                        first_ok_after[tid] = t1 - events["restarted"]
                if not ok:
                    time.sleep(0.005)
            if c is not None:
                c.close()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(12)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        events["kill"] = time.monotonic()
        self.upstream.kill()
        time.sleep(0.5)
        self.upstream.restart_same_port()
        events["restarted"] = time.monotonic()
        wait_until(lambda: len(first_ok_after) == len(threads) or problems, SERVE_WINDOW_S, 0.02)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(timeout=TIMEOUT_S * 3 + 5)
        self.assertFalse(any(t.is_alive() for t in threads), "a client thread hangs")
        problems += [why for wait, why in slow if wait > self.delay.allow(TIMEOUT_S)]
        self.assertEqual(problems, [], f"{problems[:10]} ({self.delay.describe(TIMEOUT_S)})\n"
                                       f"{self.proxy.log_tail()}")
        worst = max(first_ok_after.values()) if first_ok_after else None
        print(f"\n  continuous load: {stats['ok']} ok rounds, {stats['err']} with errors, longest "
              f"wait for a reply {stats['slowest'] * 1000:.0f} ms; all threads served again "
              f"{worst * 1000 if worst is not None else -1:.0f} ms after the restart "
              f"({self.delay.describe(RESTART_S, slack=0)})")
        self.assertEqual(len(first_ok_after), len(threads),
                         f"threads not served again within {SERVE_WINDOW_S:.0f} s: "
                         f"{sorted(set(range(len(threads))) - set(first_ok_after))}")
        self.assert_served_again(worst, what="the last thread ")


@respite_only
class SlowUpstream(ProcsPerTest):

    NCLIENTS, NKEYS = 6, 5

    def stall_pipelines(self):
        """6 clients pipeline GETs that miss the cache, an MGET, a SET and an INCR into a
        stopped upstream. Returns (conns, [(replies, seconds after the send)])."""
        data = {}
        for c in range(self.NCLIENTS):
            for i in range(self.NKEYS):
                data[f"slow:{c}:x{i}"] = f"x-{c}-{i}"
                data[f"slow:{c}:y{i}"] = f"y-{c}-{i}"
        direct_set(self.upstream.port, data)
        conns = [self.conn() for _ in range(self.NCLIENTS)]
        for c in conns:
            self.assertEqual(c.call("PING"), "PONG")
        self.upstream.pause_process()
        t0 = time.monotonic()
        for ci, c in enumerate(conns):
            c.send(b"".join(encode_command("GET", f"slow:{ci}:x{i}") for i in range(self.NKEYS)) +
                   encode_command("MGET", f"slow:{ci}:x0", f"slow:{ci}:x1") +
                   encode_command("SET", f"slow:{ci}:late", "late") +
                   encode_command("INCR", f"slow:{ci}:n"))
        results = [[] for _ in conns]

        def read(ci):                                # time each reply as it arrives
            with contextlib.suppress(TimeoutError, OSError):
                while len(results[ci]) < self.NKEYS + 3:
                    r = conns[ci].read_reply(timeout=2 * TIMEOUT_S + 3)
                    results[ci].append((r, time.monotonic() - t0))

        threads = [threading.Thread(target=read, args=(ci,), daemon=True) for ci in range(len(conns))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=2 * TIMEOUT_S + 5)
        for ci, replies in enumerate(results):
            self.assertEqual(len(replies), self.NKEYS + 3,
                             f"client {ci}: only {len(replies)} replies within "
                             f"{2 * TIMEOUT_S + 3:.0f} s: {replies!r}")
        return conns, results

    # A request pipelined behind a cache miss is held until the miss's fetch ends; its deadline
    # counts from its arrival, not from when it is finally forwarded (it used to take up to
    # twice --upstream-timeout-ms).
    def test_stopped_upstream_pipelines_fail_within_timeout(self):
        """Every request waiting in a stopped upstream is answered with an error within
        --upstream-timeout-ms of its send, whatever it is pipelined behind."""
        conns, results = self.stall_pipelines()
        self.upstream.resume_process()
        kinds = ["GET"] * self.NKEYS + ["MGET", "SET", "INCR"]
        late = []
        bound = self.delay.allow(TIMEOUT_S)
        for ci, replies in enumerate(results):
            for kind, (r, took) in zip(kinds, replies):
                self.assertIsInstance(r, RespError, f"client {ci} {kind}: {r!r}")
                if took > bound:
                    late.append(f"client {ci} {kind} after {took * 1000:.0f} ms: -{r}")
        first = min(t for replies in results for _, t in replies)
        print(f"\n  stopped upstream: first error after {first * 1000:.0f} ms, last after "
              f"{max(t for replies in results for _, t in replies) * 1000:.0f} ms "
              f"(timeout {TIMEOUT_MS} ms); {len(late)} of {len(kinds) * len(results)} later than "
              f"the {self.delay.describe(TIMEOUT_S)}")
        self.assertGreaterEqual(first, TIMEOUT_S * 0.8, "errors came before the timeout")
        self.assertEqual(late, [], "requests answered later than --upstream-timeout-ms "
                                   f"({self.delay.describe(TIMEOUT_S)})")

    def test_timeout_error_says_timeout(self):
        """The error of a request that timed out says so, whichever path it took (a forwarded
        write, a cache-miss GET, an MGET)."""
        texts = {}
        for cmd in (("SET", "to:k", "v"), ("GET", "to:miss"), ("MGET", "to:a", "to:b")):
            c = self.conn()
            self.upstream.pause_process()
            try:
                texts[cmd[0]] = c.call(*cmd, timeout=TIMEOUT_S + 3)
            finally:
                self.upstream.resume_process()
            self.assertIsNotNone(self.serve_again_time(5.0))
        print(f"\n  timeout errors: {texts}")
        for name, r in texts.items():
            self.assertIsInstance(r, RespError, f"{name}: {r!r}")
        unclear = {k: str(r) for k, r in texts.items() if "timeout" not in str(r).lower()}
        self.assertEqual(unclear, {}, "timeout errors that do not say 'timeout'")

    def test_late_replies_discarded_after_sigcont(self):
        """After the timeouts, SIGCONT lets the upstream send its late replies; the next
        requests on the same connections must get their own replies (values are unique per
        client and key), never a late one, and no extra bytes."""
        conns, results = self.stall_pipelines()
        for ci, replies in enumerate(results):
            for r, _ in replies:
                self.assertIsInstance(r, RespError, f"client {ci}: {replies!r}")
        time.sleep(0.3)                 # stopped a little past the timeouts
        self.upstream.resume_process()
        deadline = time.monotonic() + 5
        pending = set(range(self.NCLIENTS))
        rounds = errors = 0
        while pending and time.monotonic() < deadline:
            rounds += 1
            for ci in sorted(pending):
                c = conns[ci]
                c.send(b"".join(encode_command("GET", f"slow:{ci}:y{i}") for i in range(self.NKEYS)) +
                       encode_command("MGET", f"slow:{ci}:y0", f"slow:{ci}:x0") +
                       encode_command("PING"))
                replies = c.read_replies(self.NKEYS + 2, timeout=TIMEOUT_S + 3)
                expect = [f"y-{ci}-{i}".encode() for i in range(self.NKEYS)] + \
                         [[f"y-{ci}-0".encode(), f"x-{ci}-0".encode()], "PONG"]
                for r, e in zip(replies, expect):
                    if isinstance(r, RespError):
                        errors += 1
                    else:
                        self.assertEqual(r, e, f"client {ci} got a reply that is not its own "
                                               f"(a late reply delivered?): {replies!r}")
                if replies == expect:
                    pending.discard(ci)
            if pending:
                time.sleep(0.02)
        self.assertEqual(pending, set(), f"clients not served again within 5 s of SIGCONT\n"
                                         f"{self.proxy.log_tail()}")
        for ci, c in enumerate(conns):
            # the timed-out write may or may not have been applied; its +OK never shows up here
            self.assertIn(c.call("GET", f"slow:{ci}:late"), (None, b"late"))
            self.assertEqual(c.call("GET", f"slow:{ci}:x3"), f"x-{ci}-3".encode())
            self.assertEqual(c.read_for(0.05), b"", "extra bytes after the last reply")
        print(f"\n  after SIGCONT: all clients read their own values ({rounds} round(s), "
              f"{errors} transient errors)")

    def test_write_acknowledged_only_after_upstream(self):
        c = self.conn()
        self.assertEqual(c.call("SET", "ack:k", "before"), "OK")
        self.upstream.pause_process()
        c.send(encode_command("SET", "ack:k", "v1") + encode_command("INCR", "ack:n") +
               encode_command("DEL", "ack:gone") + encode_command("EXPIRE", "ack:k", "100"))
        early = c.read_for(0.5)
        self.assertEqual(early, b"", f"a reply arrived while the upstream was stopped: {early!r}")
        t0 = time.monotonic()
        self.upstream.resume_process()
        replies = c.read_replies(4, timeout=2)
        self.assertEqual(replies, ["OK", 1, 0, 1])
        print(f"\n  writes acknowledged {(time.monotonic() - t0) * 1000:.0f} ms after SIGCONT")
        self.assertEqual(direct_get(self.upstream.port, "ack:k"), b"v1")
        self.assertEqual(direct_get(self.upstream.port, "ack:n"), b"1")
        self.assertEqual(c.call("GET", "ack:k"), b"v1")

    def test_timed_out_write_gets_error_not_ok(self):
        c = self.conn()
        other = self.conn()
        self.assertEqual(c.call("SET", "ack:t", "old"), "OK")
        self.upstream.pause_process()
        t0 = time.monotonic()
        c.send(encode_command("SET", "ack:t", "new") + encode_command("INCR", "ack:tn"))
        replies = c.read_replies(2, timeout=TIMEOUT_S + 3)
        took = time.monotonic() - t0
        self.assertTrue(all(isinstance(r, RespError) for r in replies),
                        f"a write was acknowledged although the upstream never answered: {replies!r}")
        self.assertLessEqual(took, self.delay.allow(TIMEOUT_S), self.delay.describe(TIMEOUT_S))
        self.upstream.resume_process()
        # afterwards: the value is either the old or the new one, and replies are the client's own
        self.assertTrue(wait_until(lambda: other.call("PING") == "PONG", 2))
        deadline = time.monotonic() + 5
        got = None
        while time.monotonic() < deadline:
            got = c.call("GET", "ack:t")
            if not isinstance(got, RespError):
                break
            time.sleep(0.02)
        self.assertIn(got, (b"old", b"new"), "GET after a timed-out SET")
        self.assertEqual(got, direct_get(self.upstream.port, "ack:t"),
                         "respite's read differs from the upstream's value")

    def test_default_timeout_killed_upstream_write_error_and_back(self):
        """With --upstream-timeout-ms 2000 (the default was 2000; it is 30000 now, above Redis's
        own 5 s busy-script threshold), a write to a killed upstream is answered with an error in
        < 2.5 s and writes are served again within 3 s of the restart; the same bound for a
        stopped (silent) upstream."""
        self.stack.close()
        self.stack = contextlib.ExitStack()
        self.addCleanup(self.stack.close)
        self.start(["--upstream-timeout-ms", "2000"])
        c = self.conn()
        self.assertEqual(c.call("SET", "def:k", "1"), "OK")
        # stopped: the write waits for the full timeout, then fails
        self.upstream.pause_process()
        t0 = time.monotonic()
        r_stopped = c.call("SET", "def:k", "2", timeout=6)
        took_stopped = time.monotonic() - t0
        self.upstream.resume_process()
        self.assertIsInstance(r_stopped, RespError)
        self.assertLess(took_stopped, self.delay.allow(2.5, slack=0), self.delay.describe(2.5, slack=0))
        self.assertIsNotNone(self.serve_again_time(SERVE_WINDOW_S))
        # killed
        self.upstream.kill()
        t0 = time.monotonic()
        r = c.call("SET", "def:k", "3", timeout=6)
        took_killed = time.monotonic() - t0
        self.assertIsInstance(r, RespError)
        self.assertLess(took_killed, self.delay.allow(2.5, slack=0), self.delay.describe(2.5, slack=0))
        self.upstream.restart_same_port()
        back = self.serve_again_time(SERVE_WINDOW_S)
        print(f"\n  default timeout: stopped upstream -> error in {took_stopped * 1000:.0f} ms "
              f"(-{r_stopped}), killed -> error in {took_killed * 1000:.0f} ms (-{r}), writes again "
              f"{(back or -1) * 1000:.0f} ms after the restart")
        self.assert_served_again(back, base=3.0, what="writes ")
        self.assertEqual(c.call("SET", "def:k", "4"), "OK", "the old connection is not served again")


# --------------------------------------------------------------------------------------------


class ReplyHoldingRelay:
    """A TCP relay between respite and a real redis-server that can hold the upstream's replies
    (the bytes Redis sends back) while requests keep flowing: an upstream that is alive and
    working but whose answers are late, with the test deciding exactly which replies pass."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.holding = False
        self.pairs: list[list] = []        # [client socket, server socket, held bytes]
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        with contextlib.suppress(OSError):
            while True:
                c, _ = self.listener.accept()
                u = socket.create_connection((HOST, self.upstream_port))
                pair = [c, u, bytearray()]
                with self.lock:
                    self.pairs.append(pair)
                threading.Thread(target=self._pump_requests, args=(pair,), daemon=True).start()
                threading.Thread(target=self._pump_replies, args=(pair,), daemon=True).start()

    @staticmethod
    def _pump_requests(pair):
        c, u, _ = pair
        with contextlib.suppress(OSError):
            while data := c.recv(65536):
                u.sendall(data)
        with contextlib.suppress(OSError):
            u.shutdown(socket.SHUT_WR)

    def _pump_replies(self, pair):
        c, u, held = pair
        with contextlib.suppress(OSError):
            while data := u.recv(65536):
                with self.lock:
                    if self.holding:
                        held += data
                    else:
                        c.sendall(data)
        with contextlib.suppress(OSError):
            c.shutdown(socket.SHUT_WR)

    def hold(self):
        with self.lock:
            self.holding = True

    def release(self, keep_holding: bool):
        """Delivers every reply held so far; with keep_holding, later ones are held again."""
        with self.lock:
            for c, _, held in self.pairs:
                with contextlib.suppress(OSError):
                    c.sendall(bytes(held))
                held.clear()
            self.holding = keep_holding

    def held_bytes(self) -> int:
        with self.lock:
            return sum(len(h) for _, _, h in self.pairs)

    def close(self):
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.listener.close()
        with self.lock:
            for c, u, _ in self.pairs:
                for sock in (c, u):
                    with contextlib.suppress(OSError):
                        sock.close()


@respite_only
class HeldRequestTimeout(unittest.TestCase):
    """A request held behind its client's cache miss is answered at --upstream-timeout-ms after
    its arrival, but it was sent upstream later, on a connection other clients share: its
    timeout must not fail that connection while the upstream is merely slow (the connection's
    own deadline counts from the send). The upstream here is alive; only its replies are late,
    held by a relay."""

    # 2 s rather than the file's 1 s: the scenario's own steps (release at 0.6 timeouts, the
    # held request's error at 1, the release at 1.3, B's deadline at 1.6) are then 600 ms apart,
    # room for a busy machine's scheduling.
    TIMEOUT_MS = 2000
    TIMEOUT_S = TIMEOUT_MS / 1000

    def test_held_request_times_out_alone(self):
        TIMEOUT_MS, TIMEOUT_S = self.TIMEOUT_MS, self.TIMEOUT_S
        stack = contextlib.ExitStack()
        self.addCleanup(stack.close)
        delay = MachineDelay()
        stack.callback(delay.stop)
        upstream = stack.enter_context(RedisServer())
        relay = ReplyHoldingRelay(upstream.port)
        stack.callback(relay.close)
        proxy = stack.enter_context(Respite(None, ["--upstream-timeout-ms", str(TIMEOUT_MS)],
                                            upstream_addr=f"{HOST}:{relay.port}"))
        direct_set(upstream.port, {"held:miss": "m"})
        a, b = RawConn(proxy.port, 10.0), RawConn(proxy.port, 10.0)
        stack.callback(a.close)
        stack.callback(b.close)
        self.assertEqual(a.call("PING"), "PONG")
        self.assertEqual(b.call("SET", "held:b", "0"), "OK")
        self.assertTrue(wait_until(lambda: proxy_info(proxy.port)["tracking_link"] == "up", 5))
        before = proxy_info(proxy.port)

        relay.hold()
        t0 = time.monotonic()
        # The GET misses and goes upstream; the INCR waits behind it inside respite.
        a.send(encode_command("GET", "held:miss") + encode_command("INCR", "held:a"))
        self.assertTrue(wait_until(lambda: relay.held_bytes() > 0, 2), "the GET never went out")
        time.sleep(max(0.0, 0.6 * TIMEOUT_S - (time.monotonic() - t0)))
        relay.release(keep_holding=True)  # the GET's reply passes; the INCR goes out now, late
        self.assertEqual(a.read_reply(timeout=2), b"m")
        b.send(encode_command("INCR", "held:b"))  # shares the connection, sent after the INCR
        r = a.read_reply(timeout=3 * TIMEOUT_S)
        took = time.monotonic() - t0
        self.assertIsInstance(r, RespError, f"the held INCR: {r!r}")
        self.assertIn("timeout", str(r).lower())
        self.assertLess(took, delay.allow(TIMEOUT_S),
                        f"the held INCR answered late ({delay.describe(TIMEOUT_S)})")
        self.assertGreater(took, TIMEOUT_S * 0.9, "the held INCR answered early")
        # Still inside B's own deadline (its INCR went out ~0.6 timeouts in): let replies pass.
        time.sleep(max(0.0, 1.3 * TIMEOUT_S - (time.monotonic() - t0)))
        relay.release(keep_holding=False)
        self.assertEqual(b.read_reply(timeout=2), 1, "B's request failed with A's timeout")
        # A's late INCR reply is consumed, never delivered; its write happened.
        self.assertEqual(a.call("INCR", "held:a"), 2)
        self.assertEqual(b.call("GET", "held:b"), b"1")
        self.assertEqual(a.read_for(0.05), b"", "extra bytes after the last reply")
        after = proxy_info(proxy.port)
        for name in ("upstream_errors", "upstream_connects"):
            self.assertEqual(after.get(name), before.get(name),
                             f"{name} changed: the shared connection was dropped")
        print(f"\n  held INCR: timeout error after {took * 1000:.0f} ms "
              f"(--upstream-timeout-ms {TIMEOUT_MS}); the shared connection stayed up and "
              f"served B's INCR sent after it")


@respite_only
class ClientFaults(ProxyTestCase):
    respite_args = ["--upstream-timeout-ms", "3000"]

    def settled(self, base_fds: int, base_clients: int, timeout: float = 5.0) -> bool:
        pid = self.proxy.pid

        def ok():
            self.last_fds = fd_count(pid)
            self.last_clients = int(proxy_info(self.port)["connected_clients"])
            return self.last_fds <= base_fds and self.last_clients <= base_clients
        return wait_until(ok, timeout)

    def pipeline_and_close(self, nclients: int, ncmds: int, stop_upstream: bool, tag: str):
        payloads = []
        for ci in range(nclients):
            parts = []
            for i in range(ncmds):
                k = f"dc:{tag}:{ci}:{i % 100}"
                parts.append(encode_command("SET", k, f"v{i}") if i % 2 else encode_command("GET", k))
            payloads.append(b"".join(parts))
        socks = []
        if stop_upstream:
            self.upstream.pause_process()
        try:
            for p in payloads:
                s = socket.create_connection((HOST, self.port), timeout=3)
                with contextlib.suppress(OSError):   # respite may stop reading: do not wait
                    s.sendall(p)
                socks.append(s)
            time.sleep(0.2)
        finally:
            for s in socks:
                s.close()
            if stop_upstream:
                time.sleep(0.1)
                self.upstream.resume_process()

    def test_disconnect_mid_pipeline(self):
        pid = self.proxy.pid
        checker = self.raw()
        self.addCleanup(checker.close)
        self.assertEqual(checker.call("SET", "dc:check", "c0"), "OK")
        # warm up with one identical round so that buffers and allocator arenas exist
        self.pipeline_and_close(10, 10_000, False, "warm")
        warm_every_loop(self, self.port, self.upstream.port, "dc")
        self.assertTrue(self.settled(10**6, 10**6))
        self.assertTrue(wait_until(lambda: int(proxy_info(self.port)["connected_clients"]) <= 2, 5))
        time.sleep(0.3)
        base_rss, base_fds = rss_bytes(pid), fd_count(pid)
        base_clients = int(proxy_info(self.port)["connected_clients"])
        for rnd in range(4):
            self.pipeline_and_close(10, 10_000, rnd % 2 == 1, f"r{rnd}")
            # other clients work, with their own replies
            self.assertEqual(checker.call("SET", "dc:check", f"c{rnd + 1}", timeout=6), "OK")
            self.assertEqual(checker.call("GET", "dc:check", timeout=6), f"c{rnd + 1}".encode())
            with self.raw() as fresh:
                self.assertEqual(fresh.call("GET", "dc:check", timeout=6), f"c{rnd + 1}".encode())
        settled = self.settled(base_fds, base_clients, 8.0)
        time.sleep(0.3)
        rss, fds, clients = rss_bytes(pid), self.last_fds, self.last_clients
        print(f"\n  disconnect mid-pipeline (4 x 10 clients x 10k commands, 2 rounds with the "
              f"upstream stopped): RSS {base_rss / MB:.1f} -> {rss / MB:.1f} MB, fds {base_fds} -> "
              f"{fds}, clients {base_clients} -> {clients}")
        self.assertTrue(settled, f"descriptors or clients not back to baseline: fds {base_fds} -> "
                                 f"{fds}, clients {base_clients} -> {clients}")
        if not sanitized(pid):
            self.assertLess(rss - base_rss, 8 * MB, "RSS did not return to baseline")
        # nothing of the dropped clients' replies reached anyone: the checker's stream is clean
        self.assertEqual(checker.call("PING"), "PONG")
        self.assertEqual(checker.read_for(0.1), b"")

    def never_reading_client(self, cmd: tuple, port: int, pids: dict[str, int],
                             seconds: float = 3.0, cycle_limit: float = 1.5):
        """Connections to `port` that send `cmd` (its reply is a 10 KB value) as fast as they
        can and never read, one after the other for `seconds`, while 4 other clients run
        SET/GET/GET-10KB round trips. A connection not closed within `cycle_limit` ends the run.
        Samples the RSS of `pids` ({name: pid}) every 10 ms."""
        value = (b"0123456789abcdef" * 640)             # 10 KB
        with RawConn(port) as c:
            self.assertEqual(c.call("SET", "nr:big", value), "OK")
            for _ in range(3):                           # through respite: a cache hit
                self.assertEqual(c.call("GET", "nr:big"), value)
        st = {"base": {n: rss_bytes(p) for n, p in pids.items()}}
        st["peak"] = dict(st["base"])
        stop = threading.Event()
        lat: list[float] = []
        problems: list[str] = []

        def sampler():
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    for n, p in pids.items():
                        st["peak"][n] = max(st["peak"][n], rss_bytes(p))
                time.sleep(0.01)

        def other_client(tid: int):
            with RawConn(port, timeout=5) as c:
                n = 0
                while not stop.is_set() and n < 100_000:
                    n += 1
                    t0 = time.monotonic()
                    try:
                        r1 = c.call("SET", f"nr:o:{tid}", f"{tid}-{n}")
                        r2 = c.call("GET", f"nr:o:{tid}")
                        r3 = c.call("GET", "nr:big")
                    except (OSError, TimeoutError) as e:
                        problems.append(f"client {tid}: {e}")
                        return
                    lat.append((time.monotonic() - t0) / 3)
                    if (r1, r2, r3) != ("OK", f"{tid}-{n}".encode(), value):
                        problems.append(f"client {tid}: {r1!r} {r2!r} "
                                        f"{r3[:20] if isinstance(r3, bytes) else r3!r}")
                        return

        threads = [threading.Thread(target=sampler, daemon=True)]
        threads += [threading.Thread(target=other_client, args=(i,), daemon=True) for i in range(4)]
        t_start = time.monotonic()
        for t in threads:
            t.start()
        cycles = []                                   # (bytes sent, closed, seconds)
        chunk = encode_command(*cmd) * 256
        t_end = time.monotonic() + seconds
        try:
            while time.monotonic() < t_end and len(cycles) < 30:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect((HOST, port))
                s.setblocking(False)
                sent, closed, t0 = 0, False, time.monotonic()
                cycle_end = t0 + cycle_limit
                while time.monotonic() < cycle_end:
                    try:
                        sent += s.send(chunk)
                    except BlockingIOError:
                        time.sleep(0.001)
                    except (BrokenPipeError, ConnectionResetError):
                        closed = True
                        break
                s.close()
                cycles.append((sent, closed, time.monotonic() - t0))
                if not closed:
                    break                            # not closed within cycle_limit: stop here
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
        st.update(cycles=cycles, lat=lat, problems=problems)
        st["p50"], st["p99"] = percentile(lat, 0.5), percentile(lat, 0.99)
        st["max"] = max(lat or [0])
        st["rate"] = len(lat) / max(1e-3, time.monotonic() - t_start)
        st["slowest_close"] = max((c[2] for c in cycles if c[1]), default=0.0)
        return st

    @staticmethod
    def describe_never_reading(name: str, cmd: tuple, st) -> str:
        cycles = st["cycles"]
        return (f"  {name}, never-reading client sending {cmd[0]}: {len(cycles)} connection(s), "
                f"{sum(1 for c in cycles if c[1])} closed (avg "
                f"{sum(c[2] for c in cycles) / max(1, len(cycles)) * 1000:.0f} ms, slowest "
                f"{st['slowest_close'] * 1000:.0f} ms, {sum(c[0] for c in cycles) / MB:.1f} MB of "
                f"requests sent); RSS " + ", ".join(
                    f"{n} {st['base'][n] / MB:.0f} -> peak {st['peak'][n] / MB:.0f} MB"
                    for n in st["base"]) +
                f"; other clients: {len(st['lat'])} round trips ({st['rate']:.0f}/s), p50 "
                f"{st['p50'] * 1e3:.2f} ms, p99 {st['p99'] * 1e3:.1f} ms, max "
                f"{st['max'] * 1e3:.1f} ms" +
                (f"; problems: {st['problems'][:3]}" if st["problems"] else ""))

    def never_reading(self, cmd: tuple):
        """The scenario on a redis-server with respite's client-output-buffer-limit (the
        control), then through respite; returns (respite's numbers, the control's)."""
        with RedisServer(["--client-output-buffer-limit", "normal 64mb 16mb 60"]) as ref:
            # a generous cycle limit here: the control's own close times set respite's
            ctl = self.never_reading_client(cmd, ref.port, {"redis": ref.proc.pid},
                                            cycle_limit=10.0)
        print("\n" + self.describe_never_reading("control: redis-server directly", cmd, ctl))
        self.assertEqual(ctl["problems"], [], "the control's clients failed (test bug?)")
        self.assertTrue(ctl["cycles"] and all(c[1] for c in ctl["cycles"]),
                        f"the control: redis-server did not close a never-reading client "
                        f"within 10 s (test bug?): {ctl['cycles']}")
        proxy_log = self.proxy.proc.log_path
        log_before = proxy_log.read_text(errors="replace").count("output buffer over")
        # respite closes a never-reading client within 1.5 s, or as slowly as Redis itself
        # (x CONTROL_FACTOR) did on this machine just now
        cycle_limit = max(1.5, CONTROL_FACTOR * ctl["slowest_close"])
        st = self.never_reading_client(cmd, self.port, {"respite": self.proxy.pid,
                                                        "upstream": self.upstream.proc.pid},
                                       cycle_limit=cycle_limit)
        st["cycle_limit"] = cycle_limit
        st["logged"] = proxy_log.read_text(errors="replace").count("output buffer over") - log_before
        print(self.describe_never_reading("through respite", cmd, st) +
              f"; 'output buffer over' logged {st['logged']}x")
        return st, ctl

    def check_never_reading(self, st, ctl):
        self.assertEqual(st["problems"], [], "other clients failed meanwhile")
        if not sanitized(self.proxy.pid):
            self.assertLess(st["peak"]["respite"], 300 * MB, "respite's RSS over 300 MB")
        self.assertTrue(st["cycles"])
        not_closed = [c for c in st["cycles"] if not c[1]]
        self.assertEqual(not_closed, [], f"a never-reading client was not closed within "
                                         f"{st['cycle_limit']:.1f} s (bytes sent, closed, seconds)")
        self.assertGreaterEqual(st["logged"], len(st["cycles"]),
                                "closes not logged as output buffer limit")
        # Other clients' latency against the same scenario on redis-server itself (the control,
        # measured just before): at most CONTROL_FACTOR times the control's plus a floor. The
        # floors keep the former fixed bounds (p50 30 ms, p99 200 ms, max 500 ms) on an idle
        # machine, where the control measures about p50 5-9 ms, p99 11-18 ms, max 13-20 ms (2
        # cores), and let them grow with the control on a slow or busy one. For the record, on
        # 2 cores, idle or with one busy: respite GET p50 11-14 ms, p99 22-26 ms; GETRANGE p50
        # 0.9-1.7 ms, p99 38-53 ms. (GETRANGE was p50 20-32 ms while a non-reading client could
        # have 4096 replies owed: 40 MB queued on the upstream connection ahead of everyone
        # else's; ClientConn::owed_limit now gives such a client 32: the p50 bound is for that.)
        for q, floor in (("p50", 0.010), ("p99", 0.150), ("max", 0.450)):
            bound = CONTROL_FACTOR * ctl[q] + floor
            self.assertLess(st[q], bound,
                            f"other clients' {q} latency {st[q] * 1e3:.1f} ms through respite, "
                            f"redis-server itself {ctl[q] * 1e3:.1f} ms in the same scenario: "
                            f"bound {CONTROL_FACTOR} x that + {floor * 1e3:.0f} ms")
        self.assertGreater(st["rate"], ctl["rate"] / (2 * CONTROL_FACTOR),
                           f"other clients were barely served: {st['rate']:.0f} round trips/s "
                           f"through respite, {ctl['rate']:.0f}/s on redis-server itself")

    def test_client_that_never_reads_cached_gets(self):
        """How it will be checked: GETs of a 10 KB value (cache hits), never read."""
        self.check_never_reading(*self.never_reading(("GET", "nr:big")))

    def test_client_that_never_reads_forwarded(self):
        """The same with a command respite relays upstream (GETRANGE of the 10 KB value): the
        client's unanswered requests must not pile up upstream without bound either."""
        st, ctl = self.never_reading(("GETRANGE", "nr:big", "0", "-1"))
        self.assertLess(st["peak"]["upstream"], 300 * MB, "the upstream's RSS went over 300 MB: "
                        "respite forwards a non-reading client's requests without bound")
        self.check_never_reading(st, ctl)

    def test_garbage_inputs_on_fresh_connections(self):
        pid = self.proxy.pid
        rng = random.Random(6)
        inputs = garbage_corpus(rng, 3000)
        # respite opens some upstream connections lazily, on each loop: open them before the
        # descriptor baseline
        warm_every_loop(self, self.port, self.upstream.port, "gb")
        base_rss, base_fds = rss_bytes(pid), fd_count(pid)
        base_clients = int(proxy_info(self.port)["connected_clients"])
        errors: list[str] = []
        idx = [0]
        lock = threading.Lock()
        replies = {"bytes": 0, "closed": 0}

        def worker():
            while True:
                with lock:
                    if idx[0] >= len(inputs):
                        return
                    data = inputs[idx[0]]
                    idx[0] += 1
                try:
                    s = socket.create_connection((HOST, self.port), timeout=2)
                except OSError as e:
                    with lock:
                        errors.append(f"connect: {e}")
                    return
                try:
                    with contextlib.suppress(OSError):
                        s.sendall(data)
                    s.settimeout(0.03)
                    got, closed = 0, False
                    t_end = time.monotonic() + 0.5
                    while time.monotonic() < t_end:
                        try:
                            b = s.recv(65536)
                        except socket.timeout:
                            break
                        except OSError:
                            closed = True
                            break
                        if not b:
                            closed = True
                            break
                        got += len(b)
                    with lock:
                        replies["bytes"] += got
                        replies["closed"] += closed
                finally:
                    s.close()

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        took = time.monotonic() - t0
        self.proxy.assert_alive()
        self.assertEqual(errors, [])
        with self.raw() as c:
            self.assertEqual(c.call("PING"), "PONG")
            self.assertEqual(c.call("SET", "gb:after", "ok"), "OK")
            self.assertEqual(c.call("GET", "gb:after"), b"ok")
        settled = self.settled(base_fds, base_clients, 5.0)
        rss, fds = rss_bytes(pid), self.last_fds
        print(f"\n  {len(inputs)} garbage inputs in {took:.1f}s ({replies['closed']} closed by "
              f"respite, {replies['bytes']} reply bytes): RSS {base_rss / MB:.1f} -> "
              f"{rss / MB:.1f} MB, fds {base_fds} -> {fds}")
        if not sanitized(pid):
            self.assertLess(rss - base_rss, 20 * MB, "RSS grew by 20 MB or more")
        self.assertTrue(settled, f"descriptors or clients not back to baseline ({base_fds} -> {fds})")

    def test_declared_sizes_not_allocated_up_front(self):
        """Huge declared counts and lengths (valid ones: Redis waits for the data) on 8 open
        connections do not make respite allocate them."""
        pid = self.proxy.pid
        base = rss_bytes(pid)
        heads = [b"*2147483647\r\n", b"*2147483647\r\n$3\r\nSET\r\n",
                 b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n" + b"x" * 100_000,
                 b"*2\r\n$3\r\nGET\r\n$536870000\r\n", b"*1048576\r\n",
                 b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$400000000\r\n" + b"y" * 10_000,
                 b"*100000000\r\n$4\r\nMGET\r\n", b"*2\r\n$4\r\nECHO\r\n$536870912\r\n"]
        conns = []
        try:
            for h in heads:
                c = self.raw()
                c.send(h)
                conns.append(c)
            time.sleep(0.3)
            for c in conns:
                self.assertEqual(c.read_for(0.02), b"")
                self.assertFalse(c.closed)
            grown = rss_bytes(pid) - base
        finally:
            for c in conns:
                c.close()
        print(f"\n  8 connections declaring up to 2^31 elements / 512 MB bulks: RSS +{grown / MB:.1f} MB")
        if not sanitized(pid):
            self.assertLess(grown, 50 * MB)
        with self.raw() as c:
            self.assertEqual(c.call("PING"), "PONG")


def garbage_corpus(rng: random.Random, n: int) -> list[bytes]:
    """Deterministic garbage: random bytes, truncated and corrupted RESP, huge declared
    counts/lengths, nested and RESP3-typed junk, inline junk, valid prefixes with junk after.
    Valid commands in here are harmless ones (no FLUSH*, SHUTDOWN, DEBUG, CONFIG...)."""
    valid = [encode_command("SET", "gb:k", "v" * 20), encode_command("GET", "gb:k"),
             encode_command("MGET", "gb:a", "gb:b", "gb:c"), encode_command("PING"),
             encode_command("INCR", "gb:n"), encode_command("ECHO", "x" * 300),
             encode_command("SUBSCRIBE", "gb:ch"), encode_command("MULTI"),
             encode_command("BLPOP", "gb:list", "0.05"), encode_command("HELLO", "3"),
             encode_command("CLIENT", "SETNAME", "gb"), encode_command("SELECT", "3"),
             b"PING\r\n", b"GET gb:k\r\n", b'SET gb:q "a b"\r\n']
    huge = [b"*2147483647\r\n", b"*2147483648\r\n", b"*-1\r\n", b"*-2147483649\r\n",
            b"*99999999999999999999999\r\n", b"*1048577\r\n", b"*0\r\n",
            b"*1\r\n$600000000\r\n", b"*1\r\n$536870912\r\n", b"*1\r\n$536870913\r\n",
            b"*2\r\n$3\r\nGET\r\n$2147483647\r\n", b"*2\r\n$3\r\nGET\r\n$-1\r\n",
            b"*2\r\n$3\r\nGET\r\n$99999999999999999999\r\n", b"*1\r\n$\r\n", b"*\r\n",
            b"*1\r\n$1 \r\n", b"*+1\r\n", b"*1\r\n$+4\r\nPING\r\n", b"*01\r\n$04\r\nPING\r\n",
            b"*1\r\n$4\r\nPINGxx\r\n", b"$5\r\nhello\r\n", b"+OK\r\n", b":1\r\n", b"-ERR x\r\n"]
    nested = [b"*2\r\n*1\r\n$3\r\nGET\r\n", b"*3\r\n$3\r\nSET\r\n*2\r\n$1\r\na\r\n",
              b"*1\r\n%1\r\n+a\r\n+b\r\n", b"*1\r\n~2\r\n", b">3\r\n$3\r\nGET\r\n", b"%2\r\n",
              b"*2\r\n$3\r\nGET\r\n:5\r\n", b"*1\r\n_\r\n", b"*1\r\n#t\r\n", b"*2\r\n$3\r\nGET\r\n,1.5\r\n",
              b"|1\r\n+a\r\n+b\r\n", b"*1\r\n(123\r\n", b"=5\r\ntxt:x\r\n"]
    out = []
    for i in range(n):
        kind = i % 8
        if kind == 0:
            data = rng.randbytes(rng.randint(1, 600))
        elif kind == 1:
            v = rng.choice(valid)
            data = v[:rng.randint(1, max(1, len(v) - 1))]
        elif kind == 2:
            data = rng.choice(huge)
        elif kind == 3:
            data = b"".join(rng.choice(nested) for _ in range(rng.randint(1, 4)))
        elif kind == 4:   # a valid command with bytes flipped
            v = bytearray(b"".join(rng.choice(valid) for _ in range(rng.randint(1, 3))))
            for _ in range(rng.randint(1, 4)):
                v[rng.randrange(len(v))] = rng.randrange(256)
            data = bytes(v)
        elif kind == 5:   # valid commands, then garbage
            data = b"".join(rng.choice(valid) for _ in range(rng.randint(1, 3))) + \
                rng.choice(huge + nested + [rng.randbytes(50)])
        elif kind == 6:   # inline junk
            data = rng.choice([b'"', b"'", b"\\x", b" ", b"\t", b"\x00", b"GET", b"\"a\"b",
                               b"\"\\xZZ\"", b"x" * rng.randint(1, 2000)]) * rng.randint(1, 40) + \
                rng.choice([b"\r\n", b"\n", b"", b"\r"])
        else:             # RESP tokens shuffled at random
            toks = [b"*", b"$", b"\r\n", b"-1", b"3", b"2147483647", b"GET", b"SET", b"\r", b"\n",
                    b"0", b"*1\r\n", b"$3\r\n", b"%", b"~", b"-", b"+"]
            data = b"".join(rng.choice(toks) for _ in range(rng.randint(1, 30)))
        out.append(data)
    return out


# --------------------------------------------------------------------------------------------
# Limits like Redis: byte for byte against redis-server configured the same way.


class LimitsLikeRedis(ProxyTestCase):

    def same(self, data, **kw):
        kw.setdefault("timeout", 1.0)
        return assert_same_as_redis(self, self.port, self.upstream.port, data, **kw)

    def test_600mb_bulk_header(self):
        self.same(b"*1\r\n$600000000\r\n", expected=BULK_ERR, expect_close=True)
        self.same(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n", expected=BULK_ERR, expect_close=True)
        self.same(encode_command("PING") + b"*2\r\n$3\r\nGET\r\n$600000000\r\n" + b"x" * 1000,
                  expected=b"+PONG\r\n" + BULK_ERR, expect_close=True)

    def test_512mb_exactly_is_not_an_error(self):
        # at the limit: Redis waits for the data (neither answer nor close within 0.5 s)
        self.same(b"*1\r\n$536870912\r\n", expected=b"", expect_close=False, timeout=0.5)
        self.same(b"*2147483647\r\n", expected=b"", expect_close=False, timeout=0.5)


class ConfiguredLimits(unittest.TestCase):
    """--client-query-buffer-limit and --proto-max-bulk-len set to 1mb (Redis's minimum), on
    respite and on a reference redis-server: the same answers and closes."""

    @classmethod
    def setUpClass(cls):
        stack = contextlib.ExitStack()
        cls.addClassCleanup(stack.close)
        cls.upstream = stack.enter_context(RedisServer())
        cls.ref_q = stack.enter_context(RedisServer(["--client-query-buffer-limit", "1mb"]))
        cls.ref_b = stack.enter_context(RedisServer(["--proto-max-bulk-len", "1mb"]))
        if DIRECT:
            cls.port_q, cls.port_b = cls.ref_q.port, cls.ref_b.port
        else:
            cls.px_q = stack.enter_context(Respite(cls.upstream, ["--client-query-buffer-limit", "1mb"]))
            cls.px_b = stack.enter_context(Respite(cls.upstream, ["--proto-max-bulk-len", "1mb"]))
            cls.port_q, cls.port_b = cls.px_q.port, cls.px_b.port

    def test_query_buffer_limit_incomplete_command(self):
        assert_same_as_redis(self, self.port_q, self.ref_q.port,
                             b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n" + b"x" * 1_500_000,
                             expected=b"", expect_close=True, timeout=2.0)

    def test_query_buffer_limit_complete_command(self):
        # a command bigger than the limit is never accepted, however fast it arrives
        assert_same_as_redis(self, self.port_q, self.ref_q.port,
                             encode_command("SET", "ql:k", b"q" * 2_000_000),
                             expected=b"", expect_close=True, timeout=1.0)

    def test_query_buffer_limit_pipelines_are_fine(self):
        # 1.5 MB of small pipelined commands in one write: processed as they come, never over
        # the limit (Redis answers them all)
        data = encode_command("ECHO", "e" * 100) * 12_000
        ref, got = read_bytes(self.ref_q.port, data), read_bytes(self.port_q, data)
        self.assertEqual(len(ref), 12_000 * len(b"$100\r\n" + b"e" * 100 + b"\r\n"), "test bug")
        self.assertEqual(got, ref)

    def test_proto_max_bulk_len(self):
        assert_same_as_redis(self, self.port_b, self.ref_b.port, b"*2\r\n$3\r\nGET\r\n$1048577\r\n",
                             expected=BULK_ERR, expect_close=True)
        assert_same_as_redis(self, self.port_b, self.ref_b.port,
                             encode_command("SET", "bl:k", b"b" * MB) + encode_command("STRLEN", "bl:k"),
                             nreplies=2, expected=b"+OK\r\n:1048576\r\n", expect_close=False)


def read_bytes(port: int, data: bytes, quiet: float = 0.3, timeout: float = 10.0) -> bytes:
    """Send data, then read until the peer is quiet for `quiet` seconds (bounded)."""
    with RawConn(port, timeout) as c:
        c.send(data)
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = c.read_for(quiet)
            if not chunk:
                break
            out.append(chunk)
        return b"".join(out)


class UnauthenticatedLimits(unittest.TestCase):
    """Before AUTH: at most 10 multibulk elements and 16384-byte bulks (Redis's texts); after
    AUTH no such limit. Compared with a redis-server with the same requirepass."""

    @classmethod
    def setUpClass(cls):
        stack = contextlib.ExitStack()
        cls.addClassCleanup(stack.close)
        cls.upstream = stack.enter_context(RedisServer())
        cls.ref = stack.enter_context(RedisServer(password="secret"))
        if DIRECT:
            cls.port = cls.ref.port
        else:
            cls.proxy = stack.enter_context(Respite(cls.upstream, ["--requirepass", "secret"]))
            cls.port = cls.proxy.port

    def same(self, data, **kw):
        kw.setdefault("timeout", 0.5)
        return assert_same_as_redis(self, self.port, self.ref.port, data, **kw)

    def test_multibulk_boundary(self):
        self.same(b"*10\r\n", expected=b"", expect_close=False)
        self.same(b"*11\r\n", expect_close=True,
                  expected=b"-ERR Protocol error: unauthenticated multibulk length\r\n")
        self.same(encode_command("GET", "k") + b"*11\r\n$3\r\nDEL\r\n", expect_close=True,
                  expected=b"-NOAUTH Authentication required.\r\n"
                           b"-ERR Protocol error: unauthenticated multibulk length\r\n")

    def test_bulk_boundary(self):
        self.same(b"*2\r\n$4\r\nECHO\r\n$16384\r\n", expected=b"", expect_close=False)
        self.same(b"*2\r\n$4\r\nECHO\r\n$16385\r\n", expect_close=True,
                  expected=b"-ERR Protocol error: unauthenticated bulk length\r\n")
        self.same(encode_command("ECHO", b"e" * 16384), nreplies=1, expect_close=False,
                  expected=b"-NOAUTH Authentication required.\r\n")

    def test_no_limits_after_auth(self):
        keys = [f"ua:{i}" for i in range(11)]
        self.same(encode_command("AUTH", "secret") + encode_command("DEL", *keys) +
                  encode_command("SET", "ua:big", b"b" * 16385) + encode_command("STRLEN", "ua:big"),
                  nreplies=4, expect_close=False, expected=b"+OK\r\n:0\r\n+OK\r\n:16385\r\n")


if __name__ == "__main__":
    harness.run_tests()
