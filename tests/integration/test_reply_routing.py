"""Every reply goes to its own client: requests whose reply count is not one, streaming clients'
local replies, departed blocked clients, transactions and upstream timeouts.

- OddReplyCounts: bystanders doing TYPE/SET/GET/INCR through respite see exactly their own
  replies while other clients send multi-channel (P|S)UNSUBSCRIBE without being subscribed
  (RESP2 and RESP3, with and without channels; the bytes equal redis-server's for the same
  input), SYNC/PSYNC (-NOMASTERLINK), REPLCONF ACK/GETACK (no reply) and MONITOR (stays
  streaming); upstream_protocol_violations stays 0.
- StreamingLocalReplies: SUBSCRIBE/UNSUBSCRIBE/PING/QUIT pipelined and SUBSCRIBE/RESET/SET/GET
  byte for byte like Redis; MONITOR then QUIT ends with +OK and EOF and no trace of respite's
  own barrier; with --rate-limit 2 a subscribed client's rate-limit errors come after the
  confirmations it is owed.
- DepartedBlockedClient: BLPOP l 0 (and BLPOP then RESET pipelined) then disconnect: the blocked
  upstream connection goes, and a later LPUSH leaves its item in the list.
- RateLimitInMulti: a SET refused by --rate-limit 3 inside MULTI makes EXEC answer -EXECABORT and
  none of the transaction's SETs is applied.
- SelectRouting: MULTI/SELECT 1/SET/EXEC then SET lands in db 1 as in Redis; SELECT 5 against an
  upstream with --databases 2 is refused, bystanders in db 0 and db 1 see no error.
- UpstreamTimeout: a 2.5 s script with --upstream-timeout-ms 1000: its client gets an error that
  says the command may still be applied, another client's requests behind it get their reply or
  a timeout error, and afterwards everyone is served on the same shared connection; with the
  default timeout the script's reply is :1.
- UnexpectedReplyGuard: a relay between respite and Redis injects a reply nobody waits for (+OK
  on the idle RESP2 shared connection, a RESP3 push on the busy RESP3 one): no client ever gets
  it as its answer, upstream_protocol_violations rises, respite reconnects and serves.

Every loop is bounded by a count and a deadline; waits poll with a deadline.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
import unittest

import harness
from harness import (DIRECT, HOST, ProxyTestCase, Push, RawConn, RedisServer, RespError, Respite,
                     assert_same_as_redis, encode_command, proxy_info,
                     respite_only, split_replies)

NOMASTERLINK = "NOMASTERLINK Can't SYNC while not connected with my master"
EXECABORT = "EXECABORT Transaction discarded because of previous errors."
RATE_ERR = "ERR rate limit exceeded"
# A script that keeps Redis busy for ~2.5 s (under Redis's 5 s busy-script threshold, so other
# clients simply wait) and returns 1.
BUSY_SCRIPT = ("local t=redis.call('TIME') local s=t[1]*1000000+t[2] "
               "while true do local n=redis.call('TIME') "
               "if n[1]*1000000+n[2]-s >= 2500000 then break end end return 1")


# --------------------------------------------------------------------------------------------
# Helpers.


def wait_until(pred, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def info_int(port: int, name: str) -> int:
    """A counter of PROXY INFO (a KeyError, failing the test, when it is not reported)."""
    return int(proxy_info(port)[name])


def direct(port: int, *args):
    """One command straight to a redis-server (not through respite)."""
    with RawConn(port) as c:
        return c.call(*args)


def upstream_clients(port: int) -> list[dict[str, str]]:
    """CLIENT LIST of a redis-server, one dict per client."""
    with RawConn(port) as c:
        text = c.call("CLIENT", "LIST")
    out = []
    for line in text.decode().splitlines():
        out.append(dict(f.split("=", 1) for f in line.split(" ") if "=" in f))
    return out


def blocked_pops(port: int) -> int:
    return sum(1 for cl in upstream_clients(port) if cl.get("cmd") == "blpop" and "b" in cl.get("flags", ""))


_control: RedisServer | None = None


def control_redis() -> RedisServer:
    """A second redis-server for reference runs that must not share keys with the upstream."""
    global _control
    if _control is None:
        _control = RedisServer().start()
        unittest.addModuleCleanup(_control.close)
    return _control


class Bystanders:
    """Threads that each run TYPE <missing>, SET, GET, INCR on their own keys through one
    connection and check every reply is exactly theirs. A write whose reply was an error may or
    may not have been applied: the next read accepts either outcome. Errors are counted (and
    allowed only when allow_errors); any other reply that is not the expected one is a wrong
    reply and ends that thread. pause()/resume() park the threads between rounds."""

    def __init__(self, port: int, n: int, tag: str, proto: int = 2, db: int = 0,
                 allow_errors: bool = False, max_rounds: int = 200_000, seconds: float = 60.0,
                 missing_prefix: str | None = None):
        self.port, self.tag, self.proto, self.db = port, tag, proto, db
        self.missing_prefix = missing_prefix or f"{tag}:none"
        self.allow_errors = allow_errors
        self.max_rounds, self.seconds = max_rounds, seconds
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.run_ev = threading.Event()
        self.run_ev.set()
        self.parked = [threading.Event() for _ in range(n)]
        self.rounds = [0] * n
        self.ok_after_resume = [0] * n
        self.resumed = False
        self.errors: list[str] = []
        self.wrong: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _check(self, tid: int, what: str, got, accept: list) -> bool | None:
        """True: an accepted reply; None: an error (allowed or counted); False: wrong."""
        if isinstance(got, RespError) and not any(isinstance(a, RespError) for a in accept):
            with self.lock:
                self.errors.append(f"{self.tag}/{tid} {what}: {got}")
            return None
        if got in accept and type(got) is not Push:
            return True
        with self.lock:
            self.wrong.append(f"{self.tag}/{tid} {what}: got {got!r}, expected one of {accept!r}")
        return False

    def _run(self, tid: int):
        try:
            with RawConn(self.port, timeout=15) as c:
                if self.proto == 3:
                    hello = c.call("HELLO", "3")
                    if not isinstance(hello, dict):
                        self.wrong.append(f"{self.tag}/{tid} HELLO 3: {hello!r}")
                        return
                if self.db:
                    r = c.call("SELECT", str(self.db))
                    if r != "OK":
                        self.wrong.append(f"{self.tag}/{tid} SELECT {self.db}: {r!r}")
                        return
                key, ctr = f"{self.tag}:k:{tid}", f"{self.tag}:n:{tid}"
                missing = f"{self.missing_prefix}:{tid}"
                values = [None]            # what GET may answer now
                counts = [0]               # what the counter may be now
                end = time.monotonic() + self.seconds
                i = 0
                while not self.stop_ev.is_set() and i < self.max_rounds and time.monotonic() < end:
                    if not self.run_ev.is_set():
                        self.parked[tid].set()
                        self.run_ev.wait(timeout=30)
                        self.parked[tid].clear()
                        continue
                    i += 1
                    val = f"v{tid}-{i}".encode()
                    c.cmd("TYPE", missing)
                    r = self._check(tid, "TYPE", c.read_reply(), ["none"])
                    if r is False:
                        return
                    ok = r
                    c.cmd("SET", key, val)
                    r = self._check(tid, "SET", c.read_reply(), ["OK"])
                    if r is False:
                        return
                    values = [val] if r else values + [val]
                    ok = ok and r
                    c.cmd("GET", key)
                    got = c.read_reply()
                    r = self._check(tid, "GET", got, values)
                    if r is False:
                        return
                    if r:
                        values = [got]
                    ok = ok and r
                    c.cmd("INCR", ctr)
                    got = c.read_reply()
                    r = self._check(tid, "INCR", got, [n + 1 for n in counts])
                    if r is False:
                        return
                    counts = [got] if r else sorted({n + d for n in counts for d in (0, 1)})
                    ok = ok and r
                    with self.lock:
                        self.rounds[tid] = i
                        if ok and self.resumed:
                            self.ok_after_resume[tid] += 1
        except Exception as e:  # noqa: BLE001  (a stuck or closed connection is a wrong outcome)
            with self.lock:
                self.wrong.append(f"{self.tag}/{tid}: {type(e).__name__}: {e}")
        finally:
            self.parked[tid].set()

    def pause(self, timeout: float = 10.0) -> bool:
        self.run_ev.clear()
        return all(p.wait(timeout) for p in self.parked)

    def resume(self):
        with self.lock:
            self.resumed = True
        self.run_ev.set()

    def total_rounds(self) -> int:
        with self.lock:
            return sum(self.rounds)

    def stop(self, timeout: float = 20.0):
        self.stop_ev.set()
        self.run_ev.set()
        for t in self.threads:
            t.join(timeout)
        return not any(t.is_alive() for t in self.threads)


class Monitor:
    """A MONITOR client through respite that reads its stream until told to stop."""

    def __init__(self, port: int):
        self.conn = RawConn(port, timeout=10)
        self.first = self.conn.call("MONITOR")
        self.lines = 0
        self.closed = False
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_ev.is_set() and not self.conn.closed:
            try:
                self.conn.read_raw_replies(1, timeout=0.2)
                self.lines += 1
            except TimeoutError:
                pass
            except OSError:
                break
        self.closed = self.conn.closed

    def stop(self):
        self.stop_ev.set()
        self.thread.join(5)
        self.conn.close()


# (P|S)UNSUBSCRIBE forms sent by clients that are not subscribed, each followed by a PING so the
# whole answer to it (and nothing more) is what is compared.
UNSUB_FORMS = [
    ("UNSUBSCRIBE", "rr:a", "rr:b", "rr:c"),
    ("PUNSUBSCRIBE", "rr:p*", "rr:q?"),
    ("SUNSUBSCRIBE", "rr:s1", "rr:s2", "rr:s3", "rr:s4"),
    ("UNSUBSCRIBE",),
    ("PUNSUBSCRIBE",),
    ("SUNSUBSCRIBE",),
    ("unsubscribe", "rr:lower"),
]


def unsub_bytes(form) -> bytes:
    return encode_command(*form) + encode_command("PING")


def unsub_nreplies(form) -> int:
    return max(1, len(form) - 1) + 1


def answer_after_hello(port: int, proto: int, data: bytes, nreplies: int) -> bytes:
    """The bytes answering `data` on a fresh connection (after HELLO 3 when proto is 3)."""
    with RawConn(port, timeout=5) as c:
        if proto == 3:
            c.call("HELLO", "3")
        c.send(data)
        return b"".join(c.read_raw_replies(nreplies))


# --------------------------------------------------------------------------------------------


class OddReplyCounts(ProxyTestCase):
    """Commands whose reply count is not one per request never shift other clients' replies."""

    def test_unsubscribe_when_not_subscribed_like_redis(self):
        for proto in (2, 3):
            for form in UNSUB_FORMS:
                data, n = unsub_bytes(form), unsub_nreplies(form)
                ref = answer_after_hello(self.upstream.port, proto, data, n)
                got = answer_after_hello(self.port, proto, data, n)
                self.assertEqual(got, ref, f"RESP{proto} {form}")
            # All of them pipelined in one send on one connection.
            data = b"".join(unsub_bytes(f) for f in UNSUB_FORMS)
            n = sum(unsub_nreplies(f) for f in UNSUB_FORMS)
            ref = answer_after_hello(self.upstream.port, proto, data, n)
            self.assertEqual(answer_after_hello(self.port, proto, data, n), ref, f"RESP{proto} pipelined")
        if proto == 3:
            self.assertTrue(ref.startswith(b">3\r\n"), "RESP3 reference is a push (test bug)")

    def test_replconf_ack_getack_unanswered_like_redis(self):
        data = (encode_command("REPLCONF", "ACK", "0") + encode_command("REPLCONF", "GETACK", "*") +
                encode_command("PING") + encode_command("REPLCONF", "ack", "12") +
                encode_command("ECHO", "after"))
        assert_same_as_redis(self, self.port, self.upstream.port, data, nreplies=2,
                             expected=b"+PONG\r\n$5\r\nafter\r\n", expect_close=False)

    @respite_only
    def test_sync_psync_refused(self):
        with self.raw() as c:
            self.assertEqual(c.call("SYNC"), NOMASTERLINK)
            self.assertEqual(c.call("PSYNC", "?", "-1"), NOMASTERLINK)
            self.assertEqual(c.call("psync", "0123456789012345678901234567890123456789", "100"),
                             NOMASTERLINK)
            self.assertEqual(c.call("SET", "rr:sync:after", "1"), "OK")
            self.assertEqual(c.call("GET", "rr:sync:after"), b"1")
            self.assertEqual(c.read_for(0.05), b"")

    def test_bystanders_get_their_own_replies(self):
        before_viol = info_int(self.port, "upstream_protocol_violations") if not DIRECT else 0
        refs = {}
        for proto in (2, 3):
            for form in UNSUB_FORMS:
                refs[(proto, form)] = answer_after_hello(self.upstream.port, proto, unsub_bytes(form),
                                                         unsub_nreplies(form))
        monitor = Monitor(self.port)
        self.addCleanup(monitor.stop)
        self.assertEqual(monitor.first, "OK")
        by2 = Bystanders(self.port, 3, "rr:by2", proto=2)
        by3 = Bystanders(self.port, 2, "rr:by3", proto=3)
        self.addCleanup(by2.stop)
        self.addCleanup(by3.stop)
        self.assertTrue(wait_until(lambda: by2.total_rounds() > 0 and by3.total_rounds() > 0, 10),
                        f"bystanders never ran: {by2.wrong + by3.wrong + by2.errors + by3.errors}")
        mismatches: list[str] = []
        rng = random.Random(20240611)
        persistent = {2: self.raw(), 3: self.raw()}
        for c in persistent.values():
            self.addCleanup(c.close)
        persistent[3].call("HELLO", "3")
        rounds = 40
        for rnd in range(rounds):
            for proto in (2, 3):
                forms = UNSUB_FORMS[:]
                rng.shuffle(forms)
                # one at a time on a long-lived connection
                c = persistent[proto]
                for form in forms:
                    c.send(unsub_bytes(form))
                    try:
                        got = b"".join(c.read_raw_replies(unsub_nreplies(form)))
                    except TimeoutError as e:
                        mismatches.append(f"round {rnd} RESP{proto} {form}: {e}")
                        break
                    if got != refs[(proto, form)]:
                        mismatches.append(f"round {rnd} RESP{proto} {form}: got {got!r}, redis "
                                          f"{refs[(proto, form)]!r}")
                # pipelined in one send on a fresh connection
                with self.raw() as f:
                    if proto == 3:
                        f.call("HELLO", "3")
                    f.send(b"".join(unsub_bytes(x) for x in forms))
                    try:
                        got = b"".join(f.read_raw_replies(sum(unsub_nreplies(x) for x in forms)))
                    except TimeoutError as e:
                        mismatches.append(f"round {rnd} RESP{proto} pipelined: {e}")
                        got = None
                    if got is not None and got != b"".join(refs[(proto, x)] for x in forms):
                        mismatches.append(f"round {rnd} RESP{proto} pipelined: got {got!r}")
            # replication commands: no reply for REPLCONF ACK/GETACK, SYNC/PSYNC refused
            with self.raw() as f:
                f.send(encode_command("REPLCONF", "ACK", str(rnd)) +
                       encode_command("REPLCONF", "GETACK", "*") + encode_command("PING", f"r{rnd}"))
                try:
                    got = f.read_reply()
                except TimeoutError as e:
                    got = f"{e}"
                if got != f"r{rnd}".encode():
                    mismatches.append(f"round {rnd} REPLCONF ACK/GETACK then PING: got {got!r}")
                if not DIRECT:
                    f.send(encode_command("SYNC") + encode_command("PSYNC", "?", "-1") +
                           encode_command("PING", "s"))
                    try:
                        got = f.read_replies(3)
                    except TimeoutError as e:
                        got = f"{e}"
                    if got != [NOMASTERLINK, NOMASTERLINK, b"s"]:
                        mismatches.append(f"round {rnd} SYNC/PSYNC: got {got!r}")
            if len(mismatches) > 5:
                break
        rounds_seen = (by2.total_rounds(), by3.total_rounds())
        self.assertTrue(by2.stop() and by3.stop(), "a bystander thread did not end")
        monitor_lines, monitor_closed = monitor.lines, monitor.conn.closed
        monitor.stop()
        self.assertEqual(mismatches, [], "unsubscribe/replication replies differ from redis-server")
        self.assertEqual(by2.wrong + by3.wrong, [], "bystanders got replies that were not theirs")
        self.assertEqual(by2.errors + by3.errors, [], "bystanders got errors")
        self.assertGreater(min(rounds_seen), 0)
        self.assertFalse(monitor_closed, "the MONITOR client was closed")
        self.assertGreater(monitor_lines, 0, "the MONITOR client stopped streaming")
        if not DIRECT:
            after = proxy_info(self.port)
            self.assertEqual(after.get("upstream_protocol_violations"), str(before_viol),
                             "a shared connection got a reply nobody was waiting for")
            self.assertEqual(after.get("upstream_protocol_violations"), "0")
        print(f"\n  bystander rounds {rounds_seen}, MONITOR lines {monitor_lines}, "
              f"{rounds} rounds of odd-reply-count commands")


