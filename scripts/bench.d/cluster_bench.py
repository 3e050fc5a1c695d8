#!/usr/bin/python3
"""respite --cluster against the Redis Cluster it fronts (scripts/bench --cluster).

What runs: a 3-master Redis Cluster without replicas (tests/integration/cluster_harness.py, free
loopback ports) and respite --cluster in front of it (every node a seed, its cache on with
--cache-max-memory 256mb and --cache-ttl-ms 600000, so nothing expires mid-run). Keys are
preloaded with 32-byte values straight into the cluster, respite's cache is warmed (and checked:
a second pass must be all hits) before every cached run, and each run is one redis-benchmark:

  target "cluster (direct)": `redis-benchmark --cluster` against the first node, the
      cluster-aware client: it reads CLUSTER NODES, connects to every master and substitutes
      "{tag}" in the key with a hash tag of a slot of the master the connection goes to
      (redis-benchmark 7 keeps using the first slot of each master, so its keys are
      key:{T0}:<n>, key:{T1}:<n>, key:{T2}:<n>, one tag per master, found at start by a probe).
  target "respite (cache)": plain `redis-benchmark` against respite, which routes by slot,
      caches GET/MGET and presents itself as a one-node cluster.

  GET -P1/-P16:     direct `-t get` (GET key:{Ti}:<n>); through respite GET key:{T0}:<n>, the
                    keys the direct client reads from the first master (a plain client cannot
                    substitute a tag per master; the cache answers, so the slot does not matter)
  MGET10 -P1/-P16:  MGET of 10 keys. A cluster client cannot MGET across slots, so the direct
                    side sends MGET key:{tag}:<n> x10 (10 keys of one slot); through respite the
                    same tagged keys, MGET key:{T0}:<n> x10 (the fair comparison); the extra row
                    "respite (cross-slot)" is MGET key:<n> x10, untagged keys in different slots
                    that respite splits per node (informational, no verdict)
  SET -P1/-P16:     forwarded writes: direct `-t set` (key:{Ti}:<n>, spread over the 3 masters);
                    through respite `-t set` (key:<n>, spread over every slot, so over the 3
                    masters too; one master's tag would put all writes on one node)

Why it is fair: the same cluster and the same running respite in every round; the same keys
(-r 10000 per key pattern, 32-byte values, reads hit), the same -c 50 connections, -n and -P,
and the same client program with the same number of threads on both sides (--client-threads,
default 3: what redis-benchmark --cluster picks for 3 masters by itself; the plain client gets
it too, or it would be one event loop against three). The direct side is a cluster-aware client
talking to each master itself, the best case a client library can reach without a proxy.

Rounds are interleaved (cluster, respite, [cross-slot] in odd rounds, backwards in even ones),
and a ratio is the median over the rounds of each round's own respite / direct ratio, as
scripts/bench.d/bench.py does (the shared 2-core machine's speed changes from second to second).
CPU time per request of the client, respite and the 3 nodes together is recorded per run.
redis-benchmark with --threads (--cluster always is) ends a run on its 250 ms timer, its clients
spinning meanwhile: a run's time is rounded up to a 250 ms step, so runs must last seconds (the
defaults, -n 300000 / 2000000, do; --quick's do not, and the table says so).

Verdicts (--strict: exit 1 when one fails): cached GET and MGET10 through respite at least as
fast as direct (ratio >= 1.0) at -P 1 and -P 16; forwarded SET at least 0.7 of direct at -P 16;
no benchmark errors; after the runs, every key read through respite equals the cluster's value.
Output: a table on stdout and in build/bench/cluster.txt, cluster.csv (medians) and
cluster-runs.csv (every run). Every process (nodes, respite, redis-benchmark) is started on
loopback and stopped by pid on exit, also on Ctrl-C, SIGTERM or an error.

usage: scripts/bench --cluster [--quick] [--rounds N] [--bin PATH] [--threads N] [--keep]
                               [--strict] [--n-p1 N] [--n-p16 N] [--client-threads N]
"""
import argparse
import csv
import datetime
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "scripts" / "lib"))

