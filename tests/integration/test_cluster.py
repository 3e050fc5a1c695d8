"""Redis Cluster behind respite (--cluster, the upstreams its seed nodes): real redis-server 7
clusters from cluster_harness.py, respite started by harness.Respite.

ClusterBasics (3 masters): 5,000 SETs spread over the masters; MGETs of 50 keys spanning slots
read back right, cold then from the cache (PROXY INFO cache_hits); MSET/MGET/DEL/EXISTS/UNLINK/
TOUCH across slots answered byte for byte as one standalone redis-server answers the same
commands (the control); SUNION across slots -> CROSSSLOT; SELECT 1 -> error; hash tags;
CLUSTER SLOTS/SHARDS/NODES/INFO/MYID: a one-node cluster at respite's address.
ClusterReshard: 500 slots moved back and forth with redis-cli --cluster reshard while 8 threads
write and read through respite for ~8 s: no error, no stale read, every write on the cluster.
ClusterFailover (1 replica per master, node timeout 1000 ms): a master SIGKILLed under load;
writes to its slots resume within 5 s of the replica's promotion; no acknowledged write lost.
ClusterAwareClients: redis-py RedisCluster, redis-cli -c and ioredis Cluster (skipped when npm
cannot install ioredis) see one node, respite, and keep every command on its port.

RESPITE_DIRECT=1: the load, resharding and failover tests run with redis-py's cluster client
against the cluster itself (the control for the harness and the stale-read logic); tests about
respite's own answers skip themselves. Every test prints what it measured."""

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import harness
from harness import HOST, RawConn, RespError, encode_command, exchange, proxy_info, respite_only
import cluster_harness as ch
from cluster_harness import key_slot, keys_in_slots

DIRECT = harness.DIRECT
# redis-py's cluster client logs each refused connection with a traceback (RESPITE_DIRECT runs)
logging.getLogger("redis").setLevel(logging.CRITICAL)


def say(msg: str) -> None:
    print(f"    [measured] {msg}", flush=True)


class ClusterCase(unittest.TestCase):
    """A cluster and respite in front of it for the class (stopped by class cleanups)."""

    masters = 3
    replicas = 0
    node_timeout_ms = 2000
    respite_args: list[str] = []

    @classmethod
    def setUpClass(cls):
        cls.cl = ch.RedisCluster(cls.masters, cls.replicas, cls.node_timeout_ms).start()
        cls.addClassCleanup(cls.cl.close)
        cls.px = cls.cl.start_respite(cls.respite_args)
        cls.addClassCleanup(cls.px.close)
        cls.port = cls.px.port
        if not DIRECT:
            cls.cl.wait_respite_ready(cls.port)

    def setUp(self):
        self.px.assert_alive()

    def tearDown(self):
        self.px.assert_alive()

    def client(self, **kw):
        """A plain client of respite; in RESPITE_DIRECT mode redis-py's cluster client of the
        cluster itself."""
        import redis
        kw.setdefault("socket_timeout", 10)
        if DIRECT:
            return ch.cluster_client(self.cl.live_nodes()[0].port, **kw)
        return redis.Redis(host=HOST, port=self.port, **kw)

    def mget(self, c, keys):
        return c.mget_nonatomic(keys) if DIRECT else c.mget(keys)

    def raw_port(self, key=None) -> int:
        """Where a raw command about `key` goes: respite, or in DIRECT mode the key's node."""
        if not DIRECT:
            return self.port
        return self.cl.owner_of_key(key).port if key is not None else self.cl.live_nodes()[0].port

    def masters_of(self, keys) -> set:
        owners = self.cl.slot_owners()
        return {owners[key_slot(k)] for k in keys}


