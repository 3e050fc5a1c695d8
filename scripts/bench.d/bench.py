#!/usr/bin/python3
"""respite benchmark driver (run through scripts/bench, which installs packages and builds).

Throughput: starts on free loopback ports an upstream redis-server, twemproxy (nutcracker) in
front of it, respite with its cache and respite with the cache off; fills the keys redis-benchmark
uses (key:000000000000 ... with -r, 32-byte values); warms respite's cache; then, for each round,
for each test (GET, SET, MGET of 10 keys at each pipeline depth), runs redis-benchmark against
each target in turn, and reports medians over the rounds.

The machine this was written on is a shared 2-core VM whose speed changes from one second to the
next (direct Redis went 55k / 136k / 83k requests/s in three rounds of one run). Two things keep
that noise out of the ratios: direct Redis runs right next to each proxy in every round (the order
goes forward, then backward: twemproxy, redis, respite, ... / ..., respite, redis, twemproxy), and
a ratio is the median over the rounds of that round's own ratio, not a ratio of two medians taken
from different moments. Each run also records the CPU time the client, the proxy and Redis spent on it
(/proc/<pid>/stat), per request: a cost that does not depend on how fast the machine was.

Replica (--replica, --ab-replica): a second redis-server, a replica of the upstream, on a free
loopback port; respite targets run with --replica on it and --read-from. The report says how many
reads the replica served (its INFO commandstats; respite's PROXY INFO replica_reads).

Memory: loads N entries (16-byte keys, 32-byte values) into a fresh upstream with
`redis-cli --pipe`, reads them all through a fresh respite, and reports the bytes per entry beyond
key and value, as the cache accounts them and from the growth of respite's RSS.

Standard library only. Every process it starts is stopped by pid on exit, even on failure.

respite --cluster before a Redis Cluster: scripts/bench --cluster runs cluster_bench.py instead.
"""
import argparse
import atexit
import csv
import datetime
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from resp_client import Conn, RespError, encode, parse_info  # noqa: E402

# redis-benchmark -r N expands __rand_int__ to a 12-digit zero-padded number in [0, N).
KEY_FMT = "key:%012d"
VALUE_SIZE = 32
MEM_KEY_FMT = "mem:%012d"  # 16 bytes
MEM_VALUE_FMT = "%032d"    # 32 bytes

TARGETS = ["redis", "twemproxy", "respite", "respite-nocache"]
TARGET_LABEL = {
    "redis": "redis (direct)",
    "twemproxy": "twemproxy",
    "respite": "respite (cache)",
    "respite-nocache": "respite (cache off)",
}
# --ab-threads N adds this target: respite with its cache and --threads N, interleaved with the
# others in the same rounds, so the thread default is chosen from one run's medians.
AB_THREADS = "respite-threads"
# --baseline-bin PATH adds this target: respite with its cache from another binary (the code before
# a change), interleaved with the others in the same rounds, so "before" and "after" see the same
# machine moments and each is compared with the direct Redis run of its own round.
BASELINE = "respite-baseline"
# --ab-replica adds this target: respite with its cache, reading from a replica of the upstream
# (--replica, --read-from), interleaved with the others in the same rounds, while the plain
# respite target runs with the one node; each is compared with the direct Redis run of its round.
AB_REPLICA = "respite-replica"
CACHED = ("respite", AB_THREADS, BASELINE, AB_REPLICA)
# Run order within a round (forward in odd rounds, backward in even ones): direct Redis sits next
# to twemproxy and to respite, the ratios the acceptance checks; the baseline binary (or else the
# replica A/B) right next to respite, then the others.
RUN_ORDER = ["twemproxy", "redis", "respite", BASELINE, AB_REPLICA, AB_THREADS, "respite-nocache"]
# The respite targets (every one of them gets --replica with --replica).
RESPITE_TARGETS = ("respite", "respite-nocache", AB_THREADS, BASELINE, AB_REPLICA)
# --baseline-bin's verdict: no ratio to direct Redis worse than the baseline's by more than this;
# --ab-replica's: none worse with the replica than with the one node by more than this.
MAX_RATIO_LOSS = 0.05
# Bounded waits for the replica: its link to the upstream up, then the filled keys applied.
REPLICA_WAIT_S = 30.0
TESTS = ["get", "set", "mget"]
TEST_LABEL = {"get": "GET", "set": "SET", "mget": "MGET10"}

# (label, test, pipeline, target, minimum ratio to direct Redis) from issue 4.
THRESHOLDS = [
    ("cached GET -P1", "get", 1, "respite", 0.95),
    ("cached GET -P16", "get", 16, "respite", 1.0),
    ("cached MGET10 -P16", "mget", 16, "respite", 1.0),
    ("forwarded SET -P1", "set", 1, "respite", 0.9),
    ("forwarded SET -P16", "set", 16, "respite", 0.7),
]
MAX_BYTES_PER_ENTRY = 64


def log(msg=""):
    print(msg, flush=True)


def warn(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# RESP: the scripts' shared client (scripts/lib/resp_client.py).

def pipelined(conn, commands, batch=1000):
    """Sends commands (encoded) in batches and returns every reply, in order."""
    out = []
    for i in range(0, len(commands), batch):
        part = commands[i:i + batch]
        conn.send(b"".join(part))
        out.extend(conn.read() for _ in part)
    return out


def proxy_info(port):
    with Conn(port) as c:
        r = c.call("PROXY", "INFO")
    if isinstance(r, RespError) or r is None:
        raise RuntimeError("PROXY INFO failed: %r" % (r,))
    return parse_info(r)


def info_int(d, k):
    try:
        return int(d[k])
    except (KeyError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Processes: started, tracked and stopped by pid.

# --pin: the client on one CPU, every server on the others (None: wherever the kernel puts them).
PIN = {"client": None, "server": None}


def pinned(who):
    cpus = PIN[who]
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


class Procs:
    def __init__(self, tmp):
        self.tmp = tmp
        self.running = {}  # name -> (Popen, logpath)

    def start(self, name, argv, port=None, ready_timeout=20.0):
        logpath = os.path.join(self.tmp, name + ".log")
        f = open(logpath, "ab")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=self.tmp, preexec_fn=pinned("server"))
        f.close()
        self.running[name] = (p, logpath)
        if port is not None:
            self.wait_ready(name, port, ready_timeout)
        return p

    def wait_ready(self, name, port, timeout):
        p, _ = self.running[name]
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise RuntimeError("%s exited with status %s at start\n%s"
                                   % (name, p.returncode, self.log_tail(name)))
            try:
                with Conn(port, timeout=2.0) as c:
                    r = c.call("PING")
                if r == "PONG":
                    return
                last = r
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise RuntimeError("%s did not answer PING on port %d (%s)\n%s"
                           % (name, port, last, self.log_tail(name)))

    def alive(self, name):
        p, _ = self.running.get(name, (None, None))
        return p is not None and p.poll() is None

    def pid(self, name):
        return self.running[name][0].pid

    def log_tail(self, name, lines=15):
        _, path = self.running.get(name, (None, None))
        if not path or not os.path.exists(path):
            return ""
        with open(path, "rb") as f:
            data = f.read().decode(errors="replace").splitlines()
        return "\n".join("    [%s] %s" % (name, l) for l in data[-lines:])

    def stop(self, name):
        entry = self.running.pop(name, None)
        if not entry:
            return
        p, _ = entry
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            except ProcessLookupError:
                pass

    def stop_all(self):
        for name in list(self.running):
            self.stop(name)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def start_redis(procs, name, port, extra=()):
    d = os.path.join(procs.tmp, name)
    os.makedirs(d, exist_ok=True)
    procs.start(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--dir", d, "--daemonize", "no",
                       "--protected-mode", "yes"] + list(extra), port=port)


