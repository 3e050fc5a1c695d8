"""Signals and upstream failures: SIGTERM/SIGINT exit 0 within respite's shutdown grace after
answering what is in flight; a stopped or killed upstream gives clients an error within the
upstream timeout, and respite serves again once the upstream is back on the same port. Nothing
hangs.

Those deadlines are respite's own (--upstream-timeout-ms, the 4 s shutdown grace): each is
checked as the deadline plus this machine's lateness measured during the test
(harness.MachineDelay), never as a fixed time. HANG_S only tells a hang from slowness.

Each test starts its own processes (respite only: skipped under RESPITE_DIRECT=1)."""

import contextlib
import signal
import time
import unittest

import harness
from harness import (MachineDelay, RawConn, RedisServer, RespError, Respite, respite_only,
                     wait_port_closed)

TIMEOUT_MS = 1000
TIMEOUT_S = TIMEOUT_MS / 1000
SHUTDOWN_GRACE_S = 4.0  # proxy/server.cc kShutdownGraceMs: clients still connected then are cut
HANG_S = 30.0           # only a hang takes this long


@respite_only
class Lifecycle(unittest.TestCase):

    def setUp(self):
        self.stack = contextlib.ExitStack()
        self.addCleanup(self.stack.close)
        self.delay = MachineDelay()
        self.addCleanup(self.delay.stop)
        self.upstream = self.stack.enter_context(RedisServer())
        self.proxy = self.stack.enter_context(
            Respite(self.upstream, ["--upstream-timeout-ms", str(TIMEOUT_MS)]))
        self.port = self.proxy.port

    def conn(self, timeout=10.0):
        c = RawConn(self.port, timeout)
        self.stack.callback(c.close)
        return c

    def wait_exit(self):
        """Waits for respite to exit after a signal; its exit code. It must be gone within the
        shutdown grace (+ the machine's lateness)."""
        t0 = time.monotonic()
        try:
            rc = self.proxy.proc.popen.wait(timeout=HANG_S)
        except Exception:  # noqa: BLE001
            self.fail(f"respite did not exit within {HANG_S:g}s of the signal")
        took = time.monotonic() - t0
        self.assertLess(took, self.delay.allow(SHUTDOWN_GRACE_S),
                        f"exit {took * 1000:.0f} ms after the signal "
                        f"({self.delay.describe(SHUTDOWN_GRACE_S)})")
        return rc

    def test_sigterm_exits_zero_within_the_grace(self):
        idle = self.conn()
        busy = self.conn()
        self.assertEqual(busy.call("SET", "respite:lc:a", "1"), "OK")
        self.assertEqual(idle.call("PING"), "PONG")
        self.proxy.proc.popen.send_signal(signal.SIGTERM)
        rc = self.wait_exit()
        self.assertEqual(rc, 0, self.proxy.log_tail())
        self.assertTrue(wait_port_closed(self.port, 1.0), "port still accepts connections")

    def test_sigint_exits_zero(self):
        self.conn().call("PING")
        self.proxy.proc.popen.send_signal(signal.SIGINT)
        rc = self.wait_exit()
        self.assertEqual(rc, 0, self.proxy.log_tail())

    def test_sigterm_answers_in_flight(self):
        c = self.conn()
        c.call("SET", "respite:lc:inflight", "answer")
        self.upstream.pause_process()          # the GET below is now in flight upstream
        try:
            c.cmd("GET", "respite:lc:inflight")
            time.sleep(0.1)
            self.proxy.proc.popen.send_signal(signal.SIGTERM)
            time.sleep(0.2)
        finally:
            self.upstream.resume_process()
        self.assertEqual(c.read_reply(timeout=HANG_S), b"answer")
        rc = self.wait_exit()
        self.assertEqual(rc, 0, self.proxy.log_tail())

    def test_stopped_upstream_gives_error_within_timeout(self):
        c = self.conn()
        c.call("SET", "respite:lc:s", "v")
        self.upstream.pause_process()
        try:
            t0 = time.monotonic()
            c.cmd("GET", "respite:lc:s")
            reply = c.read_reply(timeout=HANG_S)
            took = time.monotonic() - t0
        finally:
            self.upstream.resume_process()
        self.assertIsInstance(reply, RespError, f"expected an error reply, got {reply!r}")
        print(f"\nstopped upstream: error after {took * 1000:.0f} ms: -{reply} "
              f"({self.delay.describe(TIMEOUT_S)})")
        self.assertLess(took, self.delay.allow(TIMEOUT_S))
        self.assertGreater(took, TIMEOUT_S * 0.5, "the error came before the timeout")
        # the upstream runs again: respite serves again (bounded wait)
        self.assertTrue(self.serves_again(c, 10.0), self.proxy.log_tail())
        self.proxy.assert_alive()

    def serves_again(self, c, within):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                if c.call("SET", "respite:lc:back", "1", timeout=TIMEOUT_MS / 1000 + 2) == "OK":
                    return c.call("GET", "respite:lc:back") == b"1"
            except (TimeoutError, OSError):
                c = self.conn()
            time.sleep(0.1)
        return False

    def test_killed_upstream_with_requests_in_flight(self):
        conns = [self.conn() for _ in range(3)]
        for c in conns:
            c.call("SET", "respite:lc:k", "v")
        self.upstream.pause_process()
        for c in conns:
            for i in range(10):
                c.cmd("GET", "respite:lc:k")
        time.sleep(0.1)
        t0 = time.monotonic()
        self.upstream.kill()
        for c in conns:
            replies = c.read_replies(10, timeout=HANG_S)
            for r in replies:
                self.assertIsInstance(r, RespError, f"expected error replies, got {replies!r}")
        took = time.monotonic() - t0
        print(f"\nkilled upstream: 30 in-flight requests answered with errors in {took * 1000:.0f} ms: "
              f"-{replies[0]} ({self.delay.describe(TIMEOUT_S)})")
        self.assertLess(took, self.delay.allow(TIMEOUT_S))
        # while the upstream is down: errors, not hangs
        c = self.conn()
        t0 = time.monotonic()
        r = c.call("GET", "respite:lc:k", timeout=HANG_S)
        self.assertIsInstance(r, RespError)
        self.assertLess(time.monotonic() - t0, self.delay.allow(TIMEOUT_S))
        self.assertEqual(c.call("PING"), "PONG", "local commands still answered")
        # upstream back on the same port: respite serves again
        self.upstream.restart_same_port()
        self.assertTrue(self.serves_again(self.conn(), 10.0), self.proxy.log_tail())
        with RawConn(self.port) as fresh:
            self.assertEqual(fresh.call("GET", "respite:lc:back"), b"1")
        self.proxy.assert_alive()

    def test_upstream_restart_pinned_client(self):
        c = self.conn()
        c.cmd("SUBSCRIBE", "respite:lc:ch")
        c.read_replies(1)
        self.upstream.kill()
        # the subscriber learns that its upstream is gone: an error or a close, never silence
        deadline = time.monotonic() + HANG_S
        data = b""
        while time.monotonic() < deadline and not c.closed and not data:
            data += c.read_for(0.2)
        self.assertTrue(c.closed or data.startswith(b"-"), f"subscriber got {data!r}, closed={c.closed}")
        self.upstream.restart_same_port()
        self.assertTrue(self.serves_again(self.conn(), 10.0))

    def test_blocking_command_not_cut_by_upstream_timeout(self):
        c = self.conn()
        c.call("DEL", "respite:lc:list")
        t0 = time.monotonic()
        c.cmd("BLPOP", "respite:lc:list", str(TIMEOUT_MS / 1000 * 2))
        self.assertIsNone(c.read_reply(timeout=HANG_S))
        self.assertGreaterEqual(time.monotonic() - t0, TIMEOUT_MS / 1000 * 2 - 0.1)


if __name__ == "__main__":
    harness.run_tests()
