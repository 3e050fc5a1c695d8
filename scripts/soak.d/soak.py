"""Soak test for respite (issue 6). Started by scripts/soak; standard library only, Debian's
/usr/bin/python3. Process handling comes from tests/integration/harness.py (free ports, stop by
pid; redis-server and respite die with this process). The load processes stop by themselves at
the end time; every request has a reply deadline (--reply-timeout).

What runs, for --seconds (300 by default):

- one redis-server and one respite in front of it (extra respite flags: --respite-arg);
- W writer processes (--writers). Writer w owns the keys soak:{w}:s:0..K-1 (strings) and
  soak:{w}:c:0..C-1 (counters) and is the only one writing them, one request or one small
  pipeline at a time on its connection, so it knows the exact state of each key after each
  acknowledged write: GET, MGET, SET, INCR, DEL, EXPIRE (long), PEXPIRE (200-800 ms) and
  pipelines of 2-6 of them;
- R reader processes (--readers) reading other writers' keys (GET/MGET);
- D disconnector processes (--disconnectors): fresh connections that pipeline reads and writes
  of scratch keys (never part of the model), BLPOP, MULTI without EXEC, SUBSCRIBE, and close
  abruptly (sometimes with RST) after a random short time;
- writers also drop their own connection now and then in the middle of a pipeline of reads of
  their keys and writes of scratch keys, reading only part of the replies;
- the controller kills the upstream (SIGKILL) at half time and restarts it on the same port
  --down-seconds later; it samples respite's RSS and descriptors.

Values: "w:k:version:n:" followed by n copies of one letter derived from the version, so a reply
can be checked for belonging to its key and for being complete. Every SET of a key takes the
next version number of that key; a DEL also takes one.

Wrong value (must be 0):
- writer, on its own keys: any reply that differs from the model: GET/MGET of a string (the last
  acknowledged SET, or nil after an acknowledged DEL; for a key with a short PEXPIRE, the value
  while the reply arrived before the earliest possible expiry, nil when the read was sent more
  than --expiry-margin-ms after the latest possible expiry, either in between), INCR (the
  previous value + 1), DEL/EXPIRE/PEXPIRE (1 or 0 as the model says);
- reader, on other writers' keys: the writer publishes the version (and state) of each key
  after each acknowledgement in shared memory; a read sent after that must return this version
  or a newer one (never an older or deleted one); nil only if the key was deleted, may expire
  or changed during the read; counters never go back;
- any malformed value, a value of another key, a reply of the wrong type (a reply meant for
  another request).

Uncertainty: a write answered with an error may or may not have been applied: the key becomes
"unknown" for its writer (any well-formed value of that key is accepted) until the next
acknowledged write; its readers only require "not older than the last acknowledged version".

The restart: it wipes the upstream. The controller bumps an epoch just before the kill. A
writer that sees a new epoch forgets its model (all keys unknown); once the restart is done it
re-establishes its state: one DEL of all its keys, retried until acknowledged; then all of them
are known to be absent and checking resumes (readers check a writer's keys only when that
writer has re-established them in the current epoch, and only reads that started and ended in
the same epoch).

Errors: every error reply, connection loss (other than our own disconnects) or reply timeout
(--reply-timeout) is an error. Errors of a request whose [sent, answered] interval intersects
the restart window [kill, restart done + --grace] are expected and counted apart; all others
are "errors outside the restart window" (must be 0).

Exit status: 0 when wrong values == 0, errors outside the window == 0 and respite is alive at
the end (and stopped without a sanitizer report); 1 otherwise; 2 on a setup failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import random
import socket
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import harness  # noqa: E402
from harness import HOST, RawConn, RedisServer, RespError, Respite, encode_command  # noqa: E402

ABSENT, PRESENT, RELAXED = 0, 1, 2
MAX_RECORDS = 20          # examples of each kind of problem kept per process


# --------------------------------------------------------------------------------------------
# Shared state between the controller and the load processes.


class Shared:
    def __init__(self, writers: int, nkeys: int, ncounters: int):
        self.writers, self.nkeys, self.ncounters = writers, nkeys, ncounters
        self.per = nkeys + ncounters
        # code = version * 4 + state for strings, value * 4 + state for counters
        self.codes = mp.Array("q", writers * self.per, lock=False)
        self.seeded = mp.Array("q", writers, lock=False)      # epoch a writer re-established
        self.epoch = mp.Value("q", 0, lock=False)
        self.restarted_epoch = mp.Value("q", 0, lock=False)   # epoch whose restart is done
        self.kill_at = mp.Value("d", 0.0, lock=False)          # time.time() of the kill
        self.window_end = mp.Value("d", 0.0, lock=False)       # restart done + grace
        self.stop = mp.Value("b", 0, lock=False)

    def code(self, w: int, idx: int) -> int:
        return self.codes[w * self.per + idx]

    def publish(self, w: int, idx: int, num: int, state: int):
        self.codes[w * self.per + idx] = num * 4 + state


class Report:
    """What one load process found; sent to the controller at the end."""

    def __init__(self, name: str):
        self.name = name
        self.ops: dict[str, int] = {}
        self.wrong = 0
        self.wrong_examples: list[str] = []
        self.errors: dict[tuple[int, int], list] = {}      # (sent, answered) 10 ms buckets
        self.error_count = 0
        self.own_disconnects = 0
        self.reseeds = 0
        self.lat_max = 0.0
        self.lat: list[float] = []

    def op(self, kind: str, n: int = 1):
        self.ops[kind] = self.ops.get(kind, 0) + n

    def bad(self, text: str):
        self.wrong += 1
        if len(self.wrong_examples) < MAX_RECORDS:
            self.wrong_examples.append(f"{time.strftime('%H:%M:%S')} {self.name}: {text}")

    def error(self, t0: float, t1: float, text: str):
        """Errors are kept per 10 ms buckets of (sent, answered), widened outwards, so that
        they can be classified against the restart window at the end."""
        self.error_count += 1
        key = (int(t0 * 100), int(t1 * 100) + 1)
        slot = self.errors.get(key)
        if slot is None:
            self.errors[key] = [1, text[:200]]
        else:
            slot[0] += 1

    def latency(self, seconds: float):
        self.lat_max = max(self.lat_max, seconds)
        if len(self.lat) < 200_000:
            self.lat.append(seconds)


# --------------------------------------------------------------------------------------------
# Values.


def make_value(w: int, k: int, ver: int, rng: random.Random) -> bytes:
    r = rng.random()
    n = rng.randint(0, 64) if r < 0.7 else rng.randint(65, 2000) if r < 0.95 else rng.randint(5000, 20000)
    return b"%d:%d:%d:%d:" % (w, k, ver, n) + bytes([97 + ver % 26]) * n


def parse_value(v: bytes) -> tuple[int, int, int] | None:
    """(writer, key, version) of a well-formed value, else None."""
    try:
        w, k, ver, n, rest = v.split(b":", 4)
        w, k, ver, n = int(w), int(k), int(ver), int(n)
    except ValueError:
        return None
    if len(rest) != n or rest != bytes([97 + ver % 26]) * n:
        return None
    return w, k, ver


# --------------------------------------------------------------------------------------------
# Writers.


class Key:
    """A writer's model of one string key."""
    __slots__ = ("state", "value", "ver", "floor", "exp_lo", "exp_hi")

    def __init__(self):
        self.state = "absent"      # absent | present | volatile | unknown
        self.value = None
        self.ver = 0               # last version number used for this key
        self.floor = (0, ABSENT)   # last acknowledged (version, state) published to readers
        self.exp_lo = self.exp_hi = 0.0