def wait_replica_link(procs, port, timeout=REPLICA_WAIT_S):
    """Waits (bounded) until the replica on `port` reports master_link_status:up."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        if not procs.alive("replica"):
            raise RuntimeError("the replica exited at start\n%s" % procs.log_tail("replica"))
        with Conn(port, timeout=2.0) as c:
            status = parse_info(c.call("INFO", "replication")).get("master_link_status")
        if status == "up":
            return
        time.sleep(0.05)
    raise RuntimeError("the replica's master_link_status is %s, not up, after %.0f s\n%s"
                       % (status, timeout, procs.log_tail("replica")))


def wait_replica_dbsize(procs, port, want, timeout=REPLICA_WAIT_S):
    """Waits (bounded) until the replica's DBSIZE equals `want` (the upstream's); returns the
    seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    n = None
    while time.monotonic() < deadline:
        with Conn(port, timeout=2.0) as c:
            n = c.call("DBSIZE")
        if n == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise RuntimeError("the replica's DBSIZE is %s, not the upstream's %s, after %.0f s\n%s"
                       % (n, want, timeout, procs.log_tail("replica")))


def replica_read_calls(port):
    """The replica's INFO commandstats calls of GET and of MGET (the bench's reads)."""
    with Conn(port, timeout=5.0) as c:
        st = parse_info(c.call("INFO", "commandstats"))
    out = {}
    for cmd in ("get", "mget"):
        calls = 0
        for kv in st.get("cmdstat_" + cmd, "").split(","):
            if kv.startswith("calls="):
                calls = int(kv[len("calls="):])
        out[cmd] = calls
    return out


def uses_replica(args, tg):
    """Whether respite target tg runs with --replica (all of them with --replica; with
    --ab-replica only AB_REPLICA)."""
    if tg not in RESPITE_TARGETS:
        return False
    return bool(args.replica) or tg == AB_REPLICA


def read_from_text(mode):
    return {"replica": "reads to the replica (to the primary when it has not applied a write "
                       "respite acknowledged for their keys, or cannot be reached)",
            "prefer-replica": "reads to the replica, the primary an expected fallback",
            "primary": "every request to the primary (the replica only replicates)"}[mode]


def start_twemproxy(procs, port, stats_port, upstream_port):
    conf = os.path.join(procs.tmp, "nutcracker.yml")
    with open(conf, "w") as f:
        f.write("bench:\n"
                "  listen: 127.0.0.1:%d\n"
                "  hash: fnv1a_64\n"
                "  distribution: ketama\n"
                "  redis: true\n"
                "  preconnect: true\n"
                "  auto_eject_hosts: false\n"
                "  server_connections: 1\n"
                "  servers:\n"
                "   - 127.0.0.1:%d:1\n" % (port, upstream_port))
    procs.start("twemproxy", ["nutcracker", "-c", conf, "-o",
                              os.path.join(procs.tmp, "twemproxy.log"), "-s", str(stats_port),
                              "-a", "127.0.0.1", "-p", os.path.join(procs.tmp, "nutcracker.pid"),
                              "-v", "4"], port=port)


def respite_argv(args, port, upstream_port, cache_max_memory, cache_ttl_ms, threads=None,
                 binary=None, replica_port=None):
    argv = [binary or args.respite, "--port", str(port), "--bind", "127.0.0.1",
            "--upstream", "127.0.0.1:%d" % upstream_port,
            "--cache-max-memory", cache_max_memory, "--cache-ttl-ms", str(cache_ttl_ms),
            "--log-level", "warning"]
    if replica_port:
        argv += ["--replica", "127.0.0.1:%d" % replica_port, "--read-from", args.read_from]
    threads = threads or args.threads
    if threads:
        argv += ["--threads", str(threads)]
    if args.upstream_connections:
        argv += ["--upstream-connections", str(args.upstream_connections)]
    for extra in args.respite_arg:
        argv += extra.split()
    return argv


def version(argv):
    """The first line a tool prints of its version, or "?"."""
    try:
        cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        return cp.stdout.decode(errors="replace").strip().splitlines()[0]
    except Exception:
        return "?"


