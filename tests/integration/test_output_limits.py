"""Output buffer limits (client-output-buffer-limit, Redis's hard/soft/seconds form).

- A client that never reads, with 4,000 pipelined GETs of one uncached 2 MB value (one cache
  fetch, 4,000 waiters): closed near the hard limit as the waiters are answered, respite's RSS
  stays under 300 MB, and other clients keep being answered: each probe within 3x what reading
  a hard limit's worth of that value (32 x 2 MB) took the same client just before, plus the
  machine's lateness (harness.MachineDelay), never a fixed time.
- A client that reads gets a single 100 MB value through respite (the largest reply queued is
  not counted against the limit), from the cache path (GET) and as a relayed reply (GETRANGE).
- The soft limit: output above `soft` for `seconds` closes a client that stopped reading.
- The setting's forms: "normal H S T", "H S T", "H"; other classes are refused at start.

Every loop is bounded by a count or a deadline.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import unittest

import harness
from harness import (CONTROL_FACTOR, DIRECT, HOST, MachineDelay, RawConn, RedisServer, Respite,
                     encode_command, proxy_info, respite_argv, respite_only)

MB = 1 << 20


def status_bytes(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (the peak since start) of a process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def sanitized(pid: int) -> bool:
    """AddressSanitizer keeps freed memory in quarantine: RSS bounds mean nothing there."""
    with open(f"/proc/{pid}/maps") as f:
        return any("libasan" in line or "libclang_rt.asan" in line for line in f)


def hog_connection(port: int) -> socket.socket:
    """A client with a tiny receive buffer, known to respite (it answered a PING) before it
    starts sending what it will never read."""
    hog = socket.create_connection((HOST, port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.sendall(encode_command("PING"))
    hog.settimeout(5)
    assert hog.recv(7) == b"+PONG\r\n"
    return hog


def closed_by_respite(port: int, deadline: float) -> bool:
    """True once respite counts no client but the one asking (the socket itself may take long
    to drain through its tiny receive buffer, so respite is asked instead)."""
    while time.monotonic() < deadline:
        if proxy_info(port).get("connected_clients") == "1":
            return True
        time.sleep(0.05)
    return False


def get_bulk(port: int, *args, timeout: float = 60.0) -> bytes:
    """One bulk reply read straight into a buffer of its declared size (fast for 100 MB)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(encode_command(*args))
        head = b""
        while not head.endswith(b"\r\n"):
            ch = s.recv(1)
            if not ch:
                raise AssertionError(f"closed after {head!r}")
            head += ch
        if not head.startswith(b"$"):
            raise AssertionError(f"not a bulk: {head!r}")
        n = int(head[1:-2])
        buf = bytearray(n + 2)
        view, got = memoryview(buf), 0
        while got < n + 2:
            r = s.recv_into(view[got:])
            if not r:
                raise AssertionError(f"closed after {got} of {n} bytes")
            got += r
        return bytes(buf[:n])


@respite_only
class NeverReadingClient(unittest.TestCase):
    def test_4000_waiters_of_one_big_fetch(self):
        with RedisServer() as up, Respite(up) as px:
            with RawConn(up.port) as c:
                c.call("SET", "big", b"x" * (2 * MB))
            delay = MachineDelay()
            self.addCleanup(delay.stop)
            # The control: the probe reads the default hard limit's worth of the value (64 MB)
            # through respite, about the most respite queues for one client in one go. (2 MB is
            # over cache-max-value: never cached, so the hog's GETs below still share one fetch.)
            with RawConn(px.port, timeout=30) as probe:
                t0 = time.monotonic()
                probe.send(encode_command("GET", "big") * 32)
                self.assertEqual(len(probe.read_raw_replies(32, timeout=30)), 32)
                one_limit = time.monotonic() - t0
            base = status_bytes(px.pid, "VmRSS")
            hog = hog_connection(px.port)
            hog.sendall(encode_command("GET", "big") * 4000)
            worst, peak = 0.0, base
            stop = time.monotonic() + 4.0
            with RawConn(px.port, timeout=30) as probe:
                for i in range(200):
                    if time.monotonic() > stop:
                        break
                    t = time.monotonic()
                    self.assertEqual(probe.call("SET", f"p{i}", i), "OK")
                    self.assertEqual(probe.call("GET", f"p{i}"), str(i).encode())
                    worst = max(worst, time.monotonic() - t)
                    time.sleep(0.01)
            self.assertTrue(closed_by_respite(px.port, time.monotonic() + 10),
                            "the never-reading client was not closed")
            hog.close()
            peak = status_bytes(px.pid, "VmHWM")  # the high-water mark: no sample can miss it
            late = delay.measured()
            bound = CONTROL_FACTOR * (one_limit + late)
            print(f"\n4000 x GET of 2 MB, never read: RSS {base / MB:.0f} -> peak {peak / MB:.0f} "
                  f"MB, slowest probe {worst * 1000:.0f} ms (bound {bound * 1000:.0f} ms = "
                  f"{CONTROL_FACTOR} x (32 x 2 MB read {one_limit * 1000:.0f} ms + machine lateness "
                  f"{late * 1000:.0f} ms))")
            if not sanitized(px.pid):
                self.assertLess(peak, 300 * MB)
            self.assertLess(worst, bound, "other clients stalled")
            self.assertIn("output buffer", px.log_tail(200))
            px.assert_alive()


