#!/usr/bin/python3
"""User-space instructions per request through respite, counted by valgrind's callgrind (run
through scripts/callgrind-cost, which installs packages and builds).

For each binary (the one under test and, with --baseline-bin, the one before a change): starts on
free loopback ports an upstream redis-server and respite (--threads 1, so one event loop does all
the work) under `valgrind --tool=callgrind`, fills the keys redis-benchmark uses straight into
Redis, and then for each test:

  forwarded SET   keys neither cached nor tracked (nothing has read them through respite yet,
                  the bench's steady state over its two million SETs)
  cached GET      every key read through respite first, so every GET is a hit
  cached MGET10   `MGET key:__rand_int__` x10, every key cached

runs a short warm-up of the same load, zeroes callgrind's counters (`callgrind_control -z`), runs
`redis-benchmark -c 10 -n 20000 -P 16 -r 10000 -d 32`, dumps (`callgrind_control -d`) and divides
the dump's total Ir (its `summary:` line, which callgrind_annotate prints as PROGRAM TOTALS) by
the requests. The counts include everything respite's process executed in user space in that
window (its code, libuv, libc; not the kernel). They hardly depend on the machine's speed: on a
loaded 2-core machine (load 10) runs of the same binary stay within about 1% of each other. What
is left moves with how requests batch up in respite's loop turns, which depends on scheduling;
and respite runs with its slow-log threshold out of reach, since under valgrind forwarded round
trips pass the default 10 ms whenever the machine is busy, and recording them had made forwarded
SET vary by 10%. Each test is run --repeat times (default 3) and the median reported with the
spread; with two binaries both run at once and their counted runs alternate (baseline, this,
then this, baseline, ...), so each pair saw the same moments of the machine.

With two binaries it prints both, the change in percent (the median over the run pairs of each
pair's this / baseline - 1), and the verdict "instructions per cached GET and per forwarded SET
within 5% of the baseline" (|change| <= 5%; MGET10 is reported, not judged). --strict: exit 1 on
a FAIL.

Standard library only. Every process it starts is stopped by pid on exit, even on failure.
"""
import argparse
import datetime
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the bench's process, fill and redis-benchmark helpers)
from bench import (fill_keys, free_ports, info_int, proxy_info, start_redis,  # noqa: E402
                   version, warm_cache)

# Measured in this order: SET first, while nothing has been read through respite (no key cached,
# none tracked by Redis), then the cache is filled for GET and MGET10.
TESTS = ["set", "get", "mget"]
TEST_LABEL = {"set": "forwarded SET", "get": "cached GET", "mget": "cached MGET10"}
JUDGED = ("get", "set")
SLOWLOG_OUT_OF_REACH_US = 2000000000  # 33 minutes


def log(msg=""):
    print(msg, flush=True)


def warn(msg):
    print("callgrind-cost: " + msg, file=sys.stderr, flush=True)