import harness  # noqa: E402  (process bookkeeping: every child stopped by pid at exit)
import cluster_harness as ch  # noqa: E402
from resp_client import Conn, RespError, encode, parse_info  # noqa: E402
sys.path.insert(0, str(ROOT / "scripts" / "bench.d"))
# The helpers the one-node bench has already (its module runs nothing when imported).
from bench import cpu_ticks, log, median, pipelined, proxy_info  # noqa: E402

VALUE_SIZE = 32
MASTERS = 3
DIRECT, RESPITE, CROSS = "cluster", "respite", "respite-x"
LABEL = {DIRECT: "cluster (direct)", RESPITE: "respite (cache)", CROSS: "respite (cross-slot)"}
TESTS = ["get", "mget", "set"]
TEST_LABEL = {"get": "GET", "mget": "MGET10", "set": "SET"}
CACHED_TESTS = ("get", "mget")
# (label, test, pipeline, minimum ratio respite / direct)
THRESHOLDS = [
    ("cached GET -P1", "get", 1, 1.0),
    ("cached GET -P16", "get", 16, 1.0),
    ("cached MGET10 -P1", "mget", 1, 1.0),
    ("cached MGET10 -P16", "mget", 16, 1.0),
    ("forwarded SET -P16", "set", 16, 0.7),
]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def warn(msg):
    print("bench --cluster: " + msg, file=sys.stderr, flush=True)


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


# ---------------------------------------------------------------------------------------------
# Keys

def probe_tags(cl):
    """The "{tag}" text redis-benchmark --cluster puts in keys for each master, found by running
    it: SET probe:{tag}:<n> through it, then the keys each master holds. Returns the tags (e.g.
    "{06S}", "{8M}}"), one per master, in masters() order."""
    port = cl.masters()[0].port
    cp = subprocess.run([harness.REDIS_BENCHMARK, "-h", harness.HOST, "-p", str(port), "--cluster",
                         "-c", str(2 * MASTERS), "-n", str(20 * MASTERS), "-r", "1", "--csv",
                         "SET", "bench-probe:{tag}:__rand_int__", "1"],
                        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                        preexec_fn=harness._child_setup)
    tags = []
    for m in cl.masters():
        with Conn(m.port) as c:
            keys = c.call("KEYS", "bench-probe:*")
            if keys:
                c.call("DEL", *keys)
        if not keys or len(keys) != 1:
            raise RuntimeError("redis-benchmark --cluster probe: master %s holds %r (rc %d, %s)"
                               % (m.addr, keys, cp.returncode, (cp.stderr or cp.stdout)[-300:]))
        k = keys[0].decode()
        tags.append(k[len("bench-probe:"):-len(":000000000000")])
    return tags


def key_sets(args, tags):
    """name -> list of keys: tagged[i] (key:{Ti}:<n>) and plain (key:<n>), -r keys each."""
    ks = {"plain": ["key:%012d" % i for i in range(args.keys)]}
    for i, t in enumerate(tags):
        ks["tag%d" % i] = ["key:%s:%012d" % (t, n) for n in range(args.keys)]
    return ks


def fill(cl, keys):
    """SET every key to a 32-byte value on the master serving its slot."""
    owners = cl.slot_owners()
    by_node = {}
    for k in keys:
        by_node.setdefault(owners[ch.key_slot(k)], []).append(k)
    value = b"x" * VALUE_SIZE
    for nid, ks in by_node.items():
        with Conn(cl.node_by_id(nid).port) as c:
            bad = [r for r in pipelined(c, [encode("SET", k, value) for k in ks]) if r != "OK"]
        if bad:
            raise RuntimeError("filling %s: %d bad replies, e.g. %r" % (nid[:8], len(bad), bad[0]))


def read_direct(cl, keys):
    """GET every key from the master serving its slot: the cluster's own values."""
    owners = cl.slot_owners()
    by_node = {}
    for i, k in enumerate(keys):
        by_node.setdefault(owners[ch.key_slot(k)], []).append(i)
    out = [None] * len(keys)
    for nid, idx in by_node.items():
        with Conn(cl.node_by_id(nid).port) as c:
            for i, v in zip(idx, pipelined(c, [encode("GET", keys[i]) for i in idx])):
                out[i] = v
    return out


