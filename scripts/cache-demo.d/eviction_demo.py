#!/usr/bin/python3
"""The seeds' eviction experiments, run through respite (see scripts/eviction-demo).

(a) Seed 000's keys-eviction experiment, per policy: five keys without an upstream TTL
    (foo-bar-<i>-noexp) and five with one (foo-bar-<i>-withexp, SET ... EX 300 on the upstream,
    which is what makes an entry "volatile"), read through respite into a cache that holds eight
    of them; the 0 keys are warmed up (read ten more times at iteration 0, and again at every
    later iteration). Prints, like the seed, which keys survived, how many were evicted, and the
    fills the cache refused (noeviction's equivalent of Redis's OOM errors).

(b) Seed 001's LRU experiment, sized to the cache, per policy: measure how many keys fit at the
    budget (N, from cache_keys), read keys 0..N-1 through respite (fill), read 0..N/5-1 again (the
    hot fifth), read 0.6*N new keys (flood), then re-read the hot keys and count the ones fetched
    again, on the upstream (INFO commandstats) and in respite's upstream_fetches. Odd keys carry an
    upstream TTL so that the volatile-* policies have something to evict.

(c) A PNG per policy (gnuplot) of which key ranges the flood evicted, like seed 001's figure.

Survivors are probed after raising the cache budget (PROXY CONFIG SET cache-max-memory), so that
probing never evicts anything itself. In (a) each key is read alone and the upstream's INFO
commandstats, read before and after, says whether it had to be fetched. In (b) the hot keys are
re-read pipelined, the fetches counted by diffing INFO commandstats around the re-read (and
respite's upstream_fetches); MONITOR on the upstream names the keys fetched, for the figure.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (POLICIES, Conn, FetchWitness, RespError, UpstreamMonitor, Workdir,
                    fetched_keys, gnuplot_available,
                    load_upstream, log, proxy_cache_info, read_keys, run_gnuplot, set_config,
                    start_redis, start_respite, upstream_calls)

LRU_MAX_REFETCH = 0.05     # issue 5: allkeys-lru re-fetches at most 5% of the hot keys
RANDOM_MIN_REFETCH = 0.30  # and allkeys-random at least 30%
BIG_BUDGET = "64mb"


def entry_charge(key_len, value_len):
    # cache/entry.h: a 40-byte header plus key and value, rounded like glibc malloc chunks.
    n = 40 + key_len + value_len
    c = (n + 8 + 15) & ~15
    return max(c, 32)


def probe(conn, upstream_port, key):
    """GETs key through respite; True when the upstream saw a fetch for it."""
    before = upstream_calls(upstream_port)
    r = conn.call("GET", key)
    if isinstance(r, RespError):
        raise RuntimeError("GET %s: %s" % (key, r))
    after = upstream_calls(upstream_port)
    return (after.get("get", 0) + after.get("mget", 0)) > (before.get("get", 0) + before.get("mget", 0))


# ---------------------------------------------------------------------------------------------
# (a) seed 000

SEED_VALUE = 20000
SEED_TTL_S = 300


def seed000(tmp, redis, policy):
    keys_no = ["foo-bar-%d-noexp" % i for i in range(5)]
    keys_ex = ["foo-bar-%d-withexp" % i for i in range(5)]
    value = "x" * SEED_VALUE
    charge = entry_charge(len(keys_ex[0]), SEED_VALUE)
    # Eight entries, the 16-slot table and the TinyLFU sketch fit; a ninth entry does not.
    budget = 8 * charge + 16 * 8 + 4096
    with Conn(redis.port) as up:
        up.call("FLUSHALL")
    load_upstream(redis.port, [(k, value, None) for k in keys_no])
    load_upstream(redis.port, [(k, value, SEED_TTL_S) for k in keys_ex])
    out = []
    with start_respite(tmp, redis.port, ["--cache-max-memory", str(budget), "--cache-policy", policy,
                                         "--cache-ttl-ms", "600000", "--xfetch-beta", "0"]) as px:
        with Conn(px.port) as c:
            def read(key):
                before = proxy_cache_info(px.port)["cache_fills_rejected"]
                c.call("GET", key)
                refused = proxy_cache_info(px.port)["cache_fills_rejected"] > before
                return "  (not admitted: cache full)" if refused else ""

            for i in range(5):
                out.append("count = %d" % i)
                out.append("key=%s%s" % (keys_no[i], read(keys_no[i])))
                out.append("key_exp=%s%s" % (keys_ex[i], read(keys_ex[i])))
                # warm-ups: key 0 often at first, then once per iteration
                for _ in range(10 if i == 0 else 1):
                    c.call("GET", keys_no[0])
                    c.call("GET", keys_ex[0])
            info = proxy_cache_info(px.port)
            set_config(px.port, "cache-max-memory", BIG_BUDGET)
            alive_no = [k for k in keys_no if not probe(c, redis.port, k)]
            alive_ex = [k for k in keys_ex if not probe(c, redis.port, k)]
    out.append("keys without expiration count = %s" % alive_no)
    out.append("keys with expiration count = %s" % alive_ex)
    out.append("{'evicted_keys': %d}" % info["cache_evictions"])
    rej = info["cache_fills_rejected"]
    out.append("errors %s" % ("{'fill not admitted (cache full)': %d}" % rej if rej else "{}"))
    return out, {"budget": budget, "kept": len(alive_no) + len(alive_ex), "cache_keys": info["cache_keys"],
                 "fetches": info["upstream_fetches"],
                 "evicted": info["cache_evictions"], "rejected": rej,
                 "kept_0": (keys_no[0] in alive_no) + (keys_ex[0] in alive_ex)}


# ---------------------------------------------------------------------------------------------
# (b) seed 001

def key_name(i):
    return "key-%06d" % i


def cal_name(i):
    return "cal-%06d" % i


def lru_experiment(tmp, redis, policy, budget, value_size, outdir, plot):
    args = ["--cache-max-memory", budget, "--cache-policy", policy, "--cache-ttl-ms", "600000",
            "--xfetch-beta", "0"]
    # How many keys fit: a throwaway respite reads more keys than can fit (other names, so
    # the measured instance starts with no history at all).
    with start_respite(tmp, redis.port, args) as px:
        with Conn(px.port) as c:
            read_keys(c, [cal_name(i) for i in range(cal_keys(budget, value_size))])
        n = proxy_cache_info(px.port)["cache_keys"]
    hot = n // 5
    flood = (n * 6) // 10
    total = n + flood
    with start_respite(tmp, redis.port, args) as px:
        w = FetchWitness(redis.port)
        with Conn(px.port) as c:
            read_keys(c, [key_name(i) for i in range(n)])                 # fill
            filled = proxy_cache_info(px.port)
            read_keys(c, [key_name(i) for i in range(hot)])               # touch the hot fifth
            read_keys(c, [key_name(i) for i in range(n, total)])          # flood
            flooded = proxy_cache_info(px.port)
            set_config(px.port, "cache-max-memory", BIG_BUDGET)
            # Re-read the hot keys (pipelined), witnessed on the upstream: INFO commandstats
            # diffed around the re-read, and MONITOR for which keys they were.
            evicted = [False] * total
            with UpstreamMonitor(redis.port) as mon:
                w.reset()
                i0 = proxy_cache_info(px.port)
                read_keys(c, [key_name(i) for i in range(hot)])
                d = w.diff()
                i1 = proxy_cache_info(px.port)
                seen = fetched_keys(mon.collect())
                # Every other key, for the figure (nothing is evicted any more: the budget is big).
                read_keys(c, [key_name(i) for i in range(hot, total)])
                seen += fetched_keys(mon.collect())
            index = {key_name(i): i for i in range(total)}
            for k in seen:
                if k in index:
                    evicted[index[k]] = True
            hot_refetched = d["get"] + d["mget"]
            hot_keys_fetched = d["pttl"]
            px_fetches = i1["upstream_fetches"] - i0["upstream_fetches"]
    res = {
        "policy": policy, "n": n, "hot": hot, "flood": flood,
        "fill_keys": filled["cache_keys"], "fill_bytes": filled["cache_bytes"],
        "hot_refetched": hot_refetched, "hot_keys_fetched": hot_keys_fetched,
        "px_fetches": px_fetches, "hot_probed": sum(evicted[:hot]),
        "cold_evicted": sum(evicted[hot:n]), "flood_evicted": sum(evicted[n:total]),
        "evictions": flooded["cache_evictions"], "rejected": flooded["cache_fills_rejected"],
        "bytes_after_flood": flooded["cache_bytes"],
    }
    if plot:
        res["png"] = plot_evictions(outdir, policy, evicted, n, hot, budget, res)
    return res


def cal_keys(budget, value_size):
    b = parse_size(budget)
    per = entry_charge(10, value_size) + 8  # at least a slot per entry
    return int(b / per * 1.5) + 100


def parse_size(s):
    s = s.strip().lower()
    units = {"kb": 1024, "mb": 1 << 20, "gb": 1 << 30, "k": 1000, "m": 1000000, "g": 10 ** 9, "b": 1}
    for u in sorted(units, key=len, reverse=True):
        if s.endswith(u):
            return int(float(s[:-len(u)]) * units[u])
    return int(s)


def plot_evictions(outdir, policy, evicted, n, hot, budget, res):
    total = len(evicted)
    dat = os.path.join(outdir, "eviction-%s.dat" % policy)
    with open(dat, "w") as f:
        f.write("# range_start range_center evicted_pct region(0 hot,1 cold,2 flood) width\n")
        # 5 ranges for the hot fifth, 20 for the cold rest, 15 for the flood: about N/25 each,
        # never straddling two regions.
        for lo, hi, region, parts in ((0, hot, 0, 5), (hot, n, 1, 20), (n, total, 2, 15)):
            for p in range(parts):
                s0 = lo + (hi - lo) * p // parts
                e0 = lo + (hi - lo) * (p + 1) // parts
                if e0 <= s0:
                    continue
                pct = 100.0 * sum(evicted[s0:e0]) / (e0 - s0)
                f.write("%d %.1f %.2f %d %d\n" % (s0, (s0 + e0) / 2.0, pct, region, e0 - s0))
    png = os.path.join(outdir, "eviction-%s.png" % policy)
    title = ("respite --cache-policy %s --cache-max-memory %s: keys evicted by the flood\\n"
             "fill %d keys, touch keys 0-%d (hot), flood %d new keys; hot keys re-fetched: %d"
             % (policy, budget, n, hot - 1, res["flood"], res["hot_refetched"]))
    script = """
