"""What a script costs with cache fills from a replica: a script's reply waits until the replicas
the cache reads from have applied it (README, "The cache reads from replicas too"). Runs N
sequential EVALs from one client through respite with --read-from primary and with
--read-from replica, against a real primary and replica on loopback, and prints the mean time
of each. A figure, not a test: compare the two lines of one run.

  RESPITE_BIN=build/respite /usr/bin/python3 scripts/bench.d/script_latency.py [-n 200]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "integration"))
import harness  # noqa: E402
from harness import HOST, RedisServer, Respite, proxy_info, wait_until  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200, help="EVALs per measurement (default 200)")
    args = ap.parse_args()
    primary = RedisServer().start()
    replica = RedisServer(["--replicaof", HOST, str(primary.port)]).start()
    try:
        wait_until(lambda: replica.client().info("replication").get("master_link_status") == "up",
                   20, "the replica's link")
        for read_from in ("primary", "replica"):
            px = Respite(primary, ["--replica", f"{HOST}:{replica.port}",
                                   "--read-from", read_from]).start()
            try:
                wait_until(lambda: proxy_info(px.port).get("replicas_healthy") == "1", 10,
                           "the replica healthy")
                c = px.client()
                if read_from == "replica":  # the replica's link up: the barrier waits for it
                    wait_until(lambda: "tracking=up" in harness.parse_info(
                        c.execute_command("PROXY", "INFO")).get("node1", ""), 10, "its link")
                for label, script in (("writes a key", "return redis.call('SET', ARGV[1], ARGV[2])"),
                                      ("writes nothing", "return 1")):
                    t0 = time.monotonic()
                    for i in range(args.n):
                        c.eval(script, 0, "script-latency", i)
                    ms = 1000 * (time.monotonic() - t0) / args.n
                    print(f"--read-from {read_from:8} EVAL that {label:14} {ms:6.2f} ms each "
                          f"({args.n} in a row, one client)")
            finally:
                px.close()
    finally:
        replica.close()
        primary.close()


if __name__ == "__main__":
    main()
