"""respite --cluster --read-from replica: forwarded reads go to the replicas of each key's shard
(READONLY connections), never a read of a write respite acknowledged that the replica has not
applied. A real cluster from cluster_harness.py: 3 masters, 1 replica each.

- reads land on replicas: after the replicas caught up, 300 HGETs over keys of every shard
  move the replicas' own `INFO commandstats` cmdstat_hget and not the masters'.
- read-your-writes: 2,000 rounds of HSET k f i then HGET k f (on another connection, and
  pipelined on one) over keys of all three shards always read i.
- a replica SIGKILLed (by pid): reads of its shard keep being answered, right and without an
  error (from its master).
- without --read-from (primary) the replicas get no HGET.
- the first --upstream seed a replica: it answers the reads routed to it (replica_reads counts
  only reads a replica answered).
- pipelined HGET k (replica, paused) then HSET k: the HSET waits for the HGET; the replica
  killed, the HGET is answered by the master with the value before the HSET.
- one CLUSTER FAILOVER under a read-your-writes load: 0 stale (only replica reads' connections
  send READONLY; a demoted master answers -MOVED).
- a slot migrated step by step (SETSLOT IMPORTING/MIGRATING, MIGRATE, a write after ASK,
  SETSLOT NODE): once respite read the masters' markers, every HGET reads the value.
- a replica hung (SIGSTOP) with a client's read out on it: the client's pipelined HSET and PING
  behind that read are answered after --upstream-timeout-ms, not when the replica wakes.
Each test prints what it measured."""

import os
import signal
import threading
import time
import unittest

import harness
from harness import RawConn, encode_command, proxy_info
from cluster_harness import RedisCluster, call, key_slot, parse_info

KEYS_PER_SHARD = 10


def hget_calls(node) -> int:
    """cmdstat_hget calls of one node, asked directly."""
    stats = parse_info(call(node.port, "INFO", "commandstats"))
    entry = stats.get("cmdstat_hget", "")
    for part in entry.split(","):
        if part.startswith("calls="):
            return int(part[len("calls="):])
    return 0


