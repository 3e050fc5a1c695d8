"""Redis's own test suite (units unit/type/string, unit/type/incr, unit/keyspace) in external mode
through respite, via scripts/redis-suite. If the suite cannot be fetched (apt mirror unreachable)
or run, this test FAILS: it never skips."""

import os
import subprocess
import sys
import unittest

import harness


class RedisSuite(unittest.TestCase):

    def test_redis_suite_through_respite(self):
        script = harness.REPO / "scripts" / "redis-suite"
        argv = [sys.executable, str(script)] + (["--direct"] if harness.DIRECT else [])
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=1500,
                               env=dict(os.environ, RESPITE_BIN=harness.respite_bin()))
        except subprocess.TimeoutExpired as e:
            self.fail(f"scripts/redis-suite timed out; output so far:\n{e.stdout}")
        sys.stdout.write(r.stdout)
        sys.stdout.write(r.stderr)
        summary = [ln for ln in r.stdout.splitlines() if ln.startswith("redis-suite: ") and " ok, " in ln]
        self.assertTrue(summary, "no summary line from scripts/redis-suite")
        if r.returncode == 2:
            self.fail("scripts/redis-suite could not fetch or run Redis's test suite "
                      "(see SETUP FAILED above): this is a failure, not a skip")
        self.assertEqual(r.returncode, 0, summary[-1])


if __name__ == "__main__":
    harness.run_tests()