def warm(port, keys, with_mget=False):
    """GETs every key (and MGETs them in tens) through respite; returns the bad replies."""
    bad = 0
    with Conn(port, timeout=60) as c:
        for r in pipelined(c, [encode("GET", k) for k in keys]):
            bad += not isinstance(r, bytes) or len(r) != VALUE_SIZE
        if with_mget:
            cmds = [encode("MGET", *keys[i:i + 10]) for i in range(0, len(keys), 10)]
            for r in pipelined(c, cmds):
                bad += not isinstance(r, list) or any(not isinstance(v, bytes) for v in r)
    return bad


def info_int(d, k):
    try:
        return int(d[k])
    except (KeyError, ValueError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------
# Processes

class RespiteProc:
    """respite --cluster on a free loopback port, its log in the session's temp dir."""

    def __init__(self, args, cl, tmp):
        self.proc = None
        last = ""
        for _ in range(harness.START_ATTEMPTS):
            port = harness.free_port()
            argv = [args.respite, "--port", str(port), "--bind", harness.HOST, "--cluster"]
            for s in cl.seeds():
                argv += ["--upstream", s]
            argv += ["--cache-max-memory", args.cache_max_memory,
                     "--cache-ttl-ms", str(args.cache_ttl_ms), "--log-level", "warning"]
            if args.threads:
                argv += ["--threads", str(args.threads)]
            p = harness.Proc(argv, Path(tmp) / "respite.log", name="respite")
            if harness.wait_for_port(port, harness.START_TIMEOUT, p.popen):
                self.proc, self.port, self.argv = p, port, argv
                return
            last = p.log_tail()
            p.stop(timeout=1.0)
        raise RuntimeError("respite --cluster did not start: %s" % last)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.alive()

    def stop(self):
        return self.proc.stop()


def bench_argv(args, port, target, test, pipeline, n, tags):
    argv = [harness.REDIS_BENCHMARK, "-h", harness.HOST, "-p", str(port), "-c", str(args.clients),
            "-n", str(n), "-r", str(args.keys), "-d", str(VALUE_SIZE), "-P", str(pipeline),
            "--csv"]
    if args.client_threads:
        argv += ["--threads", str(args.client_threads)]
    if target == DIRECT:
        argv.append("--cluster")
        if test == "mget":
            return argv + ["MGET"] + ["key:{tag}:__rand_int__"] * 10
        return argv + ["-t", test]  # in cluster mode its keys are key:{tag}:__rand_int__
    if test == "set":
        return argv + ["-t", "set"]
    key = "key:__rand_int__" if target == CROSS else "key:%s:__rand_int__" % tags[0]
    if test == "mget":
        return argv + ["MGET"] + [key] * 10
    return argv + ["GET", key]


# redis-benchmark's expected chatter: the cluster banner, and CONFIG it may not be given.
NOISE = ("Cluster has ", "Master ", "Could not fetch", "could not fetch", "WARN: could not")


def run_benchmark(argv, n):
    res = {"rps": None, "p50": None, "p99": None, "errors": 0, "note": ""}
    timeout = 60 + n / 1000.0
    try:
        cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, timeout=timeout,
                            preexec_fn=harness._child_setup)
    except subprocess.TimeoutExpired:
        res.update(errors=1, note="timed out after %ds" % timeout)
        return res
    rows, other = [], []
    for line in (cp.stdout + b"\n" + cp.stderr).decode(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith(NOISE):
            continue
        if line.startswith('"'):
            f = next(csv.reader([line]))
            if len(f) >= 7 and f[0] != "test":
                rows.append(f)
            continue
        other.append(line)
    # redis-benchmark exits on an error reply it does not expect, or a connection error.
    res["errors"] += cp.returncode != 0
    res["errors"] += sum(1 for l in other if any(w in l for w in ("rror", "ERR", "refused",
                                                                    "reset", "closed", "MOVED")))
    if other:
        res["note"] = "; ".join(other[-3:])[:200]
    if not rows:
        res["errors"] = max(res["errors"], 1)
        res["note"] = res["note"] or "exit status %d" % cp.returncode
        return res
    try:
        res["rps"], res["p50"], res["p99"] = float(rows[-1][1]), float(rows[-1][4]), \
            float(rows[-1][6])
    except ValueError:
        res["errors"] += 1
        res["note"] = "unparsable csv row %r" % (rows[-1],)
    return res


# ---------------------------------------------------------------------------------------------

def throughput(args, cl, px, tags, ks, report):
    targets = {"get": [DIRECT, RESPITE], "mget": [DIRECT, RESPITE, CROSS], "set": [DIRECT, RESPITE]}
    cached_keys = {RESPITE: ks["tag0"], CROSS: ks["plain"]}
    node_pids = [n.proc.pid for n in cl.masters()]
    node0 = cl.masters()[0].port
    runs = []
    total = args.rounds * sum(len(targets[t]) for t in TESTS) * len(args.pipelines)
    k = 0
    t0 = time.monotonic()
    for r in range(args.rounds):
        for test in TESTS:
            for p in args.pipelines:
                n = args.n_p1 if p == 1 else args.n_p16
                order = list(targets[test])
                if r % 2:
                    order.reverse()
                for tg in order:
                    k += 1
                    if not px.alive():
                        raise RuntimeError("respite exited (status %s)\n%s"
                                           % (px.proc.popen.returncode, px.proc.log_tail(20)))
                    before = None
                    if tg != DIRECT and test in CACHED_TESTS:
                        warm(px.port, cached_keys[tg])  # SET runs invalidated keys
                        before = proxy_info(px.port)
                    pids = {"proxy": px.pid} if tg != DIRECT else {}
                    c0 = {w: cpu_ticks(pid) for w, pid in pids.items()}
                    n0 = [cpu_ticks(pid) for pid in node_pids]
                    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    res = run_benchmark(bench_argv(args, node0 if tg == DIRECT else px.port, tg,
                                                   test, p, n, tags), n)
                    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    res["cpu_client"] = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime
                                         - ru0.ru_stime) * 1e6 / n
                    for w, pid in pids.items():
                        t1 = cpu_ticks(pid)
                        res["cpu_" + w] = (None if t1 is None or c0[w] is None
                                           else (t1 - c0[w]) * 1e6 / CLK_TCK / n)
                    n1 = [cpu_ticks(pid) for pid in node_pids]
                    res["cpu_cluster"] = (None if None in n0 + n1 else
                                          sum(b - a for a, b in zip(n0, n1)) * 1e6 / CLK_TCK / n)
                    res["misses"] = None
                    if before is not None and px.alive():
                        after = proxy_info(px.port)
                        res["misses"] = ((info_int(after, "cache_misses") or 0)
                                         - (info_int(before, "cache_misses") or 0))
                    res.update(round=r + 1, test=test, pipeline=p, target=tg,
                               secs=n / res["rps"] if res["rps"] else None)
                    runs.append(res)
                    log("[%3d/%d round %d] %-6s -P%-2d %-20s %10s rps  p50 %6s  p99 %6s ms  "
                        "cpu us/req client %5s proxy %5s cluster %5s%s%s%s"
                        % (k, total, r + 1, TEST_LABEL[test], p, LABEL[tg], fmt(res["rps"], ",.0f"),
                           fmt(res["p50"], ".3f"), fmt(res["p99"], ".3f"),
                           fmt(res["cpu_client"], ".2f"), fmt(res.get("cpu_proxy"), ".2f"),
                           fmt(res["cpu_cluster"], ".2f"),
                           "  ERRORS %d" % res["errors"] if res["errors"] else "",
                           "  cache misses %d" % res["misses"] if res["misses"] else "",
                           "  (%s)" % res["note"] if res["note"] else ""))
    log("throughput runs took %.0f s" % (time.monotonic() - t0))

    by_round = {(x["test"], x["pipeline"], x["target"], x["round"]): x["rps"] for x in runs}
    summary = {}
    for test in TESTS:
        for p in args.pipelines:
            for tg in targets[test]:
                rs = [x for x in runs if (x["test"], x["pipeline"], x["target"]) == (test, p, tg)]
                ok = [x for x in rs if x["rps"]]
                ratios = []
                for rr in range(1, args.rounds + 1):
                    a, b = by_round.get((test, p, tg, rr)), by_round.get((test, p, DIRECT, rr))
                    if a and b:
                        ratios.append(a / b)
                summary[(test, p, tg)] = {
                    "rps": median([x["rps"] for x in rs]), "p50": median([x["p50"] for x in rs]),
                    "p99": median([x["p99"] for x in rs]),
                    "errors": sum(x["errors"] for x in rs), "runs": len(ok),
                    "misses": sum(x["misses"] or 0 for x in rs),
                    "all_rps": [x["rps"] for x in rs],
                    "x": median(ratios) if tg != DIRECT else None, "x_rounds": ratios,
                    "cpu_client": median([x["cpu_client"] for x in ok]),
                    "cpu_proxy": median([x.get("cpu_proxy") for x in ok]),
                    "cpu_cluster": median([x["cpu_cluster"] for x in ok]),
                }
    report.update(summary=summary, runs=runs, targets=targets)


