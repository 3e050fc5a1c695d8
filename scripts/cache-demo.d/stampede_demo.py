#!/usr/bin/python3
"""Seed 000's cache-stampede scenario, run through respite (see scripts/stampede-demo).

Many client processes read a few hot keys as fast as they can for a few seconds, through a
respite whose entries live --cache-ttl-ms (500 ms by default). Every time a hot entry expires,
the readers that miss on it would all go to the upstream (a stampede) unless respite collapses
them into one fetch (single-flight) or refreshes the entry before it expires (XFetch, beta 1).
For each of (single-flight off/on) x (XFetch off/on), a fresh respite:

  - upstream fetches per TTL period, from the upstream itself (MONITOR timestamps of the GETs of
    the hot keys; totals also from INFO commandstats, and respite's upstream_fetches);
  - client-visible misses: respite's cache_misses during the run (after the warm-up read), i.e.
    reads that had to wait for the upstream; cache_early_refreshes, singleflight_joined.

By default the upstream is made slow like the seed's 700 ms query, only shorter: a relay in front
of redis-server delays its replies by --upstream-delay-ms (20). --upstream-delay-ms 0 talks to
redis-server directly.

Then the acceptance check of issue 5, on the plain loopback upstream: 16 clients reading one key
for 5 s with --cache-ttl-ms 500 --xfetch-beta 1 (single-flight on) cause 8 to 12 upstream fetches
and no client-visible miss after the warm-up.
"""
import argparse
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (Conn, FetchWitness, Server, UpstreamMonitor, Workdir, load_upstream, log,
                    proxy_cache_info, start_redis, start_respite)

HERE = os.path.dirname(os.path.abspath(__file__))


def client_main(port, keys, start_at, stop_at, out):
    """One reader: GET the hot keys round-robin from start_at until stop_at (wall clock)."""
    reads = nils = errs = 0
    try:
        with Conn(port, timeout=10) as c:
            cmds = [b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k.encode()) for k in keys]
            now = time.time()
            if start_at > now:
                time.sleep(start_at - now)
            i = 0
            while time.time() < stop_at:
                c.send(cmds[i % len(cmds)])
                v, n, e = c.count_bulk_replies(1)
                reads += 1
                nils += n
                errs += e
                i += 1
    except Exception as e:  # reported, not raised: the parent counts it as an error
        out.put((reads, nils, errs + 1, repr(e)))
        return
    out.put((reads, nils, errs, ""))


def run_clients(port, keys, clients, seconds):
    """Starts `clients` reader processes (key i of each process: offset so that the hot keys are
    read evenly), waits for them (bounded) and returns the totals and the start time."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 0.3
    stop_at = start_at + seconds
    procs = []
    try:
        for j in range(clients):
            ks = keys[j % len(keys):] + keys[:j % len(keys)]
            p = ctx.Process(target=client_main, args=(port, ks, start_at, stop_at, out), daemon=True)
            p.start()
            procs.append(p)
        results = []
        deadline = stop_at + 20
        while len(results) < clients and time.time() < deadline:
            try:
                results.append(out.get(timeout=max(0.1, deadline - time.time())))
            except Exception:
                break
    finally:
        for p in procs:  # stopped by pid, each one
            p.join(timeout=2)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
    if len(results) < clients:
        raise RuntimeError("only %d of %d clients reported" % (len(results), clients))
    tot = [sum(r[i] for r in results) for i in range(3)]
    problems = [r[3] for r in results if r[3]]
    return {"reads": tot[0], "nils": tot[1], "errors": tot[2], "problems": problems,
            "start": start_at, "stop": stop_at}


def scenario(tmp, redis_port, respite_upstream_port, sf, xf, keys, clients, seconds, ttl_ms):
    args = ["--cache-ttl-ms", str(ttl_ms), "--xfetch-beta", "1" if xf else "0",
            "--cache-single-flight", "true" if sf else "false", "--cache-max-memory", "64mb"]
    with start_respite(tmp, respite_upstream_port, args) as px:
        with Conn(px.port) as c:  # warm-up: every hot key read once, so it is cached
            for k in keys:
                c.call("GET", k)
        w = FetchWitness(redis_port)
        i0 = proxy_cache_info(px.port)
        with TimedMonitor(redis_port) as mon:
            r = run_clients(px.port, keys, clients, seconds)
            seen = mon.collect()
        d = w.diff()
        i1 = proxy_cache_info(px.port)
    keyset = set(keys)
    times = [ts for ts, a in seen
             if a and a[0].upper() == "GET" and len(a) == 2 and a[1] in keyset]
    mget_keys = sum(len([k for k in a[1:] if k in keyset]) for ts, a in seen if a and a[0].upper() == "MGET")
    periods = int(round(seconds * 1000 / ttl_ms))
    per = [0] * periods
    for ts in times:
        k = int((ts - r["start"]) * 1000 // ttl_ms)
        if 0 <= k < periods:
            per[k] += 1
    delta = {k: i1.get(k, 0) - i0.get(k, 0) for k in
             ("cache_misses", "cache_hits", "upstream_fetches", "cache_early_refreshes",
              "singleflight_joined")}
    return {"sf": sf, "xf": xf, "reads": r["reads"], "nils": r["nils"], "errors": r["errors"],
            "problems": r["problems"], "per_period": per, "in_window": len(times) + mget_keys,
            "up_get": d["get"] + d["mget"], "up_keys": d["pttl"], **delta}


class TimedMonitor(UpstreamMonitor):
    """MONITOR that keeps the upstream's timestamp of each command."""

    def collect(self, timeout=30.0):
        self.n += 1
        marker = "respite-demo-marker-%d-%d" % (os.getpid(), self.n)
        with Conn(self.port) as c:
            c.call("ECHO", marker)
        from common import _monitor_args
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.conn._line().decode("latin-1")
            args = _monitor_args(line)
            if args[:2] in (["ECHO", marker], ["echo", marker]):
                return out
            try:
                ts = float(line[1:line.index(" ")])
            except ValueError:
                ts = 0.0
            out.append((ts, args))
        raise RuntimeError("MONITOR marker not seen")


