#!/usr/bin/python3
"""A Sentinel failover under load, through respite, and what the clients saw (see
scripts/failover-demo).

Starts on free loopback ports a primary redis-server, a replica of it (--replicaof), three
Sentinels (redis-server <conf> --sentinel: quorum 2, down-after-milliseconds 1000,
failover-timeout 5000) and respite with --sentinel (x3) --sentinel-master. Waits (bounded) until
the replica's link is up, every Sentinel knows the replica and the two other Sentinels, and
respite is subscribed to all three.

Load: N client threads (default 4), each a connection to respite, for --seconds (default 15).
Each round of a thread: SET fo:<thread>:<seq> <seq> (a write; acknowledged values are kept),
INCR fo:ctr (a write; the newest acknowledged counter is shared by every thread), GET fo:ctr
(a read: the newest acknowledged counter is taken before it is sent, and the value must not be
older), GET fo:<thread>:<seq> (a read of the thread's own acknowledged write). At --at seconds
(default 5) the demo asks a Sentinel for SENTINEL FAILOVER <name>, or, with --kill, kills the
primary with SIGKILL (the Sentinels see +sdown, +odown and fail over on their own).

Recorded per 100 ms bucket: acknowledged writes, successful reads, errors (by message); the
Sentinels' events (PSUBSCRIBE * on one of them); respite's PROXY INFO (sentinel_switches,
upstream) every 50 ms; respite's log. Printed at the end: when the failover was asked, when
respite switched, the error window, the time from the switch to the first acknowledged write,
and the checks: respite follows the new primary, every acknowledged write is on the new primary
(read back from it directly), no read older than an acknowledged write; with --strict also
writes resumed within 5 s of the switch. Exit status 0 when the checks pass.

Writes (into --out, default build/failover-demo/): failover-demo-<mode>.csv (the buckets),
.png (gnuplot: throughput over time with the failover and the switch marked), .txt (the summary)
and respite-<mode>.log, where <mode> is `failover` or `kill`.

Standard library only (Debian's /usr/bin/python3). Every process is started and stopped by pid
(scripts/cache-demo.d/common.py): on exit, on an exception and on SIGINT/SIGTERM. Every loop is
bounded by a deadline.
"""
import argparse
import collections
import csv
import datetime
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "cache-demo.d"))
from common import (HOST, REDIS_SERVER, Conn, RespError, Server, Workdir, log,  # noqa: E402
                    parse_info, respite_bin, run_gnuplot, start_redis)

BUCKET_S = 0.1
POLL_S = 0.05
SETUP_WAIT_S = 30.0
STRICT_RESUME_S = 5.0


