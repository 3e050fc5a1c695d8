"""Sentinel: respite finds the primary through three real Sentinels (redis-server --sentinel) and
follows a SENTINEL FAILOVER made under a steady stream of writes and reads: writes resume soon
after the switch, every write respite acknowledged is on the new primary, and no read returns a
value older than a write acknowledged before it was sent. SentinelCounts: connections to the
Sentinels are counted apart from those to Redis."""

import socket
import subprocess
import threading
import time
import unittest
import urllib.request

import harness
from harness import (HOST, Proc, RedisServer, Respite, free_port, proxy_info, wait_for_port,
                     wait_until)
from test_http import HttpRespite, parse_metrics



class Sentinels:
    """Three Sentinels monitoring `master` at `port` (quorum 2, down after 1 s)."""

    def __init__(self, tmp, master_port: int, name: str = "mymaster"):
        self.name = name
        self.procs = []
        self.ports = []
        for i in range(3):
            port = free_port()
            conf = tmp / f"sentinel-{i}.conf"
            conf.write_text(f"port {port}\nbind {HOST}\ndir {tmp}\n"
                            f"sentinel monitor {name} {HOST} {master_port} 2\n"
                            f"sentinel down-after-milliseconds {name} 1000\n"
                            f"sentinel failover-timeout {name} 5000\n")
            p = Proc([harness.REDIS_SERVER, str(conf), "--sentinel"], tmp / f"sentinel-{i}.log",
                     cwd=str(tmp), name="sentinel")
            if not wait_for_port(port, 10, p.popen):
                raise RuntimeError(f"sentinel did not start: {p.log_tail()}")
            self.procs.append(p)
            self.ports.append(port)

    def start_respite(self, respite_class=Respite, extra=()) -> Respite:
        """respite following `name` through these Sentinels, once subscribed to all three."""
        args = ["--sentinel-master", self.name, *extra]
        for p in self.ports:
            args += ["--sentinel", f"{HOST}:{p}"]
        px = respite_class(None, args).start()
        try:
            wait_until(lambda: proxy_info(px.port).get("sentinels_reachable") == "3", 10,
                       "respite to subscribe to the Sentinels")
        except BaseException:
            px.close()
            raise
        return px

    def client(self, i: int = 0):
        import redis
        return redis.Redis(host=HOST, port=self.ports[i], socket_timeout=5)

    def close(self):
        for p in self.procs:
            p.stop()


