"""Redis's own test suite in external mode through respite, via scripts/redis-suite (its default
units: UNITS there). If the suite cannot be fetched (apt mirror unreachable) or run, this test
FAILS: it never skips.

Time: the script prints how long each unit took. A hang is caught inside it (runtest's own
watchdog names the test that stopped making progress; a unit over its time limit is killed and
named), and the whole run gets TOTAL_S, well above what it takes on a slow machine (about 4 min
on two idle cores); the CTest TIMEOUT (tests/CMakeLists.txt) is above that again, so the test
reports its own failure with the script's output instead of being killed."""

import os
import subprocess
import sys
import threading
import time
import unittest

import harness

TOTAL_S = 3000          # scripts/redis-suite --total-timeout; CTest's TIMEOUT is 3600


class RedisSuite(unittest.TestCase):

    def test_redis_suite_through_respite(self):
        script = harness.REPO / "scripts" / "redis-suite"
        argv = [sys.executable, str(script), "--total-timeout", str(TOTAL_S)] + \
            (["--direct"] if harness.DIRECT else [])
        t0 = time.monotonic()
        lines: list[str] = []
        # The output is echoed as it comes (CTest shows it even if the run is cut short).
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ, RESPITE_BIN=harness.respite_bin()))
        # SIGTERM (CTest's timeout) unwinds this test: the script is stopped the same way and
        # stops its own runtest, respite and redis-server in turn
        self.addCleanup(harness._stop_popen, p, 30.0)

        def pump():
            for ln in p.stdout:
                lines.append(ln)
                sys.stdout.write(ln)
                sys.stdout.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = p.wait(timeout=TOTAL_S + 300)
        except subprocess.TimeoutExpired:
            harness._stop_popen(p, 30.0)
            self.fail(f"scripts/redis-suite still running after {TOTAL_S + 300}s (its own "
                      f"--total-timeout is {TOTAL_S}s)")
        reader.join(timeout=10)
        p.stdout.close()
        print(f"scripts/redis-suite took {time.monotonic() - t0:.0f}s", flush=True)
        summary = [ln for ln in lines if ln.startswith("redis-suite: ") and " ok, " in ln]
        self.assertTrue(summary, "no summary line from scripts/redis-suite")
        if rc == 2:
            self.fail("scripts/redis-suite could not fetch or run Redis's test suite "
                      "(see SETUP FAILED above): this is a failure, not a skip")
        self.assertEqual(rc, 0, summary[-1].strip())


if __name__ == "__main__":
    harness.run_tests()