class Writer:
    def __init__(self, w: int, port: int, sh: Shared, args, seed: int):
        self.w, self.port, self.sh, self.args = w, port, sh, args
        self.rng = random.Random(seed)
        self.rep = Report(f"writer {w}")
        self.keys = [Key() for _ in range(sh.nkeys)]
        self.counters: list[int | None] = [0] * sh.ncounters
        self.conn: RawConn | None = None
        self.later_vanish: list = [set()]
        self.op_index = 0
        self.epoch = 0
        self.ready = True           # model known (False between a restart and the re-seed)
        self.margin = args.expiry_margin_ms / 1000

    # names
    def skey(self, k: int) -> str:
        return f"soak:{self.w}:s:{k}"

    def ckey(self, c: int) -> str:
        return f"soak:{self.w}:c:{c}"

    def publish_key(self, k: int, state: int, num: int | None = None):
        key = self.keys[k]
        num = key.ver if num is None else num
        if state != RELAXED:
            key.floor = (num, state)
        self.sh.publish(self.w, k, num, state)

    def publish_relaxed(self, k: int):
        """Before a request that may make the key disappear, and for unknown keys: readers
        then only require 'not older than the last acknowledged version' (and, after an
        acknowledged DEL, 'newer than the DEL')."""
        fv, fs = self.keys[k].floor
        self.sh.publish(self.w, k, fv, ABSENT if fs == ABSENT else RELAXED)

    def publish_counter(self, c: int, state: int, value: int):
        self.sh.publish(self.w, self.sh.nkeys + c, value, state)

    # connection
    def connect(self) -> RawConn:
        if self.conn is None:
            self.conn = RawConn(self.port, timeout=self.args.reply_timeout)
        return self.conn

    def drop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run(self, end: float) -> Report:
        while time.time() < end and not self.sh.stop.value:
            ep = self.sh.epoch.value
            if ep != self.epoch:
                self.forget(ep)
            if not self.ready:
                if self.sh.restarted_epoch.value == self.epoch:
                    self.reseed()
                else:
                    # the upstream is down: keep sending (errors expected) without checking
                    self.blind_op()
                    time.sleep(0.01)
                continue
            r = self.rng.random()
            if r < self.args.disconnect_rate:
                self.disconnect_mid_pipeline()
            elif r < 0.12:
                self.pipeline(self.rng.randint(2, 6))
            else:
                self.pipeline(1)
        self.drop()
        return self.rep

    def forget(self, ep: int):
        """A new epoch (upstream killed): nothing is known until the re-seed."""
        self.epoch = ep
        self.ready = False
        for k in self.keys:
            k.state = "unknown"

    def reseed(self):
        names = [self.skey(k) for k in range(self.sh.nkeys)] + \
                [self.ckey(c) for c in range(self.sh.ncounters)]
        t0 = time.time()
        try:
            r = self.connect().call("DEL", *names)
        except (OSError, TimeoutError) as e:
            self.rep.error(t0, time.time(), f"reseed DEL: {e}")
            self.drop()
            time.sleep(0.02)
            return
        t1 = time.time()
        if isinstance(r, RespError):
            self.rep.error(t0, t1, f"reseed DEL: -{r}")
            time.sleep(0.02)
            return
        if self.sh.epoch.value != self.epoch:
            return                    # killed again meanwhile (not in this script, but be safe)
        for k, key in enumerate(self.keys):
            key.ver += 1
            key.state, key.value = "absent", None
            self.publish_key(k, ABSENT)
        for c in range(self.sh.ncounters):
            self.counters[c] = 0
            self.publish_counter(c, ABSENT, 0)
        self.sh.seeded[self.w] = self.epoch
        self.ready = True
        self.rep.reseeds += 1

    def blind_op(self):
        k = self.rng.randrange(self.sh.nkeys)
        t0 = time.time()
        try:
            r = self.connect().call("GET", self.skey(k))
        except (OSError, TimeoutError) as e:
            self.rep.error(t0, time.time(), f"GET (upstream down): {e}")
            self.drop()
            return
        if isinstance(r, RespError):
            self.rep.error(t0, time.time(), f"GET (upstream down): -{r}")

    # one request or a pipeline of requests on the writer's own keys
    def choose(self):
        rng = self.rng
        x = rng.random()
        k = rng.randrange(self.sh.nkeys)
        if x < 0.30:
            return ("GET", k)
        if x < 0.40:
            return ("MGET", rng.sample(range(self.sh.nkeys), rng.randint(2, 6)))
        if x < 0.65:
            return ("SET", k)
        if x < 0.77:
            return ("INCR", rng.randrange(self.sh.ncounters))
        if x < 0.83:
            return ("DEL", k)
        if x < 0.88:
            return ("EXPIRE", k)
        if x < 0.93:
            return ("PEXPIRE", k, rng.randint(200, 800))
        return ("GETC", rng.randrange(self.sh.ncounters))

    def encode(self, op, pending: dict) -> bytes:
        kind = op[0]
        if kind == "GET":
            return encode_command("GET", self.skey(op[1]))
        if kind == "MGET":
            return encode_command("MGET", *[self.skey(k) for k in op[1]])
        if kind == "SET":
            key = self.keys[op[1]]
            key.ver += 1
            val = make_value(self.w, op[1], key.ver, self.rng)
            pending[id(op)] = (key.ver, val)
            return encode_command("SET", self.skey(op[1]), val)
        if kind == "INCR":
            return encode_command("INCR", self.ckey(op[1]))
        if kind == "GETC":
            return encode_command("GET", self.ckey(op[1]))
        if kind == "DEL":
            self.keys[op[1]].ver += 1
            pending[id(op)] = self.keys[op[1]].ver
            self.publish_relaxed(op[1])
            return encode_command("DEL", self.skey(op[1]))
        if kind == "EXPIRE":
            return encode_command("EXPIRE", self.skey(op[1]), "100000")
        if kind == "PEXPIRE":
            self.publish_relaxed(op[1])
            return encode_command("PEXPIRE", self.skey(op[1]), str(op[2]))
        raise ValueError(kind)

    def pipeline(self, n: int):
        ops = [self.choose() for _ in range(n)]
        pending: dict = {}
        data = b"".join(self.encode(op, pending) for op in ops)
        t0 = time.time()
        replies = []
        failure = None
        try:
            c = self.connect()
            c.send(data)
            replies = c.read_replies(n)
        except (OSError, TimeoutError) as e:
            failure = f"{type(e).__name__}: {e}"
            self.drop()
        t1 = time.time()
        self.rep.latency(t1 - t0)
        # a SET followed in the same pipeline by a DEL/PEXPIRE of its key: the key may already
        # be gone when the SET's acknowledgement is applied, so it is not published as present
        later_vanish = [set() for _ in ops]
        acc: set = set()
        for i in range(len(ops) - 1, -1, -1):
            later_vanish[i] = set(acc)
            if ops[i][0] in ("DEL", "PEXPIRE"):
                acc.add(ops[i][1])
        self.later_vanish = later_vanish
        for i, op in enumerate(ops):
            self.op_index = i
            self.rep.op(op[0])
            if failure is not None:
                r = RespError(f"(connection) {failure}")
                if i == 0:
                    self.rep.error(t0, t1, f"{op[0]}: {failure}")
            else:
                r = replies[i]
                if isinstance(r, RespError):
                    self.rep.error(t0, t1, f"{op[0]} {self.describe(op)}: -{r}")
            self.apply(op, r, t0, t1, pending)

    def describe(self, op) -> str:
        if op[0] in ("INCR", "GETC"):
            return self.ckey(op[1])
        if op[0] == "MGET":
            return ",".join(self.skey(k) for k in op[1])
        return self.skey(op[1])

    # expected value of a string key for a read sent at t0 and answered at t1
    def check_read(self, k: int, got, t0: float, t1: float, what: str):
        key = self.keys[k]
        if got is not None and not isinstance(got, bytes):
            self.rep.bad(f"{what} {self.skey(k)}: reply of the wrong type {got!r}")
            return
        if got is not None:
            p = parse_value(got)
            if p is None or p[0] != self.w or p[1] != k:
                self.rep.bad(f"{what} {self.skey(k)}: malformed or foreign value {got[:80]!r}")
                return
        st = key.state
        if st == "volatile":
            if t0 > key.exp_hi + self.margin:
                key.state, key.value = "absent", None
                st = "absent"
            elif t1 < key.exp_lo:
                st = "present"
            else:
                if got is not None and got != key.value:
                    self.rep.bad(f"{what} {self.skey(k)}: expected version {key.floor[0]} or nil "
                                 f"(expiring), got version {parse_value(got)[2]}")
                return
        if st == "absent" and got is not None:
            self.rep.bad(f"{what} {self.skey(k)}: expected nil (deleted/expired), got version "
                         f"{parse_value(got)[2]} (current version {key.ver})")
        elif st == "present" and got != key.value:
            self.rep.bad(f"{what} {self.skey(k)}: expected version {parse_value(key.value)[2]}, got "
                         f"{'nil' if got is None else 'version %d' % parse_value(got)[2]}")
        # unknown: any well-formed value of this key

    def unknown(self, k: int):
        key = self.keys[k]
        key.state, key.value = "unknown", None
        self.publish_relaxed(k)

    def apply(self, op, r, t0: float, t1: float, pending: dict):
        kind = op[0]
        err = isinstance(r, RespError)
        if kind == "GET":
            if not err:
                self.check_read(op[1], r, t0, t1, "GET")
        elif kind == "MGET":
            if not err:
                if not isinstance(r, list) or len(r) != len(op[1]):
                    self.rep.bad(f"MGET of {len(op[1])} keys: reply {str(r)[:120]}")
                    return
                for k, got in zip(op[1], r):
                    self.check_read(k, got, t0, t1, "MGET")
        elif kind == "SET":
            k = op[1]
            ver, val = pending[id(op)]
            if err:
                self.unknown(k)
            elif r != "OK":
                self.rep.bad(f"SET {self.skey(k)}: reply {r!r}")
                self.unknown(k)
            else:
                key = self.keys[k]
                key.state, key.value = "present", val
                if k in self.later_vanish[self.op_index]:
                    key.floor = (ver, PRESENT)
                    self.publish_relaxed(k)
                else:
                    self.publish_key(k, PRESENT, ver)
        elif kind == "DEL":
            k = op[1]
            key = self.keys[k]
            if err:
                self.unknown(k)
                return
            if not isinstance(r, int):
                self.rep.bad(f"DEL {self.skey(k)}: reply {r!r}")
            elif key.state == "present" and r != 1:
                self.rep.bad(f"DEL {self.skey(k)}: the key should exist (version "
                             f"{parse_value(key.value)[2]}), DEL returned {r}")
            elif key.state == "absent" and r != 0:
                self.rep.bad(f"DEL {self.skey(k)}: the key should not exist, DEL returned {r}")
            key.state, key.value = "absent", None
            self.publish_key(k, ABSENT, pending[id(op)])
        elif kind == "EXPIRE":
            k = op[1]
            key = self.keys[k]
            if err:
                return                 # a long TTL changes nothing we check
            if key.state == "volatile" and t0 > key.exp_hi + self.margin:
                key.state, key.value = "absent", None
            if key.state == "present" and r != 1 or key.state == "absent" and r != 0:
                self.rep.bad(f"EXPIRE {self.skey(k)}: state {key.state}, reply {r!r}")
            if key.state in ("volatile", "unknown"):
                if r == 1 and key.state == "volatile":
                    key.state = "present"          # long TTL now
                    if k not in self.later_vanish[self.op_index]:
                        self.publish_key(k, PRESENT)
                elif r == 0 and key.state == "volatile":
                    key.state, key.value = "absent", None
        elif kind == "PEXPIRE":
            k, ttl = op[1], op[2] / 1000
            key = self.keys[k]
            if err:
                self.unknown(k)
                return
            if key.state == "volatile" and t0 > key.exp_hi + self.margin:
                key.state, key.value = "absent", None
            if key.state == "present" and r != 1 or key.state == "absent" and r != 0:
                self.rep.bad(f"PEXPIRE {self.skey(k)}: state {key.state}, reply {r!r}")
            if r == 1 and key.state in ("present", "volatile"):
                key.state = "volatile"
                key.exp_lo, key.exp_hi = t0 + ttl, t1 + ttl
                self.publish_relaxed(k)
            elif r == 0 and key.state == "volatile":
                key.state, key.value = "absent", None
            if key.state == "absent":
                self.publish_key(k, ABSENT, key.floor[0] if key.floor[1] == ABSENT else key.ver)
        elif kind == "INCR":
            c = op[1]
            if err:
                self.counters[c] = None
                return
            if not isinstance(r, int):
                self.rep.bad(f"INCR {self.ckey(c)}: reply {r!r}")
                self.counters[c] = None
                return
            if self.counters[c] is not None and r != self.counters[c] + 1:
                self.rep.bad(f"INCR {self.ckey(c)}: expected {self.counters[c] + 1}, got {r}")
            self.counters[c] = r
            self.publish_counter(c, PRESENT, r)
        elif kind == "GETC":
            c = op[1]
            if err or self.counters[c] is None:
                return
            want = None if self.counters[c] == 0 else str(self.counters[c]).encode()
            if r != want:
                self.rep.bad(f"GET {self.ckey(c)}: expected {want!r}, got {r!r}")

    def disconnect_mid_pipeline(self):
        """Pipeline reads of own keys and writes of scratch keys, read a part of the replies
        (checking them), then close the connection (sometimes with RST)."""
        n = self.rng.randint(5, 200)
        ops = []
        for i in range(n):
            if self.rng.random() < 0.5:
                ops.append(("GET", self.rng.randrange(self.sh.nkeys)))
            else:
                ops.append(("SCRATCH", i))
        data = b"".join(encode_command("GET", self.skey(op[1])) if op[0] == "GET" else
                        encode_command("SET", f"soak:scratch:{self.w}:{op[1]}", "x" * 100)
                        for op in ops)
        nread = self.rng.randint(0, n - 1)
        t0 = time.time()
        try:
            c = self.connect()
            c.send(data)
            replies = c.read_replies(nread) if nread else []
        except (OSError, TimeoutError) as e:
            self.rep.error(t0, time.time(), f"pipeline before disconnect: {e}")
            self.drop()
            return
        t1 = time.time()
        for op, r in zip(ops, replies):
            if isinstance(r, RespError):
                self.rep.error(t0, t1, f"{op[0]} before disconnect: -{r}")
            elif op[0] == "GET":
                self.check_read(op[1], r, t0, t1, "GET (pipeline then disconnect)")
            elif r != "OK":
                self.rep.bad(f"SET scratch: reply {r!r}")
        if self.rng.random() < 0.5:
            with contextlib.suppress(OSError):
                self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.drop()
        self.rep.own_disconnects += 1
        self.rep.op("disconnect")