class StreamingLocalReplies(ProxyTestCase):
    """QUIT, RESET and rate-limit errors of a streaming client follow the replies it is owed."""

    def test_subscribe_unsubscribe_ping_quit_pipelined(self):
        assert_same_as_redis(
            self, self.port, self.upstream.port,
            b"SUBSCRIBE c\r\nUNSUBSCRIBE c\r\nPING\r\nQUIT\r\n", nreplies=None,
            expected=b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
                     b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n+PONG\r\n+OK\r\n",
            expect_close=True)
        # Still subscribed to another channel when QUIT comes.
        assert_same_as_redis(
            self, self.port, self.upstream.port,
            b"SUBSCRIBE c d\r\nUNSUBSCRIBE c\r\nPING\r\nQUIT\r\nPING\r\n", nreplies=None,
            expect_close=True)

    def test_subscribe_reset_then_normal_commands(self):
        # Pipelined in one send, then one at a time.
        data = (b"SUBSCRIBE c\r\nRESET\r\nSET rr:reset:k v1\r\nGET rr:reset:k\r\n"
                b"INCR rr:reset:n\r\nDEL rr:reset:n\r\n")
        assert_same_as_redis(
            self, self.port, self.upstream.port, data, nreplies=6,
            expected=b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n+RESET\r\n+OK\r\n$2\r\nv1\r\n"
                     b":1\r\n:1\r\n",
            expect_close=False)
        with self.raw() as c:
            c.cmd("PSUBSCRIBE", "rr:p*")
            self.assertEqual(c.read_reply(), [b"psubscribe", b"rr:p*", 1])
            self.assertEqual(c.call("RESET"), "RESET")
            self.assertEqual(c.call("SET", "rr:reset:k2", "v2"), "OK")
            self.assertEqual(c.call("GET", "rr:reset:k2"), b"v2")
            self.assertEqual(c.call("GET", "rr:reset:k2"), b"v2")
            self.assertEqual(c.call("PING"), "PONG")
            self.assertEqual(direct(self.upstream.port, "GET", "rr:reset:k2"), b"v2")
            # no longer subscribed: a publish reaches nobody
            self.assertEqual(direct(self.upstream.port, "PUBLISH", "rr:px", "m"), 0)
            self.assertEqual(c.read_for(0.05), b"")

    @respite_only
    def test_monitor_then_quit(self):
        with self.raw() as c:
            self.assertEqual(c.call("MONITOR"), "OK")
            c.cmd("QUIT")
            data, closed = c.read_until_close(timeout=5)
        self.assertTrue(closed, f"MONITOR then QUIT: not closed; got {data[-200:]!r}")
        self.assertTrue(data.endswith(b"+OK\r\n"), f"MONITOR then QUIT: {data[-200:]!r}")
        self.assertNotIn(b"respite-barrier", data,
                         "the MONITOR client saw respite's own barrier command in its stream")

    @respite_only
    def test_rate_limit_errors_follow_owed_confirmations(self):
        with Respite(self.upstream, ["--rate-limit", "2"]) as px:
            # (a) the whole burst pipelined on a fresh connection; (b) a subscribed client's burst
            for subscribed_first in (False, True):
                with RawConn(px.port, timeout=5) as c:
                    confirmed = 0
                    if subscribed_first:
                        c.cmd("SUBSCRIBE", "rl:first")
                        self.assertEqual(c.read_reply(), [b"subscribe", b"rl:first", 1])
                        confirmed = 1
                    chans = [f"rl:{subscribed_first}:{i}" for i in range(8)]
                    c.send(b"".join(encode_command("SUBSCRIBE", ch) for ch in chans))
                    replies = c.read_replies(len(chans), timeout=5)
                    errors = 0
                    for i, (ch, r) in enumerate(zip(chans, replies)):
                        if isinstance(r, RespError):
                            self.assertEqual(r, RATE_ERR, f"reply {i}: {r!r}")
                            errors += 1
                        else:
                            confirmed += 1
                            self.assertEqual(r, [b"subscribe", ch.encode(), confirmed],
                                             f"reply {i} is not the answer to SUBSCRIBE {ch} "
                                             f"(replies: {replies!r})")
                    self.assertGreater(errors, 0, f"nothing was rate-limited: {replies!r}")
                    self.assertLess(errors, len(chans), f"everything was rate-limited: {replies!r}")


