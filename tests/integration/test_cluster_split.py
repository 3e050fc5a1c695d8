"""respite --cluster: multi-key commands whose keys span slots (MGET, MSET, DEL, UNLINK, EXISTS,
TOUCH) split by slot and merged, and keyless commands sent to every master (DBSIZE, KEYS, SCAN,
FLUSHALL, FLUSHDB, RANDOMKEY), each compared with a standalone redis-server given the same
commands (the control). A real 3-master cluster on free loopback ports; a slot migrated by hand
for the ASK, TRYAGAIN and MOVED paths."""

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

import harness
from harness import HOST, Proc, RawConn, RespError, Respite, encode_command, free_port, parse_info
from cluster_harness import key_slot

SLOTS = 16384
READY_S = 60.0


def slot_of(key: str) -> int:
    return key_slot(key)


def call(port: int, *args):
    with RawConn(port, 10.0) as c:
        return c.call(*args)


class Cluster:
    """Three masters, no replicas; stopped by pid."""

    def __init__(self, n: int = 3):
        self.tmp = Path(tempfile.mkdtemp(prefix="respite-split-"))
        self.procs: list[Proc] = []
        self.ports: list[int] = []
        self.ids: list[str] = []
        self.n = n

    def start(self):
        for _ in range(self.n):
            for _attempt in range(harness.START_ATTEMPTS):
                port, bus = free_port(), free_port()
                if port == bus:
                    continue
                argv = [harness.REDIS_SERVER, "--port", str(port), "--bind", HOST,
                        "--cluster-enabled", "yes", "--cluster-port", str(bus),
                        "--cluster-config-file", str(self.tmp / f"nodes-{port}.conf"),
                        "--save", "", "--appendonly", "no", "--dir", str(self.tmp),
                        "--logfile", ""]
                p = Proc(argv, self.tmp / f"redis-{port}.log", cwd=str(self.tmp), name="node")
                if harness.wait_for_port(port, harness.START_TIMEOUT, p.popen, ping=True):
                    self.procs.append(p)
                    self.ports.append(port)
                    self.ids.append(call(port, "CLUSTER", "MYID").decode())
                    break
                p.stop(timeout=1.0)
            else:
                raise RuntimeError("cluster node did not start")
        r = subprocess.run([harness.REDIS_CLI, "--cluster", "create",
                            *[f"{HOST}:{p}" for p in self.ports], "--cluster-yes"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"cluster create failed: {r.stdout[-1500:]} {r.stderr[-500:]}")
        self.wait_ok()
        return self

    def wait_ok(self):
        deadline = time.monotonic() + READY_S
        why = ""
        while time.monotonic() < deadline:
            try:
                infos = [parse_info(call(p, "CLUSTER", "INFO")) for p in self.ports]
                if all(i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == str(SLOTS)
                       for i in infos):
                    # ...and every node agrees on the owner of a few slots.
                    if len({self.owner_by(p, 0) for p in self.ports}) == 1 and \
                            len({self.owner_by(p, SLOTS - 1) for p in self.ports}) == 1:
                        return
                why = str([i.get("cluster_state") for i in infos])
            except (OSError, TimeoutError) as e:
                why = repr(e)
            time.sleep(0.05)
        raise AssertionError(f"cluster not ok after {READY_S}s: {why}")

    def owner_by(self, port: int, slot: int) -> int:
        """The port of the node `port` says serves `slot`."""
        for s in call(port, "CLUSTER", "SLOTS"):
            if s[0] <= slot <= s[1]:
                return int(s[2][1])
        return -1

    def owner(self, slot: int) -> int:
        return self.owner_by(self.ports[0], slot)

    def id_of(self, port: int) -> str:
        return self.ids[self.ports.index(port)]

    def close(self):
        for p in self.procs:
            p.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


@unittest.skipIf(harness.DIRECT, "respite --cluster only")
class ClusterSplit(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        stack = contextlib.ExitStack()
        cls.addClassCleanup(stack.close)
        cls.cluster = Cluster().start()
        stack.callback(cls.cluster.close)
        cls.control = stack.enter_context(harness.RedisServer())
        args = ["--cluster"]
        for p in cls.cluster.ports:
            args += ["--upstream", f"{HOST}:{p}"]
        cls.proxy = stack.enter_context(Respite(None, args))
        cls.port = cls.proxy.port
        # The same cluster under renamed commands (each part goes out under the own name).
        cls.renamed = stack.enter_context(Respite(None, args + [
            "--rename-command", "mget", "getmany", "--rename-command", "exists", "present",
            "--rename-command", "scan", "walk", "--rename-command", "dbsize", "count"]))
        deadline = time.monotonic() + 20
        for port in (cls.port, cls.renamed.port):
            while True:
                try:
                    if call(port, "SET", "split:ready", "1") == "OK":
                        break
                except (OSError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError("respite does not serve the cluster")
                time.sleep(0.05)

    def setUp(self):
        self.proxy.assert_alive()
        self.px = self.proxy.client()
        self.ctl = self.control.client()
        self.px.flushall()
        self.ctl.flushall()

    def tearDown(self):
        self.px.close()
        self.ctl.close()
        self.proxy.assert_alive()

    def both(self, fn):
        """fn(client) on respite and on the control; both answers (exceptions as their text)."""
        out = []
        for c in (self.px, self.ctl):
            try:
                out.append(fn(c))
            except Exception as e:  # noqa: BLE001 -- an error reply is an answer too
                out.append(f"{type(e).__name__}: {e}")
        return out

    def same(self, fn, msg=""):
        got, want = self.both(fn)
        self.assertEqual(got, want, msg)
        return got

    def set_both(self, mapping):
        for c in (self.px, self.ctl):
            p = c.pipeline(transaction=False)
            for k, v in mapping.items():
                p.set(k, v)
            p.execute()

    def raw_same(self, data: bytes, n: int, hello3: bool = False) -> bytes:
        """The same bytes on respite and on the control: the same reply bytes."""
        out = []
        for port in (self.port, self.control.port):
            with RawConn(port, 10.0) as c:
                if hello3:
                    c.cmd("HELLO", "3")
                    c.read_raw_replies(1)
                c.send(data)
                out.append(b"".join(c.read_raw_replies(n)))
        self.assertEqual(out[0], out[1], f"bytes differ for {data[:100]!r}")
        return out[0]

    # ---------------------------------------------------------------- split commands

    def test_mget_200_keys_some_missing(self):
        keys = [f"mg:{i}" for i in range(200)]
        self.assertGreater(len({slot_of(k) for k in keys}), 100)
        self.set_both({k: f"v{i}" for i, k in enumerate(keys) if i % 3})
        got = self.same(lambda c: c.mget(keys))
        self.assertEqual(sum(v is None for v in got), 67)
        # Repeated keys and a hash-tagged pair in one slot among the others.
        ks = keys[:5] + keys[:5] + ["{t}a", "{t}b", "mg:missing"]
        self.same(lambda c: c.mget(ks))

    def test_mset_100_pairs(self):
        m = {f"ms:{i}": f"val-{i}" * (i % 7 + 1) for i in range(100)}
        self.assertEqual(self.same(lambda c: c.mset(m)), True)
        self.same(lambda c: c.mget(list(m)))
        # The same key twice: the last value wins, as in one Redis.
        self.same(lambda c: c.execute_command("MSET", "ms:1", "a", "ms:2", "b", "ms:1", "c"))
        self.same(lambda c: c.mget(["ms:1", "ms:2"]))
        # A key without a value: Redis Cluster answers CROSSSLOT before counting.
        got = self.both(lambda c: c.execute_command("MSET", "ms:1", "a", "ms:2"))[0]
        self.assertIn("CROSSSLOT", got)
        # MSETNX is never split.
        got = self.both(lambda c: c.msetnx({"ms:1": "x", "ms:2": "y"}))[0]
        self.assertIn("CROSSSLOT", got)

    def test_del_unlink_exists_touch(self):
        keys = [f"d:{i}" for i in range(40)]
        self.set_both({k: "1" for k in keys[:30]})
        probe = keys[:5] + keys[:5] + keys[35:] + ["d:none"]
        for cmd in ("EXISTS", "TOUCH"):
            self.assertEqual(self.same(lambda c: c.execute_command(cmd, *probe)), 10)
        self.assertEqual(self.same(lambda c: c.execute_command("DEL", *probe)), 5)
        self.assertEqual(self.same(lambda c: c.execute_command("UNLINK", *keys[3:20], "d:3")), 15)
        self.same(lambda c: c.execute_command("EXISTS", *keys))
        self.same(lambda c: c.mget(keys))

    def test_wrongtype_error_in_a_part(self):
        self.set_both({"e:1": "a", "e:2": "b"})
        for c in (self.px, self.ctl):
            c.rpush("e:list", "x")
        # MGET gives nil for a list; an error in one part (here none) would answer the whole.
        self.same(lambda c: c.mget(["e:1", "e:list", "e:2"]))

    # ---------------------------------------------------------------- fan-out commands

    def populate(self, n=300):
        m = {f"f:{i}": str(i) for i in range(n)}
        self.set_both(m)
        return m

    def test_dbsize_keys_scan(self):
        m = self.populate()
        self.assertEqual(self.same(lambda c: c.dbsize()), len(m))
        self.assertEqual(self.same(lambda c: sorted(c.keys("*"))), sorted(k.encode() for k in m))
        self.same(lambda c: sorted(c.keys("f:1*")))
        # SCAN through respite walks every master: every key at least once, then cursor 0.
        for kw in ({}, {"count": 7}, {"match": "f:2*"}, {"match": "f:*", "count": 1000}):
            seen = set()
            cursor, rounds = 0, 0
            while True:
                cursor, batch = self.px.scan(cursor, **kw)
                seen.update(batch)
                rounds += 1
                self.assertLess(rounds, 5000)
                if cursor == 0:
                    break
            want = set(self.ctl.scan_iter(**kw))
            self.assertEqual(seen, want, kw)
        # TYPE passes through.
        self.px.rpush("f:list", "x")
        self.ctl.rpush("f:list", "x")
        self.assertEqual(set(self.px.scan_iter(_type="list")), {b"f:list"})

    def test_renamed_commands_reach_the_nodes_under_their_own_names(self):
        keys = [f"ren:{i}" for i in range(20)]
        self.assertGreater(len({slot_of(k) for k in keys}), 1)
        self.set_both({k: k.upper() for k in keys})
        with RawConn(self.renamed.port, 10.0) as c:
            self.assertEqual(c.call("GETMANY", *keys), [k.upper().encode() for k in keys])
            self.assertEqual(c.call("PRESENT", *keys), len(keys))  # split by slot (MGET is cached)
            self.assertEqual(c.call("COUNT"), len(keys))
            seen, cursor = set(), b"0"
            while True:
                cursor, batch = c.call("WALK", cursor, "MATCH", "ren:*")
                seen.update(batch)
                if cursor == b"0":
                    break
            self.assertEqual(seen, {k.encode() for k in keys})
            self.assertTrue(c.call("MGET", "a", "b").startswith("ERR unknown command"))

    def test_scan_bad_cursor(self):
        self.assertIn("invalid cursor", self.both(lambda c: c.scan(1023))[0])
        self.same(lambda c: c.execute_command("SCAN", "abc"))
        self.same(lambda c: c.execute_command("SCAN"))

    def test_flushall_flushdb(self):
        self.populate(100)
        self.assertEqual(self.same(lambda c: c.flushall()), True)
        for p in self.cluster.ports:
            self.assertEqual(call(p, "DBSIZE"), 0)
        self.populate(50)
        self.assertEqual(self.same(lambda c: c.execute_command("FLUSHDB", "ASYNC")), True)
        for p in self.cluster.ports:
            self.assertEqual(call(p, "DBSIZE"), 0)
        self.assertEqual(self.same(lambda c: c.dbsize()), 0)
        self.same(lambda c: c.execute_command("FLUSHALL", "BOGUS"))

    def test_randomkey(self):
        self.assertIsNone(self.px.randomkey())
        m = self.populate(30)
        for _ in range(20):
            self.assertIn(self.px.randomkey().decode(), m)
        # One key on one master only: every master is asked until it is found.
        self.px.flushall()
        self.px.set("only", "1")
        for _ in range(10):
            self.assertEqual(self.px.randomkey(), b"only")

    # ---------------------------------------------------------------- protocol and order

    def test_resp3_mget_bytes(self):
        self.set_both({"r3:a": "1", "r3:c": "3"})
        self.raw_same(encode_command("MGET", "r3:a", "r3:b", "r3:c", "r3:a"), 1, hello3=True)
        self.raw_same(encode_command("MGET", "r3:a", "r3:b", "r3:c"), 1)

    def test_pipelined_mix_keeps_order(self):
        data = b""
        n = 0
        for i in range(30):
            data += encode_command("SET", f"p:{i}", f"v{i}")
            data += encode_command("MGET", *[f"p:{j}" for j in range(i + 2)])
            data += encode_command("GET", f"p:{i}")
            data += encode_command("DEL", f"p:{i}", f"p:{i + 50}")
            data += encode_command("EXISTS", *[f"p:{j}" for j in range(i + 1)])
            data += encode_command("DBSIZE")
            data += encode_command("MSET", f"p:{i}", "again", f"p:{i + 7}", "x")
            n += 7
        self.raw_same(data, n)
        self.raw_same(data, n, hello3=True)

    def test_concurrent_clients(self):
        """Several clients at once, each with its own keys: every reply is its own."""
        errors = []

        def worker(w):
            try:
                with self.proxy.client() as c:
                    for r in range(40):
                        m = {f"cc:{w}:{i}": f"{w}.{r}.{i}" for i in range(20)}
                        c.mset(m)
                        got = c.mget(list(m))
                        if got != [v.encode() for v in m.values()]:
                            errors.append((w, r, got[:3]))
            except Exception as e:  # noqa: BLE001
                errors.append((w, repr(e)))
        ts = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])

    def test_part_without_reply_gets_upstream_error(self):
        """A master that stops answering: the split request and the fan-out get respite's usual
        upstream error after --upstream-timeout-ms, and the same client goes on afterwards."""
        import os
        import signal
        args = ["--cluster", "--upstream-timeout-ms", "400"]
        for p in self.cluster.ports:
            args += ["--upstream", f"{HOST}:{p}"]
        keys = [f"to:{i}" for i in range(30)]
        self.set_both({k: "1" for k in keys})
        victim = self.cluster.owner(slot_of(keys[0]))
        proc = self.cluster.procs[self.cluster.ports.index(victim)]
        with Respite(None, args) as px, RawConn(px.port, 10.0) as c:
            # EXISTS, not MGET: an MGET here would fill the cache once the tracking links are up,
            # and the MGET below would then be answered without the stopped master.
            self.assertEqual(c.call("EXISTS", *keys), len(keys))
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                c.send(encode_command("MGET", *keys) + encode_command("DEL", *keys[:10]) +
                       encode_command("DBSIZE") + encode_command("PING"))
                got = c.read_replies(4, timeout=10.0)
                took = time.monotonic() - t0
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            for r in got[:3]:
                self.assertIsInstance(r, RespError, got)
                self.assertIn("upstream unavailable", r)
            self.assertIn("may have been applied", got[1])
            self.assertEqual(got[3], "PONG")
            self.assertLess(took, 8.0)
            deadline = time.monotonic() + 10
            while True:  # the node's connections come back (the DEL may have run: either value)
                r = c.call("MGET", *keys)
                if isinstance(r, list) and r[10:] == [b"1"] * 20 and set(r[:10]) <= {None, b"1"}:
                    break
                self.assertLess(time.monotonic(), deadline, r)
                time.sleep(0.1)

    # ---------------------------------------------------------------- slot migration

    def migrate_setup(self):
        """A slot with two keys ({mig}a, {mig}b) and 20 keys in other slots; the slot's owner
        and another master."""
        slot = slot_of("{mig}")
        src = self.cluster.owner(slot)
        dst = next(p for p in self.cluster.ports if p != src)
        others = [f"mo:{i}" for i in range(20)]
        m = {"{mig}a": "A", "{mig}b": "B", **{k: k.upper() for k in others}}
        self.set_both(m)
        return slot, src, dst, others, m

    @staticmethod
    def askings(port: int) -> int:
        """ASKING commands node `port` has run (INFO commandstats)."""
        info = parse_info(call(port, "INFO", "commandstats"))
        v = info.get("cmdstat_asking", "calls=0")
        return int(v.split("calls=")[1].split(",")[0])

    def open_slot(self, slot, src, dst):
        self.assertEqual(call(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING",
                              self.cluster.id_of(src)), "OK")
        self.assertEqual(call(src, "CLUSTER", "SETSLOT", slot, "MIGRATING",
                              self.cluster.id_of(dst)), "OK")

    def close_slot(self, slot, dst):
        for p in self.cluster.ports:
            self.assertEqual(call(p, "CLUSTER", "SETSLOT", slot, "NODE", self.cluster.id_of(dst)),
                             "OK")

    def test_migration_ask_tryagain_moved(self):
        slot, src, dst, others, m = self.migrate_setup()
        keys = ["{mig}a", "{mig}b"] + others
        want = [m[k].encode() for k in keys]
        try:
            self.open_slot(slot, src, dst)
            # Both keys still on the source: answered there.
            self.assertEqual(self.px.mget(keys), want)
            # One key moved: the source answers TRYAGAIN for a multi-key part (EXISTS), as Redis
            # Cluster would to any client; respite retries a few times (bounded), then the client
            # gets it.
            self.assertEqual(call(src, "MIGRATE", HOST, dst, "", 0, 5000, "KEYS", "{mig}a"), "OK")
            # MGET is the cache's: each key is filled on its own, the moved one through ASK.
            self.assertEqual(self.px.mget(keys), want)
            t0 = time.monotonic()
            with self.assertRaises(Exception) as cm:
                self.px.exists(*keys)
            err = cm.exception
            self.assertIn("TRYAGAIN", str(err))
            self.assertLess(time.monotonic() - t0, 5.0)
            # Both moved: the source says ASK, respite sends ASKING + the part to the target.
            self.assertEqual(call(src, "MIGRATE", HOST, dst, "", 0, 5000, "KEYS", "{mig}b"), "OK")
            before = self.askings(dst)
            self.assertEqual(self.px.mget(keys), want)
            self.assertGreater(self.askings(dst), before, "the part was not sent with ASKING")
            self.assertEqual(self.px.exists(*keys, "{mig}a"), len(keys) + 1)
            self.assertEqual(self.px.touch(*keys), len(keys))
        finally:
            self.close_slot(slot, dst)
        # The slot now belongs to the target; respite's table may still name the source: MOVED.
        self.assertEqual(self.px.mget(keys), want)
        self.assertEqual(self.px.execute_command("DEL", "{mig}a", *others[:3]), 4)
        self.assertEqual(self.px.mget(["{mig}a", "{mig}b"] + others[:3]),
                         [None, b"B", None, None, None])
        # And back to the source, keys and all, so later tests start from the created layout.
        self.open_slot(slot, dst, src)
        self.assertEqual(call(dst, "MIGRATE", HOST, src, "", 0, 5000, "KEYS", "{mig}b"), "OK")
        self.close_slot(slot, src)
        self.assertEqual(self.px.mget(["{mig}b", others[5]]), [b"B", others[5].upper().encode()])

    # ------------------------------------------------ regressions found by review

    def test_ask_fill_from_a_stopped_target(self):
        """A cache fill answered -ASK is read on the importing node; that node stopping makes
        the read time out: the reader gets an error and respite lives (the ASKING and GET
        replies once shared one sink, freed twice)."""
        import os
        import signal
        args = ["--cluster", "--upstream-timeout-ms", "400"]
        for p in self.cluster.ports:
            args += ["--upstream", f"{HOST}:{p}"]
        slot, src, dst, others, m = self.migrate_setup()
        proc = self.cluster.procs[self.cluster.ports.index(dst)]
        with Respite(None, args) as px, RawConn(px.port, 10.0) as c:
            try:
                self.open_slot(slot, src, dst)
                self.assertEqual(call(src, "MIGRATE", HOST, dst, "", 0, 5000, "KEYS", "{mig}a"), "OK")
                self.assertEqual(c.call("GET", "{mig}a"), b"A")  # the fill: ASK, then the target
                os.kill(proc.pid, signal.SIGSTOP)
                try:
                    r = c.call("GET", "{mig}a", timeout=5.0)
                    self.assertIsInstance(r, harness.RespError, r)
                finally:
                    os.kill(proc.pid, signal.SIGCONT)
                self.assertEqual(c.call("PING"), "PONG")
                px.assert_alive()
            finally:
                self.close_slot(slot, dst)
                self.open_slot(slot, dst, src)
                call(dst, "MIGRATE", HOST, src, "", 0, 5000, "KEYS", "{mig}a", "{mig}b")
                self.close_slot(slot, src)

    def test_watch_transactions_on_two_slots_in_turn(self):
        """WATCH/MULTI/EXEC on one slot, then on another: the second is not refused (the first
        transaction's slot was once kept)."""
        with RawConn(self.port, 10.0) as c:
            for tag in ("{wa}", "{wb}", "{wc}"):
                self.assertEqual(c.call("WATCH", tag + "x"), "OK")
                self.assertEqual(c.call("MULTI"), "OK")
                self.assertEqual(c.call("SET", tag + "x", "1"), "QUEUED")
                self.assertEqual(c.call("EXEC"), ["OK"])
            self.assertEqual(c.call("MULTI"), "OK")
            self.assertEqual(c.call("INCR", "{wa}x"), "QUEUED")
            self.assertEqual(c.call("EXEC"), [2])

    def test_transaction_starting_without_a_key(self):
        """MULTI; PING; SET k ...: the transaction goes to k's master (PING is held until then;
        it was pinned to any master once, and SET got MOVED inside the transaction)."""
        with RawConn(self.port, 10.0) as c:
            for key in (f"tk:{i}" for i in range(6)):  # keys on every master
                self.assertEqual(c.call("MULTI"), "OK")
                self.assertEqual(c.call("PING"), "QUEUED")
                self.assertEqual(c.call("SET", key, "v"), "QUEUED")
                self.assertEqual(c.call("GET", key), "QUEUED")
                self.assertEqual(c.call("EXEC"), ["PONG", "OK", b"v"])
            self.assertEqual(c.call("MULTI"), "OK")
            self.assertEqual(c.call("PING"), "QUEUED")
            self.assertEqual(c.call("EXEC"), ["PONG"])

    def test_empty_exec_in_resp3_is_an_array(self):
        with RawConn(self.port, 10.0) as c:
            c.send(b"HELLO 3\r\n")
            c.read_raw_replies(1)
            c.send(b"MULTI\r\nEXEC\r\n")
            self.assertEqual(c.read_raw_replies(2), [b"+OK\r\n", b"*0\r\n"])

    def test_tryagain_is_not_overtaken(self):
        """A multi-key write answered TRYAGAIN while the client's next write to the same slot is
        already on its way (both redirected by ASK): the first is not sent again after the
        second ran (it once was, and the older value won); the client gets TRYAGAIN for it."""
        slot = slot_of("foo")
        src = self.cluster.owner(slot)
        dst = next(p for p in self.cluster.ports if p != src)
        self.assertEqual(call(src, "SET", "foo", "x"), "OK")
        try:
            self.open_slot(slot, src, dst)
            self.assertEqual(call(src, "MIGRATE", HOST, dst, "", 0, 5000, "KEYS", "foo"), "OK")
            with RawConn(self.port, 10.0) as c:
                c.send(b"*5\r\n$4\r\nMSET\r\n$6\r\n{foo}a\r\n$5\r\nfirst\r\n$3\r\nfoo\r\n$1\r\ny\r\n"
                       b"*3\r\n$3\r\nSET\r\n$6\r\n{foo}a\r\n$6\r\nsecond\r\n")
                first, second = c.read_replies(2, timeout=5.0)
                self.assertIn("TRYAGAIN", str(first))  # never complete on either side
                self.assertEqual(second, "OK")
        finally:
            self.close_slot(slot, dst)
        self.assertEqual(self.px.get("{foo}a"), b"second")


if __name__ == "__main__":
    harness.run_tests()