def session(prefix, keep, what):
    """A temp dir and a Procs for one run: every process is stopped by pid at exit (also on
    SIGTERM/SIGHUP/SIGINT), and the dir is removed unless `keep` or the run failed (then its
    `what`, e.g. "logs", are kept and named). Returns (tmp, procs, failed): set failed[0] = False
    once the run succeeded."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    procs = Procs(tmp)
    failed = [True]

    def cleanup():
        procs.stop_all()
        if keep or failed[0]:
            warn("%s kept in %s" % (what, tmp))
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(cleanup)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    return tmp, procs, failed


# ---------------------------------------------------------------------------------------------
# Fill, warm, run.

def fill_keys(port, nkeys):
    value = b"x" * VALUE_SIZE
    with Conn(port) as c:
        replies = pipelined(c, [encode("SET", KEY_FMT % i, value) for i in range(nkeys)])
        bad = [r for r in replies if r != "OK"]
        if bad:
            raise RuntimeError("filling keys: %d bad replies, e.g. %r" % (len(bad), bad[0]))
        n = c.call("DBSIZE")
    return n


def warm_cache(port, nkeys, with_mget=False):
    """GETs every key (and MGETs them in groups of 10) through respite; returns the bad replies."""
    bad = 0
    with Conn(port) as c:
        replies = pipelined(c, [encode("GET", KEY_FMT % i) for i in range(nkeys)])
        bad += sum(1 for r in replies if not isinstance(r, bytes) or len(r) != VALUE_SIZE)
        if with_mget:
            cmds = [encode("MGET", *[KEY_FMT % j for j in range(i, min(i + 10, nkeys))])
                    for i in range(0, nkeys, 10)]
            for r in pipelined(c, cmds):
                if not isinstance(r, list) or any(not isinstance(v, bytes) for v in r):
                    bad += 1
    return bad


def bench_argv(args, port, test, pipeline, n):
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(args.clients),
            "-n", str(n), "-r", str(args.keys), "-d", str(VALUE_SIZE), "-P", str(pipeline),
            "--csv"]
    if test == "mget":
        argv += ["MGET"] + ["key:__rand_int__"] * 10
    else:
        argv += ["-t", test]
    return argv


def run_benchmark(args, port, test, pipeline, n):
    """Returns dict(rps, p50, p99, errors, note)."""
    argv = bench_argv(args, port, test, pipeline, n)
    timeout = 60 + n / 1000.0
    res = {"rps": None, "p50": None, "p99": None, "errors": 0, "note": ""}
    try:
        cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, timeout=timeout,
                            preexec_fn=pinned("client"))
    except subprocess.TimeoutExpired:
        res["errors"] = 1
        res["note"] = "timed out after %ds" % timeout
        return res
    out = cp.stdout.decode(errors="replace")
    err = cp.stderr.decode(errors="replace")
    rows = []
    other = []
    for line in (out + "\n" + err).splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith('"'):
            f = next(csv.reader([line]))
            if len(f) >= 7 and f[0] != "test":
                rows.append(f)
            continue
        # Expected noise: twemproxy does not support CONFIG, which redis-benchmark asks first.
        if "Could not fetch server CONFIG" in line:
            continue
        other.append(line)
    # redis-benchmark 7 exits on the first error reply or connection error (-e is a no-op).
    if cp.returncode != 0:
        res["errors"] += 1
    res["errors"] += sum(1 for l in other if "rror" in l or "ERR" in l or "refused" in l
                         or "reset" in l or "closed" in l)
    if not rows:
        res["errors"] = max(res["errors"], 1)
        res["note"] = "; ".join(other[-3:])[:200] or ("exit status %d" % cp.returncode)
        return res
    f = rows[-1]
    try:
        res["rps"] = float(f[1])
        res["p50"] = float(f[4])
        res["p99"] = float(f[6])
    except ValueError:
        res["errors"] += 1
        res["note"] = "unparsable csv row %r" % (f,)
    if other:
        res["note"] = "; ".join(other[-3:])[:200]
    return res


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks (None when it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    except (OSError, IndexError, ValueError):
        return None


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_num(x, spec):
    return "-" if x is None else format(x, spec)


# ---------------------------------------------------------------------------------------------

def machine_lines():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem_kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
        mem = "%.1f GiB" % (mem_kb / 1048576.0)
    except Exception:
        mem = "?"

    return [
        "machine:   nproc=%d  cpu=%s  mem=%s" % (os.cpu_count() or 0, model, mem),
        "kernel:    %s %s" % (platform.system(), platform.release()),
        "loadavg:   %s (at start)" % " ".join(open("/proc/loadavg").read().split()[:3]),
        "redis:     %s" % version(["redis-server", "--version"]),
        "twemproxy: %s" % version(["nutcracker", "--version"]),
    ]


def write_chart(path_png, stamp, summary, targets, tests, pipelines, tmp):
    if not shutil.which("gnuplot"):
        warn("gnuplot not found; no chart")
        return False
    dat = {}
    for p in pipelines:
        dpath = os.path.join(tmp, "chart-P%d.dat" % p)
        with open(dpath, "w") as f:
            for t in tests:
                vals = []
                for tg in targets:
                    rps = summary.get((t, p, tg), {}).get("rps")
                    vals.append("?" if rps is None else "%.1f" % (rps / 1000.0))
                f.write('"%s" %s\n' % (TEST_LABEL[t], " ".join(vals)))
        dat[p] = dpath
    gp = os.path.join(tmp, "chart.gp")
    with open(gp, "w") as f:
        f.write('set terminal pngcairo size 1100,%d font "sans,10"\n' % (380 * len(pipelines) + 60))
        f.write("set output '%s'\n" % path_png)
        f.write("set datafile missing '?'\n")
        f.write('set multiplot layout %d,1 title "respite bench %s: redis-benchmark -c 50 -r 10000 '
                '-d 32, median requests/s"\n' % (len(pipelines), stamp))
        f.write("set style data histogram\nset style histogram cluster gap 1\n"
                "set style fill solid 0.85 border -1\nset boxwidth 0.9\nset yrange [0:*]\n"
                "set grid ytics\nset key outside right top\n"
                "set ylabel 'thousand requests/s'\n")
        for p in pipelines:
            f.write("set title '-P %d'\n" % p)
            plots = []
            for i, tg in enumerate(targets):
                src = "'%s'" % dat[p] if i == 0 else "''"
                xt = ":xtic(1)" if i == 0 else ""
                plots.append("%s using %d%s title '%s'" % (src, i + 2, xt, TARGET_LABEL[tg]))
            f.write("plot " + ", ".join(plots) + "\n")
        f.write("unset multiplot\n")
    cp = subprocess.run(["gnuplot", gp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if cp.returncode != 0:
        warn("gnuplot failed: " + cp.stdout.decode(errors="replace")[:500])
        return False
    return True


def throughput(args, procs, report):
    targets = args.targets
    ports = free_ports(9)
    up_port, tw_port, tw_stats, rc_port, rn_port, rt_port, rb_port, rr_port, rep_port = ports[:9]
    target_port = {"redis": up_port, "twemproxy": tw_port, "respite": rc_port,
                   "respite-nocache": rn_port, AB_THREADS: rt_port, BASELINE: rb_port,
                   AB_REPLICA: rr_port}
    with_replica = args.replica or args.ab_replica
    log("starting: upstream redis :%d" % up_port)
    # With a replica: its first sync starts at once, not after the default 5 s diskless delay.
    start_redis(procs, "redis", up_port,
                ["--repl-diskless-sync-delay", "0"] if with_replica else [])
    if with_replica:
        log("starting: replica redis :%d (--replicaof 127.0.0.1 %d)" % (rep_port, up_port))
        start_redis(procs, "replica", rep_port, ["--replicaof", "127.0.0.1", str(up_port)])
        t0 = time.monotonic()
        wait_replica_link(procs, rep_port)
        log("replica: master_link_status:up after %.1f s" % (time.monotonic() - t0))

    def rep(tg):
        return rep_port if with_replica and uses_replica(args, tg) else None

    if "twemproxy" in targets:
        log("starting: twemproxy :%d" % tw_port)
        start_twemproxy(procs, tw_port, tw_stats, up_port)
    if "respite" in targets:
        argv = respite_argv(args, rc_port, up_port, args.cache_max_memory, args.cache_ttl_ms,
                            replica_port=rep("respite"))
        log("starting: respite (cache) :%d: %s" % (rc_port, " ".join(argv[1:])))
        procs.start("respite", argv, port=rc_port)
    if "respite-nocache" in targets:
        argv = respite_argv(args, rn_port, up_port, "0", args.cache_ttl_ms,
                            replica_port=rep("respite-nocache"))
        log("starting: respite (cache off) :%d: %s" % (rn_port, " ".join(argv[1:])))
        procs.start("respite-nocache", argv, port=rn_port)
    if AB_THREADS in targets:
        argv = respite_argv(args, rt_port, up_port, args.cache_max_memory, args.cache_ttl_ms,
                            threads=args.ab_threads, replica_port=rep(AB_THREADS))
        log("starting: %s :%d: %s" % (TARGET_LABEL[AB_THREADS], rt_port, " ".join(argv[1:])))
        procs.start(AB_THREADS, argv, port=rt_port)
    if BASELINE in targets:
        argv = respite_argv(args, rb_port, up_port, args.cache_max_memory, args.cache_ttl_ms,
                            binary=args.baseline_bin, replica_port=rep(BASELINE))
        log("starting: %s :%d: %s %s" % (TARGET_LABEL[BASELINE], rb_port, args.baseline_bin,
                                          " ".join(argv[1:])))
        procs.start(BASELINE, argv, port=rb_port)
    if AB_REPLICA in targets:
        argv = respite_argv(args, rr_port, up_port, args.cache_max_memory, args.cache_ttl_ms,
                            replica_port=rep(AB_REPLICA))
        log("starting: %s :%d: %s" % (TARGET_LABEL[AB_REPLICA], rr_port, " ".join(argv[1:])))
        procs.start(AB_REPLICA, argv, port=rr_port)

    n = fill_keys(up_port, args.keys)
    log("filled %d keys (%s .. %s, %d-byte values); upstream DBSIZE %s"
        % (args.keys, KEY_FMT % 0, KEY_FMT % (args.keys - 1), VALUE_SIZE, n))
    if with_replica:
        # The fill went straight to the upstream (respite's ledger never saw it): reads through
        # the replica find the keys only once it has applied them.
        took = wait_replica_dbsize(procs, rep_port, n)
        log("replica: DBSIZE %s (the upstream's) after %.1f s" % (n, took))

    warm_notes = []
    for tg in [t for t in CACHED if t in targets]:
        wport = target_port[tg]
        time.sleep(0.3)  # let respite's invalidation link come up before filling its cache
        bad = warm_cache(wport, args.keys, with_mget=True)
        before = proxy_info(wport)
        bad += warm_cache(wport, args.keys)
        after = proxy_info(wport)
        hits = (info_int(after, "cache_hits") or 0) - (info_int(before, "cache_hits") or 0)
        misses = (info_int(after, "cache_misses") or 0) - (info_int(before, "cache_misses") or 0)
        keys = info_int(after, "cache_keys")
        ok = bad == 0 and keys is not None and keys >= args.keys and misses == 0
        line = ("warm check (%s): %s: cache_keys=%s cache_bytes=%s; a second pass of %d GETs: "
                "%d hits, %d misses; %d bad replies"
                % (TARGET_LABEL[tg], "PASS" if ok else "FAIL", keys, after.get("cache_bytes"),
                   args.keys, hits, misses, bad))
        log(line)
        warm_notes.append(line)
    replica_calls0 = replica_read_calls(rep_port) if with_replica else None

    pipelines = args.pipelines
    runs = []  # dicts: round, test, pipeline, target, rps, p50, p99, errors, note, misses
    dead = set()
    total = args.rounds * len(args.tests) * len(pipelines) * len(targets)
    k = 0
    t0 = time.monotonic()
    for r in range(args.rounds):
        for test in args.tests:
            for p in pipelines:
                nreq = args.n_p1 if p == 1 else args.n_p16
                order = [t for t in RUN_ORDER if t in targets]
                # Every target takes each place in turn: the one in the middle measured ~0.1
                # faster than the one at the end in a run of one binary against a copy of itself.
                partner = BASELINE if BASELINE in order else AB_REPLICA
                if (r // 2) % 2 and "respite" in order and partner in order:
                    i, j = order.index("respite"), order.index(partner)
                    order[i], order[j] = order[j], order[i]
                if r % 2:
                    order.reverse()
                for tg in order:
                    k += 1
                    port = target_port[tg]
                    if tg in dead or (tg != "redis" and not procs.alive(tg)):
                        if tg not in dead:
                            warn("%s is not running any more (exit status %s)\n%s"
                                 % (tg, procs.running[tg][0].returncode, procs.log_tail(tg)))
                        dead.add(tg)
                        runs.append({"round": r + 1, "test": test, "pipeline": p, "target": tg,
                                     "rps": None, "p50": None, "p99": None, "errors": 1,
                                     "note": "target not running", "misses": None,
                                     "cpu_proxy": None, "cpu_redis": None,
                                     "cpu_replica": None, "cpu_client": None})
                        continue
                    misses = None
                    if tg in CACHED and test in ("get", "mget"):
                        warm_cache(port, args.keys)  # SET runs invalidated the keys
                        before = proxy_info(port)
                    cpu_pids = {"redis": procs.pid("redis")}
                    if tg != "redis":
                        cpu_pids["proxy"] = procs.pid(tg)
                    if with_replica and procs.alive("replica"):
                        # It applies every target's SETs, and serves the reads of those with it.
                        cpu_pids["replica"] = procs.pid("replica")
                    cpu0 = {who: cpu_ticks(pid) for who, pid in cpu_pids.items()}
                    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    res = run_benchmark(args, port, test, p, nreq)
                    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # + the finished client
                    res["cpu_client"] = ((ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime)
                                         * 1e6 / nreq if nreq else None)
                    for who, pid in cpu_pids.items():
                        t1 = cpu_ticks(pid)
                        res["cpu_" + who] = (None if t1 is None or cpu0[who] is None or not nreq
                                             else (t1 - cpu0[who]) * 1e6 / CLK_TCK / nreq)
                    if tg in CACHED and test in ("get", "mget") and procs.alive(tg):
                        after = proxy_info(port)
                        misses = ((info_int(after, "cache_misses") or 0)
                                  - (info_int(before, "cache_misses") or 0))
                    res.update({"round": r + 1, "test": test, "pipeline": p, "target": tg,
                                "misses": misses})
                    runs.append(res)
                    log("[%3d/%d round %d] %-6s -P%-2d %-*s %10s rps  p50 %6s  p99 %6s ms  "
                        "cpu us/req client %5s proxy %5s redis %5s%s%s%s%s"
                        % (k, total, r + 1, TEST_LABEL[test], p, label_width(targets),
                           TARGET_LABEL[tg],
                           fmt_num(res["rps"], ",.0f"), fmt_num(res["p50"], ".3f"),
                           fmt_num(res["p99"], ".3f"), fmt_num(res.get("cpu_client"), ".2f"),
                           fmt_num(res.get("cpu_proxy"), ".2f"),
                           fmt_num(res.get("cpu_redis"), ".2f"),
                           " replica %5s" % fmt_num(res.get("cpu_replica"), ".2f")
                           if "cpu_replica" in res else "",
                           "  ERRORS %d" % res["errors"] if res["errors"] else "",
                           "  cache misses %d" % misses if misses else "",
                           "  (%s)" % res["note"] if res["note"] else ""))
    log("throughput runs took %.0f s" % (time.monotonic() - t0))
    for name in ["respite", "respite-nocache", AB_THREADS, BASELINE, AB_REPLICA, "twemproxy",
                 "replica"]:
        if name in procs.running and not procs.alive(name):
            warn("%s died during the bench\n%s" % (name, procs.log_tail(name)))
    if with_replica:
        # Before stopping anything: what the replica served, by its own count and by respite's.
        rep_report = {"port": rep_port, "upstream_port": up_port, "proxies": []}
        if procs.alive("replica"):
            rep_report["calls_warm"] = replica_calls0
            rep_report["calls_end"] = replica_read_calls(rep_port)
        for tg in targets:
            if uses_replica(args, tg) and procs.alive(tg):
                pi = proxy_info(target_port[tg])
                rep_report["proxies"].append(
                    (tg, info_int(pi, "replica_reads"), pi.get("read_from"),
                     pi.get("replicas_healthy"), info_int(pi, "replica_pending_keys")))
        report["replica"] = rep_report
    procs.stop_all()

    summary = {}
    for test in args.tests:
        for p in pipelines:
            for tg in targets:
                rs = [x for x in runs if x["test"] == test and x["pipeline"] == p
                      and x["target"] == tg]
                summary[(test, p, tg)] = {
                    "rps": median([x["rps"] for x in rs]),
                    "p50": median([x["p50"] for x in rs]),
                    "p99": median([x["p99"] for x in rs]),
                    "errors": sum(x["errors"] for x in rs),
                    "runs": sum(1 for x in rs if x["rps"] is not None),
                    "all_rps": [x["rps"] for x in rs],
                    "misses": sum(x["misses"] or 0 for x in rs),
                    # CPU of runs that completed only (a failed run's CPU is not per request)
                    "cpu_proxy": median([x.get("cpu_proxy") for x in rs if x["rps"]]),
                    "cpu_redis": median([x.get("cpu_redis") for x in rs if x["rps"]]),
                    "cpu_replica": median([x.get("cpu_replica") for x in rs if x["rps"]]),
                    "cpu_client": median([x.get("cpu_client") for x in rs if x["rps"]]),
                }
    by_round = {(x["test"], x["pipeline"], x["target"], x["round"]): x["rps"] for x in runs}

    def paired(test, p, tg, base_tg):
        """Each round's ratio (runs next to each other), then the median over the rounds."""
        ratios = []
        for r in range(1, args.rounds + 1):
            a = by_round.get((test, p, tg, r))
            b = by_round.get((test, p, base_tg, r))
            if a and b:
                ratios.append(a / b)
        return median(ratios), ratios

    def diff_ratios(test, p, tg, base_tg):
        """Each round's (tg / redis - base_tg / redis), then the median over the rounds."""
        diffs = []
        for r in range(1, args.rounds + 1):
            a = by_round.get((test, p, tg, r))
            b = by_round.get((test, p, base_tg, r))
            d = by_round.get((test, p, "redis", r))
            if a and b and d:
                diffs.append(a / d - b / d)
        return median(diffs), diffs

    for key, s in summary.items():
        test, p, tg = key
        s["x_redis"], s["x_redis_rounds"] = paired(test, p, tg, "redis")
        s["x_twem"], s["x_twem_rounds"] = paired(test, p, tg, "twemproxy")
        if tg == "respite" and BASELINE in targets:
            # Each round's difference of the two binaries' ratios to that round's direct Redis
            # run, then the median over the rounds (as for the ratios themselves).
            s["x_redis_diff"], s["x_redis_diff_rounds"] = diff_ratios(test, p, "respite",
                                                                      BASELINE)
            s["x_baseline"], s["x_baseline_rounds"] = paired(test, p, "respite", BASELINE)
        if tg == AB_REPLICA and "respite" in targets:
            # The same against the plain respite target (one node) of each round.
            s["x_one_diff"], s["x_one_diff_rounds"] = diff_ratios(test, p, AB_REPLICA, "respite")
            s["x_one"], s["x_one_rounds"] = paired(test, p, AB_REPLICA, "respite")
        threads = (args.ab_threads if tg == AB_THREADS else args.threads) or 1
        s["ceiling"] = cpu_ceiling(s, summary.get((test, p, "redis")), threads)

    report["summary"] = summary
    report["runs"] = runs
    report["warm"] = warm_notes
    report["pipelines"] = pipelines


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_ceiling(s, direct, proxy_threads=1):
    """The ratio to direct Redis that the measured CPU costs allow on this machine's cores, if
    the scheduler packed them perfectly: each process is limited to one core, and all of them
    together to os.cpu_count(). Direct Redis: client + Redis; through a proxy: client + proxy +
    Redis. A proxy that reaches its ceiling loses nothing to waiting; one far below it does.
    A proxy with N event loops may use N cores."""
    if not direct or s is direct:
        return None
    d = [direct.get("cpu_client"), direct.get("cpu_redis")]
    v = [s.get("cpu_client"), s.get("cpu_proxy"), s.get("cpu_redis")]
    if any(x is None for x in d + v) or max(d) <= 0:
        return None
    # A replica (--replica, --ab-replica) runs during every run: one more process on both sides.
    if direct.get("cpu_replica") is not None and s.get("cpu_replica") is not None:
        d.append(direct["cpu_replica"])
        v.append(s["cpu_replica"])
    cores = usable_cores()
    best_direct = min(1 / max(d), cores / sum(d))
    per_process = max([v[0], v[1] / max(proxy_threads, 1)] + v[2:])
    best_proxy = min(1 / max(per_process, 1e-9), cores / max(sum(v), 1e-9))
    return best_proxy / best_direct