class DepartedBlockedClient(ProxyTestCase):
    """A client that leaves while blocked: its BLPOP is cancelled upstream with it."""

    def departed(self, key: str, tail: bytes):
        direct(self.upstream.port, "DEL", key)
        base = blocked_pops(self.upstream.port)
        c = self.raw()
        c.send(encode_command("BLPOP", key, "0") + tail)
        self.assertTrue(wait_until(lambda: blocked_pops(self.upstream.port) == base + 1, 5),
                        "the BLPOP never blocked upstream")
        c.close()
        gone = wait_until(lambda: blocked_pops(self.upstream.port) == base, 5)
        with self.raw() as p:
            self.assertEqual(p.call("LPUSH", key, "x"), 1)
        llen = direct(self.upstream.port, "LLEN", key)
        self.assertEqual(llen, 1, f"the departed client's BLPOP popped the item (blocked upstream "
                                  f"connection {'gone' if gone else 'still there after 5 s'})")
        self.assertTrue(gone, "the departed client's blocked upstream connection stayed")

    def test_blpop_then_disconnect(self):
        self.departed("rr:bl:1", b"")

    def test_blpop_reset_pipelined_then_disconnect(self):
        self.departed("rr:bl:2", encode_command("RESET"))


@respite_only
class RateLimitInMulti(ProxyTestCase):
    respite_args = ["--rate-limit", "3"]

    def test_refused_set_aborts_exec(self):
        keys = [f"rr:rl:{i}" for i in range(6)]
        data = (encode_command("MULTI") + b"".join(encode_command("SET", k, "v") for k in keys) +
                encode_command("EXEC"))
        with self.raw() as c:
            c.send(data)
            replies = c.read_replies(len(keys) + 2)
        self.assertEqual(replies[0], "OK")
        queued = [r for r in replies[1:-1] if r == "QUEUED"]
        refused = [r for r in replies[1:-1] if r == RATE_ERR]
        self.assertEqual(len(queued) + len(refused), len(keys), f"replies: {replies!r}")
        self.assertGreater(len(refused), 0, f"no SET was rate-limited: {replies!r}")
        self.assertGreater(len(queued), 0, f"no SET was queued: {replies!r}")
        # The control: what Redis itself answers when a queued command was refused.
        with RawConn(self.upstream.port) as c:
            c.send(encode_command("MULTI") + encode_command("SET", "rr:rl:ctl", "v") +
                   encode_command("NOSUCHCOMMAND") + encode_command("EXEC"))
            ctl = c.read_replies(4)
        self.assertEqual(ctl[-1], EXECABORT, "redis-server itself (test bug)")
        self.assertEqual(replies[-1], ctl[-1], f"EXEC: {replies[-1]!r}")
        self.assertEqual(direct(self.upstream.port, "EXISTS", *keys), 0,
                         "SETs of the aborted transaction were applied")