def coherence_check(cl, px, ks):
    """Every key of the runs read through respite (GET) and straight from the cluster: the
    values that differ (after a short pause for the last invalidations)."""
    time.sleep(0.5)
    keys = [k for name in sorted(ks) for k in ks[name]]
    direct = read_direct(cl, keys)
    with Conn(px.port, timeout=60) as c:
        via = pipelined(c, [encode("GET", k) for k in keys])
    diff = [(k, a, b) for k, a, b in zip(keys, via, direct) if a != b]
    return len(keys), diff


def log_findings(path):
    """respite runs with --log-level warning: every line of its log is a warning or worse."""
    try:
        lines = [l for l in Path(path).read_text(errors="replace").splitlines() if l.strip()
                 and "Received SIGTERM" not in l]  # the bench's own stop
    except OSError:
        return ["respite log: unreadable"]
    if not lines:
        return ["respite log: empty (no warning, no error)"]
    out = ["respite log: %d line(s) at warning level or above; the first and last:" % len(lines)]
    shown = lines[:5] + (["..."] if len(lines) > 10 else []) + lines[max(5, len(lines) - 5):]
    return out + ["  " + l[:200] for l in shown]


def table_lines(args, report):
    summary, targets = report["summary"], report["targets"]
    hdr = "%-11s %-20s %12s %8s %8s %9s %6s  %s" % (
        "test", "target", "rps", "p50 ms", "p99 ms", "x direct", "errors",
        "cpu us/req: client proxy cluster")
    lines = [hdr, "-" * len(hdr)]
    for test in TESTS:
        for p in args.pipelines:
            for tg in targets[test]:
                s = summary[(test, p, tg)]
                lines.append("%-11s %-20s %12s %8s %8s %9s %6d  %18s %5s %7s%s" % (
                    "%s -P%d" % (TEST_LABEL[test], p), LABEL[tg], fmt(s["rps"], ",.0f"),
                    fmt(s["p50"], ".3f"), fmt(s["p99"], ".3f"), fmt(s["x"], ".2f"), s["errors"],
                    fmt(s["cpu_client"], ".2f"), fmt(s["cpu_proxy"], ".2f"),
                    fmt(s["cpu_cluster"], ".2f"),
                    "  (cache misses during runs: %d)" % s["misses"] if s["misses"] else ""))
            lines.append("")
    lines += ["rps, p50, p99, cpu: medians over the rounds. x direct: the median over the rounds "
              "of each round's respite / direct",
              "ratio (the runs were next to each other). cpu us/req: CPU time (user + system) of "
              "redis-benchmark, respite and the",
              "3 cluster nodes together, per request. respite (cross-slot): MGET of 10 untagged "
              "keys in different slots, which",
              "respite splits per node; its ratio is to the direct tagged MGET (no cluster client "
              "can send this one)."]
    secs = [x["secs"] for x in report["runs"] if x.get("secs")]
    if secs and min(secs) < 5:
        lines += ["note: the shortest run lasted %.2f s. redis-benchmark with --threads (and "
                  "--cluster is always threaded) stops on" % min(secs),
                  "its 250 ms timer, so a run's time is rounded up to the next 250 ms step and "
                  "its clients spin meanwhile: rates",
                  "of runs this short are up to %.0f%% low and mostly measure that step; use the "
                  "default -n to measure." % (100 * 0.25 / (min(secs) + 0.25))]
    return lines + [""]