@unittest.skipIf(harness.DIRECT, "respite's own routing")
class ClusterReplicaReads(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cl = RedisCluster(masters=3, replicas=1).start()
        cls.addClassCleanup(cls.cl.close)
        cls.px = cls.cl.start_respite(["--read-from", "replica"])
        cls.addClassCleanup(cls.px.close)
        cls.cl.wait_respite_ready(cls.px.port)
        cls.primary_px = cls.cl.start_respite([])
        cls.addClassCleanup(cls.primary_px.close)
        cls.cl.wait_respite_ready(cls.primary_px.port)
        # Keys of every shard, by the map at start.
        owners = cls.cl.slot_owners()
        cls.masters = cls.cl.masters()
        cls.keys = {}
        i = 0
        for m in cls.masters:
            ks = []
            while len(ks) < KEYS_PER_SHARD:
                k = f"crep:{i}"
                i += 1
                if owners[key_slot(k)] == m.id:
                    ks.append(k)
            cls.keys[m.id] = ks

    def all_keys(self):
        return [k for ks in self.keys.values() for k in ks]

    def replicas(self):
        return [r for m in self.masters for r in self.cl.replicas_of(m)]

    def wait_replicas_read(self, conn, deadline_s: float = 10.0):
        """Bounded: HGETs through respite until every replica has answered one (the monitor saw
        each replica apply the writes so far)."""
        deadline = time.monotonic() + deadline_s
        pending = {m.id: self.cl.replicas_of(m) for m in self.masters}
        start = {r.port: hget_calls(r) for rs in pending.values() for r in rs}
        while pending and time.monotonic() < deadline:
            for mid in list(pending):
                for k in self.keys[mid]:
                    conn.call("HGET", k, "f")
                if any(hget_calls(r) > start[r.port] for r in pending[mid]):
                    del pending[mid]
        self.assertFalse(pending, f"shards whose replicas took no read: {list(pending)}")

    def wait_replica_reads(self, conn, r, k):
        """Bounded: HGET k through respite until replica `r` answers one (it caught up)."""
        deadline = time.monotonic() + 10
        before = hget_calls(r)
        while hget_calls(r) == before and time.monotonic() < deadline:
            conn.call("HGET", k, "f")
        self.assertGreater(hget_calls(r), before, "the replica took no read")

    def test_a_reads_land_on_replicas(self):
        with RawConn(self.px.port, 10.0) as c:
            for k in self.all_keys():
                c.call("HSET", k, "f", "v")
            self.wait_replicas_read(c)
            before_m = {m.port: hget_calls(m) for m in self.masters}
            before_r = {r.port: hget_calls(r) for r in self.replicas()}
            info0 = proxy_info(self.px.port)
            n = 0
            for _ in range(10):
                for k in self.all_keys():
                    self.assertEqual(c.call("HGET", k, "f"), b"v")
                    n += 1
            info1 = proxy_info(self.px.port)
        moved_m = {p: hget_calls(self.cl.node_by_port(p)) - b for p, b in before_m.items()}
        moved_r = {p: hget_calls(self.cl.node_by_port(p)) - b for p, b in before_r.items()}
        print(f"\n{n} HGETs: replicas {moved_r}, masters {moved_m}, replica_reads "
              f"{int(info1['replica_reads']) - int(info0['replica_reads'])}")
        self.assertEqual(sum(moved_m.values()), 0)
        self.assertEqual(sum(moved_r.values()), n)
        self.assertTrue(all(v > 0 for v in moved_r.values()), moved_r)
        self.assertGreaterEqual(int(info1["replica_reads"]) - int(info0["replica_reads"]), n)

    def test_b_read_your_writes(self):
        keys = self.all_keys()
        stale = []
        t0 = time.monotonic()
        with RawConn(self.px.port, 10.0) as w, RawConn(self.px.port, 10.0) as r:
            # Written on one connection, read on another: the ledger alone keeps it fresh.
            for i in range(2000):
                k = keys[i % len(keys)]
                w.call("HSET", k, "f", str(i))
                got = r.call("HGET", k, "f")
                if got != str(i).encode():
                    stale.append((k, i, got))
            # Pipelined on one connection: the read waits for the write's reply.
            for i in range(2000, 4000):
                k = keys[i % len(keys)]
                w.send(encode_command("HSET", k, "f", str(i)) + encode_command("HGET", k, "f"))
                _, got = w.read_replies(2)
                if got != str(i).encode():
                    stale.append((k, i, got))
        info = proxy_info(self.px.port)
        print(f"\n4000 write-then-read rounds in {time.monotonic() - t0:.2f}s: {len(stale)} "
              f"stale, replica_reads {info['replica_reads']}")
        self.assertEqual(stale, [])

    def test_c_replica_killed(self):
        victim_master = self.masters[0]
        keys = self.keys[victim_master.id]
        with RawConn(self.px.port, 10.0) as c:
            for k in keys:
                c.call("HSET", k, "f", "before-kill")
            self.wait_replicas_read(c)
            victim = self.cl.replicas_of(victim_master)[0]
            victim.kill()
            errors, wrong = [], []
            for i in range(600):
                k = keys[i % len(keys)]
                got = c.call("HGET", k, "f")
                if isinstance(got, harness.RespError):
                    errors.append(str(got))
                elif got != b"before-kill":
                    wrong.append(got)
        print(f"\n600 HGETs after a replica's SIGKILL: {len(errors)} errors, {len(wrong)} wrong")
        self.assertEqual(errors, [])
        self.assertEqual(wrong, [])

    def test_d_primary_reads_no_replica(self):
        live = [r for r in self.replicas() if r.alive()]
        before = {r.port: hget_calls(r) for r in live}
        with RawConn(self.primary_px.port, 10.0) as c:
            for k in self.all_keys():
                c.call("HSET", k, "g", "1")
            for _ in range(5):
                for k in self.all_keys():
                    self.assertEqual(c.call("HGET", k, "g"), b"1")
        moved = {p: hget_calls(self.cl.node_by_port(p)) - b for p, b in before.items()}
        print(f"\n--read-from primary: replicas' HGET calls moved {moved}")
        self.assertEqual(sum(moved.values()), 0)

    def test_e_seed_replica_reads(self):
        """The first --upstream seed is a replica: reads routed to it are answered by it (its
        READONLY connection), and replica_reads counts only reads a replica answered."""
        m = self.masters[2]
        r = self.cl.replicas_of(m)[0]
        k = self.keys[m.id][0]
        px = self.cl.start_respite(["--read-from", "replica"],
                                   seeds=[r.addr] + [n.addr for n in self.cl.nodes if n is not r])
        try:
            self.cl.wait_respite_ready(px.port)
            with RawConn(px.port, 10.0) as c:
                c.call("HSET", k, "f", "seed")
                deadline = time.monotonic() + 10
                before = hget_calls(r)
                while hget_calls(r) == before and time.monotonic() < deadline:
                    self.assertEqual(c.call("HGET", k, "f"), b"seed")
                b_r, b_m = hget_calls(r), hget_calls(m)
                rr0 = int(proxy_info(px.port)["replica_reads"])
                for _ in range(200):
                    self.assertEqual(c.call("HGET", k, "f"), b"seed")
                rr = int(proxy_info(px.port)["replica_reads"]) - rr0
        finally:
            px.close()
        print(f"\nseed replica: 200 HGETs, replica +{hget_calls(r) - b_r}, master "
              f"+{hget_calls(m) - b_m}, replica_reads +{rr}")
        self.assertEqual(hget_calls(r) - b_r, 200)
        self.assertEqual(rr, 200)

    def test_f_pipeline_order_replica_read(self):
        """Pipelined HGET k (to a replica, hung by CLIENT PAUSE) then HSET k: the HSET is not
        sent before the HGET is answered; the replica SIGKILLed, the HGET is answered by the
        master with the value before the HSET."""
        m = self.masters[1]
        r = self.cl.replicas_of(m)[0]
        k = self.keys[m.id][0]
        with RawConn(self.px.port, 15.0) as c:
            c.call("HSET", k, "f", "v1")
            self.wait_replica_reads(c, r, k)
            call(r.port, "CLIENT", "PAUSE", 10000, "ALL")
            c.send(encode_command("HGET", k, "f") + encode_command("HSET", k, "f", "v2"))
            # Bounded: the HSET must not reach the master while the HGET is out on the replica.
            seen = []
            for _ in range(20):
                seen.append(call(m.port, "HGET", k, "f"))
            r.kill()
            replies = c.read_replies(2)
        print(f"\nHGET+HSET pipelined, replica paused then killed: master saw {set(seen)}, "
              f"replies {replies}")
        self.assertEqual(set(seen), {b"v1"})
        self.assertEqual(replies, [b"v1", 0])

    def test_g_failover_no_stale_reads(self):
        """One CLUSTER FAILOVER under a read-your-writes load (HSET then HGET, every 4th
        pipelined on one connection, else read on another), through a respite of 2 loops: no
        read returns an older value. Only replica reads' connections send READONLY, so the
        demoted master answers -MOVED instead of its own data."""
        m = self.masters[2]
        r = self.cl.replicas_of(m)[0]
        px = self.cl.start_respite(["--read-from", "replica", "--threads", "2"])
        self.addCleanup(px.close)
        self.cl.wait_respite_ready(px.port)
        keys = [f"crep:fo:{i}" for i in range(300)]
        stop = threading.Event()
        stale, errors, rounds = [], [], [0]
        lock = threading.Lock()

        def run(idx):
            n = idx * 10_000_000
            try:
                with RawConn(px.port, 10.0) as w:
                    rds = [RawConn(px.port, 10.0) for _ in range(3)]
                    while not stop.is_set():
                        for k in keys[idx::8]:
                            n += 1
                            if n % 4 == 0:
                                w.send(encode_command("HSET", k, "f", str(n))
                                       + encode_command("HGET", k, "f"))
                                a, got = w.read_replies(2)
                            else:
                                a = w.call("HSET", k, "f", str(n))
                                got = rds[n % 3].call("HGET", k, "f")
                            with lock:
                                rounds[0] += 1
                                if isinstance(a, harness.RespError) or isinstance(got, harness.RespError):
                                    errors.append((k, a, got))
                                elif got is None or int(got) < n:
                                    stale.append((k, n, got))
                    for c in rds:
                        c.close()
            except Exception as e:  # noqa: BLE001 (reported below)
                with lock:
                    errors.append(repr(e))

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(8)]
        for t in threads:
            t.start()
        # Bounded: until replicas answer reads (the monitors saw them apply the load's writes).
        deadline = time.monotonic() + 10
        while int(proxy_info(px.port)["replica_reads"]) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        rr0 = int(proxy_info(px.port)["replica_reads"])
        self.assertEqual(call(r.port, "CLUSTER", "FAILOVER"), "OK")
        deadline = time.monotonic() + 15
        while b"master" not in call(r.port, "ROLE")[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2)  # the load runs on across the map change (the watcher's next read)
        stop.set()
        for t in threads:
            t.join(20)
        rr = int(proxy_info(px.port)["replica_reads"]) - rr0
        print(f"\nfailover under load: {rounds[0]} rounds, {len(stale)} stale, {len(errors)} "
              f"errors, replica_reads since the failover +{rr}; e.g. {stale[:3]} {errors[:3]}")
        self.assertGreater(rr0, 0)
        self.assertEqual(stale, [])
    def test_h_migrating_slot(self):
        """A slot migrated as redis-cli reshard does it (SETSLOT IMPORTING/MIGRATING, MIGRATE,
        SETSLOT NODE) under reads through respite: once respite saw the markers (a read of the
        slot reaches the master), the migrated key, and a key written after ASK, always read
        right, also after the migration ends and the map gives the slot to the new master."""
        a = next(m for m in self.cl.masters() if any(x.alive() for x in self.cl.replicas_of(m)))
        ra = next(x for x in self.cl.replicas_of(a) if x.alive())
        b = next(m for m in self.cl.masters() if m is not a)
        owners = self.cl.slot_owners()
        ka = next(f"crep:mig:{i}" for i in range(100000) if owners[key_slot(f"crep:mig:{i}")] == a.id)
        s = key_slot(ka)
        k2 = next(f"crep:mig2:{i}" for i in range(1000000) if key_slot(f"crep:mig2:{i}") == s)
        wrong = []
        with RawConn(self.px.port, 10.0) as c:
            c.call("HSET", ka, "f", "v1")
            deadline = time.monotonic() + 10
            before = hget_calls(ra)
            while hget_calls(ra) == before and time.monotonic() < deadline:
                c.call("HGET", ka, "f")
            self.assertGreater(hget_calls(ra), before, "the replica took no read")
            self.assertEqual(call(b.port, "CLUSTER", "SETSLOT", s, "IMPORTING", a.id), "OK")
            self.assertEqual(call(a.port, "CLUSTER", "SETSLOT", s, "MIGRATING", b.id), "OK")
            # Bounded: respite reads the markers within a watcher period (1 s); until then a
            # replica may answer. Reads of the slot then reach the master.
            deadline = time.monotonic() + 5
            before = hget_calls(a)
            while hget_calls(a) == before and time.monotonic() < deadline:
                c.call("HGET", ka, "f")
            self.assertGreater(hget_calls(a), before, "reads of a migrating slot stay on replicas")
            self.assertEqual(call(a.port, "MIGRATE", "127.0.0.1", b.port, "", 0, 5000, "KEYS", ka), "OK")
            for _ in range(50):
                got = c.call("HGET", ka, "f")
                if got != b"v1":
                    wrong.append(("migrated", got))
            c.call("HSET", k2, "f", "new")  # ASK: written on b
            for _ in range(50):
                got = c.call("HGET", k2, "f")
                if got != b"new":
                    wrong.append(("after ASK", got))
            for m in self.cl.masters():
                call(m.port, "CLUSTER", "SETSLOT", s, "NODE", b.id)
            # Bounded: reads right across the watcher's next maps (2.5 s), or until b's replica
            # (when it has a live one) answers them.
            rb = [x for x in self.cl.replicas_of(b) if x.alive()]
            before = sum(hget_calls(x) for x in rb)
            deadline = time.monotonic() + 2.5
            n = 0
            while time.monotonic() < deadline:
                for k, v in ((ka, b"v1"), (k2, b"new")):
                    got = c.call("HGET", k, "f")
                    n += 1
                    if got != v:
                        wrong.append(("migrated to b", k, got))
                if rb and sum(hget_calls(x) for x in rb) > before:
                    break
        print(f"\nslot {s} migrated {a.port} -> {b.port}: {100 + n} HGETs, wrong {wrong[:5]}")
        self.assertEqual(wrong, [])

    def test_i_hung_replica_does_not_hold_the_client(self):
        px = self.cl.start_respite(["--read-from", "replica", "--upstream-timeout-ms", "1000"])
        self.addCleanup(px.close)
        self.cl.wait_respite_ready(px.port)
        owners = self.cl.slot_owners()
        pick = [(m, r) for m in self.cl.masters() for r in self.cl.replicas_of(m) if r.alive()]
        self.assertTrue(pick, "a master with a live replica")
        m, r = pick[0]
        k = next(f"hung:{i}" for i in range(100000) if owners[key_slot(f"hung:{i}")] == m.id)
        with RawConn(px.port, 10.0) as c:
            c.call("HSET", k, "f", "v1")
            self.wait_replica_reads(c, r, k)
            os.kill(r.proc.pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                c.send(encode_command("HGET", k, "f") + encode_command("HSET", k, "f", "v2") +
                       encode_command("PING"))
                replies = c.read_replies(3)  # 10 s: the replica stays stopped meanwhile
                took = time.monotonic() - t0
            finally:
                os.kill(r.proc.pid, signal.SIGCONT)
        print(f"\nreplica stopped: {replies} in {took:.1f} s")
        self.assertTrue(str(replies[0]).startswith("ERR upstream") or replies[0] == b"v1", replies)
        self.assertEqual(replies[1:], [0, "PONG"])
        self.assertEqual(call(m.port, "HGET", k, "f"), b"v2")


if __name__ == "__main__":
    unittest.main(verbosity=2)