def run_sequence(port: int, cmds: list[tuple], pipelined: bool) -> bytes:
    """The bytes answering cmds on a fresh connection: sent in one write, or one at a time
    (each sent after the previous reply arrived)."""
    with RawConn(port) as c:
        if pipelined:
            c.send(b"".join(encode_command(*x) for x in cmds))
            return b"".join(c.read_raw_replies(len(cmds)))
        out = b""
        for x in cmds:
            c.cmd(*x)
            out += b"".join(c.read_raw_replies(1))
        return out


def where_keys(port: int, keys: list[str], dbs=(0, 1, 2, 3)) -> dict[int, list[int]]:
    with RawConn(port) as c:
        out = {}
        for db in dbs:
            c.call("SELECT", str(db))
            out[db] = [c.call("EXISTS", k) for k in keys]
        return out


class SelectRouting(ProxyTestCase):

    def test_select_inside_multi_moves_the_client(self):
        ctl = control_redis()
        for pipelined in (True, False):
            k, k2 = f"rr:sel:{pipelined}:k", f"rr:sel:{pipelined}:k2"
            cmds = [("MULTI",), ("SELECT", "1"), ("SET", k, "v"), ("EXEC",), ("SET", k2, "v2"),
                    ("GET", k), ("GET", k2), ("GET", k)]
            ref = run_sequence(ctl.port, cmds, pipelined)
            got = run_sequence(self.port, cmds, pipelined)
            self.assertEqual(got, ref, f"replies differ from redis-server's (pipelined={pipelined})")
            expected = where_keys(ctl.port, [k, k2])
            self.assertEqual(expected, {0: [0, 0], 1: [1, 1], 2: [0, 0], 3: [0, 0]},
                             "redis-server itself (test bug)")
            self.assertEqual(where_keys(self.upstream.port, [k, k2]), expected,
                             f"keys landed in another db than Redis puts them (pipelined={pipelined})")
        # A discarded or aborted transaction's SELECT does not move the client.
        for pipelined in (True, False):
            d, e = f"rr:sel:{pipelined}:d", f"rr:sel:{pipelined}:e"
            cmds = [("MULTI",), ("SELECT", "2"), ("DISCARD",), ("SET", d, "1"),
                    ("MULTI",), ("SELECT", "3"), ("NOSUCH",), ("EXEC",), ("SET", e, "1")]
            ref = run_sequence(ctl.port, cmds, pipelined)
            self.assertEqual(run_sequence(self.port, cmds, pipelined), ref,
                             f"discarded/aborted SELECT (pipelined={pipelined})")
            self.assertEqual(where_keys(self.upstream.port, [d, e]), where_keys(ctl.port, [d, e]))