def check_lines(report):
    summary = report.get("summary") or {}
    lines = ["acceptance (respite --cluster vs redis-benchmark --cluster on the same cluster; the "
             "median over the rounds of each round's ratio):"]
    fails = 0
    for label, test, p, need in THRESHOLDS:
        s = summary.get((test, p, RESPITE))
        r = s and s.get("x")
        if r is None:
            lines.append("  FAIL %-20s not measured" % label)
            fails += 1
            continue
        ok = r >= need
        fails += not ok
        lines.append("  %s %-22s %.3f  (need >= %.2f; rounds: %s)" % (
            "PASS" if ok else "FAIL", label, r, need, " ".join("%.3f" % x for x in s["x_rounds"])))
    for label, test, p, tg in (("forwarded SET -P1", "set", 1, RESPITE),
                               ("cross-slot MGET10 -P1", "mget", 1, CROSS),
                               ("cross-slot MGET10 -P16", "mget", 16, CROSS)):
        s = summary.get((test, p, tg))
        if s and s.get("x") is not None:
            lines.append("  info %-22s %.3f  (no threshold)" % (label, s["x"]))
    if summary:
        errors = sum(s["errors"] for s in summary.values())
        fails += errors > 0
        lines.append("  %s %-20s %d" % ("PASS" if not errors else "FAIL", "benchmark errors",
                                          errors))
    coh = report.get("coherence")
    if coh is not None:
        n, diff = coh
        fails += bool(diff)
        lines.append("  %s %-20s %d of %d keys read through respite differ from the cluster%s"
                     % ("PASS" if not diff else "FAIL", "coherence", len(diff), n,
                        "; e.g. %r" % (diff[:3],) if diff else ""))
    warm = report.get("warm_ok")
    if warm is not None:
        fails += not warm
        lines.append("  %s %-20s %s" % ("PASS" if warm else "FAIL", "warm check",
                                          report.get("warm_line", "")))
    return lines, fails