set terminal pngcairo size 1000,520 font ",10"
set output '%s'
set title "%s"
set xlabel "key index (order of first read)"
set ylabel "evicted (%% of keys in the range)"
set yrange [0:105]
set xrange [0:%d]
set style fill solid 0.8 border -1
set key outside below center horizontal
set grid ytics
plot '%s' using 2:($4==0?$3:1/0):5 with boxes lc rgb '#d62728' title 'hot (touched before the flood)', \\
     '' using 2:($4==1?$3:1/0):5 with boxes lc rgb '#7f7f7f' title 'cold (filled, not touched)', \\
     '' using 2:($4==2?$3:1/0):5 with boxes lc rgb '#1f77b4' title 'flood (new keys)'
""" % (png, title, total, dat)
    try:
        ok = run_gnuplot(script, outdir)
    except Exception as e:  # a missing terminal etc. must not lose the measurements
        log("gnuplot: %s" % e)
        ok = False
    if not ok:  # gnuplot without cairo: the plain png terminal
        ok = run_gnuplot(script.replace('pngcairo size 1000,520 font ",10"', "png size 1000,520"),
                         outdir)
    return png if ok else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", default=",".join(POLICIES),
                    help="comma-separated (default: all nine)")
    ap.add_argument("--cache-max-memory", default="512kb", help="budget of part (b) (default 512kb)")
    ap.add_argument("--value-size", type=int, default=100, help="value bytes in part (b) (default 100)")
    ap.add_argument("--out", default=os.environ.get("RESPITE_DEMO_OUT", "build/demo"),
                    help="output folder (default build/demo)")
    ap.add_argument("--skip-seed000", action="store_true")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    for p in policies:
        if p not in POLICIES:
            sys.exit("unknown policy %s" % p)
    os.makedirs(args.out, exist_ok=True)
    outdir = os.path.abspath(args.out)
    plot = not args.no_plots and gnuplot_available()
    if not args.no_plots and not plot:
        log("gnuplot not found: no PNGs (scripts/eviction-demo installs gnuplot-nox)")

    report = []

    def emit(line=""):
        log(line)
        report.append(line)

    with Workdir() as tmp, start_redis(tmp) as redis:
        if not args.skip_seed000:
            emit("## (a) seed 000: keys-eviction experiment through respite")
            emit("5 keys without and 5 with an upstream TTL (EX %d), %d-byte values, a cache that holds "
                 "8 of them; the 0 keys are kept warm." % (SEED_TTL_S, SEED_VALUE))
            seed_rows = []
            for p in policies:
                emit()
                emit("### `%s`" % p)
                lines, s = seed000(tmp, redis, p)
                emit("```")
                for l in lines:
                    emit(l)
                emit("```")
                seed_rows.append((p, s))
            emit()
            emit("| policy | kept (probed) | cache_keys | evictions | fills not admitted | upstream fetches | 0 keys kept |")
            emit("|---|---|---|---|---|---|---|")
            for p, s in seed_rows:
                emit("| %s | %d | %d | %d | %d | %d | %d/2 |" % (p, s["kept"], s["cache_keys"], s["evicted"],
                                                         s["rejected"], s["fetches"], s["kept_0"]))
            emit()

        emit("## (b) seed 001: LRU experiment sized to the cache (--cache-max-memory %s, %d-byte values)"
             % (args.cache_max_memory, args.value_size))
        emit("fill N keys (N measured with cache_keys), touch the first N/5 (hot), flood 0.6*N new keys,"
             " re-read the hot keys; odd keys carry an upstream TTL (volatile).")
        with Conn(redis.port) as up:
            up.call("FLUSHALL")
        # Enough keys for the largest N any policy can reach, plus the flood.
        maxkeys = cal_keys(args.cache_max_memory, args.value_size) * 2
        for name in (key_name, cal_name):  # the keys, and the calibration keys (same sizes)
            load_upstream(redis.port, [(name(i), ("value-%d-" % i).ljust(args.value_size, "x"),
                                        3600 if i % 2 else None) for i in range(maxkeys)])
        rows = []
        for p in policies:
            r = lru_experiment(tmp, redis, p, args.cache_max_memory, args.value_size, outdir, plot)
            rows.append(r)
            log("  %s: N=%d hot=%d hot re-fetched=%d (respite upstream_fetches %d)%s"
                % (p, r["n"], r["hot"], r["hot_refetched"], r["px_fetches"],
                   ("  -> " + os.path.relpath(r["png"])) if r.get("png") else ""))
        emit()
        emit("| policy | N (keys that fit) | hot | flood | hot re-fetched (upstream GET) | % of hot | "
             "respite upstream_fetches | cold evicted | flood keys evicted | evictions | fills not admitted |")
        emit("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            emit("| %s | %d | %d | %d | %d | %.1f%% | %d | %d/%d | %d/%d | %d | %d |" % (
                r["policy"], r["n"], r["hot"], r["flood"], r["hot_refetched"],
                100.0 * r["hot_refetched"] / max(1, r["hot"]), r["px_fetches"],
                r["cold_evicted"], r["n"] - r["hot"], r["flood_evicted"], r["flood"],
                r["evictions"], r["rejected"]))
        emit()
        checks = []
        by = {r["policy"]: r for r in rows}
        if "allkeys-lru" in by:
            r = by["allkeys-lru"]
            frac = r["hot_refetched"] / max(1, r["hot"])
            checks.append(("allkeys-lru re-fetches <= 5%% of the hot keys: %d/%d = %.1f%%"
                           % (r["hot_refetched"], r["hot"], 100 * frac), frac <= LRU_MAX_REFETCH))
        if "allkeys-random" in by:
            r = by["allkeys-random"]
            frac = r["hot_refetched"] / max(1, r["hot"])
            checks.append(("allkeys-random re-fetches >= 30%% of the hot keys: %d/%d = %.1f%%"
                           % (r["hot_refetched"], r["hot"], 100 * frac), frac >= RANDOM_MIN_REFETCH))
        for r in rows:
            if not (r["hot_refetched"] == r["px_fetches"] == r["hot_keys_fetched"] == r["hot_probed"]):
                checks.append(("%s: upstream GETs (%d), upstream PTTLs (%d) and respite's "
                               "upstream_fetches (%d) agree" % (r["policy"], r["hot_refetched"],
                                                                r["hot_keys_fetched"], r["px_fetches"]),
                               False))
        for text, ok in checks:
            emit("%s %s" % ("PASS" if ok else "FAIL", text))
    path = os.path.join(outdir, "eviction-demo.md")
    with open(path, "w") as f:
        f.write("\n".join(report) + "\n")
    log("report: %s" % os.path.relpath(path))
    if plot:
        log("plots: %s" % os.path.relpath(os.path.join(outdir, "eviction-*.png")))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