class SelectOutOfRange(ProxyTestCase):
    upstream_args = ["--databases", "2"]

    def test_select_out_of_range_bystanders_unharmed(self):
        with self.raw() as c:   # a forwarded round trip: respite has heard from the upstream
            self.assertEqual(c.call("SET", "rr:db:warm", "1"), "OK")
        by0 = Bystanders(self.port, 2, "rr:db0", db=0)
        by1 = Bystanders(self.port, 2, "rr:db1", db=1)
        self.addCleanup(by0.stop)
        self.addCleanup(by1.stop)
        self.assertTrue(wait_until(lambda: by0.total_rounds() > 0 and by1.total_rounds() > 0, 10),
                        f"bystanders never ran: {by0.wrong + by1.wrong + by0.errors + by1.errors}")
        with RawConn(self.upstream.port) as d:
            ref = d.call("SELECT", "5")
        self.assertEqual(ref, "ERR DB index is out of range", "redis-server itself (test bug)")
        problems = []
        for i in range(30):
            with self.raw() as c:
                c.send(encode_command("SELECT", "5") + encode_command("SET", f"rr:db:x{i}", "1") +
                       encode_command("GET", f"rr:db:x{i}") + encode_command("SELECT", "2") +
                       encode_command("SELECT", "1") + encode_command("SET", f"rr:db:y{i}", "1"))
                got = c.read_replies(6)
                want = ["ERR DB index is out of range", "OK", b"1", "ERR DB index is out of range",
                        "OK", "OK"]
                if got != want:
                    problems.append(f"iteration {i}: {got!r}")
        start = (by0.total_rounds(), by1.total_rounds())
        # the bystanders go on after all of it
        self.assertTrue(wait_until(lambda: by0.total_rounds() > start[0] and by1.total_rounds() > start[1], 10))
        self.assertTrue(by0.stop() and by1.stop())
        self.assertEqual(problems, [], "SELECT out of range")
        self.assertEqual(by0.wrong + by1.wrong, [], "bystanders got replies that were not theirs")
        self.assertEqual(by0.errors + by1.errors, [], "bystanders got errors")
        with RawConn(self.upstream.port) as d:
            self.assertEqual(d.call("EXISTS", "rr:db:x0", "rr:db0:k:0"), 2)
            d.call("SELECT", "1")
            self.assertEqual(d.call("EXISTS", "rr:db:y0", "rr:db1:k:0", "rr:db:x0"), 2)