def write_csvs(out_dir, args, report):
    summary, targets = report["summary"], report["targets"]
    with open(os.path.join(out_dir, "cluster.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["test", "pipeline", "target", "rps", "p50_ms", "p99_ms", "x_direct", "runs",
                    "errors", "cache_misses", "rps_per_round", "x_direct_per_round",
                    "cpu_us_per_req_client", "cpu_us_per_req_proxy", "cpu_us_per_req_cluster"])
        for test in TESTS:
            for p in args.pipelines:
                for tg in targets[test]:
                    s = summary[(test, p, tg)]
                    w.writerow([TEST_LABEL[test], p, tg, fmt(s["rps"], ".0f"), fmt(s["p50"], ".3f"),
                                fmt(s["p99"], ".3f"), fmt(s["x"], ".3f"), s["runs"], s["errors"],
                                s["misses"], ";".join(fmt(x, ".0f") for x in s["all_rps"]),
                                ";".join("%.3f" % x for x in s["x_rounds"]),
                                fmt(s["cpu_client"], ".3f"), fmt(s["cpu_proxy"], ".3f"),
                                fmt(s["cpu_cluster"], ".3f")])
    with open(os.path.join(out_dir, "cluster-runs.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["round", "test", "pipeline", "target", "rps", "p50_ms", "p99_ms", "errors",
                    "cache_misses", "cpu_us_per_req_client", "cpu_us_per_req_proxy",
                    "cpu_us_per_req_cluster", "note"])
        for x in report["runs"]:
            w.writerow([x["round"], TEST_LABEL[x["test"]], x["pipeline"], x["target"],
                        fmt(x["rps"], ".0f"), fmt(x["p50"], ".3f"), fmt(x["p99"], ".3f"),
                        x["errors"], "" if x["misses"] is None else x["misses"],
                        fmt(x["cpu_client"], ".3f"), fmt(x.get("cpu_proxy"), ".3f"),
                        fmt(x["cpu_cluster"], ".3f"), x["note"]])