class ClusterBasics(ClusterCase):

    def test_5000_sets_then_mgets_cold_and_cached(self):
        n = 5000
        keys = [f"basic:{i}" for i in range(n)]
        c = self.client()
        t0 = time.monotonic()
        for i in range(0, n, 500):
            p = c.pipeline(transaction=False)
            for k in keys[i:i + 500]:
                p.set(k, f"v-{k}")
            self.assertTrue(all(r is True for r in p.execute()))
        t_set = time.monotonic() - t0
        # each key is on the master serving its slot, and every master got a share
        per_master = {n_.addr: int(n_.client().dbsize()) for n_ in self.cl.masters()}
        self.assertGreaterEqual(sum(per_master.values()), n, per_master)
        self.assertTrue(all(v > n // 5 for v in per_master.values()), per_master)
        direct = self.cl.read_direct(keys)
        self.assertEqual(direct, [f"v-{k}".encode() for k in keys],
                         "a key is not on the master serving its slot")
        batches = [keys[i:i + 50] for i in range(0, n, 50)]
        self.assertTrue(all(len(self.masters_of(b)) > 1 for b in batches))
        hits = []
        times = []
        for _round in range(2):
            before = proxy_info(self.port) if not DIRECT else {}
            t0 = time.monotonic()
            bad = 0
            for b in batches:
                got = self.mget(c, b)
                bad += sum(1 for k, v in zip(b, got) if v != f"v-{k}".encode())
            times.append(time.monotonic() - t0)
            self.assertEqual(bad, 0, f"round {_round}: {bad} wrong values from MGET")
            if not DIRECT:
                after = proxy_info(self.port)
                hits.append(int(after.get("cache_hits", 0)) - int(before.get("cache_hits", 0)))
        c.close()
        say(f"5000 SETs (pipelined by 500) {t_set:.2f}s; per master {per_master}; "
            f"{len(batches)} MGETs of 50 keys: cold {times[0]:.2f}s, cached {times[1]:.2f}s; "
            f"cache_hits cold {hits[0] if hits else '-'}, cached {hits[1] if hits else '-'}")
        if not DIRECT:
            self.assertGreaterEqual(hits[1], n, "the second round of MGETs should be cache hits "
                                                "(PROXY INFO cache_hits counts each key)")

    @respite_only
    def test_multikey_across_slots_like_one_redis(self):
        """The same commands on respite (keys on three masters) and on one standalone
        redis-server (the control): the same bytes back."""
        pre = f"mk-{os.getpid()}-"
        keys = [f"{pre}k{i}" for i in range(10)]
        self.assertEqual(len(self.masters_of(keys)), 3, "the keys should span the 3 masters")
        miss = f"{pre}missing"
        lst = f"{pre}list"
        kv = []
        for i, k in enumerate(keys):
            kv += [k, f"v{i}"]
        cmds = [
            ("MSET", *kv),
            ("MGET", *keys, miss),
            ("EXISTS", keys[0], keys[1], miss, keys[0]),
            ("TOUCH", keys[0], keys[1], miss),
            ("DEL", keys[0], keys[1], miss, keys[0]),
            ("EXISTS", *keys),
            ("UNLINK", keys[2], keys[3], miss),
            ("MGET", *keys),
            ("MSET", keys[4], "first", keys[5], "x", keys[4], "second"),
            ("GET", keys[4]),
            ("RPUSH", lst, "a"),
            ("MGET", keys[5], lst, keys[6]),
            ("EXISTS", lst, keys[5], keys[0]),
            ("MSET", keys[1]),
            ("DEL",),
            ("MGET",),
            ("DEL", *keys, lst),
            ("EXISTS", *keys, lst),
        ]
        expected = ["OK", [b"v0", b"v1", b"v2", b"v3", b"v4", b"v5", b"v6", b"v7", b"v8", b"v9",
                           None], 3, 2, 2, 8, 2, [None, None, None, None, b"v4", b"v5", b"v6",
                                                   b"v7", b"v8", b"v9"],
                    "OK", b"second", 1, [b"x", None, b"v6"], 2, None, None, None, 7, 0]
        data = b"".join(encode_command(*cmd) for cmd in cmds)
        ctl = harness.control_redis()
        ref, _ = exchange(ctl.port, data, len(cmds))
        parsed = harness.split_replies(ref)[0]
        vals = [harness.parse_reply(r)[0] for r in parsed]
        for i, (v, e) in enumerate(zip(vals, expected)):
            if e is None:
                self.assertIsInstance(v, RespError, f"control: {cmds[i][:2]}")
            else:
                self.assertEqual(v, e, f"control answered {cmds[i][:2]} differently (test bug)")
        got, closed = exchange(self.port, data, len(cmds))
        self.assertFalse(closed)
        got_r = harness.split_replies(got)[0]
        for i, (a, b) in enumerate(zip(parsed, got_r)):
            self.assertEqual(b, a, f"reply {i} to {cmds[i][:3]} differs from redis-server")
        self.assertEqual(got, ref)
        say(f"{len(cmds)} multi-key commands over 3 masters: same bytes as one redis-server")

    def test_crossslot_and_select(self):
        a, b = "cross-a", "cross-b"
        self.assertNotEqual(key_slot(a), key_slot(b))
        replies = {}
        for cmd in (("SUNION", a, b), ("SINTERSTORE", a, b), ("RENAME", a, b),
                    ("SMOVE", a, b, "m")):
            with RawConn(self.raw_port(a)) as c:
                r = c.call(*cmd)
            replies[cmd[0]] = r
            self.assertIsInstance(r, RespError, cmd)
            self.assertTrue(r.startswith("CROSSSLOT"), f"{cmd}: {r}")
        with RawConn(self.raw_port()) as c:
            sel = c.call("SELECT", "1")
            self.assertIsInstance(sel, RespError, sel)
            self.assertEqual(c.call("PING"), "PONG")
        say(f"CROSSSLOT answers: {sorted(replies)}; SELECT 1 -> {sel!r}")

    def test_hash_tags_same_slot(self):
        a, b = "{t}a", "{t}b"
        self.assertEqual(key_slot(a), key_slot(b))
        c = self.client()
        c.delete(a, b)
        c.sadd(a, "x", "y")
        c.sadd(b, "y", "z")
        self.assertEqual(c.sunion(a, b), {b"x", b"y", b"z"})
        self.assertEqual(c.sinterstore("{t}c", [a, b]), 1)
        self.assertEqual(c.smembers("{t}c"), {b"y"})
        self.assertEqual(c.rename("{t}c", "{t}d"), True)
        c.close()
        with self.cl.owner_of_key(a).client() as n:   # on the node serving the tag's slot
            self.assertEqual(n.smembers("{t}d"), {b"y"})
        say(f"hash tag {{t}}: slot {key_slot(a)} on {self.cl.owner_of_key(a).addr}; "
            f"SUNION/SINTERSTORE/RENAME ok")

    @respite_only
    def test_cluster_commands_one_node(self):
        with RawConn(self.port) as c:
            slots = c.call("CLUSTER", "SLOTS")
            myid = c.call("CLUSTER", "MYID")
            info = harness.parse_info(c.call("CLUSTER", "INFO"))
            nodes = c.call("CLUSTER", "NODES")
            shards = c.call("CLUSTER", "SHARDS")
        self.assertEqual(len(slots), 1, slots)
        lo, hi, master = slots[0][0], slots[0][1], slots[0][2]
        self.assertEqual((lo, hi), (0, 16383))
        self.assertEqual((master[0], int(master[1])), (HOST.encode(), self.port), master)
        myid = myid.decode() if isinstance(myid, bytes) else myid
        self.assertRegex(myid, r"^[0-9a-f]{40}$")
        self.assertEqual(info.get("cluster_state"), "ok", info)
        self.assertEqual(info.get("cluster_slots_assigned"), "16384", info)
        self.assertEqual(info.get("cluster_known_nodes"), "1", info)
        lines = [ln for ln in (nodes.decode() if isinstance(nodes, bytes) else nodes).splitlines()
                 if ln.strip()]
        self.assertEqual(len(lines), 1, lines)
        f = lines[0].split()
        self.assertEqual(f[0], myid)
        self.assertEqual(f[1].split("@")[0], f"{HOST}:{self.port}")
        self.assertIn("myself", f[2])
        self.assertIn("master", f[2])
        self.assertEqual(f[8:], ["0-16383"])
        self.assertEqual(len(shards), 1, shards)
        say(f"CLUSTER SLOTS/NODES/SHARDS/INFO/MYID: one node {myid[:8]} at {HOST}:{self.port}")


class ClusterReshard(ClusterCase):
    LOAD_S = 8.0
    THREADS = 8
    NSLOTS = 500

    def test_reshard_under_load(self):
        src, dst = self.cl.master_ids()[:2]
        # the slots redis-cli moves first from src: its lowest NSLOTS (it takes them in order);
        # moving them back from dst takes the same ones (also dst's lowest)
        moving = sorted(s for s, o in self.cl.slot_owners().items() if o == src)[:self.NSLOTS]
        # keys in the moving slots, so that migrations (ASK, MOVED) meet the load, and fillers
        # there too, so each slot's MIGRATE takes a while
        hot = keys_in_slots(moving, self.THREADS * 20, "rs-hot-")
        cold = [f"rs-cold-{i}" for i in range(self.THREADS * 10)]
        keysets = [hot[i * 20:(i + 1) * 20] + cold[i * 10:(i + 1) * 10]
                   for i in range(self.THREADS)]
        fill = keys_in_slots(moving, 3000, "rs-fill-")
        self.cl.write_direct({k: "f" * 100 for k in fill})
        load = ch.Load(lambda: self.client(socket_timeout=5), keysets, "reshard load").start()
        self.addCleanup(load.stop)
        rounds = []
        try:
            deadline = load.t0 + self.LOAD_S
            harness.wait_until(lambda: time.monotonic() >= load.t0 + 1.0, 5, "1 s of load")
            a, b = src, dst
            while time.monotonic() < deadline - 1.0 or not rounds:
                rs = self.cl.reshard(a, b, self.NSLOTS)
                rc = rs.wait(timeout=120)
                self.assertEqual(rc, 0, f"reshard {a[:8]}->{b[:8]} failed:\n{rs.output()}")
                rounds.append(rs.seconds)
                a, b = b, a
            harness.wait_until(lambda: time.monotonic() >= deadline, self.LOAD_S + 5, "load end")
        finally:
            load.stop()
        owners = self.cl.slot_owners()
        expect = src if len(rounds) % 2 == 0 else dst
        self.assertTrue(all(owners[s] == expect for s in moving), "slots not where moved")
        lost = load.lost(self.cl.read_direct)
        say(f"{len(rounds)} reshards of {self.NSLOTS} slots ({', '.join(f'{s:.1f}s' for s in rounds)}) "
            f"under load; {load.report()}; acknowledged writes missing on the cluster: {len(lost)}")
        self.assertGreater(load.writes, 100, load.report())
        self.assertEqual(load.errors, 0, load.report())
        self.assertEqual(load.stale, 0, load.report())
        self.assertEqual(lost, [], "acknowledged writes not on the cluster")


class ClusterFailover(ClusterCase):
    replicas = 1
    node_timeout_ms = 1000
    THREADS = 6
    RESUME_S = 5.0

    def test_master_killed_under_load(self):
        victim = self.cl.masters()[0]
        vslots = sorted(s for s, o in self.cl.slot_owners().items() if o == victim.id)
        vkeys = keys_in_slots(vslots, self.THREADS * 10, "fo-v-")
        okeys = keys_in_slots([s for s in range(ch.SLOTS) if s not in set(vslots)],
                              self.THREADS * 10, "fo-o-")
        keysets = [vkeys[i * 10:(i + 1) * 10] + okeys[i * 10:(i + 1) * 10]
                   for i in range(self.THREADS)]
        load = ch.Load(lambda: self.client(socket_timeout=3), keysets, "failover load").start()
        self.addCleanup(load.stop)
        try:
            harness.wait_until(lambda: time.monotonic() >= load.t0 + 1.5, 5, "load running")
            ev = self.cl.kill_master(0)
            t_prom = ev["t_promoted"]
            vset = set(vkeys)
            harness.wait_until(lambda: time.monotonic() >= t_prom + self.RESUME_S + 1.0, 30,
                               "the resume window")
        finally:
            load.stop()
        first = load.first_ack_after(vset, ev["t_dead"])
        resume = (first - t_prom) if first is not None else None
        outage = (first - ev["t_dead"]) if first is not None else None
        self.cl.wait_ready(require_replicas=False)
        lost_direct = load.lost(self.cl.read_direct)
        c = self.client()
        lost_via = load.lost(lambda ks: self.mget(c, ks))
        c.close()
        say(f"killed {ev['killed'].addr}; replica {ev['promoted'].addr} promoted "
            f"{t_prom - ev['t_dead']:.2f}s after the kill (cluster ok after "
            f"{ev['t_ok'] - ev['t_dead']:.2f}s); first write to its slots acknowledged "
            f"{'never' if outage is None else f'{outage:.2f}s after the kill, {resume:+.2f}s after the promotion'}; "
            f"{load.report()}; acknowledged writes lost: {len(lost_direct)} on the cluster, "
            f"{len(lost_via)} read through the client")
        self.assertIsNotNone(resume, "no write to the dead master's slots succeeded afterwards")
        self.assertLessEqual(resume, self.RESUME_S, "writes did not resume in time")
        self.assertEqual(lost_direct, [], "acknowledged writes lost")
        self.assertEqual(lost_via, [], "acknowledged writes not readable through the client")
        self.assertEqual(load.stale, 0, load.report())


def _npm_ioredis() -> tuple[Path | None, str]:
    """A directory with node_modules/ioredis (installed once from the npm registry into
    ${XDG_CACHE_HOME:-~/.cache}/respite/ioredis, bounded by 180 s), or (None, why not)."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        return None, "node/npm not installed"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "respite"
    dest = base / "ioredis"
    if (dest / "node_modules" / "ioredis" / "package.json").is_file():
        return dest, ""
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ioredis-", dir=base))
    try:
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent",
                            "--prefix", str(tmp), "ioredis@5"], capture_output=True, text=True,
                           timeout=180, stdin=subprocess.DEVNULL)
        if r.returncode != 0 or not (tmp / "node_modules" / "ioredis").is_dir():
            return None, f"npm install ioredis failed: {(r.stderr or r.stdout)[-300:]}"
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        return dest, ""
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"npm install ioredis failed: {e}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


IOREDIS_SCRIPT = r"""
const Redis = require('ioredis');
const port = parseInt(process.argv[2]);
const c = new Redis.Cluster([{host: '127.0.0.1', port}], {enableReadyCheck: true,
  redisOptions: {connectTimeout: 5000}, slotsRefreshTimeout: 5000});
const redirects = [];
c.on('node error', (e) => redirects.push(String(e)));
c.on('+node', (n) => redirects.push('+node ' + n.options.host + ':' + n.options.port));
(async () => {
  const keys = [];
  for (let i = 0; i < 30; i++) keys.push('io-' + i);
  for (const k of keys) await c.set(k, 'v-' + k);
  const got = [];
  for (const k of keys) got.push(await c.get(k));
  let m;
  try { m = await c.mget(keys); } catch (e) { m = String(e); }  // a cluster: CROSSSLOT
  const nodes = c.nodes('all').map(n => n.options.host + ':' + n.options.port);
  console.log(JSON.stringify({got, m, nodes, events: redirects}));
  c.disconnect();
})().catch((e) => { console.log(JSON.stringify({error: String(e)})); process.exit(1); });
setTimeout(() => { console.log(JSON.stringify({error: 'timeout'})); process.exit(2); }, 20000).unref();
"""


class ClusterAwareClients(ClusterCase):

    @respite_only
    def test_redis_py_cluster_client(self):
        rc = ch.cluster_client(self.port)
        try:
            nodes = sorted(n.name for n in rc.get_nodes())
            self.assertEqual(nodes, [f"{HOST}:{self.port}"])
            keys = [f"py-{i}" for i in range(100)]
            self.assertGreater(len(self.masters_of(keys)), 1)
            for k in keys:
                self.assertTrue(rc.set(k, f"v-{k}"))
            self.assertEqual([rc.get(k) for k in keys], [f"v-{k}".encode() for k in keys])
            self.assertEqual(rc.mget_nonatomic(keys), [f"v-{k}".encode() for k in keys])
            self.assertEqual(rc.delete(*keys[:10]), 10)
            self.assertEqual(rc.exists(*keys[:20]), 10)
            nodes_after = sorted(n.name for n in rc.get_nodes())
        finally:
            rc.close()
        self.assertEqual(nodes_after, [f"{HOST}:{self.port}"])
        self.assertEqual(self.cl.read_direct(keys[10:]),
                         [f"v-{k}".encode() for k in keys[10:]])
        say(f"redis-py RedisCluster via respite: nodes {nodes_after}; 100 SET/GET, "
            f"mget_nonatomic, DEL/EXISTS across slots ok")

    @staticmethod
    def _redis_cli_c(port: int, keys: list[str], timeout: float = 15.0) -> str:
        """SET and GET of each key in an interactive `redis-cli -c` (on a pseudo-terminal with
        TERM=dumb: redis-cli prints "-> Redirected to slot ..." and the node in its prompt only
        when interactive); its whole output, bounded by `timeout`."""
        import pty
        import select
        master, slave = pty.openpty()
        p = subprocess.Popen([harness.REDIS_CLI, "-c", "-h", HOST, "-p", str(port)],
                             stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                             env=dict(os.environ, TERM="dumb"), preexec_fn=harness._child_setup)
        os.close(slave)
        out = b""
        try:
            lines = "".join(f"SET {k} v-{k}\nGET {k}\n" for k in keys) + "QUIT\n"
            os.write(master, lines.encode())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: redis-cli exited and the terminal closed
                        break
                    if not data:
                        break
                    out += data
                elif p.poll() is not None:
                    break
        finally:
            harness._stop_popen(p, timeout=2.0)
            os.close(master)
        return out.decode(errors="replace")

    @respite_only
    def test_redis_cli_c(self):
        keys = ["cli-a", "cli-b", "cli-c", "cli-d", "cli-e", "cli-f"]
        self.assertEqual(len(self.masters_of(keys)), 3)
        out = self._redis_cli_c(self.port, keys)
        self.assertNotIn("Redirected", out, out)
        prompts = set(re.findall(r"127\.0\.0\.1:(\d+)>", out))
        self.assertEqual(prompts, {str(self.port)}, out)
        self.assertEqual(len(re.findall(r"\bOK\b", out)), len(keys), out)
        for k in keys:
            self.assertIn(f'"v-{k}"', out)
        self.assertEqual(self.cl.read_direct(keys), [f"v-{k}".encode() for k in keys],
                         "the values are not on the cluster")
        # the check can fail: the cluster itself redirects redis-cli -c
        control = self._redis_cli_c(self.cl.nodes[0].port, keys)
        self.assertIn("Redirected", control, "the control should have been redirected")
        say(f"redis-cli -c via respite: {len(keys)} keys on 3 masters, no redirect, every prompt "
            f"at respite's port; the same against a node: {control.count('Redirected')} "
            f"redirects")

    @respite_only
    def test_ioredis_cluster(self):
        where, why = _npm_ioredis()
        if where is None:
            self.skipTest(why)
        script = where / "probe.js"
        script.write_text(IOREDIS_SCRIPT)
        r = subprocess.run([shutil.which("node"), str(script), str(self.port)], cwd=where,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        self.assertTrue(lines, f"no output from node: {r.stdout[-500:]} {r.stderr[-500:]}")
        res = json.loads(lines[-1])
        self.assertNotIn("error", res, res)
        keys = [f"io-{i}" for i in range(30)]
        self.assertEqual(res["got"], [f"v-{k}" for k in keys])
        self.assertEqual(res["m"], [f"v-{k}" for k in keys])
        self.assertEqual(sorted(set(res["nodes"])), [f"{HOST}:{self.port}"], res)
        say(f"ioredis Cluster via respite: nodes {res['nodes']}, 30 SET/GET + MGET ok, "
            f"events {res['events']}")


if __name__ == "__main__":
    harness.run_tests()