class SelectOutOfRangeWithoutConfig(SelectOutOfRange):
    """The same, against an upstream that refuses CONFIG (as managed Redis often does): respite
    cannot read `databases`, so it tries a SELECT on a shared connection before the client moves."""
    upstream_args = ["--databases", "2", "--rename-command", "CONFIG", ""]


# --------------------------------------------------------------------------------------------


@respite_only
class UpstreamTimeout(ProxyTestCase):
    respite_args = ["--upstream-timeout-ms", "1000"]

    def test_busy_script_times_out_alone(self):
        a, b = self.raw(10), self.raw(10)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertEqual(a.call("SET", "rr:to:a", "0"), "OK")
        self.assertEqual(b.call("SET", "rr:to:b", "0"), "OK")
        self.assertTrue(wait_until(lambda: proxy_info(self.port)["tracking_link"] == "up", 5))
        before = proxy_info(self.port)
        fwd = int(before["forwarded_commands"])
        a.cmd("EVAL", BUSY_SCRIPT, "0")
        # B's requests go out behind the script on the shared connection.
        self.assertTrue(wait_until(lambda: int(proxy_info(self.port)["forwarded_commands"]) > fwd, 2),
                        "the EVAL was never forwarded")
        b.send(encode_command("SET", "rr:to:b", "during") + encode_command("GET", "rr:to:b"))
        ra = a.read_reply(timeout=10)
        self.assertIsInstance(ra, RespError, f"the script's client: {ra!r}")
        self.assertIn("may still be applied", ra)
        rb = b.read_replies(2, timeout=10)
        for r, real in zip(rb, ("OK", b"during")):
            if isinstance(r, RespError):
                self.assertIn("timeout", r.lower(), f"B: {rb!r}")
            else:
                self.assertEqual(r, real, f"B: {rb!r}")
        # The script ends: Redis answers a direct PING again.
        with RawConn(self.upstream.port, timeout=10) as d:
            self.assertEqual(d.call("PING"), "PONG")
        self.assertEqual(a.call("SET", "rr:to:a", "after-a"), "OK")
        self.assertEqual(a.call("GET", "rr:to:a"), b"after-a")
        self.assertEqual(a.call("INCRBY", "rr:to:n", "7"), 7)
        self.assertEqual(b.call("SET", "rr:to:b", "after-b"), "OK")
        self.assertEqual(b.call("GET", "rr:to:b"), b"after-b")
        with self.raw() as c:
            self.assertEqual(c.call("GET", "rr:to:a"), b"after-a")
            self.assertEqual(c.call("INCRBY", "rr:to:n", "1"), 8)
        self.assertEqual(a.read_for(0.05) + b.read_for(0.05), b"", "extra bytes after the last reply")
        after = proxy_info(self.port)
        print(f"\n  script's client: {ra}; B: {rb!r}")
        self.assertEqual(after.get("upstream_errors"), before.get("upstream_errors"),
                         "the shared connection was dropped while the script ran")