def version(argv):
    try:
        cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        return cp.stdout.decode(errors="replace").strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        return "?"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(
        prog="scripts/bench --cluster",
        description="respite --cluster vs redis-benchmark --cluster on the same 3-master Redis "
                    "Cluster (loopback): cached GET/MGET10 and forwarded SET at -P 1 and -P 16, "
                    "interleaved rounds, medians, verdicts. Results: build/bench/cluster.txt, "
                    ".csv. See the docstring of scripts/bench.d/cluster_bench.py.")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 round, -n 10000 at -P 1 and 50000 at -P 16")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    ap.add_argument("--n-p1", type=int, default=None,
                    help="requests per run at -P 1 (default 300000)")
    ap.add_argument("--n-p16", type=int, default=None,
                    help="requests per run at -P 16 (default 2000000)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--keys", type=int, default=10000, help="keyspace per key pattern (-r)")
    ap.add_argument("--client-threads", type=int, default=MASTERS,
                    help="redis-benchmark --threads on both sides (default %d, what "
                         "redis-benchmark --cluster picks for %d masters; 0: its own default, "
                         "one thread per master direct, one event loop through respite)"
                    % (MASTERS, MASTERS))
    ap.add_argument("--threads", type=int, default=2,
                    help="respite --threads (default 2: the direct side's three masters use both "
                         "of this machine's cores; one respite loop would be one core against two)")
    ap.add_argument("--cache-max-memory", default="256mb", help="respite's cache budget")
    ap.add_argument("--cache-ttl-ms", type=int, default=600000,
                    help="respite --cache-ttl-ms (default 600000: nothing expires mid-run)")
    ap.add_argument("--bin", metavar="PATH", default=None,
                    help="respite binary (default $RESPITE_BIN, else build/release/respite)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a verdict line fails")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir with respite's and the nodes' logs")
    args = ap.parse_args()
    args.pipelines = [1, 16]
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.n_p1 is None:
        args.n_p1 = 10000 if args.quick else 300000
    if args.n_p16 is None:
        args.n_p16 = 50000 if args.quick else 2000000
    args.respite = os.path.abspath(args.bin or os.environ.get("RESPITE_BIN")
                                   or os.environ.get("RESPITE_BENCH_BIN")
                                   or str(ROOT / "build" / "release" / "respite"))
    if not os.access(args.respite, os.X_OK):
        ap.error("no respite binary at %s (--bin PATH or RESPITE_BIN)" % args.respite)
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if not shutil.which(tool):
            ap.error("%s not found" % tool)
    if harness.DIRECT:
        ap.error("RESPITE_DIRECT does not apply to the benchmark")
    out_dir = os.environ.get("RESPITE_BENCH_OUT") or str(ROOT / "build" / "bench")

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    tmp = tempfile.mkdtemp(prefix="respite-cbench-")
    now = datetime.datetime.now()
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    head = ["respite bench --cluster %s" % now.strftime("%Y-%m-%d %H:%M:%S"),
            "machine:   nproc=%d  cpu=%s  kernel %s %s" % (os.cpu_count() or 0, cpu,
                                                          platform.system(), platform.release()),
            "loadavg:   %s (at start)" % loadavg(),
            "redis:     %s; %s" % (version(["redis-server", "--version"]),
                                   version([harness.REDIS_BENCHMARK, "--version"])),
            "respite:   %s" % args.respite,
            "command:   scripts/bench --cluster %s" % " ".join(sys.argv[1:]),
            "bench:     redis-benchmark -c %d -r %d -d %d --threads %s, -n %d at -P 1 and %d at "
            "-P 16; %d round(s), interleaved (forward, then backward); medians"
            % (args.clients, args.keys, VALUE_SIZE, args.client_threads or "(default)", args.n_p1,
               args.n_p16, args.rounds)]
    for l in head:
        log(l)
    report = {}
    failed = True
    px = None
    try:
        t0 = time.monotonic()
        with ch.RedisCluster(MASTERS, 0) as cl:
            try:
                log("cluster:   %d masters %s, ready in %.1f s (no replicas)"
                    % (MASTERS, " ".join(n.addr for n in cl.masters()), time.monotonic() - t0))
                tags = probe_tags(cl)
                ks = key_sets(args, tags)
                fill(cl, [k for v in ks.values() for k in v])
                log("keys:      redis-benchmark --cluster's tags per master %s; filled %d keys "
                    "(key:<tag>:<n> per tag and key:<n>, n < %d, %d-byte values)"
                    % (" ".join(tags), sum(len(v) for v in ks.values()), args.keys, VALUE_SIZE))
                px = RespiteProc(args, cl, tmp)
                cl.wait_respite_ready(px.port)
                log("respite:   127.0.0.1:%d pid %d: %s" % (px.port, px.pid,
                                                            " ".join(px.argv[1:])))
                head.append("respite:   %s" % " ".join(px.argv[1:]).replace(
                    " ".join("--upstream " + s for s in cl.seeds()), "--upstream <each node>"))
                time.sleep(0.3)
                bad = warm(px.port, ks["tag0"] + ks["plain"], with_mget=True)
                before = proxy_info(px.port)
                bad += warm(px.port, ks["tag0"] + ks["plain"])
                after = proxy_info(px.port)
                hits = (info_int(after, "cache_hits") or 0) - (info_int(before, "cache_hits") or 0)
                misses = ((info_int(after, "cache_misses") or 0)
                          - (info_int(before, "cache_misses") or 0))
                nk = 2 * args.keys
                report["warm_ok"] = bad == 0 and misses == 0 and hits >= nk
                report["warm_line"] = ("cache_keys=%s cache_bytes=%s; a second pass of %d GETs: "
                                       "%d hits, %d misses; %d bad replies"
                                       % (after.get("cache_keys"), after.get("cache_bytes"), nk,
                                          hits, misses, bad))
                log("warm:      %s %s" % ("PASS" if report["warm_ok"] else "FAIL",
                                          report["warm_line"]))
                log("")
                throughput(args, cl, px, tags, ks, report)
                if px.alive():
                    report["coherence"] = coherence_check(cl, px, ks)
                    report["proxy_info"] = proxy_info(px.port)
                else:
                    warn("respite died during the bench\n%s" % px.proc.log_tail(20))
            finally:
                if px is not None:
                    px.stop()
                if args.keep:
                    for f in Path(cl.tmp).glob("*.log"):
                        shutil.copy(f, tmp)
        failed = False
    except Exception as e:  # noqa: BLE001
        warn("FAILED: %s\n%s" % (e, traceback.format_exc()))
        if px is not None:
            warn("respite log tail:\n%s" % px.proc.log_tail(20))
    finally:
        if args.keep or failed:
            warn("logs kept in %s" % tmp)
    log_path = os.path.join(tmp, "respite.log")
    findings = log_findings(log_path) if os.path.exists(log_path) else []
    if not (args.keep or failed):
        shutil.rmtree(tmp, ignore_errors=True)
    if not report.get("summary"):
        return 1

    out = head + ["loadavg:   %s (at end)" % loadavg(), ""]
    out += table_lines(args, report)
    pi = report.get("proxy_info") or {}
    nodes = [v for k, v in sorted(pi.items()) if k.startswith("node") and k[4:].isdigit()]
    out.append("respite at the end: cache_keys %s, cache_hits %s, cache_misses %s, upstream_errors "
               "%s, upstream_timeouts %s" % (pi.get("cache_keys"), pi.get("cache_hits"),
                                             pi.get("cache_misses"), pi.get("upstream_errors"),
                                             pi.get("upstream_timeouts")))
    out += ["  " + n for n in nodes]
    out += findings + [""]
    checks, fails = check_lines(report)
    out += checks
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "cluster.txt"), "w") as f:
        f.write("\n".join(out) + "\n")
    write_csvs(out_dir, args, report)
    log("")
    for l in out[len(head):]:
        log(l)
    log("")
    log("written: %s" % ", ".join(os.path.relpath(os.path.join(out_dir, n), ROOT) for n in
                                  ("cluster.txt", "cluster.csv", "cluster-runs.csv")))
    return 1 if args.strict and fails else 0


if __name__ == "__main__":
    sys.exit(main())
