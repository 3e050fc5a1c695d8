"""A primary with a replica behind respite (--replica, --read-from): writes go to the primary,
reads to the replica, and no read through respite misses a write respite acknowledged, even with
the replica's link to its primary held back. The replica replicates through a relay the test can
pause, so it lags while it still answers reads. Redis6Replica: a replica refusing two-section
INFO, as Redis before 7 does."""

import socket
import threading
import time
import unittest

import harness
from harness import HOST, Incomplete, RedisServer, Respite, parse_reply, proxy_info, wait_until


class PausableRelay:
    """A TCP relay from a local port to `target_port`; pause() holds every byte in both
    directions until resume()."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = False
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            b = socket.create_connection((HOST, self.target_port))
            self.conns += [a, b]
            self._carry(a, b)

    def _carry(self, a: socket.socket, b: socket.socket):
        """Carries the bytes between an accepted connection and its own to the target."""
        threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
        threading.Thread(target=self._pump, args=(b, a), daemon=True).start()

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        """What `sock` has to read; b"" at its end or on an error."""
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    def _pump(self, src, dst):
        while True:
            data = self._recv(src)
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            self.flowing.wait()
            try:
                dst.sendall(data)
            except OSError:
                return

    def pause(self):
        self.flowing.clear()

    def resume(self):
        self.flowing.set()

    def close(self):
        self.closed = True
        self.flowing.set()
        self.sock.close()
        for s in self.conns:
            try:
                s.close()
            except OSError:
                pass


class OneSectionInfoRelay(PausableRelay):
    """A relay to a redis-server that answers INFO with more than one section as Redis 6 does
    ("-ERR syntax error"; Redis 7 accepts it). Requests go one at a time, each reply read whole
    before the next request is sent, so the refusal takes its place among the replies. With
    `loading` set, INFO persistence says loading:1, as a replica still loading its data would."""

    def __init__(self, target_port: int):
        self.loading = False
        self.refused = 0       # multi-section INFOs answered with the error
        self.one_section = 0   # single-section INFOs passed on
        super().__init__(target_port)

    def _carry(self, a: socket.socket, b: socket.socket):
        threading.Thread(target=self._serve, args=(a, b), daemon=True).start()

    @staticmethod
    def _next(sock: socket.socket, buf: bytearray):
        """The next whole RESP message in `buf`, reading `sock` for more: (value, raw bytes), or
        None at the end of the stream."""
        while True:
            try:
                value, end = parse_reply(bytes(buf))
                raw = bytes(buf[:end])
                del buf[:end]
                return value, raw
            except Incomplete:
                data = OneSectionInfoRelay._recv(sock)
                if not data:
                    return None
                buf += data

    def _serve(self, a: socket.socket, b: socket.socket):
        requests, replies = bytearray(), bytearray()
        try:
            while (req := self._next(a, requests)) is not None:
                args, raw = req
                name = args[0].upper() if isinstance(args, list) and args else b""
                if name == b"INFO" and len(args) > 2:
                    self.refused += 1
                    a.sendall(b"-ERR syntax error\r\n")
                    continue
                b.sendall(raw)
                if (rep := self._next(b, replies)) is None:
                    return
                reply = rep[1]
                if name == b"INFO" and len(args) == 2:
                    self.one_section += 1
                    if self.loading and args[1].lower() == b"persistence":
                        reply = reply.replace(b"loading:0\r\n", b"loading:1\r\n")
                a.sendall(reply)
        except OSError:
            pass
        finally:
            for s in (a, b):
                s.close()


def calls(server: RedisServer, cmd: str) -> int:
    stat = server.client().info("commandstats").get(f"cmdstat_{cmd}")
    return int(stat["calls"]) if stat else 0


def replication(server: RedisServer) -> dict:
    return server.client().info("replication")



class ReplicaSetup(unittest.TestCase):
    """One primary, one replica replicating through a PausableRelay."""

    read_from = "replica"
    respite_args: list[str] = []
    server_args: list[str] = []  # for both the primary and the replica

    @classmethod
    def setUpClass(cls):
        cls.primary = RedisServer(list(cls.server_args)).start()
        cls.addClassCleanup(cls.primary.close)
        cls.relay = PausableRelay(cls.primary.port)
        cls.addClassCleanup(cls.relay.close)
        cls.replica = RedisServer(["--replicaof", HOST, str(cls.relay.port),
                                   *cls.server_args]).start()
        cls.addClassCleanup(cls.replica.close)
        wait_until(lambda: replication(cls.replica).get("master_link_status") == "up", 20,
                   "the replica's link")
        cls.px = Respite(cls.primary, ["--replica", f"{HOST}:{cls.replica_port()}",
                                       "--read-from", cls.read_from, *cls.respite_args]).start()
        cls.addClassCleanup(cls.px.close)
        wait_until(lambda: proxy_info(cls.px.port).get("replicas_healthy") == "1", 10,
                   "respite to see the replica healthy")

    @classmethod
    def replica_port(cls) -> int:
        """Where respite reaches the replica."""
        return cls.replica.port

    def setUp(self):
        self.relay.resume()
        self.px.assert_alive()

    def wait_applied(self):
        """Until no write respite acknowledged is missing on the replica (reads of every key may
        go there again)."""
        wait_until(lambda: proxy_info(self.px.port).get("replica_pending_keys") == "0", 20,
                   "the replica to apply respite's writes")


class WritesAndReads(ReplicaSetup):
    respite_args = ["--cache-max-memory", "0"]  # every GET is forwarded

    def test_sets_land_on_primary_gets_on_replica(self):
        c = self.px.client()
        sets0 = calls(self.primary, "set")
        for i in range(200):
            self.assertTrue(c.set(f"rw:{i}", f"value-{i}"))
        self.assertEqual(calls(self.primary, "set") - sets0, 200, "every SET reached the primary")
        self.wait_applied()
        gets_primary0, gets_replica0 = calls(self.primary, "get"), calls(self.replica, "get")
        for i in range(200):
            self.assertEqual(c.get(f"rw:{i}"), f"value-{i}".encode())
        self.assertEqual(calls(self.replica, "get") - gets_replica0, 200,
                         "the GETs were served by the replica")
        self.assertEqual(calls(self.primary, "get") - gets_primary0, 0)
        info = proxy_info(self.px.port)
        self.assertGreaterEqual(int(info["replica_reads"]), 200)
        self.assertIn("role=replica,state=up", info["node1"])
        self.assertIn("role=primary,state=up", info["node0"])

    def test_transactions_and_writes_never_reach_the_replica(self):
        c = self.px.client()
        p = c.pipeline(transaction=True)
        p.set("tx:a", "1").incr("tx:a").get("tx:a")
        self.assertEqual(p.execute(), [True, 2, b"2"])
        # WATCH pins the client to the primary; its reads go there too.
        with self.px.client().pipeline() as w:
            w.watch("tx:a")
            self.assertEqual(w.get("tx:a"), b"2")
            w.multi()
            w.set("tx:a", "3")
            self.assertEqual(w.execute(), [True])
        self.assertEqual(c.get("tx:a"), b"3")


class ReadYourWritesUnderLag(ReplicaSetup):
    """The replica's link is held back while clients write through respite and read the same
    keys from other connections: every read sees the write it follows; reads of keys not written
    meanwhile still go to the replica."""

    def check(self, px_port_args=()):
        writer = self.px.client()
        readers = [self.px.client(), self.px.client()]
        for i in range(50):
            writer.set(f"stable:{i}", f"s{i}")
        self.wait_applied()
        # The cache (on here) holds what was read before the pause.
        for i in range(50):
            self.assertEqual(readers[0].get(f"stable:{i}"), f"s{i}".encode())
        self.relay.pause()
        try:
            replica_gets0 = calls(self.replica, "get") + calls(self.replica, "strlen")
            stale = []
            for i in range(200):
                key = f"lag:{i % 20}"  # written again and again: an old value would show
                value = f"v{i}"
                self.assertTrue(writer.set(key, value))
                for r in readers:
                    got = r.get(key)  # cached path (a miss fills from the primary)
                    if got != value.encode():
                        stale.append((key, value, got, "get"))
                    n = r.strlen(key)  # forwarded read: the router's choice
                    if n != len(value):
                        stale.append((key, value, n, "strlen"))
                # A read-only script reading a key it does not declare.
                got = readers[0].execute_command("EVAL_RO", f"return redis.call('GET','{key}')", 0)
                if got != value.encode():
                    stale.append((key, value, got, "eval_ro"))
                # Keys nobody wrote meanwhile: the replica may answer (forwarded STRLEN).
                self.assertEqual(readers[i % 2].strlen(f"stable:{i % 50}"), len(f"s{i % 50}"))
            self.assertEqual(stale, [], "reads older than a write respite acknowledged")
            info = proxy_info(self.px.port)
            self.assertGreater(int(info["replica_pending_keys"]), 0,
                               "the replica is behind: its pending keys are recorded")
            self.assertGreaterEqual(calls(self.replica, "strlen") + calls(self.replica, "get")
                                    - replica_gets0, 200,
                                    "reads of keys not written meanwhile went to the replica")
            self.assertGreater(replication(self.primary)["master_repl_offset"],
                               replication(self.replica)["slave_repl_offset"],
                               "the replica really lagged")
        finally:
            self.relay.resume()
        self.wait_applied()
        strlen0 = calls(self.replica, "strlen")
        for i in range(20):
            self.assertEqual(readers[0].strlen(f"lag:{i}"), len(f"v{180 + i}"))
        self.assertEqual(calls(self.replica, "strlen") - strlen0, 20,
                         "once applied, reads of the written keys go to the replica again")

    def test_no_stale_read_while_the_replica_lags(self):
        self.check()


class UnknownCommandWrites(ReplicaSetup):
    """A write respite's command table does not know (a module's, a newer Redis's; here HSET
    renamed on both servers) is acknowledged: reads after it wait for the replica too."""
    server_args = ["--rename-command", "HSET", "MYHSET"]
    respite_args = ["--cache-max-memory", "0"]

    def test_unknown_write_then_read(self):
        c = self.px.client()
        c.execute_command("MYHSET", "uh", "f", "old")
        self.wait_applied()
        self.relay.pause()
        try:
            for i in range(20):
                c.execute_command("MYHSET", "uh", "f", f"new{i}")
                self.assertEqual(self.px.client().hget("uh", "f"), f"new{i}".encode())
        finally:
            self.relay.resume()


class ReplicaKilled(ReplicaSetup):
    read_from = "prefer-replica"
    respite_args = ["--cache-max-memory", "0"]

    def test_reads_continue_on_the_primary(self):
        c = self.px.client()
        for i in range(20):
            c.set(f"kill:{i}", str(i))
        self.wait_applied()
        errors = []
        reads = 0
        killed_at = None
        deadline = time.monotonic() + 4.0
        r = self.px.client(socket_timeout=5)
        i = 0
        while time.monotonic() < deadline:
            if killed_at is None and time.monotonic() > deadline - 3.0:
                self.replica.kill()
                killed_at = time.monotonic()
            try:
                v = r.get(f"kill:{i % 20}")
                self.assertEqual(v, str(i % 20).encode())
                reads += 1
            except Exception as e:  # noqa: BLE001 - every failure is recorded with its time
                errors.append((time.monotonic() - (killed_at or 0), repr(e)))
                r = self.px.client(socket_timeout=5)
            i += 1
        late = [e for e in errors if e[0] > 1.0]
        self.assertEqual(late, [], f"errors more than 1 s after the replica died ({len(errors)} "
                                   f"in all, {reads} reads)")
        self.assertGreater(reads, 100)
        info = proxy_info(self.px.port)
        self.assertEqual(info["replicas_healthy"], "0")
        self.assertIn("role=replica,state=down", info["node1"])


class ReplicaKilledCacheOn(ReplicaKilled):
    """The same with the cache on: GET misses were filled from the replica."""
    respite_args = []


class Redis6Replica(ReplicaSetup):
    """A replica answering INFO as Redis 6 does (a OneSectionInfoRelay before it; no Redis 6 is
    installed here): respite asks one section per INFO after the refusal, the replica takes
    reads (setUpClass waits for it healthy), and `loading` is still read from INFO persistence."""
    respite_args = ["--cache-max-memory", "0"]

    @classmethod
    def replica_port(cls) -> int:
        cls.front = OneSectionInfoRelay(cls.replica.port)
        cls.addClassCleanup(cls.front.close)
        return cls.front.port

    def setUp(self):
        super().setUp()
        self.front.loading = False

    def test_reads_go_to_the_replica(self):
        self.assertGreaterEqual(self.front.refused, 1, "the two-section INFO was tried")
        self.assertGreater(self.front.one_section, 0, "INFO asked one section at a time")
        c = self.px.client()
        for i in range(50):
            self.assertTrue(c.set(f"r6:{i}", i))
        self.wait_applied()
        gets0 = calls(self.replica, "get")
        for i in range(50):
            self.assertEqual(c.get(f"r6:{i}"), str(i).encode())
        self.assertEqual(calls(self.replica, "get") - gets0, 50, "the replica served the reads")
        self.assertIn("role=replica,state=up", proxy_info(self.px.port)["node1"])

    def test_loading_is_read_from_info_persistence(self):
        self.front.loading = True
        wait_until(lambda: "state=loading" in proxy_info(self.px.port).get("node1", ""), 10,
                   "respite to see the replica loading")
        self.assertEqual(proxy_info(self.px.port)["replicas_healthy"], "0")
        self.front.loading = False
        wait_until(lambda: proxy_info(self.px.port).get("replicas_healthy") == "1", 10,
                   "respite to see the replica done loading")


if __name__ == "__main__":
    harness.run_tests()
