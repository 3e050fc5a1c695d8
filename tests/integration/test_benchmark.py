"""redis-benchmark through respite completes with no errors, and every write reaches the upstream."""

import os
import re
import subprocess

import harness
from harness import HOST, REDIS_BENCHMARK, ProxyTestCase, RawConn, commandstats

N = int(os.environ.get("RESPITE_BENCH_N", "200000"))


class Benchmark(ProxyTestCase):

    def bench(self, *args, timeout=300):
        argv = [REDIS_BENCHMARK, "-h", HOST, "-p", str(self.port), "-q", *args]
        try:
            out = subprocess.run(argv, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.fail(f"redis-benchmark hung (> {timeout}s): {' '.join(argv)}; "
                      f"stdout tail {(e.stdout or b'')[-300:]!r}")
        stdout = out.stdout.decode(errors="replace")
        stderr = out.stderr.decode(errors="replace")
        self.assertEqual(out.returncode, 0, f"redis-benchmark failed: {stderr[-500:]} {stdout[-300:]}")
        self.assertNotIn("Error", stderr + stdout)
        # final result lines look like "SET: 123456.78 requests per second, p50=..."
        results = re.findall(r"([A-Za-z_ ()0-9]+): ([0-9.]+) requests per second", stdout.replace("\r", "\n"))
        return {name.strip(): float(rps) for name, rps in results}

    def test_set_get_pipelined(self):
        before = commandstats(self.upstream.port).get("set", 0)
        res = self.bench("-t", "set,get", "-P", "16", "-n", str(N))
        self.assertIn("SET", res)
        self.assertIn("GET", res)
        after = commandstats(self.upstream.port).get("set", 0)
        self.assertEqual(after - before, N, "every SET reaches the upstream exactly once")
        print(f"\nredis-benchmark -P 16 -n {N} via respite: {res}")
        with RawConn(self.port) as c:
            self.assertEqual(c.call("PING"), "PONG")

    def test_many_commands_many_clients(self):
        res = self.bench("-c", "50", "-n", "20000",
                         "-t", "ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange,mset")
        self.assertGreaterEqual(len(res), 15, res)


if __name__ == "__main__":
    harness.run_tests()
