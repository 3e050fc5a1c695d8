"""What operators expect (issue 7's checks): the annotated config file, runtime CONFIG SET/GET
and REWRITE, PROXY INFO next to the upstream's INFO, maxclients, rate-limit, the default bind
address and SIGTERM."""

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import harness
from harness import (HOST, REPO, MachineDelay, ProxyTestCase, RawConn, RespError, encode_command,
                     free_port, parse_info, port_open, respite_argv, respite_only, wait_for_port)

CONF_COPY = Path(tempfile.mkdtemp(prefix="respite-conf-")) / "respite.conf"
shutil.copy(REPO / "conf" / "respite.conf", CONF_COPY)


class ConfigFile(ProxyTestCase):
    respite_args = ["--config", str(CONF_COPY)]

    @respite_only
    def test_config_set_get_rewrite_and_info(self):
        with RawConn(self.port) as c:
            self.assertEqual(c.call("PROXY", "CONFIG", "SET", "cache-ttl-ms", "1234"), "OK")
            got = c.call("PROXY", "CONFIG", "GET", "cache-ttl-ms")
            self.assertEqual(list(got.items()) if isinstance(got, dict) else got,
                             [b"cache-ttl-ms", b"1234"])
            bad = c.call("PROXY", "CONFIG", "SET", "cache-ttl-ms", "soon")
            self.assertIsInstance(bad, RespError)
            self.assertEqual(c.call("PROXY", "CONFIG", "REWRITE"), "OK")
            info = parse_info(c.call("PROXY", "INFO"))
            for field in ("cache_hits", "cache_misses", "cache_keys", "cache_bytes",
                          "connected_clients", "upstream_connected"):
                self.assertIn(field, info)
            self.assertIn("redis_version", parse_info(c.call("INFO", "server")))
        lines = [l.strip() for l in CONF_COPY.read_text().splitlines()]
        self.assertIn("cache-ttl-ms 1234", lines)
        self.assertIn("# Sizes take redis.conf units: 1k = 1000 bytes, 1kb = 1024 bytes, "
                      "likewise m/mb and g/gb.", lines, "comments are kept")


class MaxClients(ProxyTestCase):
    respite_args = ["--maxclients", "5"]

    @respite_only
    def test_sixth_client_refused(self):
        conns = []
        try:
            # The harness's readiness probe may still count until respite has seen it close:
            # a refused connection is retried (bounded) until five are in.
            for _ in range(100):
                if len(conns) == 5:
                    break
                c = RawConn(self.port)
                try:
                    ok = c.call("PING") == "PONG"
                except ConnectionError:  # refused and closed before the PING got there
                    ok = False
                if ok:
                    conns.append(c)
                else:
                    c.close()
                    time.sleep(0.05)
            self.assertEqual(len(conns), 5, "five clients could not connect")
            with RawConn(self.port) as sixth:
                # Nothing sent: respite answers a refused connection at once, as Redis does.
                raw = sixth.read_raw_replies(1, timeout=5)
                self.assertEqual(raw, [b"-ERR max number of clients reached\r\n"])
                sixth.sock.settimeout(5)
                self.assertEqual(sixth.sock.recv(100), b"", "refused client is closed")
            self.assertEqual(conns[0].call("PING"), "PONG", "the others are still served")
        finally:
            for c in conns:
                c.close()


class RateLimit(ProxyTestCase):
    respite_args = ["--rate-limit", "100"]

    @respite_only
    def test_pipelined_pings_over_the_rate_are_refused(self):
        with RawConn(self.port) as c:
            c.send(encode_command("PING") * 2000)
            replies = c.read_raw_replies(2000, timeout=20)
        refused = sum(1 for r in replies if r == b"-ERR rate limit exceeded\r\n")
        served = sum(1 for r in replies if r == b"+PONG\r\n")
        print(f"\n2000 pipelined PINGs at --rate-limit 100: {served} served, {refused} refused")
        self.assertEqual(refused + served, 2000)
        self.assertGreaterEqual(refused, 1000)
        self.assertGreaterEqual(served, 100)


class Defaults(ProxyTestCase):
    @respite_only
    def test_default_bind_is_loopback_and_sigterm_ends_it(self):
        port = free_port()
        proc = subprocess.Popen(respite_argv("--port", str(port), "--upstream",
                                             f"{HOST}:{self.upstream.port}"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.assertTrue(wait_for_port(port, proc=proc))
            # The listening socket in /proc/net/tcp: local address 0100007F is 127.0.0.1.
            listening = []
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                fields = line.split()
                addr, st = fields[1], fields[3]
                if st == "0A" and int(addr.split(":")[1], 16) == port:
                    listening.append(addr.split(":")[0])
            # One listener per event loop (SO_REUSEPORT), every one on loopback.
            self.assertEqual(listening, ["0100007F"] * int(harness.THREADS or 1))
            self.assertFalse(any(
                int(l.split()[1].split(":")[1], 16) == port and l.split()[3] == "0A"
                for l in Path("/proc/net/tcp6").read_text().splitlines()[1:]))
            # Within respite's 4 s shutdown grace, plus the machine's lateness measured meanwhile.
            delay = MachineDelay()
            self.addCleanup(delay.stop)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            took = time.monotonic() - t0
            self.assertEqual(rc, 0)
            self.assertLess(took, delay.allow(4.0), delay.describe(4.0))
            self.assertFalse(port_open(port))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    harness.run_tests()
