#!/usr/bin/env python3
"""scripts/bench --tls: respite over TLS against redis-server over TLS, in the same run.

One redis-server with a plain port (to fill the keys) and a TLS port (--tls-auth-clients no);
respite before it with a plain port and a TLS port, its upstream over TLS too (end to end;
--plain-upstream: plain TCP upstream, TLS ended at respite). redis-benchmark --tls --cacert
drives both TLS ports: cached GET at -P1 and -P16, MGET of 10 keys and forwarded SET at -P16,
in interleaved rounds; the medians' ratios (respite / direct) are printed as the one-node bench
prints them. Certificates: a throwaway CA and server certificate (EC prime256v1), made with the
same helper as tests/integration/test_tls.py.

Targets: cached GET >= 1.0 of direct at -P1 and -P16, forwarded SET >= 0.7 at -P16.

Beside each throughput it prints CPU microseconds per request of the server that answered
(redis-server, or respite without its upstream) and of redis-benchmark, and how busy
redis-benchmark was (its CPU time over the run's wall time). At -P1 over TLS the client spends
more per request than either server: when it is near 100% busy, the run measures the client,
and the servers' own cost shows in their CPU per request, not in the throughput.
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "lib"))
sys.path.insert(0, str(ROOT / "scripts" / "bench.d"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import bench  # noqa: E402  (the one-node bench: its module runs nothing when imported)
from bench import (CLK_TCK, cpu_ticks, fill_keys, free_ports, log, median, respite_argv,  # noqa: E402
                   run_benchmark, session, start_redis, warm_cache)
import test_tls  # noqa: E402  (make_certs)

CASES = [("get", 1), ("get", 16), ("mget", 16), ("set", 16)]
TARGETS = {("get", 1): 1.0, ("get", 16): 1.0, ("set", 16): 0.7}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=200000, help="requests per redis-benchmark run")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=None, help="respite --threads")
    ap.add_argument("--plain-upstream", action="store_true",
                    help="respite talks to redis-server over plain TCP (TLS ends at respite)")
    ap.add_argument("--bin", default=os.environ.get("RESPITE_BENCH_BIN", str(ROOT / "build" / "respite")))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    # What respite_argv and run_benchmark read from the one-node bench's options.
    args.respite, args.upstream_connections, args.respite_arg = args.bin, None, []

    tmp, procs, failed = session("respite-tls-bench-", args.keep, "logs")
    certs = Path(tmp) / "certs"
    certs.mkdir()
    test_tls.CERTS = certs
    test_tls.make_certs(certs)
    ca = str(certs / "ca.crt")
    tls = ["--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
           "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
    r_port, r_tls, p_port, p_tls = free_ports(4)
    start_redis(procs, "redis", r_port, extra=["--tls-port", str(r_tls)] + tls)
    redis_pid = procs.running["redis"][0].pid
    argv = respite_argv(args, p_port, r_tls if not args.plain_upstream else r_port, "64mb", 600000)
    argv += ["--tls-port", str(p_tls)] + tls
    if not args.plain_upstream:
        argv += ["--upstream-tls", "--upstream-tls-ca-cert-file", ca, "--upstream-tls-server-name", "localhost"]
    respite_pid = procs.start("respite", argv, port=p_port).pid

    # redis-benchmark over TLS: the one-node bench's command line with --tls --cacert.
    plain_argv = bench.bench_argv
    bench.bench_argv = lambda a, port, test, p, n: plain_argv(a, port, test, p, n)[:1] + [
        "--tls", "--cacert", ca] + plain_argv(a, port, test, p, n)[1:]

    fill_keys(r_port, args.keys)
    bad = warm_cache(p_port, args.keys, with_mget=True)
    if bad:
        raise RuntimeError("warming respite's cache: %d bad replies" % bad)
    results = {(t, p, who): [] for t, p in CASES for who in ("redis", "respite")}
    cpu = {(t, p, who): [] for t, p in CASES for who in ("redis", "respite")}  # (server, client, busy)
    for rnd in range(args.rounds):
        for t, p in CASES:
            for who, port, pid in (("redis", r_tls, redis_pid), ("respite", p_tls, respite_pid)):
                s0, ru0, w0 = cpu_ticks(pid), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
                res = run_benchmark(args, port, t, p, args.n)
                s1, ru1, w1 = cpu_ticks(pid), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
                if res["errors"] or res["rps"] is None:
                    raise RuntimeError("%s %s -P%d: %s" % (who, t, p, res["note"]))
                results[(t, p, who)].append(res["rps"])
                client_s = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
                cpu[(t, p, who)].append(((s1 - s0) * 1e6 / CLK_TCK / args.n, client_s * 1e6 / args.n,
                                         client_s / (w1 - w0)))
        log("round %d/%d done" % (rnd + 1, args.rounds))
    log("")
    log("TLS bench (%s upstream), %d rounds, -n %d, -c %d, medians:"
        % ("plain" if args.plain_upstream else "TLS", args.rounds, args.n, args.clients))
    log("%-14s %14s %14s %8s %8s   %s" % ("test", "direct rps", "respite rps", "ratio", "target",
                                         "cpu us/req server, client; client busy (direct | respite)"))
    short = False
    for t, p in CASES:
        d, r = median(results[(t, p, "redis")]), median(results[(t, p, "respite")])
        ratio = r / d if d else 0.0
        target = TARGETS.get((t, p))
        if target and ratio < target:
            short = True
        label = {"get": "cached GET", "mget": "cached MGET", "set": "SET"}[t]
        c = {who: [median([x[k] for x in cpu[(t, p, who)]]) for k in range(3)]
             for who in ("redis", "respite")}
        log("%-14s %14.0f %14.0f %8.2f %8s   %5.1f %5.1f %3.0f%% | %5.1f %5.1f %3.0f%%"
            % ("%s -P%d" % (label, p), d, r, ratio, ">= %.1f" % target if target else "-",
               c["redis"][0], c["redis"][1], 100 * c["redis"][2],
               c["respite"][0], c["respite"][1], 100 * c["respite"][2]))
    log("targets %s" % ("met" if not short else "NOT met"))
    failed[0] = False


if __name__ == "__main__":
    main()