class DefaultTimeoutScript(ProxyTestCase):
    def test_busy_script_gets_its_reply(self):
        with self.raw(15) as a:
            a.cmd("EVAL", BUSY_SCRIPT, "0")
            self.assertEqual(a.read_reply(timeout=15), 1)
            self.assertEqual(a.call("PING"), "PONG")


# --------------------------------------------------------------------------------------------


class InjectingRelay:
    """A TCP relay between respite and redis-server that counts requests and replies on each
    connection and can add a reply of its own at a reply boundary. A connection is known by a
    marker string seen in its requests (a key only one kind of request uses)."""

    class Pair:
        def __init__(self, c, u):
            self.c, self.u = c, u
            self.req_rest = b""
            self.rep_rest = b""
            self.requests = 0
            self.replies = 0
            self.marks: set[bytes] = set()
            self.inject: bytes | None = None
            self.need_idle = False
            self.injected = threading.Event()
            self.open = True

    def __init__(self, upstream_port: int, markers: list[bytes]):
        self.upstream_port = upstream_port
        self.markers = markers
        self.lock = threading.Lock()
        self.pairs: list[InjectingRelay.Pair] = []
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        with contextlib.suppress(OSError):
            while True:
                c, _ = self.listener.accept()
                u = socket.create_connection((HOST, self.upstream_port))
                for s in (c, u):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                pair = InjectingRelay.Pair(c, u)
                with self.lock:
                    self.pairs.append(pair)
                threading.Thread(target=self._pump_requests, args=(pair,), daemon=True).start()
                threading.Thread(target=self._pump_replies, args=(pair,), daemon=True).start()

    def _pump_requests(self, pair):
        with contextlib.suppress(OSError):
            while data := pair.c.recv(65536):
                with self.lock:
                    pair.req_rest += data
                    reqs, pair.req_rest = split_replies(pair.req_rest)
                    pair.requests += len(reqs)
                    for r in reqs:
                        for m in self.markers:
                            if m in r:
                                pair.marks.add(m)
                pair.u.sendall(data)
        with self.lock:
            pair.open = False
        with contextlib.suppress(OSError):
            pair.u.shutdown(socket.SHUT_WR)

    def _pump_replies(self, pair):
        with contextlib.suppress(OSError):
            while data := pair.u.recv(65536):
                with self.lock:
                    pair.rep_rest += data
                    reps, pair.rep_rest = split_replies(pair.rep_rest)
                    out = b""
                    for r in reps:
                        out += r
                        if not r.startswith(b">"):
                            pair.replies += 1
                        if pair.inject is not None and (not pair.need_idle or
                                                        pair.replies == pair.requests):
                            out += pair.inject
                            pair.inject = None
                            pair.injected.set()
                    pair.c.sendall(out)
        with self.lock:
            pair.open = False
        with contextlib.suppress(OSError):
            pair.c.shutdown(socket.SHUT_WR)

    def marked(self, marker: bytes):
        with self.lock:
            live = [p for p in self.pairs if p.open and marker in p.marks]
        return live[-1] if live else None

    def inject(self, marker: bytes, data: bytes, need_idle: bool, timeout: float = 5.0) -> bool:
        """Adds `data` to the upstream->respite stream of the connection marked `marker`, at a
        reply boundary (with need_idle: only when every request seen has been answered)."""
        pair = self.marked(marker)
        if pair is None:
            return False
        with self.lock:
            if not pair.rep_rest and (not need_idle or pair.replies == pair.requests):
                pair.c.sendall(data)
                pair.injected.set()
            else:
                pair.need_idle = need_idle
                pair.inject = data
        return pair.injected.wait(timeout)

    def close(self):
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for p in self.pairs:
                for s in (p.c, p.u):
                    with contextlib.suppress(OSError):
                        s.close()