def label_width(targets):
    return max([20] + [len(TARGET_LABEL[t]) for t in targets])


def table_lines(args, summary, pipelines):
    w = label_width(args.targets)
    hdr = "%-10s %-*s %12s %8s %8s %8s %8s %6s  %s" % (
        "test", w, "target", "rps", "p50 ms", "p99 ms", "x redis", "x twem", "errors",
        "cpu us/req: client proxy redis  ceiling")
    lines = [hdr, "-" * len(hdr)]
    for test in args.tests:
        for p in pipelines:
            for tg in args.targets:
                s = summary[(test, p, tg)]
                lines.append("%-10s %-*s %12s %8s %8s %8s %8s %6d  %18s %5s %5s %8s%s" % (
                    "%s -P%d" % (TEST_LABEL[test], p), w, TARGET_LABEL[tg],
                    fmt_num(s["rps"], ",.0f"),
                    fmt_num(s["p50"], ".3f"), fmt_num(s["p99"], ".3f"),
                    fmt_num(s["x_redis"], ".2f"), fmt_num(s["x_twem"], ".2f"), s["errors"],
                    fmt_num(s["cpu_client"], ".2f"), fmt_num(s["cpu_proxy"], ".2f"),
                    fmt_num(s["cpu_redis"], ".2f"), fmt_num(s["ceiling"], ".2f"),
                    "  (cache misses during runs: %d)" % s["misses"] if s["misses"] else ""))
            lines.append("")
    lines.append("rps, p50, p99, cpu: medians over the rounds. x redis, x twem: the median over "
                 "the rounds of each round's own ratio")
    lines.append("(the two runs were next to each other). cpu us/req: CPU time (user + system) "
                 "redis-benchmark, the proxy and the")
    lines.append("upstream Redis spent per request during the run. ceiling: the ratio to direct "
                 "Redis those costs allow on %d cores" % usable_cores())
    lines.append("with perfect scheduling (each process at most one core); a proxy near its "
                 "ceiling is CPU-bound, not waiting.")
    if args.replica or args.ab_replica:
        lines.append("With a replica running, the ceiling counts its CPU too (it applies every "
                     "target's SETs and serves the reads")
        lines.append("of the respite targets given --replica); its cpu us/req is in the "
                     "-runs.csv and .csv files.")
    lines.append("")
    return lines