# --------------------------------------------------------------------------------------------
# Readers of other writers' keys.


def reader_main(rid: int, port: int, sh: Shared, args, end: float, seed: int, out):
    rng = random.Random(seed)
    rep = Report(f"reader {rid}")
    conn = None
    while time.time() < end and not sh.stop.value:
        w = rng.randrange(sh.writers)
        ep = sh.epoch.value
        if rng.random() < 0.8:
            idxs = [rng.randrange(sh.nkeys)] if rng.random() < 0.6 else \
                rng.sample(range(sh.nkeys), rng.randint(2, 8))
        else:
            idxs = [sh.nkeys + rng.randrange(sh.ncounters)]
        names = [f"soak:{w}:s:{i}" if i < sh.nkeys else f"soak:{w}:c:{i - sh.nkeys}" for i in idxs]
        checkable = sh.seeded[w] == ep and (ep == 0 or sh.restarted_epoch.value == ep)
        before = [sh.code(w, i) for i in idxs]
        t0 = time.time()
        try:
            if conn is None:
                conn = RawConn(port, timeout=args.reply_timeout)
            r = conn.call("GET", names[0]) if len(names) == 1 else conn.call("MGET", *names)
        except (OSError, TimeoutError) as e:
            rep.error(t0, time.time(), f"read {names[0]}: {e}")
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.005)
            continue
        t1 = time.time()
        rep.latency(t1 - t0)
        rep.op("GET" if len(names) == 1 else "MGET")
        if isinstance(r, RespError):
            rep.error(t0, t1, f"read {names[0]}: -{r}")
            time.sleep(0.005)
            continue
        got = [r] if len(names) == 1 else r
        if not isinstance(got, list) or len(got) != len(names):
            rep.bad(f"read {names}: reply {str(r)[:120]}")
            continue
        after = [sh.code(w, i) for i in idxs]
        if not (checkable and sh.epoch.value == ep):
            continue
        for i, name, g, b, a in zip(idxs, names, got, before, after):
            num, state = b // 4, b % 4
            if g is not None and not isinstance(g, bytes):
                rep.bad(f"{name}: reply of the wrong type {g!r}")
                continue
            if i >= sh.nkeys:                               # counter
                if g is None:
                    if state == PRESENT and a == b:
                        rep.bad(f"{name}: nil, but the counter is at {num}")
                    continue
                try:
                    v = int(g)
                except ValueError:
                    rep.bad(f"{name}: not a counter: {g[:80]!r}")
                    continue
                if v < num:
                    rep.bad(f"{name}: {v}, older than the acknowledged {num}")
                continue
            if g is None:
                if state == PRESENT and a == b:
                    rep.bad(f"{name}: nil, but version {num} was acknowledged and not deleted")
                continue
            p = parse_value(g)
            if p is None or p[0] != w or p[1] != i:
                rep.bad(f"{name}: malformed or foreign value {g[:80]!r}")
                continue
            ver = p[2]
            if state == ABSENT and ver <= num:
                rep.bad(f"{name}: version {ver}, but version {num} (a DEL) was acknowledged before "
                        f"the read")
            elif state != ABSENT and ver < num:
                rep.bad(f"{name}: version {ver}, older than the acknowledged version {num}")
    if conn is not None:
        conn.close()
    out.put(rep.__dict__)