@respite_only
class LargeReplies(unittest.TestCase):
    def test_reader_gets_100mb_value(self):
        value = b"v" * (100 * MB)
        with RedisServer() as up, Respite(up) as px:
            with RawConn(up.port, timeout=30) as c:
                c.call("SET", "huge", value)
            got = get_bulk(px.port, "GET", "huge")  # the cache path (too big to cache)
            self.assertEqual(got, value)
            got = get_bulk(px.port, "GETRANGE", "huge", 0, -1)  # relayed
            self.assertEqual(got, value)
            with RawConn(px.port) as c:
                self.assertEqual(c.call("PING"), "PONG")
            px.assert_alive()

    def test_two_big_replies_queued_close_a_client_that_does_not_read(self):
        # The largest reply is free; what is queued beside it counts: 3 x 40 MB unread is 80 MB
        # counted, over the 64 MB hard limit.
        with RedisServer() as up, Respite(up) as px:
            with RawConn(up.port, timeout=30) as c:
                c.call("SET", "v40", b"w" * (40 * MB))
            hog = hog_connection(px.port)
            hog.sendall(encode_command("GETRANGE", "v40", 0, -1) * 3)
            self.assertTrue(closed_by_respite(px.port, time.monotonic() + 20))
            hog.close()
            with RawConn(px.port) as c:
                self.assertEqual(c.call("PING"), "PONG")


@respite_only
class RepliesBehindAnOwedOne(unittest.TestCase):
    def test_cache_hits_queued_behind_a_miss_count(self):
        # Cache hits pipelined behind a miss wait in their slots until the miss is answered;
        # they count toward the limit there too. The upstream is paused (CLIENT PAUSE) so the
        # miss stays unanswered while 100 x 900 KB of hits pile up behind it.
        with RedisServer() as up, Respite(up, ["--client-output-buffer-limit",
                                                "normal 8mb 0 0"]) as px:
            with RawConn(up.port) as c:
                c.call("SET", "big", b"h" * 900_000)
            with RawConn(px.port) as c:
                self.assertTrue(harness.wait_link_up(c), "tracking link never came up")
                for _ in range(3):
                    self.assertEqual(len(c.call("GET", "big")), 900_000)  # cached from now on
            with RawConn(up.port) as c:
                self.assertEqual(c.call("CLIENT", "PAUSE", 3000, "ALL"), "OK")
            hog = hog_connection(px.port)
            hog.sendall(encode_command("GET", "missing") + encode_command("GET", "big") * 100)
            self.assertTrue(closed_by_respite(px.port, time.monotonic() + 2.5),
                            "hits queued behind a miss were not counted")
            hog.close()
            peak = status_bytes(px.pid, "VmHWM")
            if not sanitized(px.pid):
                self.assertLess(peak, 100 * MB, "the queued hits were not bounded")


@respite_only
class SoftLimit(unittest.TestCase):
    def test_soft_limit_closes_after_its_seconds(self):
        with RedisServer() as up, Respite(up, ["--client-output-buffer-limit",
                                                "normal 0 1mb 1"]) as px:
            with RawConn(up.port) as c:
                c.call("SET", "k", b"s" * 100_000)
            hog = hog_connection(px.port)
            t0 = time.monotonic()
            # 30 x 100 KB unread: 3 MB over the 1 MB soft limit, no hard limit. A few more sent
            # later land after the soft limit's second has passed.
            hog.sendall(encode_command("GETRANGE", "k", 0, -1) * 30)
            closed = False
            for _ in range(50):
                time.sleep(0.1)
                try:
                    hog.sendall(encode_command("GETRANGE", "k", 0, -1))
                except OSError:
                    closed = True
                    break
            closed = closed or closed_by_respite(px.port, time.monotonic() + 5)
            self.assertTrue(closed, "soft limit did not close the client")
            self.assertGreaterEqual(time.monotonic() - t0, 1.0, "closed before the soft seconds")
            hog.close()


class SettingForms(unittest.TestCase):
    @respite_only
    def test_forms(self):
        for ok in ("normal 64mb 16mb 60", "64mb 16mb 60", "32mb", "0 0 0", "NORMAL 1gb 0 0"):
            with RedisServer() as up, Respite(up, ["--client-output-buffer-limit", ok]) as px:
                with RawConn(px.port) as c:
                    self.assertEqual(c.call("PING"), "PONG", ok)
        for bad in ("pubsub 32mb 8mb 60", "normal 1mb", "normal 1mb 1mb x", "lots"):
            p = subprocess.run(respite_argv("--port", "0", "--upstream", "127.0.0.1:1",
                                            "--client-output-buffer-limit", bad),
                               capture_output=True, text=True, timeout=10)
            self.assertNotEqual(p.returncode, 0, bad)
            self.assertIn("client-output-buffer-limit", p.stderr, bad)


if __name__ == "__main__":
    unittest.main(verbosity=2)
