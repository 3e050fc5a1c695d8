"""A real Redis Cluster for respite's cluster tests (respite --cluster), on free loopback ports.

Standard library plus harness.py (redis-py is imported lazily, as harness.py does).

- RedisCluster(masters=3, replicas=0): redis-server 7 processes started with
  `--cluster-enabled yes --cluster-config-file <tmp>/nodes-P.conf --cluster-node-timeout <ms>`
  (and an explicit `--cluster-port`, a second free port: the default port + 10000 may be taken
  or above 65535), joined with `redis-cli --cluster create ... --cluster-replicas R
  --cluster-yes`, then a bounded poll until every node says cluster_state:ok and all nodes agree
  on the owner of all 16384 slots (and, with replicas, every replica is linked to its master).
- reshard(src_id, dst_id, nslots): `redis-cli --cluster reshard` as a background process
  (Reshard: wait() for it, ok, seconds) so a test loads respite meanwhile.
- kill_master(i): SIGKILL the i-th master by pid, then a bounded poll until one of its replicas
  is master of its slots and every live node says cluster_state:ok again; returns the moments.
- start_respite(): harness.Respite with `--cluster --upstream <seed> ...` (RESPITE_BIN,
  RESPITE_THREADS, log capture and the sanitizer check on stop all come from harness.py).
- stop()/close(): every node stopped by pid (also at exit, through harness.py's bookkeeping).

RESPITE_DIRECT=1: start_respite() starts nothing and returns a stand-in whose `direct` is true;
tests then drive the cluster itself with redis-py's cluster client (their control).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import harness
from harness import HOST, Proc, RawConn, RespError, free_port, parse_info, wait_for_port

SLOTS = 16384
READY_TIMEOUT = 60.0


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), Redis Cluster's key hash."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def key_slot(key) -> int:
    """The slot of a key (Redis's keyHashSlot: the hash tag between the first '{' and the next
    '}' when non-empty)."""
    k = key.encode() if isinstance(key, str) else bytes(key)
    s = k.find(b"{")
    if s >= 0:
        e = k.find(b"}", s + 1)
        if e > s + 1:
            k = k[s + 1:e]
    return crc16(k) % SLOTS


def keys_in_slots(slots, n: int, prefix: str) -> list[str]:
    """n keys `<prefix><i>` (no braces) whose slots are in `slots`, by counting up i (bounded)."""
    want = set(slots)
    out = []
    i = 0
    limit = 200 * n * max(1, SLOTS // max(1, len(want)))
    while len(out) < n:
        if i > limit:
            raise AssertionError(f"no {n} keys found in {len(want)} slots")
        k = f"{prefix}{i}"
        if key_slot(k) in want:
            out.append(k)
        i += 1
    return out


def redis_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([harness.REDIS_CLI, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def call(port: int, *args, timeout: float = 5.0):
    """One command on a fresh connection to a node; the parsed reply (RespError on -ERR)."""
    with RawConn(port, timeout) as c:
        return c.call(*args)


def _text(v) -> str:
    return v.decode("latin-1") if isinstance(v, (bytes, bytearray)) else str(v)


class Node:
    """One redis-server of the cluster (client port, cluster bus port, its process)."""

    def __init__(self, tmp: Path, node_timeout_ms: int, extra: list[str]):
        self.tmp = tmp
        self.node_timeout_ms = node_timeout_ms
        self.extra = list(extra)
        self.port = 0
        self.bus_port = 0
        self.proc: Proc | None = None
        self.id = ""

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    def argv(self) -> list[str]:
        return [harness.REDIS_SERVER, "--port", str(self.port), "--bind", HOST,
                "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                "--cluster-config-file", str(self.tmp / f"nodes-{self.port}.conf"),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--appendonly", "no", "--save", "", "--daemonize", "no", "--dir", str(self.tmp),
                "--logfile", "", *self.extra]

    def start(self) -> "Node":
        last = ""
        for _ in range(harness.START_ATTEMPTS):
            self.port, self.bus_port = free_port(), free_port()
            if self.port == self.bus_port:
                continue
            proc = Proc(self.argv(), self.tmp / f"redis-{self.port}.log", cwd=str(self.tmp),
                        name="redis-cluster-node")
            if wait_for_port(self.port, harness.START_TIMEOUT, proc.popen, ping=True) and \
                    wait_for_port(self.bus_port, 2.0, proc.popen):
                self.proc = proc
                self.id = _text(call(self.port, "CLUSTER", "MYID"))
                return self
            last = proc.log_tail()
            proc.stop(timeout=1.0)
        raise RuntimeError(f"cluster node did not start: {last}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def client(self, **kw):
        import redis
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host=HOST, port=self.port, **kw)

    def info(self, section: str = "") -> dict[str, str]:
        r = call(self.port, "INFO", section) if section else call(self.port, "INFO")
        return parse_info(r)

    def cluster_info(self) -> dict[str, str]:
        return parse_info(call(self.port, "CLUSTER", "INFO"))

    def cluster_nodes(self) -> list[dict]:
        """CLUSTER NODES as dicts: id, addr (host:port), flags (set), master (id or '-'),
        slots (list of (lo, hi)), link."""
        text = _text(call(self.port, "CLUSTER", "NODES"))
        out = []
        for line in text.splitlines():
            f = line.split()
            if len(f) < 8:
                continue
            slots = []
            for s in f[8:]:
                if s.startswith("["):  # an open (migrating/importing) slot
                    continue
                lo, _, hi = s.partition("-")
                slots.append((int(lo), int(hi or lo)))
            out.append({"id": f[0], "addr": f[1].split("@")[0], "flags": set(f[2].split(",")),
                        "master": f[3], "link": f[7], "slots": slots})
        return out

    def __repr__(self):
        return f"Node({self.addr}, id={self.id[:8]}, pid={self.proc.pid if self.proc else None})"


class Reshard:
    """A `redis-cli --cluster reshard` running in the background."""

    def __init__(self, argv: list[str], log: Path, nslots: int):
        self.nslots = nslots
        self.t0 = time.monotonic()
        self.t1: float | None = None
        self.proc = Proc(argv, log, name="redis-cli-reshard")

    def done(self) -> bool:
        if not self.proc.alive():
            if self.t1 is None:
                self.t1 = time.monotonic()
            return True
        return False

    def wait(self, timeout: float = 120.0) -> int:
        try:
            rc = self.proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.stop(timeout=2.0)
            raise AssertionError(f"redis-cli --cluster reshard still running after {timeout}s:\n"
                                 f"{self.proc.log_tail(20)}")
        self.done()
        self.proc.stop()
        return rc

    @property
    def seconds(self) -> float:
        return (self.t1 or time.monotonic()) - self.t0

    def output(self, lines: int = 20) -> str:
        return self.proc.log_tail(lines)

    def stop(self) -> None:
        self.proc.stop(timeout=2.0)


class RedisCluster:
    """`masters` masters with `replicas` replicas each, created and ready on return of start().
    Use as a context manager, or start() and close() (also registered by the caller as a class
    cleanup)."""

    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000,
                 extra: list[str] | None = None):
        self.nmasters = masters
        self.nreplicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.extra = list(extra or [])
        self.tmp = Path(tempfile.mkdtemp(prefix="respite-cluster-"))
        self.nodes: list[Node] = []
        self._reshards: list[Reshard] = []

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> "RedisCluster":
        try:
            total = self.nmasters * (1 + self.nreplicas)
            for _ in range(total):
                self.nodes.append(Node(self.tmp, self.node_timeout_ms, self.extra).start())
            r = redis_cli("--cluster", "create", *[n.addr for n in self.nodes],
                          "--cluster-replicas", str(self.nreplicas), "--cluster-yes", timeout=120)
            if r.returncode != 0 or "[OK] All 16384 slots covered" not in r.stdout:
                raise RuntimeError(f"redis-cli --cluster create failed (rc={r.returncode}):\n"
                                   f"{r.stdout[-2000:]}\n{r.stderr[-1000:]}")
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for rs in self._reshards:
            rs.stop()
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # ---------------------------------------------------------------- views

    def live_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.alive()]

    def node_by_id(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def node_by_port(self, port: int) -> Node:
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    def slot_owners(self, node: Node | None = None) -> dict[int, str]:
        """slot -> id of its master, as `node` (default: the first live node) sees it."""
        node = node or self.live_nodes()[0]
        out = {}
        for e in node.cluster_nodes():
            if "master" in e["flags"] and "fail" not in e["flags"]:
                for lo, hi in e["slots"]:
                    for s in range(lo, hi + 1):
                        out[s] = e["id"]
        return out

    def masters(self) -> list[Node]:
        """The live nodes that are masters serving at least one slot (as the first live node
        sees it), in the order they were started."""
        view = {e["id"]: e for e in self.live_nodes()[0].cluster_nodes()}
        return [n for n in self.nodes if n.alive() and n.id in view
                and "master" in view[n.id]["flags"] and view[n.id]["slots"]]

    def master_ids(self) -> list[str]:
        return [n.id for n in self.masters()]

    def replicas_of(self, master: Node) -> list[Node]:
        view = self.live_nodes()[0].cluster_nodes()
        ids = {e["id"] for e in view if e["master"] == master.id}
        return [n for n in self.nodes if n.id in ids]

    def owner_of_key(self, key: str | bytes) -> Node:
        """The node serving `key`'s slot (CLUSTER KEYSLOT, then the map)."""
        slot = int(call(self.live_nodes()[0].port, "CLUSTER", "KEYSLOT", key))
        return self.node_by_id(self.slot_owners()[slot])

    def seeds(self) -> list[str]:
        return [n.addr for n in self.nodes]

    # ---------------------------------------------------------------- readiness

    def state(self) -> tuple[bool, str]:
        """(ready, why not): every live node cluster_state:ok, 16384 slots assigned and ok, the
        same slot owners everywhere, no open slots, every live replica linked."""
        live = self.live_nodes()
        if not live:
            return False, "no live node"
        ref = None
        for n in live:
            try:
                ci = n.cluster_info()
                if ci.get("cluster_state") != "ok":
                    return False, f"{n.addr} cluster_state:{ci.get('cluster_state')}"
                if ci.get("cluster_slots_ok") != str(SLOTS):
                    return False, f"{n.addr} cluster_slots_ok:{ci.get('cluster_slots_ok')}"
                view = n.cluster_nodes()
                known = {e["id"] for e in view}
                missing = [m.id[:8] for m in live if m.id not in known]
                if missing:
                    return False, f"{n.addr} does not know {missing}"
                owners = self.slot_owners(n)
                if len(owners) != SLOTS:
                    return False, f"{n.addr} sees {len(owners)} slots owned"
                if ref is None:
                    ref = owners
                elif owners != ref:
                    return False, f"{n.addr} disagrees on slot owners"
                me = next(e for e in view if "myself" in e["flags"])
                if "slave" in me["flags"]:
                    if n.info("replication").get("master_link_status") != "up":
                        return False, f"replica {n.addr} link not up"
            except (OSError, TimeoutError, StopIteration) as e:
                return False, f"{n.addr}: {type(e).__name__} {e}"
        if self.nreplicas:
            masters = {ref[s] for s in ref}
            for m in masters:
                reps = [e for e in live[0].cluster_nodes()
                        if e["master"] == m and "fail" not in e["flags"]
                        and any(x.id == e["id"] for x in live)]
                if not reps:
                    return False, f"master {m[:8]} has no live replica yet"
        return True, ""

    def wait_ready(self, timeout: float = READY_TIMEOUT, require_replicas: bool = True) -> float:
        """Bounded poll until state() is ready; returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        why = ""
        saved = self.nreplicas
        if not require_replicas:
            self.nreplicas = 0
        try:
            while time.monotonic() < deadline:
                ok, why = self.state()
                if ok:
                    return time.monotonic() - t0
                time.sleep(0.05)
        finally:
            self.nreplicas = saved
        raise AssertionError(f"cluster not ready after {timeout}s: {why}")

    # ---------------------------------------------------------------- changes

    def reshard(self, src_id: str, dst_id: str, nslots: int, pipeline: int = 10) -> Reshard:
        """Start `redis-cli --cluster reshard` moving nslots from src to dst; returns at once."""
        seed = self.node_by_id(src_id)
        argv = [harness.REDIS_CLI, "--cluster", "reshard", seed.addr, "--cluster-from", src_id,
                "--cluster-to", dst_id, "--cluster-slots", str(nslots), "--cluster-yes",
                "--cluster-pipeline", str(pipeline)]
        rs = Reshard(argv, self.tmp / f"reshard-{len(self._reshards)}.log", nslots)
        self._reshards.append(rs)
        return rs

    def read_direct(self, keys: list[str]) -> list:
        """GET every key from the master serving its slot, straight from the cluster (no
        respite): the cluster's own view of the values."""
        owners = self.slot_owners()
        by_node: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            by_node.setdefault(owners[key_slot(k)], []).append(i)
        out = [None] * len(keys)
        for nid, idx in by_node.items():
            with self.node_by_id(nid).client() as c:
                p = c.pipeline(transaction=False)
                for i in idx:
                    p.get(keys[i])
                for i, v in zip(idx, p.execute()):
                    out[i] = v
        return out

    def write_direct(self, mapping: dict) -> None:
        """SET every key on the master serving its slot, straight to the cluster."""
        owners = self.slot_owners()
        by_node: dict[str, list] = {}
        for k, v in mapping.items():
            by_node.setdefault(owners[key_slot(k)], []).append((k, v))
        for nid, kvs in by_node.items():
            with self.node_by_id(nid).client() as c:
                p = c.pipeline(transaction=False)
                for k, v in kvs:
                    p.set(k, v)
                p.execute()

    def slots_of(self, node_id: str) -> int:
        return sum(1 for v in self.slot_owners().values() if v == node_id)

    def kill_master(self, i: int, timeout: float = 60.0) -> dict:
        """SIGKILL the i-th master (masters() order) by pid, then wait (bounded) until a replica
        of it serves its slots and every live node says cluster_state:ok. Returns
        {killed: node, promoted: node, t_kill, t_promoted, t_ok} (time.monotonic() moments):
        t_promoted is when a poll first saw the replica as master of the dead master's slots,
        t_ok when every live node also said cluster_state:ok and agreed on the map."""
        victim = self.masters()[i]
        replica_ids = {n.id for n in self.replicas_of(victim)}
        if not replica_ids:
            raise AssertionError(f"{victim} has no replica to promote")
        slots = [s for s, o in self.slot_owners().items() if o == victim.id]
        t_kill = time.monotonic()
        victim.kill()
        t_dead = time.monotonic()  # the process has exited (kill() waits for it)
        deadline = t_kill + timeout
        t_promoted = None
        promoted = None
        why = ""
        while time.monotonic() < deadline:
            try:
                if t_promoted is None:
                    for rid in replica_ids:
                        n = self.node_by_id(rid)
                        if not n.alive():
                            continue
                        me = next(e for e in n.cluster_nodes() if "myself" in e["flags"])
                        if "master" in me["flags"] and me["slots"]:
                            t_promoted, promoted = time.monotonic(), n
                            break
                if t_promoted is not None:
                    ok, why = self.state_after_kill(slots, promoted)
                    if ok:
                        return {"killed": victim, "promoted": promoted, "t_kill": t_kill,
                                "t_dead": t_dead, "t_promoted": t_promoted,
                                "t_ok": time.monotonic(), "slots": slots}
                else:
                    why = "no replica promoted yet"
            except (OSError, TimeoutError, StopIteration) as e:
                why = f"{type(e).__name__} {e}"
            time.sleep(0.02)
        raise AssertionError(f"no failover of {victim} within {timeout}s: {why}")

    def state_after_kill(self, slots: list[int], promoted: Node) -> tuple[bool, str]:
        saved = self.nreplicas
        self.nreplicas = 0  # the promoted master has no replica left
        try:
            ok, why = self.state()
        finally:
            self.nreplicas = saved
        if not ok:
            return ok, why
        owners = self.slot_owners()
        wrong = [s for s in slots if owners.get(s) != promoted.id]
        if wrong:
            return False, f"{len(wrong)} slots of the dead master not yet on {promoted}"
        return True, ""

    # ---------------------------------------------------------------- respite

    def start_respite(self, extra: list[str] | None = None, seeds: list[str] | None = None):
        """respite --cluster with every node (or `seeds`) as a seed, started through
        harness.Respite; in RESPITE_DIRECT mode a stand-in with direct=True (nothing started,
        port = the first node's). The caller close()s it."""
        args = ["--cluster"]
        for s in (seeds or self.seeds()):
            args += ["--upstream", s]
        px = harness.Respite(None, args + list(extra or []))
        if harness.DIRECT:
            px.port = self.nodes[0].port
            return px
        return px.start()

    def wait_respite_ready(self, port: int, timeout: float = 20.0) -> None:
        """Bounded poll until respite answers CLUSTER INFO with cluster_state:ok and a SET/GET
        of a key round-trips (it has read the slot map)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                with RawConn(port, 2.0) as c:
                    last = c.call("CLUSTER", "INFO")
                    if not isinstance(last, RespError) and \
                            parse_info(last).get("cluster_state") == "ok":
                        last = c.call("SET", "respite:ready", "1")
                        if last == "OK":
                            return
            except (OSError, TimeoutError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.05)
        raise AssertionError(f"respite not serving the cluster after {timeout}s: {last!r}")


class Load:
    """`len(keysets)` client threads, each owning its keys: round-robin over them, SET key <n>
    with n increasing per thread, then GET key; a read older than the last acknowledged write of
    that key (or nil) is a stale read. An exception or error reply is an error (the next write
    uses a new n, so a write whose reply was lost may still land: reads compare with >=).
    `make_client()` gives each thread its own client. Everything is counted per thread and
    summed by report(); acks keep (sent, acked, key) for outage measurements."""

    def __init__(self, make_client, keysets: list[list[str]], name: str = "load"):
        import threading
        self.make_client = make_client
        self.keysets = keysets
        self.name = name
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, int] = {}
        self.errors = 0
        self.error_samples: list[str] = []
        self.stale = 0
        self.stale_samples: list[str] = []
        self.writes = 0
        self.reads = 0
        self.acks: list[tuple[float, float, str]] = []
        self.threads = [threading.Thread(target=self._run, args=(i, ks), daemon=True)
                        for i, ks in enumerate(keysets)]
        self.t0 = self.t1 = 0.0

    def start(self) -> "Load":
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def _err(self, what: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.error_samples) < 10:
                self.error_samples.append(f"{time.monotonic() - self.t0:.2f}s {what}")

    @staticmethod
    def _drop(client):
        """After an error the client is made anew (redis-py 4.3's cluster client can stay broken
        after a failed topology refresh: 'cannot pickle _thread.lock')."""
        with contextlib.suppress(Exception):
            client.close()
        return None

    def _run(self, idx: int, keys: list[str]) -> None:
        client = None
        n = 0
        acked: dict[str, int] = {}
        acks = []
        writes = reads = 0
        try:
            while not self.stop_ev.is_set():
                for key in keys:
                    if self.stop_ev.is_set():
                        break
                    if client is None:
                        try:
                            client = self.make_client()
                        except Exception as e:  # noqa: BLE001
                            self._err(f"client: {type(e).__name__}: {e}")
                            time.sleep(0.05)  # a client that cannot be made: do not spin
                            continue
                    n += 1
                    sent = time.monotonic()
                    try:
                        client.set(key, n)
                    except Exception as e:  # noqa: BLE001
                        self._err(f"SET {key}: {type(e).__name__}: {e}")
                        client = self._drop(client)
                        continue
                    now = time.monotonic()
                    acked[key] = n
                    acks.append((sent, now, key))
                    writes += 1
                    try:
                        v = client.get(key)
                    except Exception as e:  # noqa: BLE001
                        self._err(f"GET {key}: {type(e).__name__}: {e}")
                        client = self._drop(client)
                        continue
                    reads += 1
                    if v is None or int(v) < acked[key]:
                        with self.lock:
                            self.stale += 1
                            if len(self.stale_samples) < 10:
                                self.stale_samples.append(
                                    f"{time.monotonic() - self.t0:.2f}s GET {key} = {v!r}, "
                                    f"acknowledged {acked[key]}")
        finally:
            with self.lock:
                self.acked.update(acked)
                self.acks.extend(acks)
                self.writes += writes
                self.reads += reads
            with contextlib.suppress(Exception):
                client.close()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_ev.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.t1 = time.monotonic()
        alive = [t for t in self.threads if t.is_alive()]
        if alive:
            raise AssertionError(f"{len(alive)} load threads still running {timeout}s after stop")

    def report(self) -> str:
        secs = (self.t1 or time.monotonic()) - self.t0
        return (f"{self.name}: {len(self.threads)} threads, {secs:.1f}s, {self.writes} writes "
                f"acknowledged, {self.reads} reads, {self.errors} errors, {self.stale} stale "
                f"reads" + (f"; errors e.g. {self.error_samples[:3]}" if self.errors else "")
                + (f"; stale e.g. {self.stale_samples[:3]}" if self.stale else ""))

    def first_ack_after(self, keys, t: float) -> float | None:
        """When the first write to one of `keys` sent at or after `t` was acknowledged (call
        after stop()), or None."""
        keys = set(keys)
        acked = [a for sent, a, k in self.acks if k in keys and sent >= t]
        return min(acked) if acked else None

    def lost(self, read) -> list[str]:
        """Keys whose value, as `read(keys)` (a list of values) returns it, is older than the
        last acknowledged write."""
        keys = sorted(self.acked)
        vals = read(keys)
        return [f"{k}={v!r} < {self.acked[k]}" for k, v in zip(keys, vals)
                if v is None or int(v) < self.acked[k]]


def cluster_client(port: int, **kw):
    """redis-py's cluster client for a node (or respite) at `port`."""
    from redis.cluster import RedisCluster as PyCluster
    kw.setdefault("socket_timeout", 10)
    return PyCluster(host=HOST, port=port, **kw)


@contextlib.contextmanager
def cluster(masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000):
    c = RedisCluster(masters, replicas, node_timeout_ms).start()
    try:
        yield c
    finally:
        c.close()


if __name__ == "__main__":  # smoke check: create, reshard, fail over, stop
    import sys
    with cluster(3, 1, 1000) as c:
        t0 = time.monotonic()
        print("nodes:", c.nodes)
        print("masters:", c.masters())
        a, b = c.master_ids()[:2]
        rs = c.reshard(a, b, 100)
        rc = rs.wait()
        print(f"reshard rc={rc} {rs.seconds:.1f}s; slots {c.slots_of(a)} / {c.slots_of(b)}")
        c.wait_ready()
        r = c.kill_master(0)
        print(f"promoted {r['promoted']} {r['t_promoted'] - r['t_kill']:.2f}s after the kill, "
              f"ok after {r['t_ok'] - r['t_kill']:.2f}s")
        print(f"total {time.monotonic() - t0:.1f}s")
    sys.exit(0)