@respite_only
class UnexpectedReplyGuard(unittest.TestCase):
    """A shared connection that receives a reply nobody waits for is closed, counted, and
    replaced; the stray reply is never handed to a client."""

    def setUp(self):
        stack = contextlib.ExitStack()
        self.addCleanup(stack.close)
        self.upstream = stack.enter_context(RedisServer())
        self.relay = InjectingRelay(self.upstream.port, [b"mark2:", b"mark3:"])
        stack.callback(self.relay.close)
        self.proxy = stack.enter_context(Respite(None, ["--upstream-timeout-ms", "5000"],
                                                 upstream_addr=f"{HOST}:{self.relay.port}"))
        self.port = self.proxy.port

    def tearDown(self):
        self.proxy.assert_alive()

    def served(self, proto: int, marker: str) -> bool:
        """A fresh client gets real replies (the shared connection of its protocol is up)."""
        def ok():
            try:
                with RawConn(self.port, timeout=5) as c:
                    if proto == 3:
                        c.call("HELLO", "3")
                    v = f"s{time.monotonic_ns()}"
                    return (c.call("TYPE", f"{marker}probe") == "none" and
                            c.call("SET", f"rr:guard:{proto}", v) == "OK" and
                            c.call("GET", f"rr:guard:{proto}") == v.encode())
            except (OSError, TimeoutError):
                return False
        return wait_until(ok, 10, 0.05)

    def test_extra_reply_on_idle_shared_connection(self):
        self.assertTrue(self.served(2, "mark2:"))
        by = Bystanders(self.port, 3, "rr:g2", proto=2, allow_errors=True, missing_prefix="mark2:none")
        self.addCleanup(by.stop)
        self.assertTrue(wait_until(lambda: by.total_rounds() > 20, 10), f"bystanders: {by.wrong}")
        before = proxy_info(self.port)
        # Nobody may be waiting on the connection when the stray +OK arrives (else it would be
        # indistinguishable from a real answer): the bystanders park, the relay waits until every
        # request it saw was answered.
        self.assertTrue(by.pause(), "bystanders did not park")
        self.assertTrue(self.relay.inject(b"mark2:", b"+OK\r\n", need_idle=True), "not injected")
        self.assertTrue(wait_until(lambda: info_int(self.port, "upstream_protocol_violations") >
                                   int(before["upstream_protocol_violations"]), 5),
                        f"upstream_protocol_violations did not rise: {proxy_info(self.port)}")
        parked_rounds = by.total_rounds()
        by.resume()
        self.assertTrue(wait_until(lambda: min(by.ok_after_resume) >= 5, 15),
                        f"bystanders not served again: {by.ok_after_resume} {by.errors[-3:]} {by.wrong}")
        self.assertTrue(self.served(2, "mark2:"))
        self.assertTrue(by.stop())
        after = proxy_info(self.port)
        self.assertEqual(by.wrong, [], "a client got a reply that was not its own")
        self.assertGreater(int(after["upstream_connects"]), int(before["upstream_connects"]),
                           "respite did not reconnect")
        print(f"\n  +OK injected on the idle shared connection: violations "
              f"{before.get('upstream_protocol_violations')} -> "
              f"{after['upstream_protocol_violations']}, bystander rounds {parked_rounds} -> "
              f"{by.total_rounds()}, errors {len(by.errors)}")

    def test_push_on_busy_resp3_shared_connection(self):
        self.assertTrue(self.served(3, "mark3:"))
        by = Bystanders(self.port, 4, "rr:g3", proto=3, allow_errors=True, missing_prefix="mark3:none")
        self.addCleanup(by.stop)
        self.assertTrue(wait_until(lambda: by.total_rounds() > 20, 10), f"bystanders: {by.wrong}")
        before = proxy_info(self.port)
        push = b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n"
        self.assertTrue(self.relay.inject(b"mark3:", push, need_idle=False), "not injected")
        self.assertTrue(wait_until(lambda: info_int(self.port, "upstream_protocol_violations") >
                                   int(before["upstream_protocol_violations"]), 5),
                        f"upstream_protocol_violations did not rise: {proxy_info(self.port)}")
        by.resume()  # from here on, each bystander must get real replies again
        self.assertTrue(wait_until(lambda: min(by.ok_after_resume) >= 5, 15),
                        f"bystanders not served again: {by.ok_after_resume} {by.errors[-3:]} {by.wrong}")
        self.assertTrue(self.served(3, "mark3:"))
        self.assertTrue(by.stop())
        after = proxy_info(self.port)
        self.assertEqual(by.wrong, [], "a client got a reply that was not its own")
        self.assertGreater(int(after["upstream_connects"]), int(before["upstream_connects"]),
                           "respite did not reconnect")
        print(f"\n  push injected on the busy RESP3 shared connection: violations "
              f"{before.get('upstream_protocol_violations')} -> "
              f"{after['upstream_protocol_violations']}, bystander errors {len(by.errors)}")


if __name__ == "__main__":
    harness.run_tests()