def replica_lines(args, rep):
    """--replica/--ab-replica: where the reads went and how many the replica served."""
    if not rep:
        return []
    lines = ["replica: redis-server 127.0.0.1:%d, --replicaof 127.0.0.1 %d; respite targets with "
             "--replica 127.0.0.1:%d --read-from %s:"
             % (rep["port"], rep["upstream_port"], rep["port"], args.read_from),
             "  %s" % read_from_text(args.read_from)]
    warm, end = rep.get("calls_warm"), rep.get("calls_end")
    if end is None:
        lines.append("  reads served by the replica: ? (the replica was not running at the end)")
    else:
        n = end["get"] + end["mget"]
        lines.append("  reads served by the replica: %d (its INFO commandstats: GET %d, MGET %d; "
                     "%d of them by the end of the warm-up)"
                     % (n, end["get"], end["mget"], warm["get"] + warm["mget"]))
    for tg, reads, rf, healthy, pending in rep["proxies"]:
        lines.append("  %s: PROXY INFO replica_reads %s, read_from %s, replicas_healthy %s, "
                     "replica_pending_keys %s" % (TARGET_LABEL[tg], fmt_num(reads, "d"), rf,
                                                  healthy, fmt_num(pending, "d")))
    if any(tg in CACHED for tg, _, _, _, _ in rep["proxies"]):
        lines.append("  (replica_reads counts forwarded reads; a respite target with its cache "
                     "fills its misses from the replica")
        lines.append("  too, as GET+PTTL pairs, and answers the rest from the cache)")
    lines.append("")
    return lines


def ab_verdict(args, summary, pipelines, intro, cols, row, what):
    """A table of two respite targets' ratios to direct Redis per test and pipeline depth and
    the verdict on it: (lines, the verdict line "PASS/FAIL <what> ...", fails). row(test, p)
    gives (ratio a, ratio b, diff, x, diff per round) for the columns `cols`."""
    lines = intro + ["", "%-11s %8s %8s %8s %8s  %s" % (("test",) + cols + ("diff per round",)),
                     "-" * 72]
    worst, missing = None, []
    for test in args.tests:
        for p in pipelines:
            label = "%s -P%d" % (TEST_LABEL[test], p)
            a, b, d, x, rounds = row(test, p)
            lines.append("%-11s %8s %8s %8s %8s  %s" % (
                label, fmt_num(a, ".2f"), fmt_num(b, ".2f"), fmt_num(d, "+.3f"),
                fmt_num(x, ".2f"), " ".join("%+.2f" % v for v in rounds or [])))
            if d is None:
                missing.append(label)
            elif worst is None or d < worst[0]:
                worst = (d, label)
    ok = not missing and worst is not None and worst[0] >= -MAX_RATIO_LOSS
    detail = []
    if worst is not None:
        detail.append("worst: %s %+.3f" % (worst[1], worst[0]))
    if missing:
        detail.append("not measured: %s" % ", ".join(missing))
    verdict = "  %s %s  (%s; %d round(s))" % ("PASS" if ok else "FAIL", what, "; ".join(detail),
                                              args.rounds)
    lines.append("")
    return lines, verdict, 0 if ok else 1