class SentinelFailover(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.primary = RedisServer().start()
        cls.addClassCleanup(cls.primary.close)
        cls.replica = RedisServer(["--replicaof", HOST, str(cls.primary.port)]).start()
        cls.addClassCleanup(cls.replica.close)
        wait_until(lambda: cls.replica.client().info("replication").get("master_link_status")
                   == "up", 20, "the replica's link")
        cls.sentinels = Sentinels(cls.primary.tmp, cls.primary.port)
        cls.addClassCleanup(cls.sentinels.close)

        def replica_known():
            rs = cls.sentinels.client().sentinel_slaves("mymaster")
            return any(r.get("port") == cls.replica.port and "s_down" not in str(r.get("flags"))
                       and r.get("master-link-status") == "ok" for r in rs)
        wait_until(replica_known, 30, "the Sentinels to know the replica")
        # Reads to the replica Sentinel lists (SENTINEL REPLICAS), cache fills too.
        cls.px = cls.sentinels.start_respite(extra=["--read-from", "prefer-replica"])
        cls.addClassCleanup(cls.px.close)

    def test_failover_under_load(self):
        info = proxy_info(self.px.port)
        self.assertEqual(info["upstream"], f"{HOST}:{self.primary.port}")
        self.assertTrue(info["node1"].startswith(f"addr={HOST}:{self.replica.port},"), info["node1"])
        wait_until(lambda: proxy_info(self.px.port).get("replicas_healthy") == "1", 10,
                   "the replica to take reads")
        acked = {}            # key -> value, writes respite acknowledged
        acked_counter = [0]   # the newest acknowledged value of `ctr`
        write_errors = []     # (time, error)
        stale = []
        ack_times = []
        stop = threading.Event()
        lock = threading.Lock()

        def writer():
            c = self.px.client(socket_timeout=5)
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    c.set(f"fo:{i}", i)
                    c.set("ctr", i)
                    with lock:
                        acked[f"fo:{i}"] = i
                        acked_counter[0] = i
                        ack_times.append(time.monotonic())
                except Exception as e:  # noqa: BLE001 - errors are allowed around the switch
                    write_errors.append((time.monotonic(), repr(e)))
                    c = self.px.client(socket_timeout=5)
                time.sleep(0.002)

        def reader():
            c = self.px.client(socket_timeout=5)
            while not stop.is_set():
                with lock:
                    floor = acked_counter[0]
                try:
                    v = c.get("ctr")
                except Exception:  # noqa: BLE001
                    c = self.px.client(socket_timeout=5)
                    continue
                if v is not None and int(v) < floor:
                    stale.append((floor, int(v)))

        threads = [threading.Thread(target=writer), threading.Thread(target=reader),
                   threading.Thread(target=reader)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            self.sentinels.client().execute_command("SENTINEL", "FAILOVER", "mymaster")
            # The switch as respite saw it (bounded: failover-timeout is 5 s).
            wait_until(lambda: proxy_info(self.px.port).get("sentinel_switches") == "1", 30,
                       "respite to follow the failover")
            switched_at = time.monotonic()
            time.sleep(3.0)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        info = proxy_info(self.px.port)
        self.assertEqual(info["upstream"], f"{HOST}:{self.replica.port}", "the new primary")
        late = [e for e in write_errors if e[0] > switched_at + 5.0]
        self.assertEqual(late, [], "writes failed more than 5 s after the switch")
        self.assertGreater(len(acked), 100)
        resumed = [t for t in ack_times if t >= switched_at]
        self.assertTrue(resumed and resumed[0] <= switched_at + 5.0,
                        "writes resumed within 5 s of the switch")
        new_primary = self.replica.client()
        self.assertEqual(new_primary.execute_command("ROLE")[0], b"master")
        keys = sorted(acked)
        missing = []
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for k, v in zip(chunk, new_primary.mget(chunk)):
                if v is None or int(v) != acked[k]:
                    missing.append((k, v))
        self.assertEqual(missing, [], "writes respite acknowledged that the new primary lacks")
        self.assertEqual(stale, [], "reads older than an acknowledged write")
        # The old primary, now a replica of the new one, took the promoted replica's place.
        info = proxy_info(self.px.port)
        self.assertTrue(info["node1"].startswith(f"addr={HOST}:{self.primary.port},"), info["node1"])
        wait_until(lambda: proxy_info(self.px.port).get("replicas_healthy") == "1", 30,
                   "the old primary to take reads as a replica")
        c = self.px.client()
        c.set("after", "x")
        r0 = int(proxy_info(self.px.port)["replica_reads"])
        wait_until(lambda: c.strlen("after") == 1 and
                   int(proxy_info(self.px.port)["replica_reads"]) > r0, 10,
                   "a read served by the old primary as a replica")


class SentinelCounts(unittest.TestCase):
    """Connections to the Sentinels are counted apart (sentinel_connects, sentinel_errors), not
    in upstream_connects/upstream_errors, which count connections to Redis: a Sentinel going
    away moves only the former, in PROXY INFO and /metrics alike."""

    @classmethod
    def setUpClass(cls):
        cls.primary = RedisServer().start()
        cls.addClassCleanup(cls.primary.close)
        cls.sentinels = Sentinels(cls.primary.tmp, cls.primary.port)
        cls.addClassCleanup(cls.sentinels.close)
        cls.px = cls.sentinels.start_respite(HttpRespite)
        cls.addClassCleanup(cls.px.close)

    def metrics(self) -> dict:
        with urllib.request.urlopen(f"http://{HOST}:{self.px.http_port}/metrics", timeout=5) as r:
            return parse_metrics(r.read().decode())[0]

    def test_a_sentinel_lost_is_not_an_upstream_error(self):
        # Subscribed to all three (setUpClass): their question connections are open too (both
        # are made on the first tick).
        before = proxy_info(self.px.port)

        def errors(info):  # wherever they are counted
            return int(info.get("sentinel_errors", 0)) + int(info["upstream_errors"])
        self.sentinels.procs[0].stop()
        wait_until(lambda: errors(proxy_info(self.px.port)) >= errors(before) + 3, 10,
                   "respite to fail to reach the stopped Sentinel (again and again)")
        after = proxy_info(self.px.port)
        for name in ("upstream_connects", "upstream_errors"):
            self.assertEqual(after[name], before[name], f"{name}: about Redis, not the Sentinels")
        self.assertGreaterEqual(int(before.get("sentinel_connects", 0)), 6,
                                "a subscription and a question connection per Sentinel")
        self.assertGreater(int(after["sentinel_connects"]), int(before["sentinel_connects"]),
                           "connections to the stopped Sentinel tried again")
        self.assertEqual(after["sentinels_reachable"], "2")
        # /metrics carries the same counters: between two PROXY INFO reads around it.
        m = self.metrics()
        last = proxy_info(self.px.port)
        for name in ("sentinel_connects", "sentinel_errors", "upstream_connects",
                     "upstream_errors"):
            got = m[f"respite_{name}_total"]
            self.assertTrue(int(after[name]) <= got <= int(last[name]), (name, got, after, last))


class TricklingSentinel(unittest.TestCase):
    """A Sentinel that answers a byte at a time, each well within the 1 s read timeout, and
    never finishes: respite's question to it ends at its 1 s deadline (the whole command, not
    each read), says so, and respite gives up on it instead of waiting for ever."""

    def test_a_reply_trickled_forever_times_out(self):
        listener = socket.create_server((HOST, 0))
        port = listener.getsockname()[1]
        stop = threading.Event()

        def serve():
            listener.settimeout(0.2)
            conns = []
            while not stop.is_set():
                try:
                    c, _ = listener.accept()
                    c.recv(4096)  # the question (SENTINEL GET-MASTER-ADDR-BY-NAME ...)
                    conns.append(c)
                except OSError:
                    pass
                for c in conns:  # 9 bytes every 0.2 s of a 100,000-byte bulk string
                    try:
                        c.send(b"$100000\r\n")
                    except OSError:
                        pass
            for c in conns:
                c.close()
            listener.close()

        conns_thread = threading.Thread(target=serve)
        conns_thread.start()
        try:
            argv = harness.respite_argv("--port", str(free_port()), "--bind", HOST,
                                        "--sentinel", f"{HOST}:{port}", "--sentinel-master", "mymaster")
            t0 = time.monotonic()
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            took = time.monotonic() - t0
        finally:
            stop.set()
            conns_thread.join(10)
        out = p.stdout.decode(errors="replace")
        self.assertNotEqual(p.returncode, 0, out)
        self.assertIn("timeout", out)
        self.assertLess(took, 25, "respite gave up on the Sentinel (its deadline is 1 s a try)")


if __name__ == "__main__":
    harness.run_tests()