def start_relay(tmp, upstream_port, delay_ms):
    return Server("relay", lambda port: [sys.executable, os.path.join(HERE, "delay_relay.py"),
                                         str(port), str(upstream_port), str(delay_ms)], tmp)


def fmt_row(r):
    return "| %s | %s | %d | %d | %d | %s | %d | %d | %d | %d | %d |" % (
        "on" if r["sf"] else "off", "on" if r["xf"] else "off", r["reads"], r["up_get"],
        r["upstream_fetches"], " ".join(str(x) for x in r["per_period"]), r["cache_misses"],
        r["cache_early_refreshes"], r["singleflight_joined"], r["nils"], r["errors"])


HEADER = ("| single-flight | XFetch | client reads | upstream GETs (commandstats) | respite "
          "upstream_fetches | upstream GETs per TTL period (MONITOR) | client-visible misses "
          "(cache_misses) | early refreshes | joined a flight | nil replies | errors |")
RULE = "|---|---|---|---|---|---|---|---|---|---|---|"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32, help="reader processes (default 32)")
    ap.add_argument("--keys", type=int, default=4, help="hot keys (default 4)")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each run (default 5)")
    ap.add_argument("--ttl-ms", type=int, default=500, help="--cache-ttl-ms (default 500)")
    ap.add_argument("--upstream-delay-ms", type=float, default=20.0,
                    help="reply delay of the upstream in the matrix (default 20; 0: direct)")
    ap.add_argument("--skip-matrix", action="store_true", help="only the acceptance check")
    ap.add_argument("--skip-check", action="store_true", help="only the matrix")
    ap.add_argument("--out", default=os.environ.get("RESPITE_DEMO_OUT", "build/demo"))
    args = ap.parse_args()
    if not (1 <= args.clients <= 256 and 1 <= args.keys <= 1000 and 0.5 <= args.seconds <= 120):
        sys.exit("--clients 1..256, --keys 1..1000, --seconds 0.5..120")
    os.makedirs(args.out, exist_ok=True)
    report = []

    def emit(line=""):
        log(line)
        report.append(line)

    ok = True
    with Workdir() as tmp, start_redis(tmp) as redis:
        keys = ["hot:%d" % i for i in range(args.keys)]
        load_upstream(redis.port, [(k, "value-of-" + k, None) for k in keys] + [("acc:hot", "v" * 64, None)])
        if not args.skip_matrix:
            relay = start_relay(tmp, redis.port, args.upstream_delay_ms) if args.upstream_delay_ms > 0 else None
            try:
                up = relay.port if relay else redis.port
                emit("## Stampede: %d clients on %d hot keys, --cache-ttl-ms %d, %.0f s per run, upstream "
                     "%s" % (args.clients, args.keys, args.ttl_ms, args.seconds,
                             "delayed %g ms (relay)" % args.upstream_delay_ms if relay else "direct"))
                emit()
                emit(HEADER)
                emit(RULE)
                for sf in (False, True):
                    for xf in (False, True):
                        r = scenario(tmp, redis.port, up, sf, xf, keys, args.clients, args.seconds, args.ttl_ms)
                        emit(fmt_row(r))
                        for p in r["problems"][:3]:
                            emit("  client problem: %s" % p)
            finally:
                if relay:
                    relay.stop()
            emit()
            emit("Periods are %d ms windows from the start of the run; a hot key is fetched once per period at "
                 "best (%d keys: %d per period)." % (args.ttl_ms, args.keys, args.keys))
            emit()
        if not args.skip_check:
            emit("## Issue 5 check: 16 clients, 1 key, 5 s, --cache-ttl-ms 500 --xfetch-beta 1, "
                 "single-flight on, upstream direct")
            r = scenario(tmp, redis.port, redis.port, True, True, ["acc:hot"], 16, 5.0, 500)
            emit()
            emit(HEADER)
            emit(RULE)
            emit(fmt_row(r))
            emit()
            fetch_ok = 8 <= r["up_get"] <= 12
            miss_ok = r["cache_misses"] == 0 and r["nils"] == 0 and r["errors"] == 0
            emit("%s upstream fetches 8..12: %d (respite upstream_fetches %d, early refreshes %d)"
                 % ("PASS" if fetch_ok else "FAIL", r["up_get"], r["upstream_fetches"], r["cache_early_refreshes"]))
            emit("%s zero client-visible misses after warm-up: cache_misses %d (client reads %d, nil %d, errors %d)"
                 % ("PASS" if miss_ok else "FAIL", r["cache_misses"], r["reads"], r["nils"], r["errors"]))
            ok = fetch_ok and miss_ok
    path = os.path.join(args.out, "stampede-demo.md")
    with open(path, "w") as f:
        f.write("\n".join(report) + "\n")
    log("report: %s" % os.path.relpath(path))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
