"""Sentinel: respite finds the primary through three real Sentinels (redis-server --sentinel) and
follows a SENTINEL FAILOVER made under a steady stream of writes and reads: writes resume soon
after the switch, every write respite acknowledged is on the new primary, and no read returns a
value older than a write acknowledged before it was sent."""

import threading
import time
import unittest

import harness
from harness import (HOST, Proc, RedisServer, Respite, free_port, proxy_info, wait_for_port,
                     wait_until)



class Sentinels:
    """Three Sentinels monitoring `master` at `port` (quorum 2, down after 1 s)."""

    def __init__(self, tmp, master_port: int, name: str = "mymaster"):
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
        args = []
        for p in cls.sentinels.ports:
            args += ["--sentinel", f"{HOST}:{p}"]
        # Reads to the replica Sentinel lists (SENTINEL REPLICAS), cache fills too.
        cls.px = Respite(None, args + ["--sentinel-master", "mymaster",
                                       "--read-from", "prefer-replica"]).start()
        cls.addClassCleanup(cls.px.close)
        wait_until(lambda: proxy_info(cls.px.port).get("sentinels_reachable") == "3", 10,
                   "respite to subscribe to the Sentinels")

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


if __name__ == "__main__":
    harness.run_tests()