def callgrind_control(flag, pid, timeout):
    """callgrind_control -z / -d for one pid; raises unless it answered OK."""
    try:
        cp = subprocess.run(["callgrind_control", flag, str(pid)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError("callgrind_control %s %d did not answer in %d s" % (flag, pid, timeout))
    out = cp.stdout.decode(errors="replace")
    if cp.returncode != 0 or "OK" not in out:
        raise RuntimeError("callgrind_control %s %d failed (status %d): %s"
                           % (flag, pid, cp.returncode, out.strip()[-300:]))


def dump_files(prefix):
    d, base = os.path.split(prefix)
    return {os.path.join(d, f) for f in os.listdir(d) if f.startswith(base + ".")}


def read_dump_ir(path):
    """The dump's total Ir: the `summary:` line (callgrind_annotate's PROGRAM TOTALS), else
    `totals:`; None while the file is incomplete (no `totals:` line yet)."""
    summary = totals = None
    events = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:"):
                summary = line.split()[1:]
            elif line.startswith("totals:"):
                totals = line.split()[1:]
    if totals is None:
        return None
    row = summary or totals
    i = events.index("Ir") if events and "Ir" in events else 0
    return int(row[i])


def dump_and_read(pid, prefix, timeout):
    before = dump_files(prefix)
    callgrind_control("-d", pid, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = sorted(dump_files(prefix) - before)
        if new:
            ir = read_dump_ir(new[-1])
            if ir is not None:
                return ir, new[-1]
        time.sleep(0.1)
    raise RuntimeError("no complete callgrind dump under %s.* after %d s" % (prefix, timeout))


def stop(procs, name, timeout=30):
    """SIGTERM and a longer wait than Procs.stop's (valgrind writes its last dump on exit)."""
    entry = procs.running.get(name)
    if entry and entry[0].poll() is None:
        try:
            entry[0].send_signal(signal.SIGTERM)
            entry[0].wait(timeout=timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    procs.stop(name)  # SIGKILL if it is still there


def start_stack(args, procs, label, binary):
    """An upstream redis-server with the keys and respite under callgrind in front of it."""
    up_port, r_port = free_ports(2)
    rname, pname = "redis-" + label, "respite-" + label
    log("%s: starting upstream redis :%d" % (label, up_port))
    start_redis(procs, rname, up_port)
    prefix = os.path.join(procs.tmp, "callgrind.out." + label)
    # The slow log's threshold out of reach: under valgrind respite runs some 50 times slower,
    # so forwarded round trips pass the default 10 ms whenever the machine is busy, and each one
    # recorded (a deque entry, copies of the command) made forwarded SET cost up to 10% more in
    # a slow run than in a fast one. The threshold is still compared for every request.
    argv = (["valgrind", "--tool=callgrind", "--callgrind-out-file=" + prefix]
            + [binary, "--port", str(r_port), "--bind", "127.0.0.1",
               "--upstream", "127.0.0.1:%d" % up_port, "--threads", "1",
               "--cache-max-memory", args.cache_max_memory, "--cache-ttl-ms", "600000",
               "--slowlog-log-slower-than", str(SLOWLOG_OUT_OF_REACH_US),
               "--log-level", "warning"])
    for extra in args.respite_arg:
        argv += extra.split()
    log("%s: starting respite under callgrind :%d: %s" % (label, r_port, " ".join(argv)))
    procs.start(pname, argv, port=r_port, ready_timeout=args.timeout)
    n = fill_keys(up_port, args.keys)
    log("%s: filled %d keys straight into redis (DBSIZE %s)" % (label, args.keys, n))
    return {"label": label, "port": r_port, "pid": procs.pid(pname), "prefix": prefix,
            "name": pname, "redis": rname}


def counted_run(args, procs, st, test, rep):
    """A warm-up of the same load, then callgrind_control -z, one counted redis-benchmark run,
    callgrind_control -d; returns the run's dict."""
    label, port, pid = st["label"], st["port"], st["pid"]
    if not procs.alive(st["name"]):
        raise RuntimeError("respite (%s) is not running\n%s" % (label, procs.log_tail(st["name"])))
    bargs = types.SimpleNamespace(clients=args.clients, keys=args.keys)
    # Connection setup, buffer growth and first-touch paths stay out of the counted window.
    w = bench.run_benchmark(bargs, port, test, args.pipeline, args.warmup)
    if w["errors"]:
        raise RuntimeError("%s warm-up %s: redis-benchmark errors: %s" % (label, test, w["note"]))
    info0 = proxy_info(port)
    callgrind_control("-z", pid, args.timeout)
    res = bench.run_benchmark(bargs, port, test, args.pipeline, args.requests)
    ir, path = dump_and_read(pid, st["prefix"], args.timeout)
    info1 = proxy_info(port)
    if res["errors"]:
        raise RuntimeError("%s %s: redis-benchmark errors: %s" % (label, test, res["note"]))

    def delta(k):
        return (info_int(info1, k) or 0) - (info_int(info0, k) or 0)

    run = {"ir": ir, "per_req": ir / args.requests, "dump": path, "rps": res["rps"],
           # the second PROXY INFO is one of the commands counted between the two
           "commands": delta("total_commands_processed") - 1,
           "misses": delta("cache_misses"), "hits": delta("cache_hits"),
           "tracking_inv": delta("cache_invalidations_tracking"),
           "forwarded": delta("forwarded_commands")}
    log("%-8s %-14s run %d/%d: %s Ir / %d requests = %s per request  (respite saw %d commands: "
        "%d hits, %d misses, %d forwarded, %d tracking invalidations; %s rps under callgrind)"
        % (label + ":", TEST_LABEL[test], rep + 1, args.repeat, format(ir, ","), args.requests,
           format(run["per_req"], ",.0f"), run["commands"], run["hits"], run["misses"],
           run["forwarded"], run["tracking_inv"], bench.fmt_num(res["rps"], ",.0f")))
    if test in ("get", "mget") and run["misses"]:
        warn("%s %s: %d cache misses in the counted window (not all hits)"
             % (label, TEST_LABEL[test], run["misses"]))
    return run


def measure(args, procs, binaries, results):
    """Every test, --repeat counted runs per binary; with two binaries their runs alternate
    (baseline, this / this, baseline, ...), so both see the same moments of the machine: the
    counts move a little with how requests batch up in respite's loop turns, which depends on
    how the processes get scheduled. Fills results[(label, test)] with lists of run dicts."""
    stacks = [start_stack(args, procs, label, b) for label, b in binaries]
    for test in [t for t in TESTS if t in args.tests]:
        if test in ("get", "mget"):
            for st in stacks:
                bad = warm_cache(st["port"], args.keys, with_mget=(test == "mget"))
                if bad:
                    raise RuntimeError("%s: warming the cache: %d bad replies"
                                       % (st["label"], bad))
        for rep in range(args.repeat):
            order = stacks if rep % 2 == 0 else stacks[::-1]
            for st in order:
                results.setdefault((st["label"], test), []).append(
                    counted_run(args, procs, st, test, rep))
    for st in stacks:
        stop(procs, st["name"])
        stop(procs, st["redis"])


def summarize(runs):
    xs = [r["per_req"] for r in runs]
    return statistics.median(xs), min(xs), max(xs)


def report_lines(args, results, labels):
    two = len(labels) == 2
    out = ["user-space instructions per request through respite (the Ir of a counted run / its "
           "requests; median of %d run(s), min-max)%s" % (args.repeat, ";" if two else ":")]
    if two:
        out.append("change: the median over the run pairs (back to back) of this / baseline - 1:")

    def cell(label, test):
        runs = results.get((label, test))
        if not runs:
            return None, "-"
        med, lo, hi = summarize(runs)
        return med, ("%s (%s-%s)" % (format(med, ",.0f"), format(lo, ",.0f"), format(hi, ",.0f"))
                     if len(runs) > 1 else format(med, ",.0f"))

    if two:
        hdr = "  %-14s %-22s %-22s %7s  %-20s %s" % ("test", "baseline", "this", "change",
                                                     "verdict", "change per run pair")
    else:
        hdr = "  %-14s %-22s" % ("test", "this")
    out += [hdr, "  " + "-" * (len(hdr) - 2)]
    fails, judged, worst = 0, 0, None
    for test in [t for t in TESTS if t in args.tests]:
        if not two:
            out.append("  %-14s %-22s" % (TEST_LABEL[test], cell("this", test)[1]))
            continue
        _, btxt = cell("baseline", test)
        _, ttxt = cell("this", test)
        pairs = [(t["per_req"] / b["per_req"] - 1) * 100.0
                 for b, t in zip(results.get(("baseline", test)) or [],
                                 results.get(("this", test)) or [])]
        change = statistics.median(pairs) if pairs else None
        ok = change is not None and abs(change) <= args.max_change
        if test in JUDGED:
            judged += 1
            fails += not ok
            if change is not None and (worst is None or abs(change) > abs(worst[0])):
                worst = (change, TEST_LABEL[test])
            status = "PASS" if ok else "FAIL"
        else:
            status = ("within" if ok else "beyond") + " (not judged)"
        out.append("  %-14s %-22s %-22s %7s  %-20s %s" % (
            TEST_LABEL[test], btxt, ttxt,
            "-" if change is None else "%+.1f%%" % change, status,
            " ".join("%+.1f" % x for x in pairs)))
    out.append("")
    if two:
        if judged < len(JUDGED):
            fails += 1
            out.append("  FAIL cached GET and forwarded SET not both measured (--tests)")
        out.append("  %s instructions per cached GET and per forwarded SET within %g%% of the "
                   "baseline%s" % ("PASS" if not fails else "FAIL", args.max_change,
                                   "  (largest change: %s %+.1f%%)" % (worst[1], worst[0])
                                   if worst else ""))
    return out, fails


def main():
    ap = argparse.ArgumentParser(
        prog="scripts/callgrind-cost",
        description="User-space instructions per request through respite (--threads 1) under "
                    "valgrind's callgrind: cached GET, forwarded SET and cached MGET of 10 keys, "
                    "each redis-benchmark -c 10 -n 20000 -P 16 after a warm-up, between "
                    "callgrind_control -z and -d. With --baseline-bin: both binaries, their runs "
                    "alternating, the change (the median of back-to-back run pairs) and the "
                    "verdict 'within 5%' for GET and SET. Steady on a loaded machine (about 1% "
                    "run to run).")
    ap.add_argument("--bin", metavar="PATH", default=None,
                    help="the respite binary under test (default: build/release/respite, which "
                         "scripts/callgrind-cost builds; with --bin it builds nothing)")
    ap.add_argument("--baseline-bin", metavar="PATH", default=None,
                    help="the binary before the change (built the same way, e.g. both Release): "
                         "measured too, and the change judged")
    ap.add_argument("--tests", default="get,set,mget",
                    help="comma list of get,set,mget (default: all; measured set, get, mget)")
    ap.add_argument("--requests", type=int, default=20000,
                    help="requests per counted run (default 20000; a multiple of --pipeline)")
    ap.add_argument("--warmup", type=int, default=4000,
                    help="requests of the same load before each counted run (default 4000)")
    ap.add_argument("--pipeline", type=int, default=16, help="redis-benchmark -P (default 16)")
    ap.add_argument("--clients", type=int, default=10, help="redis-benchmark -c (default 10)")
    ap.add_argument("--keys", type=int, default=10000, help="keyspace (-r), default 10000")
    ap.add_argument("--repeat", type=int, default=3,
                    help="counted runs per test and binary, the two binaries' runs alternating; "
                         "the median is reported (default 3)")
    ap.add_argument("--max-change", type=float, default=5.0, metavar="PCT",
                    help="the verdict's bound on |change| in percent (default 5)")
    ap.add_argument("--cache-max-memory", default="64mb", help="respite's cache budget")
    ap.add_argument("--respite-arg", action="append", default=[],
                    help="extra flags for both respites (repeatable)")
    ap.add_argument("--timeout", type=int, default=120,
                    help="seconds to wait for respite under valgrind to answer, and for each "
                         "callgrind_control (default 120)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the verdict is FAIL")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir (server logs, the callgrind dumps for "
                         "callgrind_annotate)")
    args = ap.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args.bin = os.path.abspath(args.bin or os.environ.get("RESPITE_BENCH_BIN")
                               or os.path.join(root, "build", "release", "respite"))
    args.tests = [t.strip().lower() for t in args.tests.split(",") if t.strip()]
    for t in args.tests:
        if t not in TESTS:
            ap.error("unknown test %r" % t)
    if args.requests <= 0 or args.repeat <= 0 or args.pipeline <= 0 or args.warmup <= 0:
        ap.error("--requests, --warmup, --repeat and --pipeline must be positive")
    if args.requests % args.pipeline:
        ap.error("--requests must be a multiple of --pipeline (redis-benchmark issues whole "
                 "pipelines, so it would send more than --requests)")
    binaries = []
    if args.baseline_bin:
        args.baseline_bin = os.path.abspath(args.baseline_bin)
        binaries.append(("baseline", args.baseline_bin))
    binaries.append(("this", args.bin))
    for _, b in binaries:
        if not os.access(b, os.X_OK):
            ap.error("no respite binary at %s" % b)
    for tool in ("valgrind", "callgrind_control", "redis-server", "redis-benchmark"):
        if not shutil.which(tool):
            ap.error("%s not found" % tool)

    tmp, procs, failed = bench.session("respite-callgrind-", args.keep, "logs and dumps")

    now = datetime.datetime.now()
    head = ["respite callgrind-cost %s" % now.strftime("%Y-%m-%d %H:%M:%S"),
            "tools:     %s; %s" % (version(["valgrind", "--version"]),
                                   version(["redis-server", "--version"])),
            "loadavg:   %s (at start; the counts do not depend on it)"
            % " ".join(open("/proc/loadavg").read().split()[:3])]
    for label, b in binaries:
        head.append("%-10s %s" % (label + ":", b))
    head += ["load:      redis-benchmark -c %d -n %d -P %d -r %d -d %d per counted run, after "
             "%d requests of the same load; %d run(s) per test"
             % (args.clients, args.requests, args.pipeline, args.keys, bench.VALUE_SIZE,
                args.warmup, args.repeat),
             "respite:   --threads 1 --cache-max-memory %s --cache-ttl-ms 600000 "
             "--slowlog-log-slower-than %d under valgrind --tool=callgrind;"
             % (args.cache_max_memory, SLOWLOG_OUT_OF_REACH_US),
             "           callgrind_control -z before, -d after each counted run",
             "tests:     forwarded SET (no key cached or tracked), cached GET and cached MGET10 "
             "(every key read through respite first)"]
    for l in head:
        log(l)
    log("")

    results = {}
    t0 = time.monotonic()
    try:
        measure(args, procs, binaries, results)
    except Exception as e:
        warn("FAILED: %s\n%s" % (e, traceback.format_exc()))
        for name in list(procs.running):
            t = procs.log_tail(name)
            if t:
                warn("log of %s:\n%s" % (name, t))
        return 1
    log("measured in %.0f s" % (time.monotonic() - t0))
    log("")
    lines, fails = report_lines(args, results, [l for l, _ in binaries])
    for l in lines:
        log(l)
    failed[0] = False
    return 1 if args.strict and fails else 0


if __name__ == "__main__":
    sys.exit(main())