def baseline_row(summary):
    """row(test, p) for ab_verdict and write_ab_csv: respite and the baseline binary."""
    def row(test, p):
        s = summary.get((test, p, "respite")) or {}
        b = summary.get((test, p, BASELINE)) or {}
        return (s.get("x_redis"), b.get("x_redis"), s.get("x_redis_diff"), s.get("x_baseline"),
                s.get("x_redis_diff_rounds"))
    return row


def replica_row(summary):
    """row(test, p) for ab_verdict and write_ab_csv: respite on one node and with the replica."""
    def row(test, p):
        s = summary.get((test, p, "respite")) or {}
        b = summary.get((test, p, AB_REPLICA)) or {}
        return (s.get("x_redis"), b.get("x_redis"), b.get("x_one_diff"), b.get("x_one"),
                b.get("x_one_diff_rounds"))
    return row


def write_ab_csv(path, args, pipelines, header, row):
    """One line per test and pipeline depth of row(test, p) (see ab_verdict)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["test", "pipeline"] + header)
        for test in args.tests:
            for p in pipelines:
                a, b, d, x, rounds = row(test, p)
                w.writerow([TEST_LABEL[test], p] + [fmt_num(v, ".3f") for v in (a, b, d, x)]
                           + [";".join("%.3f" % v for v in rounds or [])])


def replica_verdict(args, summary, pipelines):
    """--ab-replica: (lines of the one node / +replica table, the verdict line, fails)."""
    intro = ["one node / +replica (--ab-replica): respite (cache) with the one upstream and "
             "respite (cache) +replica (--replica,",
             "--read-from %s), each as a ratio to the direct Redis run of its own round; diff = "
             "the median over the rounds" % args.read_from,
             "of each round's (+replica - one node); x one = the median over the rounds of each "
             "round's +replica / one node throughput."]

    return ab_verdict(args, summary, pipelines, intro, ("one node", "+replica", "diff", "x one"),
                      replica_row(summary), "replica: no ratio worse by more than %.2f than one node"
                      % MAX_RATIO_LOSS)


def baseline_verdict(args, summary, pipelines):
    """--baseline-bin: (lines of the before/after table, the verdict line, fails)."""
    intro = ["before/after (--baseline-bin): respite (cache) from this binary and from the "
             "baseline binary, each as a ratio to",
             "the direct Redis run of its own round; diff = the median over the rounds of each "
             "round's (this - baseline);",
             "x base = the median over the rounds of each round's this / baseline throughput.",
             "  this:     %s" % args.respite,
             "  baseline: %s" % args.baseline_bin]

    return ab_verdict(args, summary, pipelines, intro, ("this", "baseline", "diff", "x base"),
                      baseline_row(summary), "no ratio worse by more than %.2f" % MAX_RATIO_LOSS)


# ---------------------------------------------------------------------------------------------

def vm_rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def memory_test(args, procs, report):
    n = args.mem_entries
    up_port, r_port = free_ports(2)
    log("")
    log("memory: loading %d entries (16-byte keys, 32-byte values) into a fresh upstream :%d"
        % (n, up_port))
    start_redis(procs, "mem-redis", up_port)
    with Conn(up_port) as c:
        used_before = info_int(parse_info(c.call("INFO", "memory")), "used_memory")
    t0 = time.monotonic()
    p = subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p", str(up_port), "--pipe"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        chunk = 50000
        for i in range(0, n, chunk):
            p.stdin.write(b"".join(
                b"*3\r\n$3\r\nSET\r\n$16\r\n%s\r\n$32\r\n%s\r\n"
                % ((MEM_KEY_FMT % j).encode(), (MEM_VALUE_FMT % j).encode())
                for j in range(i, min(i + chunk, n))))
        p.stdin.close()
        out = p.stdout.read().decode(errors="replace")
        p.wait(timeout=300)
    except BaseException:
        p.kill()
        p.wait()
        raise
    if p.returncode != 0 or "errors: 0," not in out:
        raise RuntimeError("redis-cli --pipe failed: " + out[-300:])
    with Conn(up_port) as c:
        dbsize = c.call("DBSIZE")
        used_after = info_int(parse_info(c.call("INFO", "memory")), "used_memory")
    log("memory: loaded in %.1f s, DBSIZE %s" % (time.monotonic() - t0, dbsize))

    argv = respite_argv(args, r_port, up_port, args.mem_cache, 600000)
    log("memory: starting respite :%d: %s" % (r_port, " ".join(argv[1:])))
    procs.start("mem-respite", argv, port=r_port)
    pid = procs.pid("mem-respite")
    time.sleep(0.5)
    info0 = proxy_info(r_port)
    rss_before = vm_rss_bytes(pid)
    t0 = time.monotonic()
    bad = 0
    with Conn(r_port, timeout=120) as c:
        batch = 2000
        for i in range(0, n, batch):
            idx = range(i, min(i + batch, n))
            c.send(b"".join(encode("GET", MEM_KEY_FMT % j) for j in idx))
            for j in idx:
                v = c.read()
                if v != (MEM_VALUE_FMT % j).encode():
                    bad += 1
    read_s = time.monotonic() - t0
    time.sleep(0.5)
    info1 = proxy_info(r_port)
    rss_after = vm_rss_bytes(pid)
    procs.stop("mem-respite")
    procs.stop("mem-redis")

    keys = info_int(info1, "cache_keys") or 0
    cbytes = info_int(info1, "cache_bytes")
    kv = 16 + 32
    m = {"entries": n, "read_s": read_s, "bad": bad, "cache_keys": keys, "cache_bytes": cbytes,
         "rss_before": rss_before, "rss_after": rss_after,
         "misses": (info_int(info1, "cache_misses") or 0) - (info_int(info0, "cache_misses") or 0),
         "acct": (cbytes - keys * kv) / keys if keys and cbytes is not None else None,
         "rss": ((rss_after - rss_before) / keys - kv) if keys and rss_after and rss_before
         else None,
         "redis": ((used_after - used_before) / dbsize - kv) if used_after and dbsize else None}
    report["memory"] = m


def memory_lines(m):
    if not m:
        return []
    mib = 1048576.0
    return [
        "memory per entry (%d entries, 16-byte keys, 32-byte values, read through respite with "
        "pipelined GETs in %.1f s, %d bad replies, %d misses):"
        % (m["entries"], m["read_s"], m["bad"], m["misses"]),
        "  cache_keys %d, cache_bytes %s" % (m["cache_keys"], m["cache_bytes"]),
        "  respite VmRSS %.1f MiB before, %.1f MiB after (+%.1f MiB)"
        % (m["rss_before"] / mib, m["rss_after"] / mib, (m["rss_after"] - m["rss_before"]) / mib),
        "  bytes per entry beyond key+value, as the cache accounts:  %s"
        % fmt_num(m["acct"], ".1f"),
        "  bytes per entry beyond key+value, from RSS growth:        %s"
        % fmt_num(m["rss"], ".1f"),
        "  (for comparison, the upstream redis-server, from used_memory: %s)"
        % fmt_num(m["redis"], ".1f"),
    ]


def check_lines(args, report):
    lines = ["acceptance (issue 4; respite with its cache vs direct Redis, the median over the "
             "rounds of each round's ratio):"]
    fails = 0
    summary = report.get("summary") or {}
    for label, test, p, tg, need in THRESHOLDS:
        s = summary.get((test, p, tg))
        r = s and s.get("x_redis")
        if r is None:
            lines.append("  SKIP %-20s (not measured)" % label)
            continue
        ok = r >= need
        fails += not ok
        rounds = " ".join("%.2f" % x for x in s.get("x_redis_rounds") or [])
        lines.append("  %s %-20s %.2f  (need >= %.2f; rounds: %s)"
                     % ("PASS" if ok else "FAIL", label, r, need, rounds))
    if summary:
        errors = sum(s["errors"] for s in summary.values())
        fails += errors > 0
        lines.append("  %s %-20s %d" % ("PASS" if errors == 0 else "FAIL", "benchmark errors",
                                          errors))
    if args.baseline_bin:
        _, verdict, bad = baseline_verdict(args, summary, report.get("pipelines") or [])
        lines.append(verdict)
        fails += bad
    if args.ab_replica:
        _, verdict, bad = replica_verdict(args, summary, report.get("pipelines") or [])
        lines.append(verdict)
        fails += bad
    m = report.get("memory")
    for label, key in (("bytes/entry (cache)", "acct"), ("bytes/entry (RSS)", "rss")):
        v = m and m.get(key)
        if v is None:
            lines.append("  SKIP %-20s (not measured)" % label)
            continue
        ok = v <= MAX_BYTES_PER_ENTRY
        fails += not ok
        lines.append("  %s %-20s %.1f  (need <= %d)" % ("PASS" if ok else "FAIL", label, v,
                                                        MAX_BYTES_PER_ENTRY))
    return lines, fails


def main():
    ap = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark respite against direct Redis and twemproxy on loopback "
                    "(redis-benchmark, medians of interleaved rounds) and measure its memory "
                    "per cached entry. Results go to build/bench/.")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 round, -n 10000/50000, 100k-entry memory test")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7)")
    ap.add_argument("--n-p1", type=int, default=None,
                    help="requests per run at -P 1 (default 300000)")
    ap.add_argument("--n-p16", type=int, default=None,
                    help="requests per run at -P 16 (default 2000000)")
    ap.add_argument("--pipelines", default="1,16", help="pipeline depths (default 1,16)")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help="comma list of %s (default: all)" % ",".join(TARGETS))
    ap.add_argument("--tests", default=",".join(TESTS), help="comma list of get,set,mget")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--keys", type=int, default=10000, help="keyspace (-r), default 10000")
    ap.add_argument("--cache-max-memory", default="64mb", help="respite (cache) budget")
    ap.add_argument("--cache-ttl-ms", type=int, default=600000,
                    help="respite cache TTL during the bench (default 600000, so entries do not "
                         "expire mid-run; the cache is re-warmed before every cached read run)")
    ap.add_argument("--threads", type=int, default=None, help="respite --threads (default: "
                    "respite's own default)")
    ap.add_argument("--ab-threads", type=int, default=None, metavar="N",
                    help="also run respite (cache) with --threads N as one more target in the "
                         "same interleaved rounds (an A/B of the thread count)")
    ap.add_argument("--baseline-bin", metavar="PATH", default=None,
                    help="also run respite (cache) from this binary (e.g. the build before a "
                         "change, built the same way) as one more target, next to respite in the "
                         "same interleaved rounds; reports both binaries' ratios to direct Redis, "
                         "their difference, and the verdict 'no ratio worse by more than %.2f' "
                         "(a FAIL counts for --strict)" % MAX_RATIO_LOSS)
    ap.add_argument("--replica", action="store_true",
                    help="also start a redis-server replica of the upstream (--replicaof, on a "
                         "free loopback port; the bench waits for its link and for the filled "
                         "keys) and start every respite target with --replica on it and "
                         "--read-from (the memory test runs without it)")
    ap.add_argument("--read-from", choices=("replica", "prefer-replica", "primary"), default=None,
                    help="respite --read-from with --replica or --ab-replica (default replica)")
    ap.add_argument("--ab-replica", action="store_true",
                    help="start the replica as --replica does, but give it to one more target "
                         "only, respite (cache) +replica, in the same interleaved rounds next to "
                         "respite (cache), which keeps the one node; reports both ratios to "
                         "direct Redis, their difference, and the verdict 'replica: no ratio "
                         "worse by more than %.2f than one node' (a FAIL counts for --strict)"
                         % MAX_RATIO_LOSS)
    ap.add_argument("--bin", metavar="PATH", default=None,
                    help="the respite binary under test (default: build/release/respite, which "
                         "scripts/bench builds; with --bin it builds nothing)")
    ap.add_argument("--upstream-connections", type=int, default=None,
                    help="respite --upstream-connections (default: respite's own default)")
    ap.add_argument("--respite-arg", action="append", default=[],
                    help="extra respite flags, e.g. --respite-arg='--threads 2' (repeatable)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory-per-entry test")
    ap.add_argument("--memory-only", action="store_true", help="only the memory-per-entry test")
    ap.add_argument("--mem-entries", type=int, default=None,
                    help="entries for the memory test (default 1000000)")
    ap.add_argument("--mem-cache", default="1gb", help="respite cache budget in the memory test")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when an acceptance threshold fails (default: always exit 0)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with server logs")
    ap.add_argument("--pin", action="store_true",
                    help="run redis-benchmark on the first CPU and every server on the others "
                         "(steadier before/after comparisons on a machine with few cores; with "
                         "two, a proxy and Redis share one core, so ratios of forwarded commands "
                         "to direct Redis read lower than without)")
    args = ap.parse_args()
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            sys.exit("scripts/bench: --pin needs at least two CPUs")
        PIN["client"], PIN["server"] = {cpus[0]}, set(cpus[1:])

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args.respite = (args.bin or os.environ.get("RESPITE_BENCH_BIN")
                    or os.path.join(root, "build", "release", "respite"))
    # Servers run with the temp dir as their working directory: make the paths absolute.
    args.respite = os.path.abspath(args.respite)
    args.out_dir = os.environ.get("RESPITE_BENCH_OUT") or os.path.join(root, "build", "bench")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 7
    # Runs of about two seconds each: at 100k-1.6M requests/s, shorter runs (they were 100k and
    # 200k requests, well under a second at -P 16) mostly measured warm-up and whatever else the
    # machine was doing in that instant.
    if args.n_p1 is None:
        args.n_p1 = 10000 if args.quick else 300000
    if args.n_p16 is None:
        args.n_p16 = 50000 if args.quick else 2000000
    if args.mem_entries is None:
        args.mem_entries = 100000 if args.quick else 1000000
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.tests = [t.strip().lower() for t in args.tests.split(",") if t.strip()]
    args.pipelines = [int(p) for p in args.pipelines.split(",") if p.strip()]
    for t in args.targets:
        if t not in TARGETS:
            ap.error("unknown target %r" % t)
    if args.ab_threads:
        args.targets.append(AB_THREADS)
        TARGET_LABEL[AB_THREADS] = "respite (cache, %d thr)" % args.ab_threads
    if args.baseline_bin:
        args.baseline_bin = os.path.abspath(args.baseline_bin)
        if not os.access(args.baseline_bin, os.X_OK):
            ap.error("no executable at --baseline-bin %s" % args.baseline_bin)
        if "respite" not in args.targets:
            ap.error("--baseline-bin compares with the respite target: keep it in --targets")
        if "redis" not in args.targets:
            ap.error("--baseline-bin compares ratios to direct Redis: keep redis in --targets")
        if args.memory_only:
            ap.error("--baseline-bin compares throughput; it does nothing with --memory-only")
        args.targets.append(BASELINE)
        TARGET_LABEL[BASELINE] = "respite (cache) base"
    if args.replica and args.ab_replica:
        ap.error("--ab-replica compares with respite (cache) on one node: drop --replica")
    if (args.replica or args.ab_replica) and args.memory_only:
        ap.error("--replica and --ab-replica are for the throughput runs; they do nothing with "
                 "--memory-only")
    if args.read_from and not (args.replica or args.ab_replica):
        ap.error("--read-from needs --replica or --ab-replica")
    args.read_from = args.read_from or "replica"
    if args.ab_replica:
        if "respite" not in args.targets:
            ap.error("--ab-replica compares with the respite target: keep it in --targets")
        if "redis" not in args.targets:
            ap.error("--ab-replica compares ratios to direct Redis: keep redis in --targets")
        args.targets.append(AB_REPLICA)
        TARGET_LABEL[AB_REPLICA] = "respite (cache) +replica"
    for t in args.tests:
        if t not in TESTS:
            ap.error("unknown test %r" % t)
    if not os.access(args.respite, os.X_OK):
        ap.error("no respite binary at %s (run scripts/bench, which builds it)" % args.respite)
    for tool in ("redis-server", "redis-benchmark", "redis-cli", "nutcracker"):
        if not shutil.which(tool):
            ap.error("%s not found" % tool)

    tmp, procs, failed = session("respite-bench-", args.keep, "logs")

    now = datetime.datetime.now()
    stamp = now.strftime("%Y%m%d-%H%M%S")
    head = ["respite bench %s" % now.strftime("%Y-%m-%d %H:%M:%S")] + machine_lines()
    head.append("respite:   %s" % args.respite)
    if args.baseline_bin:
        head.append("baseline:  %s (target respite (cache) base, with respite (cache)'s flags)"
                    % args.baseline_bin)
    if args.replica or args.ab_replica:
        head.append("replica:   a redis-server replica of the upstream (--replicaof, loopback); "
                    "%s: --replica on it, --read-from %s"
                    % ("every respite target" if args.replica
                       else "only respite (cache) +replica (the other respite targets: one node)",
                       args.read_from))
        head.append("           reads went: %s" % read_from_text(args.read_from))
    head.append("command:   scripts/bench %s" % " ".join(sys.argv[1:]))
    head.append("bench:     redis-benchmark -c %d -r %d -d %d, -n %d at -P 1 and %d at -P 16; "
                "%d round(s), targets interleaved (order forward, then backward); medians"
                % (args.clients, args.keys, VALUE_SIZE, args.n_p1, args.n_p16, args.rounds))
    head.append("           MGET10 = `MGET key:__rand_int__ x10` (redis-benchmark has no mget "
                "test); respite (cache): --cache-max-memory %s --cache-ttl-ms %d, re-warmed "
                "before each GET/MGET run" % (args.cache_max_memory, args.cache_ttl_ms))
    for l in head:
        log(l)
    log("")

    report = {}
    try:
        if not args.memory_only:
            throughput(args, procs, report)
        if not args.no_memory:
            memory_test(args, procs, report)
    except Exception as e:
        warn("FAILED: %s\n%s" % (e, traceback.format_exc()))
        for name in list(procs.running):
            t = procs.log_tail(name)
            if t:
                warn("log of %s:\n%s" % (name, t))
        procs.stop_all()
        if not report:
            return 1

    out = list(head)
    out[3] = out[3] + "; %s (at end)" % " ".join(open("/proc/loadavg").read().split()[:3])
    out.append("")
    summary = report.get("summary")
    if summary:
        out += report.get("warm", [])
        out.append("")
        out += table_lines(args, summary, report["pipelines"])
        if args.baseline_bin:
            out += baseline_verdict(args, summary, report["pipelines"])[0]
        if args.ab_replica:
            out += replica_verdict(args, summary, report["pipelines"])[0]
    out += replica_lines(args, report.get("replica"))
    out += memory_lines(report.get("memory"))
    out.append("")
    checks, fails = check_lines(args, report)
    out += checks

    os.makedirs(args.out_dir, exist_ok=True)
    base = os.path.join(args.out_dir, "bench-%s" % stamp)
    with open(base + ".txt", "w") as f:
        f.write("\n".join(out) + "\n")
    files = [base + ".txt"]
    if summary:
        with open(base + ".csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["test", "pipeline", "target", "rps", "p50_ms", "p99_ms", "x_redis",
                        "x_twemproxy", "runs", "errors", "cache_misses", "rps_per_round",
                        "x_redis_per_round", "cpu_us_per_req_proxy", "cpu_us_per_req_redis",
                        "cpu_us_per_req_client", "cpu_ceiling", "cpu_us_per_req_replica"])
            for (test, p, tg), s in summary.items():
                w.writerow([TEST_LABEL[test], p, tg, fmt_num(s["rps"], ".0f"),
                            fmt_num(s["p50"], ".3f"), fmt_num(s["p99"], ".3f"),
                            fmt_num(s["x_redis"], ".3f"), fmt_num(s["x_twem"], ".3f"), s["runs"],
                            s["errors"], s["misses"],
                            ";".join(fmt_num(x, ".0f") for x in s["all_rps"]),
                            ";".join("%.3f" % x for x in s["x_redis_rounds"]),
                            fmt_num(s["cpu_proxy"], ".3f"), fmt_num(s["cpu_redis"], ".3f"),
                            fmt_num(s["cpu_client"], ".3f"), fmt_num(s["ceiling"], ".3f"),
                            fmt_num(s["cpu_replica"], ".3f")])
        files.append(base + ".csv")
        with open(base + "-runs.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["round", "test", "pipeline", "target", "rps", "p50_ms", "p99_ms",
                        "errors", "cache_misses", "cpu_us_per_req_proxy", "cpu_us_per_req_redis",
                        "cpu_us_per_req_client", "note", "cpu_us_per_req_replica"])
            for x in report["runs"]:
                w.writerow([x["round"], TEST_LABEL[x["test"]], x["pipeline"], x["target"],
                            fmt_num(x["rps"], ".0f"), fmt_num(x["p50"], ".3f"),
                            fmt_num(x["p99"], ".3f"), x["errors"],
                            "" if x["misses"] is None else x["misses"],
                            fmt_num(x.get("cpu_proxy"), ".3f"), fmt_num(x.get("cpu_redis"), ".3f"),
                            fmt_num(x.get("cpu_client"), ".3f"), x["note"],
                            fmt_num(x.get("cpu_replica"), ".3f")])
        files.append(base + "-runs.csv")
        if args.baseline_bin:
            write_ab_csv(base + "-baseline.csv", args, report["pipelines"],
                         ["x_redis", "x_redis_baseline", "diff", "x_baseline", "diff_per_round"],
                         baseline_row(summary))
            files.append(base + "-baseline.csv")
        if args.ab_replica:
            write_ab_csv(base + "-replica.csv", args, report["pipelines"],
                         ["x_redis_one_node", "x_redis_replica", "diff", "x_one_node",
                          "diff_per_round"], replica_row(summary))
            files.append(base + "-replica.csv")
        if write_chart(base + ".png", stamp, summary, args.targets, args.tests,
                       report["pipelines"], tmp):
            files.append(base + ".png")
    m = report.get("memory")
    if m:
        with open(base + "-memory.csv", "w", newline="") as f:
            w = csv.writer(f)
            keys = ["entries", "cache_keys", "cache_bytes", "rss_before", "rss_after", "acct",
                    "rss", "redis", "read_s", "bad", "misses"]
            w.writerow(keys)
            w.writerow([m[k] for k in keys])
        files.append(base + "-memory.csv")

    log("")
    for l in out[len(head):]:
        log(l)
    log("")
    log("written: " + ", ".join(os.path.relpath(p, root) for p in files))
    failed[0] = False
    if args.strict and fails:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