def wait_for(what, pred, timeout):
    """Polls pred() (exceptions count as not yet) until it is true; bounded."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (OSError, ValueError) as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError("timed out after %.0f s waiting for %s%s"
                       % (timeout, what, " (%s)" % last if last else ""))


def call(port, *args, timeout=5.0):
    with Conn(port, timeout=timeout) as c:
        return c.call(*args)


def pairs(flat):
    """A Sentinel reply's flat [name, value, ...] list as a dict of str."""
    def s(x):
        return x.decode() if isinstance(x, bytes) else str(x)
    return {s(flat[i]): s(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def proxy_info(port):
    r = call(port, "PROXY", "INFO", timeout=2.0)
    if isinstance(r, RespError) or r is None:
        raise OSError("PROXY INFO: %r" % (r,))
    return parse_info(r)


class Refused(Exception):
    """An error reply (or an unexpected one) to a command of the load."""


def expect(r, what, good):
    if not good(r):
        raise Refused(("-" + r) if isinstance(r, RespError) else "%s: unexpected %r" % (what, r))
    return r


def error_text(e):
    if isinstance(e, Refused):
        return str(e)[:120]
    return ("%s: %s" % (type(e).__name__, e))[:120]


# ---------------------------------------------------------------------------------------------
# Setup.

class Cluster:
    def __init__(self, tmp, name, bin_path):
        self.tmp, self.name = tmp, name
        self.primary = start_redis(tmp, ["--dir", self.node_dir("primary"),
                                         "--repl-diskless-sync-delay", "0"])
        self.replica = start_redis(tmp, ["--dir", self.node_dir("replica"),
                                         "--replicaof", HOST, str(self.primary.port)])
        log("primary   redis-server 127.0.0.1:%d (pid %d)" % (self.primary.port,
                                                              self.primary.proc.pid))
        log("replica   redis-server 127.0.0.1:%d (pid %d), replicaof the primary"
            % (self.replica.port, self.replica.proc.pid))
        wait_for("the replica's link to the primary", lambda: parse_info(
            call(self.replica.port, "INFO", "replication")).get("master_link_status") == "up",
            SETUP_WAIT_S)
        self.sentinels = [self.start_sentinel(i) for i in range(3)]
        log("sentinels 127.0.0.1:%s (quorum 2, down-after-milliseconds 1000, failover-timeout "
            "5000)" % ", ".join(str(s.port) for s in self.sentinels))
        t = time.monotonic()
        wait_for("every Sentinel to know the replica and the two other Sentinels",
                 self.sentinels_ready, SETUP_WAIT_S)
        log("sentinels: replica and peers known after %.1f s" % (time.monotonic() - t))
        argv = [bin_path, "--bind", HOST]
        for s in self.sentinels:
            argv += ["--sentinel", "%s:%d" % (HOST, s.port)]
        argv += ["--sentinel-master", name]
        self.respite = Server("respite", lambda port: argv[:1] + ["--port", str(port)] + argv[1:],
                              tmp)
        log("respite   127.0.0.1:%d (pid %d): %s" % (self.respite.port, self.respite.proc.pid,
                                                      " ".join(argv[1:])))
        wait_for("respite to subscribe to the three Sentinels",
                 lambda: proxy_info(self.respite.port).get("sentinels_reachable") == "3", 10.0)
        up = proxy_info(self.respite.port).get("upstream")
        if up != "%s:%d" % (HOST, self.primary.port):
            raise RuntimeError("respite's upstream is %s, not the primary" % up)

    def node_dir(self, name):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        return d

    def start_sentinel(self, i):
        def argv(port):
            conf = os.path.join(self.tmp, "sentinel-%d-%d.conf" % (i, port))
            with open(conf, "w") as f:
                f.write("port %d\nbind %s\ndir %s\n"
                        "sentinel monitor %s %s %d 2\n"
                        "sentinel down-after-milliseconds %s 1000\n"
                        "sentinel failover-timeout %s 5000\n"
                        % (port, HOST, self.tmp, self.name, HOST, self.primary.port,
                           self.name, self.name))
            return [REDIS_SERVER, conf, "--sentinel"]
        return Server("sentinel-%d" % i, argv, self.tmp)

    def sentinels_ready(self):
        for s in self.sentinels:
            with Conn(s.port, timeout=2.0) as c:
                master = pairs(c.call("SENTINEL", "MASTER", self.name))
                reps = [pairs(r) for r in c.call("SENTINEL", "REPLICAS", self.name)]
            if master.get("num-other-sentinels") != "2":
                return False
            if not any(r.get("port") == str(self.replica.port)
                       and "s_down" not in r.get("flags", "")
                       and r.get("master-link-status") == "ok" for r in reps):
                return False
        return True

    def sentinel_primary(self):
        """The primary as the Sentinels name it now (the first that answers)."""
        for s in self.sentinels:
            try:
                r = call(s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name, timeout=2.0)
                return "%s:%s" % (r[0].decode(), r[1].decode())
            except (OSError, TypeError, IndexError):
                continue
        return None


# ---------------------------------------------------------------------------------------------
# Load and observers. Times are seconds since the load started (time.monotonic() - t0).

class ThreadStats:
    def __init__(self, nb):
        self.writes = [0] * nb
        self.reads = [0] * nb
        self.errors = collections.Counter()  # (bucket, message) -> count
        self.error_times = []                # (t, message)
        self.acked = {}                      # key -> value of acknowledged SETs
        self.ack_times = []                  # every acknowledged write
        self.stale = []                      # (t, what)
        self.max_incr = 0


class Load:
    def __init__(self, port, threads, seconds, timeout):
        self.port, self.seconds, self.timeout = port, seconds, timeout
        self.nb = int(seconds / BUCKET_S) + 2
        self.stats = [ThreadStats(self.nb) for _ in range(threads)]
        self.lock = threading.Lock()
        self.acked_ctr = 0
        self.stop = threading.Event()
        self.t0 = None
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]

    def bucket(self, t):
        return min(max(int(t / BUCKET_S), 0), self.nb - 1)

    def start(self, t0):
        self.t0 = t0
        for t in self.threads:
            t.start()

    def join(self):
        deadline = time.monotonic() + self.timeout + 10.0
        for t in self.threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))

    def run(self, tid):
        """Rounds of SET, INCR, GET, GET; an error reply fails that command only, a broken
        connection the rest of the round (a new connection for the next one); after a round
        with an error the thread pauses 5 ms."""
        st = self.stats[tid]
        conn = None
        seq = 0
        mine = None  # (key, value) of this thread's newest acknowledged SET
        failed = False
        end = self.t0 + self.seconds
        while not self.stop.is_set() and time.monotonic() < end:
            if failed:
                time.sleep(0.005)  # a round with an error: no tight loop on an instant refusal
            failed = False
            seq += 1
            key = "fo:%d:%d" % (tid, seq)
            for step in range(4):
                try:
                    if conn is None:
                        conn = Conn(self.port, timeout=self.timeout)
                    if step == 0:
                        expect(conn.call("SET", key, seq), "SET", lambda r: r == "OK")
                        self.acknowledged(st)
                        st.acked[key] = seq
                        mine = (key, seq)
                    elif step == 1:
                        r = expect(conn.call("INCR", "fo:ctr"), "INCR",
                                   lambda r: isinstance(r, int))
                        self.acknowledged(st)
                        st.max_incr = max(st.max_incr, r)
                        with self.lock:
                            self.acked_ctr = max(self.acked_ctr, r)
                    elif step == 2:
                        with self.lock:
                            floor = self.acked_ctr
                        r = expect(conn.call("GET", "fo:ctr"), "GET", not_error)
                        t = self.read(st)
                        if (int(r) if r is not None else 0) < floor:
                            st.stale.append((t, "GET fo:ctr = %s after INCR acknowledged %d"
                                             % (r, floor)))
                    elif mine is not None:
                        r = expect(conn.call("GET", mine[0]), "GET", not_error)
                        t = self.read(st)
                        if r != b"%d" % mine[1]:
                            st.stale.append((t, "GET %s = %r after SET %d acknowledged"
                                             % (mine[0], r, mine[1])))
                except (Refused, OSError, ValueError) as e:
                    t = time.monotonic() - self.t0
                    msg = error_text(e)
                    st.errors[(self.bucket(t), msg)] += 1
                    st.error_times.append((t, msg))
                    failed = True
                    if not isinstance(e, Refused):
                        if conn is not None:
                            conn.close()
                        conn = None
                        break
        if conn is not None:
            conn.close()

    def acknowledged(self, st):
        t = time.monotonic() - self.t0
        st.writes[self.bucket(t)] += 1
        st.ack_times.append(t)
        return t

    def read(self, st):
        t = time.monotonic() - self.t0
        st.reads[self.bucket(t)] += 1
        return t


