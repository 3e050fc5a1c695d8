"""The Docker image's HEALTHCHECK, run as the Dockerfile gives it (no Docker daemon here): the
command after CMD, with conf/respite-healthcheck on PATH as the image installs it, against a
respite without a password, with --requirepass (with and without REDISCLI_AUTH), refusing
clients (maxclients), and with nothing listening."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import harness
from harness import REPO, RawConn, RedisServer, Respite, free_port, respite_only, wait_until


def dockerfile_healthcheck() -> str:
    """The HEALTHCHECK's command (shell form, as Docker runs it with /bin/sh -c)."""
    text = (REPO / "Dockerfile").read_text()
    m = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(.+)$", text, re.M)
    if not m:
        raise AssertionError("no HEALTHCHECK ... CMD line in the Dockerfile")
    return m.group(1)


def installed_as() -> str:
    """Where the Dockerfile copies conf/respite-healthcheck (its name on the image's PATH)."""
    m = re.search(r"^COPY\s+conf/respite-healthcheck\s+(\S+)$", (REPO / "Dockerfile").read_text(),
                  re.M)
    if not m:
        raise AssertionError("the Dockerfile does not install conf/respite-healthcheck")
    return os.path.basename(m.group(1))


@respite_only
class DockerHealthcheck(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.bin = Path(tempfile.mkdtemp(prefix="respite-healthcheck-"))
        cls.addClassCleanup(shutil.rmtree, cls.bin, ignore_errors=True)
        (cls.bin / installed_as()).symlink_to(REPO / "conf" / "respite-healthcheck")
        cls.upstream = RedisServer().start()
        cls.addClassCleanup(cls.upstream.close)

    def check(self, port: int, **env) -> int:
        e = dict(os.environ)
        e.pop("REDISCLI_AUTH", None)
        e.update(env, RESPITE_HEALTHCHECK_PORT=str(port),
                 PATH=f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        return subprocess.run(["/bin/sh", "-c", dockerfile_healthcheck()], env=e,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=10).returncode

    def test_without_password(self):
        with Respite(self.upstream) as px:
            self.assertEqual(self.check(px.port), 0)

    def test_with_requirepass(self):
        with Respite(self.upstream, ["--requirepass", "hc-secret"]) as px:
            self.assertEqual(self.check(px.port), 0, "no password given: NOAUTH is healthy")
            self.assertEqual(self.check(px.port, REDISCLI_AUTH="hc-secret"), 0)
            self.assertEqual(self.check(px.port, REDISCLI_AUTH="wrong"), 0)

    def test_refusing_clients(self):
        # "-ERR max number of clients reached" is no sign of health.
        held = []

        def one_client_accepted():  # once the start-up probe's connection is gone
            c = RawConn(px.port)
            if c.call("PING") == "PONG":
                held.append(c)
                return True
            c.close()
            return False
        with Respite(self.upstream, ["--maxclients", "1"]) as px:
            wait_until(one_client_accepted, 5, "respite to accept one client")
            try:
                self.assertNotEqual(self.check(px.port), 0)
            finally:
                held[0].close()

    def test_nothing_listening(self):
        self.assertNotEqual(self.check(free_port()), 0)


if __name__ == "__main__":
    harness.run_tests()