# --------------------------------------------------------------------------------------------
# Disconnectors: scratch keys only, pinned states, abrupt closes.


def disconnector_main(did: int, port: int, sh: Shared, args, end: float, seed: int, out):
    rng = random.Random(seed)
    rep = Report(f"disconnector {did}")
    while time.time() < end and not sh.stop.value:
        kind = rng.random()
        pre = b""
        if kind < 0.5:
            pre = b"".join(rng.choice([
                encode_command("GET", f"soak:dc:{rng.randrange(100)}"),
                encode_command("SET", f"soak:dc:{rng.randrange(100)}", "y" * rng.randint(1, 3000)),
                encode_command("MGET", *[f"soak:dc:{rng.randrange(100)}" for _ in range(5)]),
                encode_command("INCR", "soak:dc:n"),
                encode_command("GET", f"soak:{rng.randrange(sh.writers)}:s:{rng.randrange(sh.nkeys)}"),
            ]) for _ in range(rng.randint(1, 500)))
        elif not args.no_pinned and kind < 0.65:
            pre = encode_command("BLPOP", f"soak:dc:list:{did}", "1")
        elif not args.no_pinned and kind < 0.8:
            pre = encode_command("MULTI") + encode_command("SET", "soak:dc:tx", "1") + \
                encode_command("INCR", "soak:dc:txn")
        elif not args.no_pinned and kind < 0.9:
            pre = encode_command("SUBSCRIBE", f"soak:dc:ch:{did}")
        else:
            pre = encode_command("GET", "soak:dc:0") * rng.randint(1, 2000)
        t0 = time.time()
        try:
            s = socket.create_connection((HOST, port), timeout=args.reply_timeout)
        except OSError as e:
            rep.error(t0, time.time(), f"connect: {e}")
            time.sleep(0.05)
            continue
        try:
            with contextlib.suppress(OSError):
                s.sendall(pre)
                if rng.random() < 0.5:
                    s.settimeout(rng.random() * 0.05)
                    with contextlib.suppress(socket.timeout):
                        s.recv(rng.randint(1, 65536))
            if rng.random() < 0.5:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            s.close()
        rep.op("connection")
        time.sleep(rng.random() * 0.02)
    out.put(rep.__dict__)