def not_error(r):
    return not isinstance(r, RespError)


class InfoPoller(threading.Thread):
    """respite's PROXY INFO every 50 ms: when sentinel_switches and upstream change."""

    def __init__(self, port, t0, stop):
        super().__init__(daemon=True)
        self.port, self.t0, self.stop = port, t0, stop
        self.changes = []  # (t, sentinel_switches, upstream)
        self.failures = 0

    def run(self):
        last = None
        while not self.stop.is_set():
            try:
                info = proxy_info(self.port)
                now = (info.get("sentinel_switches"), info.get("upstream"))
                if now != last:
                    self.changes.append((time.monotonic() - self.t0,) + now)
                    last = now
            except OSError:
                self.failures += 1
            self.stop.wait(POLL_S)


class SentinelEvents(threading.Thread):
    """PSUBSCRIBE * on one Sentinel: its events with the time they arrived."""

    def __init__(self, port, t0, label):
        super().__init__(daemon=True)
        self.t0, self.label = t0, label
        self.events = []  # (t, label, channel, payload)
        self.conn = Conn(port, timeout=None)
        r = self.conn.call("PSUBSCRIBE", "*")
        if not isinstance(r, list):
            raise RuntimeError("PSUBSCRIBE on a Sentinel: %r" % (r,))

    def run(self):
        try:
            while True:
                m = self.conn.read()
                if isinstance(m, list) and len(m) == 4 and m[0] == b"pmessage":
                    self.events.append((time.monotonic() - self.t0, self.label,
                                        m[2].decode(errors="replace"),
                                        m[3].decode(errors="replace")))
        except (OSError, ValueError):
            return  # closed at the end

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


LOG_TIME = re.compile(r"(\d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d\.\d{3})")


def respite_log(path, t0_wall):
    """respite's log lines as (t, line), t from the line's own timestamp (None if none)."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = LOG_TIME.search(line)
            t = None
            if m:
                try:
                    t = datetime.datetime.strptime(m.group(1), "%d %b %Y %H:%M:%S.%f")
                    t = t.timestamp() - t0_wall
                except ValueError:
                    t = None
            out.append((t, line))
    return out


# ---------------------------------------------------------------------------------------------
# Output.

def write_csv(path, load, messages):
    writes = [sum(s.writes[b] for s in load.stats) for b in range(load.nb)]
    reads = [sum(s.reads[b] for s in load.stats) for b in range(load.nb)]
    errs = collections.Counter()
    for s in load.stats:
        errs.update(s.errors)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "writes_ok", "reads_ok", "errors", "writes_per_s", "reads_per_s",
                    "errors_per_s"] + messages)
        for b in range(int(round(load.seconds / BUCKET_S))):  # stragglers past the end: not shown
            e = [errs[(b, m)] for m in messages]
            w.writerow(["%.1f" % (b * BUCKET_S), writes[b], reads[b], sum(e),
                        "%.0f" % (writes[b] / BUCKET_S), "%.0f" % (reads[b] / BUCKET_S),
                        "%.0f" % (sum(e) / BUCKET_S)] + e)


def write_png(png, csv_path, title, marks, seconds, tmp):
    """Writes and reads per second (left axis), errors per second (right axis), and a vertical
    line at each (t, label) of marks."""
    lines = ['set terminal pngcairo size 1100,520 font ",10"',
             "set output '%s'" % png,
             "set datafile separator ','",
             'set title "%s"' % title.replace('"', "'"),
             "set xlabel 'seconds since the load started'",
             "set ylabel 'acknowledged per second'",
             "set y2label 'errors per second'",
             "set xrange [0:%g]" % seconds, "set yrange [0:*]", "set y2range [0:*]",
             "set ytics nomirror", "set y2tics",
             "set grid ytics", "set key outside below center horizontal",
             "set style textbox opaque noborder"]
    colours = ["#2ca02c", "#9467bd", "#8c564b"]
    for i, (t, label) in enumerate(marks):
        c = colours[i % len(colours)]
        lines.append("set arrow from %.3f, graph 0 to %.3f, graph 1 nohead lc rgb '%s' dt 2 lw 2"
                     % (t, t, c))
        lines.append("set label '%s' at %.3f, graph %.2f left offset 0.5,0 tc rgb '%s' front boxed"
                     % (label.replace("'", ""), t, 0.95 - 0.06 * i, c))
    lines.append("plot '%s' every ::1 using 1:5 with steps lw 2 lc rgb '#1f77b4' title 'writes/s', "
                 "'' every ::1 using 1:6 with steps lw 2 lc rgb '#ff7f0e' title 'reads/s', "
                 "'' every ::1 using ($1+0.05):7 axes x1y2 with impulses lw 3 lc rgb '#d62728' "
                 "title 'errors/s (right axis)'" % csv_path)
    script = "\n".join(lines) + "\n"
    try:
        ok = run_gnuplot(script, tmp)
    except Exception as e:  # a missing gnuplot must not lose the measurements
        log("gnuplot: %s" % e)
        ok = False
    if not ok:  # gnuplot without cairo
        ok = run_gnuplot(script.replace('pngcairo size 1100,520 font ",10"', "png size 1100,520"),
                         tmp)
    return ok


def fmt_t(t):
    return "t=%.3f s" % t if t is not None else "(not seen)"


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("RESPITE_BIN"),
                    help="respite binary (default: build/release/respite)")
    ap.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of the load (default 15)")
    ap.add_argument("--at", type=float, default=5.0,
                    help="seconds into the load when the failover is asked (default 5)")
    ap.add_argument("--kill", action="store_true",
                    help="SIGKILL the primary instead of SENTINEL FAILOVER")
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="client socket timeout, seconds (default 5)")
    ap.add_argument("--master-name", default="mymaster", help="the Sentinels' name for it")
    ap.add_argument("--strict", action="store_true",
                    help="also fail unless writes resumed within 5 s of the switch")
    ap.add_argument("--out", default=os.environ.get("RESPITE_DEMO_OUT", "build/failover-demo"))
    args = ap.parse_args()
    if not (1 <= args.threads <= 64 and 1.0 <= args.seconds <= 600.0
            and 0.0 < args.at < args.seconds):
        ap.error("need 1 <= --threads <= 64, 1 <= --seconds <= 600, 0 < --at < --seconds")
    if args.bin:
        os.environ["RESPITE_BIN"] = args.bin
    bin_path = respite_bin()
    mode = "kill" if args.kill else "failover"
    os.makedirs(args.out, exist_ok=True)
    for name in os.listdir(args.out):  # the previous run's logs of this mode
        if name.startswith(mode + "-") and name.endswith(".log"):
            os.remove(os.path.join(args.out, name))
    with Workdir() as tmp:
        try:
            return run(args, bin_path, mode, tmp)
        finally:
            # Keep the logs of the processes (the temporary directory goes).
            for name in os.listdir(tmp):
                if name.endswith(".log"):
                    shutil.copy(os.path.join(tmp, name), os.path.join(args.out, mode + "-" + name))


def run(args, bin_path, mode, tmp):
    log("respite: %s" % bin_path)
    cl = Cluster(tmp, args.master_name, bin_path)
    old_primary = "%s:%d" % (HOST, cl.primary.port)
    load = Load(cl.respite.port, args.threads, args.seconds, args.timeout)
    stop_obs = threading.Event()
    t0_wall, t0 = time.time(), time.monotonic()
    events = [SentinelEvents(s.port, t0, "sentinel %d" % i) for i, s in enumerate(cl.sentinels)]
    poller = InfoPoller(cl.respite.port, t0, stop_obs)
    for e in events:
        e.start()
    poller.start()
    log("load: %d threads for %.0f s (SET fo:<thread>:<seq>, INCR fo:ctr, GET fo:ctr, "
        "GET fo:<thread>:<seq>)" % (args.threads, args.seconds))
    load.start(t0)
    asked = None
    try:
        time.sleep(max(0.0, t0 + args.at - time.monotonic()))
        asked = time.monotonic() - t0
        if args.kill:
            os.kill(cl.primary.proc.pid, signal.SIGKILL)
            cl.primary.proc.wait(timeout=5)
            how = "SIGKILL of the primary (pid %d)" % cl.primary.proc.pid
        else:
            r = call(cl.sentinels[0].port, "SENTINEL", "FAILOVER", args.master_name)
            how = "SENTINEL FAILOVER %s -> %s" % (args.master_name, r)
        log("t=%.3f s: %s" % (asked, how))
        time.sleep(max(0.0, t0 + args.seconds - time.monotonic()))
    finally:
        load.stop.set()
        load.join()
        stop_obs.set()
        poller.join(timeout=5)
        for e in events:
            e.close()
            e.join(timeout=5)

    # -- What happened, from every witness.
    rlog = respite_log(cl.respite.logpath, t0_wall)
    switch_lines = [(t, l) for t, l in rlog if "moved from" in l and "the primary of" in l]
    hold_lines = [(t, l) for t, l in rlog if "failover of" in l and "begun" in l]
    switch_log_t = switch_lines[0][0] if switch_lines else None
    switch_poll_t = next((t for t, sw, _ in poller.changes if sw not in (None, "0")), None)
    switch_t = switch_log_t if switch_log_t is not None else switch_poll_t
    info = proxy_info(cl.respite.port)
    new_primary = cl.sentinel_primary()

    error_times = sorted(e for s in load.stats for e in s.error_times)
    msg_counts = collections.Counter(m for _, m in error_times)
    messages = [m for m, _ in msg_counts.most_common()]
    ack_times = sorted(t for s in load.stats for t in s.ack_times)
    stale = sorted(x for s in load.stats for x in s.stale)
    acked = {}
    for s in load.stats:
        acked.update(s.acked)
    max_incr = max(s.max_incr for s in load.stats)
    first_ack_after = next((t for t in ack_times if switch_t is not None and t >= switch_t), None)
    before = [t for t in ack_times if t < asked] if asked is not None else []
    gap = (0.0, None, None)
    for a, b in zip(ack_times, ack_times[1:]):
        if b - a > gap[0]:
            gap = (b - a, a, b)

    # -- Checks.
    checks = []
    checks.append(("respite switched once, to the primary the Sentinels name (%s)" % new_primary,
                   info.get("sentinel_switches") == "1" and new_primary != old_primary
                   and info.get("upstream") == new_primary))
    missing, ctr_new = [], None
    if new_primary:
        host, port = new_primary.rsplit(":", 1)
        with Conn(int(port), timeout=10.0, host=host) as c:
            role = c.call("ROLE")
            keys = sorted(acked)
            for i in range(0, len(keys), 1000):
                chunk = keys[i:i + 1000]
                for k, v in zip(chunk, c.call("MGET", *chunk)):
                    if v is None or int(v) != acked[k]:
                        missing.append((k, acked[k], v))
            v = c.call("GET", "fo:ctr")
            ctr_new = int(v) if v is not None else 0
        checks.append(("the new primary answers ROLE master",
                       isinstance(role, list) and role and role[0] == b"master"))
    checks.append(("every acknowledged write is on the new primary (%d SETs read back; fo:ctr %s "
                   ">= newest acknowledged INCR %d)" % (len(acked), ctr_new, max_incr),
                   bool(new_primary) and not missing and ctr_new is not None
                   and ctr_new >= max_incr))
    checks.append(("no read older than an acknowledged write (%d stale)" % len(stale), not stale))
    if args.strict:
        checks.append(("writes resumed within %.0f s of the switch" % STRICT_RESUME_S,
                       first_ack_after is not None and first_ack_after - switch_t
                       <= STRICT_RESUME_S))

    # -- Summary.
    out = []
    p = out.append
    p("")
    p("== failover-demo (%s): %d threads, %.0f s, %s at t=%.1f s"
      % (mode, args.threads, args.seconds,
         "SIGKILL of the primary" if args.kill else "SENTINEL FAILOVER", args.at))
    p("old primary %s, new primary %s; respite PROXY INFO now: upstream %s, sentinel_switches %s, "
      "sentinels_reachable %s" % (old_primary, new_primary, info.get("upstream"),
                                  info.get("sentinel_switches"), info.get("sentinels_reachable")))
    p("failover asked:           %s" % fmt_t(asked))
    ev_skip = ("+sentinel", "+slave", "+reboot", "+fix-slave-config")
    shown = sorted(x for e in events for x in e.events if x[2] not in ev_skip)
    for t, who, c, pl in shown[:40]:
        p("  %-10s              t=%.3f s  %s %s" % (who, t, c, pl))
    if len(shown) > 40:
        p("  ... %d more Sentinel events" % (len(shown) - 40))
    for t, l in hold_lines[:3]:
        p("respite refused writes:   %s  %s" % (fmt_t(t), l))
    p("respite switched (log):   %s  %s" % (fmt_t(switch_log_t),
                                           switch_lines[0][1] if switch_lines else ""))
    for t, l in switch_lines[1:4]:
        p("  and again:              %s  %s" % (fmt_t(t), l))
    p("respite switched (PROXY INFO sentinel_switches, polled every %d ms): %s"
      % (POLL_S * 1000, fmt_t(switch_poll_t)))
    for t, sw, up in poller.changes:
        p("  PROXY INFO              t=%.3f s  sentinel_switches %s, upstream %s" % (t, sw, up))
    if error_times:
        p("errors:                   %d, first t=%.3f s, last t=%.3f s (window %.3f s)"
          % (len(error_times), error_times[0][0], error_times[-1][0],
             error_times[-1][0] - error_times[0][0]))
        for m in messages:
            firsts = [t for t, mm in error_times if mm == m]
            p("  %6d x %s  (t=%.3f..%.3f s)" % (msg_counts[m], m, firsts[0], firsts[-1]))
    else:
        p("errors:                   none")
    p("acknowledged writes:      %d (%d before the failover was asked); reads %d"
      % (len(ack_times), len(before), sum(sum(s.reads) for s in load.stats)))
    p("last acknowledged write before the switch: %s" % fmt_t(
        max((t for t in ack_times if switch_t is not None and t < switch_t), default=None)))
    if first_ack_after is not None:
        p("switch -> first acknowledged write on the new primary: %.3f s (at t=%.3f s)"
          % (first_ack_after - switch_t, first_ack_after))
    else:
        p("switch -> first acknowledged write on the new primary: none")
    if gap[1] is not None:
        p("longest time without an acknowledged write: %.3f s (t=%.3f..%.3f s)" % gap)
    for t, what in stale[:5]:
        p("  stale read at t=%.3f s: %s" % (t, what))
    for k, want, got in missing[:5]:
        p("  missing on the new primary: %s = %s (acknowledged %d)" % (k, got, want))
    if len(missing) > 5:
        p("  ... %d missing in all" % len(missing))
    ok = all(c[1] for c in checks)
    for what, good in checks:
        p("%s  %s" % ("PASS" if good else "FAIL", what))

    base = os.path.join(args.out, "failover-demo-%s" % mode)
    write_csv(base + ".csv", load, messages)
    marks = [(asked, "SIGKILL" if args.kill else "SENTINEL FAILOVER")]
    if hold_lines and hold_lines[0][0] is not None:
        marks.append((hold_lines[0][0], "writes refused"))
    if switch_t is not None:
        marks.append((switch_t, "respite switched"))
    title = ("respite through a Sentinel failover (%s): %d client threads, 100 ms buckets"
             % ("SIGKILL of the primary" if args.kill else "SENTINEL FAILOVER", args.threads))
    png_ok = write_png(os.path.abspath(base + ".png"), os.path.abspath(base + ".csv"), title,
                       marks, args.seconds, tmp)
    p("wrote %s.csv%s, %s.txt, %s-*.log" % (base, ", %s.png" % base if png_ok else "", base,
                                             os.path.join(args.out, mode)))
    p("%s" % ("PASS" if ok else "FAIL"))
    text = "\n".join(out)
    log(text)
    with open(base + ".txt", "w") as f:
        f.write(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