def writer_main(w: int, port: int, sh: Shared, args, end: float, seed: int, out):
    out.put(Writer(w, port, sh, args, seed).run(end).__dict__)


# --------------------------------------------------------------------------------------------
# Controller.


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    return -1.0


def fds(pid: int) -> int:
    with contextlib.suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return -1


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(
        prog="scripts/soak", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The model and the rules for wrong values and errors: scripts/soak.d/soak.py")
    ap.add_argument("--seconds", type=float, default=300, help="load duration (default 300)")
    ap.add_argument("--writers", type=int, default=4, help="writer processes (default 4)")
    ap.add_argument("--readers", type=int, default=2, help="reader processes (default 2)")
    ap.add_argument("--disconnectors", type=int, default=1,
                    help="processes that connect, send and close abruptly (default 1)")
    ap.add_argument("--keys", type=int, default=200, help="string keys per writer (default 200)")
    ap.add_argument("--counters", type=int, default=20, help="counters per writer (default 20)")
    ap.add_argument("--no-restart", action="store_true", help="no upstream kill/restart")
    ap.add_argument("--restart-at", type=float, default=None,
                    help="seconds into the run of the kill (default: half of --seconds)")
    ap.add_argument("--down-seconds", type=float, default=2.0,
                    help="time between the kill and the restart (default 2)")
    ap.add_argument("--grace", type=float, default=3.0,
                    help="seconds after the restart that still count as the restart window "
                         "(default 3)")
    ap.add_argument("--disconnect-rate", type=float, default=0.003,
                    help="probability per writer step of a mid-pipeline disconnect (default 0.003)")
    ap.add_argument("--no-pinned", action="store_true",
                    help="disconnectors send no BLPOP/MULTI/SUBSCRIBE")
    ap.add_argument("--expiry-margin-ms", type=float, default=20.0,
                    help="a value read this long after its latest possible expiry is wrong "
                         "(default 20)")
    ap.add_argument("--reply-timeout", type=float, default=10.0,
                    help="a reply not received within this many seconds is an error (a hang)")
    ap.add_argument("--respite-arg", action="append", default=[],
                    help="extra respite flag (repeat: --respite-arg=--threads --respite-arg=2)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the summary as JSON here")
    args = ap.parse_args()
    if args.seconds < 10:
        ap.error("--seconds must be at least 10")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    restart_at = args.restart_at if args.restart_at is not None else args.seconds / 2

    print(f"soak: {args.seconds:.0f} s, {args.writers} writers, {args.readers} readers, "
          f"{args.disconnectors} disconnectors, seed {seed}, respite {harness.respite_bin()}"
          + ("" if args.no_restart else f"; upstream killed at {restart_at:.0f} s, restarted "
             f"{args.down_seconds:.1f} s later"), flush=True)

    stack = contextlib.ExitStack()
    try:
        upstream = stack.enter_context(RedisServer())
        proxy = stack.enter_context(Respite(upstream, args.respite_arg))
    except Exception as e:  # noqa: BLE001
        print(f"soak: setup failed: {e}", file=sys.stderr)
        stack.close()
        return 2

    sh = Shared(args.writers, args.keys, args.counters)
    out: mp.Queue = mp.Queue()
    t_start = time.time()
    end = t_start + args.seconds
    procs = []
    for w in range(args.writers):
        procs.append(mp.Process(target=writer_main, daemon=True,
                                args=(w, proxy.port, sh, args, end, seed * 1000 + w, out)))
    for r in range(args.readers):
        procs.append(mp.Process(target=reader_main, daemon=True,
                                args=(r, proxy.port, sh, args, end, seed * 1000 + 100 + r, out)))
    for d in range(args.disconnectors):
        procs.append(mp.Process(target=disconnector_main, daemon=True,
                                args=(d, proxy.port, sh, args, end, seed * 1000 + 200 + d, out)))
    for p in procs:
        p.start()

    samples = []                 # (t, rss MB, fds)
    rss_start = fds_start = None
    restarted = args.no_restart
    killed = False
    died_at = None
    next_print = t_start + 10
    while time.time() < end:
        now = time.time()
        if not proxy.alive() and died_at is None:
            died_at = now - t_start
            print(f"soak: respite DIED at {died_at:.1f} s (rc={proxy.proc.popen.returncode})",
                  flush=True)
            sh.stop.value = 1
            break
        samples.append((now - t_start, rss_mb(proxy.pid), fds(proxy.pid)))
        if rss_start is None and now - t_start >= min(3.0, restart_at / 2):
            rss_start, fds_start = round(samples[-1][1], 1), samples[-1][2]
        if not killed and not args.no_restart and now - t_start >= restart_at:
            sh.kill_at.value = time.time()
            sh.window_end.value = 1e18          # until the restart is done
            sh.epoch.value += 1
            upstream.kill()
            killed = True
            print(f"soak: {now - t_start:.1f} s: upstream killed", flush=True)
        if killed and not restarted and time.time() - sh.kill_at.value >= args.down_seconds:
            try:
                upstream.restart_same_port()
            except RuntimeError as e:
                print(f"soak: upstream restart failed: {e}", flush=True)
                sh.stop.value = 1
                break
            t_r = time.time()
            sh.window_end.value = t_r + args.grace
            sh.restarted_epoch.value = sh.epoch.value
            restarted = True
            print(f"soak: {t_r - t_start:.1f} s: upstream restarted on port {upstream.port}",
                  flush=True)
        if now >= next_print:
            next_print += 10
            print(f"soak: {now - t_start:.0f} s: respite RSS {samples[-1][1]:.1f} MB, "
                  f"{samples[-1][2]} fds", flush=True)
        time.sleep(0.25)
    sh.stop.value = 1

    reports = []
    deadline = time.time() + args.reply_timeout + 30
    while len(reports) < len(procs) and time.time() < deadline:
        with contextlib.suppress(Exception):
            reports.append(out.get(timeout=1))
    for p in procs:
        p.join(timeout=max(0.1, deadline - time.time()))
        if p.is_alive():
            p.kill()
    hung = len(procs) - len(reports)

    alive = proxy.alive()
    rss_end, fds_end = (round(rss_mb(proxy.pid), 1), fds(proxy.pid)) if alive else (-1, -1)
    time.sleep(1.0)
    rss_settled = round(rss_mb(proxy.pid), 1) if alive else -1
    info = {}
    if alive:
        with contextlib.suppress(Exception):
            info = harness.proxy_info(proxy.port)
    sanitizer = ""
    stop_rc = None
    try:
        stop_rc = proxy.stop()
    except AssertionError as e:
        sanitizer = str(e)
    log_tail = proxy.log_tail(30)
    proxy.proc = None             # stopped: the stack's close only removes its directory now
    stack.close()

    # classify errors
    k0 = sh.kill_at.value if killed else None
    w_end = sh.window_end.value if killed else None
    in_window = outside = 0
    outside_examples = []
    for rep in reports:
        for (b0, b1), (count, text) in rep["errors"].items():
            t0, t1 = b0 / 100, b1 / 100
            if k0 is not None and t1 >= k0 and t0 <= w_end:
                in_window += count
            else:
                outside += count
                if len(outside_examples) < 20:
                    outside_examples.append(f"+{t0 - t_start:.2f}s {rep['name']}: {text}"
                                            + (f" (x{count})" if count > 1 else ""))
    wrong = sum(rep["wrong"] for rep in reports)
    wrong_examples = [x for rep in reports for x in rep["wrong_examples"]][:20]
    ops: dict[str, int] = {}
    for rep in reports:
        for k, v in rep["ops"].items():
            ops[k] = ops.get(k, 0) + v
    lat = [x for rep in reports for x in rep["lat"]]
    total_ops = sum(v for k, v in ops.items() if k not in ("disconnect", "connection"))
    duration = time.time() - t_start
    peak = round(max((s[1] for s in samples), default=-1), 1)

    ok = wrong == 0 and outside == 0 and alive and died_at is None and not sanitizer and hung == 0
    summary = {
        "seconds": args.seconds, "seed": seed, "ok": ok,
        "requests": total_ops, "requests_per_s": round(total_ops / max(1.0, args.seconds)),
        "ops": ops,
        "client_disconnects": sum(rep["own_disconnects"] for rep in reports) + ops.get("connection", 0),
        "reseeds": sum(rep["reseeds"] for rep in reports),
        "wrong_values": wrong, "wrong_examples": wrong_examples,
        "errors_in_restart_window": in_window, "errors_outside_restart_window": outside,
        "outside_examples": outside_examples,
        "restart_window_s": [round(k0 - t_start, 2),
                             round(w_end - t_start, 2) if restarted else None] if killed else None,
        "latency_ms": {"p50": round(pct(lat, 0.5) * 1e3, 2), "p99": round(pct(lat, 0.99) * 1e3, 2),
                       "max": round(max(lat or [0]) * 1e3, 1)},
        "rss_mb": {"start": rss_start, "end": rss_end, "end_after_1s": rss_settled, "peak": peak},
        "fds": {"start": fds_start, "end": fds_end},
        "respite_alive": alive and died_at is None, "respite_died_at_s": died_at,
        "respite_exit": stop_rc, "sanitizer": sanitizer[:2000], "hung_processes": hung,
        "proxy_info": {k: info.get(k) for k in ("connected_clients", "upstream_errors",
                                                 "upstream_timeouts", "upstream_connects",
                                                 "cache_hits", "cache_misses", "cache_keys",
                                                 "total_connections_received")},
    }

    print()
    print(f"soak summary ({duration:.0f} s, seed {seed}):")
    print(f"  requests           {total_ops} ({summary['requests_per_s']}/s): "
          + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    print(f"  client disconnects {summary['client_disconnects']} (writers mid-pipeline + "
          f"disconnector connections)")
    if killed:
        print(f"  restart window     {summary['restart_window_s'][0]} s .. "
              f"{summary['restart_window_s'][1] if restarted else '(no restart)'} s; writers "
              f"re-established their keys {summary['reseeds']} times")
    print(f"  latency            p50 {summary['latency_ms']['p50']} ms, p99 "
          f"{summary['latency_ms']['p99']} ms, max {summary['latency_ms']['max']} ms")
    print(f"  respite RSS        start {rss_start} MB, end {rss_end} MB "
          f"(1 s later {rss_settled} MB), peak {peak} MB; fds start {fds_start}, end {fds_end}")
    print(f"  PROXY INFO         {summary['proxy_info']}")
    print(f"  errors in window   {in_window}")
    print(f"  ERRORS OUTSIDE     {outside}")
    for x in outside_examples[:10]:
        print(f"      {x}")
    print(f"  WRONG VALUES       {wrong}")
    for x in wrong_examples[:10]:
        print(f"      {x}")
    if not (alive and died_at is None):
        print(f"  RESPITE DIED (at {died_at} s); log tail:\n{log_tail}")
    if sanitizer:
        print(f"  SANITIZER REPORT:\n{sanitizer[:2000]}")
    if hung:
        print(f"  {hung} load process(es) did not finish (hang)")
    print(f"soak: {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(Exception):
        mp.set_start_method("fork")
    sys.exit(main())
