"""TLS: clients on --tls-port (redis-cli --tls, redis-py ssl=True), client certificates
(--tls-auth-clients), certificates reloaded without dropping connections, garbage on the TLS
port, and TLS to an upstream redis-server (and Sentinel) that accepts only TLS.

Certificates are made once per run with the openssl CLI (EC prime256v1 keys: quick) in a temp
dir: a CA, a server certificate (localhost, 127.0.0.1), a second server certificate, an expired
one, one for evil.example only, a client certificate, and a CA with a server and a client certificate of its own (the
"other" CA nobody trusts)."""

import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

import harness
import redis
from harness import HOST, REDIS_CLI, REDIS_SERVER, Proc, RedisServer, Respite, free_port, respite_only, wait_until

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
CERTS: Path | None = None
GARBAGE_CONNECTIONS = int(os.environ.get("RESPITE_TLS_GARBAGE", "2000"))


def run(*argv, timeout=30, **kw):
    return subprocess.run(list(argv), capture_output=True, timeout=timeout, **kw)


def make_certs(d: Path) -> None:
    def key(name):
        run(OPENSSL, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(d / f"{name}.key"), check=True)

    def ca(name):
        key(name)
        run(OPENSSL, "req", "-x509", "-new", "-key", str(d / f"{name}.key"), "-subj", f"/CN={name}",
            "-days", "30", "-out", str(d / f"{name}.crt"), check=True)

    def cert(name, cn, issuer, days="30", server=True, san="DNS:localhost,IP:127.0.0.1"):
        key(name)
        run(OPENSSL, "req", "-new", "-key", str(d / f"{name}.key"), "-subj", f"/CN={cn}",
            "-out", str(d / f"{name}.csr"), check=True)
        ext = d / "san.ext"
        ext.write_text(f"subjectAltName={san}\n")
        argv = [OPENSSL, "x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / f"{issuer}.crt"),
                "-CAkey", str(d / f"{issuer}.key"), "-CAcreateserial", "-days", days,
                "-out", str(d / f"{name}.crt")]
        if server:
            argv += ["-extfile", str(ext)]
        run(*argv, check=True)

    ca("ca")
    ca("otherca")
    cert("server", "localhost", "ca")
    cert("server2", "second", "ca")
    cert("expired", "localhost", "ca", days="-1")
    cert("client", "client", "ca", server=False)
    cert("otherclient", "client", "otherca", server=False)
    cert("otherserver", "localhost", "otherca")
    cert("evil", "evil.example", "ca", san="DNS:evil.example")  # trusted CA, someone else's name
    run(OPENSSL, "ec", "-in", str(d / "server.key"), "-aes256", "-passout", "pass:s3cret",
        "-out", str(d / "server-enc.key"), check=True)


def c(name: str) -> str:
    return str(CERTS / name)


def setUpModule():
    global CERTS
    CERTS = Path(tempfile.mkdtemp(prefix="respite-tls-"))
    make_certs(CERTS)


def tearDownModule():
    shutil.rmtree(CERTS, ignore_errors=True)


def server_tls_args(tls_port: int, cert="server", auth="no") -> list[str]:
    a = ["--tls-port", str(tls_port), "--tls-cert-file", c(f"{cert}.crt"),
         "--tls-key-file", c(f"{cert}.key"), "--tls-auth-clients", auth]
    if auth != "no":
        a += ["--tls-ca-cert-file", c("ca.crt")]
    return a


def cli(port: int, *args, cert: str | None = None, cacert="ca.crt", tls=True, timeout=10):
    argv = [REDIS_CLI, "-h", HOST, "-p", str(port)]
    if tls:
        argv += ["--tls", "--cacert", c(cacert)]
        if cert:
            argv += ["--cert", c(f"{cert}.crt"), "--key", c(f"{cert}.key")]
    return run(*argv, *args, timeout=timeout)


def tls_client(port: int, cert: str | None = None, **kw):
    import redis
    extra = {"ssl_certfile": c(f"{cert}.crt"), "ssl_keyfile": c(f"{cert}.key")} if cert else {}
    return redis.Redis(host=HOST, port=port, ssl=True, ssl_ca_certs=c("ca.crt"),
                       socket_timeout=10, **extra, **kw)


def peer_cn(port: int) -> str:
    ctx = ssl.create_default_context(cafile=c("ca.crt"))
    with socket.create_connection((HOST, port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            subject = dict(x[0] for x in t.getpeercert()["subject"])
            return subject["commonName"]



def wait_admitted(client):
    """At --maxclients 1 the harness's port probe may still count as a client for a moment
    (another loop closes it): `client` retries until it is in."""
    def admitted():
        try:
            return client.ping()
        except Exception:  # noqa: BLE001 - refused while the probe still counts
            client.connection_pool.disconnect()
            return False

    wait_until(admitted, 5, "the first TLS client admitted")

class TlsRedis:
    """A redis-server that accepts only TLS (--port 0), client certificates from `ca` required
    unless auth is "no"; waited for with redis-cli --tls PING."""

    def __init__(self, auth="yes", cert="server", extra: list[str] | None = None, sentinel=False,
                 cacert="ca.crt"):
        self.tmp = Path(tempfile.mkdtemp(prefix="respite-tls-redis-"))
        self.auth, self.cert, self.extra, self.sentinel = auth, cert, extra or [], sentinel
        self.cacert = cacert

    def __enter__(self):
        for _ in range(harness.START_ATTEMPTS):
            self.port = free_port()
            argv = [REDIS_SERVER, "--port", "0", "--bind", HOST, "--save", "", "--appendonly", "no",
                    "--dir", str(self.tmp), "--logfile", "",
                    *server_tls_args(self.port, self.cert, self.auth)]
            if self.auth == "no":
                argv += ["--tls-ca-cert-file", c("ca.crt")]
            if self.sentinel:
                conf = self.tmp / "sentinel.conf"
                conf.write_text("")
                argv = [REDIS_SERVER, str(conf), "--sentinel", *argv[1:], "--tls-replication", "yes"]
            argv += self.extra
            self.proc = Proc(argv, self.tmp / "redis.log", cwd=str(self.tmp), name="redis")
            deadline = time.monotonic() + harness.START_TIMEOUT
            while time.monotonic() < deadline and self.proc.alive():
                if cli(self.port, "PING", cert="client", cacert=self.cacert, timeout=2).stdout.strip() == b"PONG":
                    return self
                time.sleep(0.05)
            self.proc.stop(timeout=1.0)
        tail = self.proc.log_tail()
        shutil.rmtree(self.tmp, ignore_errors=True)
        raise RuntimeError(f"TLS redis-server did not start: {tail}")

    def __exit__(self, *exc):
        self.proc.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def upstream_tls_args(cert="client", ca="ca.crt", server_name="localhost") -> list[str]:
    a = ["--upstream-tls", "--upstream-tls-ca-cert-file", c(ca)]
    if cert:
        a += ["--upstream-tls-cert-file", c(f"{cert}.crt"), "--upstream-tls-key-file", c(f"{cert}.key")]
    if server_name:
        a += ["--upstream-tls-server-name", server_name]
    return a


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def conns_on_port(pid: int, port: int) -> int:
    """How many accepted TCP connections to local `port` process `pid` holds open (its socket
    descriptors matched with /proc/net/tcp by inode; the listener itself is not counted)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] != "0A" and fields[9] in inodes:  # 0A: LISTEN
                    n += 1
    return n


def client_hello() -> bytes:
    """The first flight of a real TLS client, made with memory BIOs."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def abort(s: socket.socket) -> None:
    """Closes with a reset: no TIME_WAIT left on our side (scripts/tls-fuzz opens 100,000)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def garbage(port: int, n: int, hello: bytes, silent: list) -> None:
    """n connections to `port`, in turn: random bytes (read until respite closes, at most 2 s),
    a ClientHello cut short then a reset, a whole ClientHello then silence (held, at most 200 at
    once, then reset)."""
    for i in range(n):
        kind = i % 3
        s = socket.create_connection((HOST, port), timeout=5)
        if kind == 0:
            s.sendall(os.urandom(1 + (i * 7919) % 3000))
            s.settimeout(2)
            try:
                while s.recv(4096):
                    pass
                s.close()
            except OSError:
                abort(s)
        elif kind == 1:
            s.sendall(hello[: max(1, (i * 31) % len(hello))])
            abort(s)
        else:
            s.sendall(hello)
            silent.append(s)
            if len(silent) >= 200:
                for x in silent:
                    abort(x)
                silent.clear()


@respite_only
class TlsClients(unittest.TestCase):
    """respite with a plain and a TLS port, in front of a TLS-only upstream."""

    @classmethod
    def setUpClass(cls):
        cls.up = TlsRedis(auth="yes").__enter__()
        cls.tls_port = free_port()
        cls.rs = Respite(None, upstream_addr=f"{HOST}:{cls.up.port}",
                         args=server_tls_args(cls.tls_port, auth="optional") + upstream_tls_args())
        cls.rs.start()

    @classmethod
    def tearDownClass(cls):
        if hasattr(cls, "admin"):
            cls.admin.close()
        cls.rs.close()
        cls.up.__exit__(None, None, None)

    def info(self, field: str) -> int:
        # One connection for every question, so the descriptor counts do not see clients come
        # and go (a dropped redis-py client's socket closes when it is collected).
        if not hasattr(type(self), "admin"):
            type(self).admin = self.rs.client()
        text = self.admin.execute_command("PROXY", "INFO").decode()
        for line in text.splitlines():
            if line.startswith(field + ":"):
                return int(line.split(":", 1)[1])
        raise AssertionError(f"no {field} in PROXY INFO")

    def test_redis_cli_set_get_through_tls_upstream(self):
        self.assertEqual(cli(self.tls_port, "SET", "k1", "v1").stdout.strip(), b"OK")
        self.assertEqual(cli(self.tls_port, "GET", "k1").stdout.strip(), b"v1")
        # It really went to the TLS-only upstream.
        self.assertEqual(cli(self.up.port, "GET", "k1", cert="client").stdout.strip(), b"v1")

    def test_redis_py_ssl(self):
        r = tls_client(self.tls_port)
        self.assertTrue(r.set("py", "x" * 100000))
        self.assertEqual(r.get("py"), b"x" * 100000)
        pipe = r.pipeline(transaction=False)
        for i in range(500):
            pipe.set(f"p{i}", i)
        for i in range(500):
            pipe.get(f"p{i}")
        res = pipe.execute()
        self.assertEqual(res[500:], [str(i).encode() for i in range(500)])
        r.close()

    def test_plain_and_tls_ports_at_once(self):
        plain = self.rs.client()
        plain.set("both", "plain")
        r = tls_client(self.tls_port)
        self.assertEqual(r.get("both"), b"plain")
        r.set("both", "tls")
        self.assertEqual(plain.get("both"), b"tls")
        r.close()

    def test_cached_get_over_tls(self):
        r = tls_client(self.tls_port)
        r.set("cached", "v")
        self.assertEqual(r.get("cached"), b"v")  # a miss fills the cache
        before = self.info("cache_hits")
        for _ in range(5):
            self.assertEqual(r.get("cached"), b"v")
        self.assertGreaterEqual(self.info("cache_hits") - before, 5)
        r.close()

    def test_optional_client_certificates(self):
        self.assertEqual(cli(self.tls_port, "PING").stdout.strip(), b"PONG")
        self.assertEqual(cli(self.tls_port, "PING", cert="client").stdout.strip(), b"PONG")
        # optional still verifies a certificate that is given.
        self.assertNotEqual(cli(self.tls_port, "PING", cert="otherclient").stdout.strip(), b"PONG")

    def test_tls_info_fields(self):
        self.assertEqual(self.info("tls_port"), self.tls_port)
        self.assertGreater(self.info("tls_connections_received"), 0)

    def test_garbage_on_the_tls_port(self):
        """Random bytes, half handshakes then close, and ClientHellos then silence, for a bounded
        number of connections, while another TLS client keeps being served; respite stays up
        and its descriptors come back to where they were."""
        errors_before = self.info("tls_handshake_errors")
        served = tls_client(self.tls_port)
        served.set("alive", "yes")
        # Without the served client's connection (closed at the end), so one leaked descriptor
        # is caught.
        baseline = fd_count(self.rs.pid) - 1
        hello = client_hello()
        stop = threading.Event()
        failures: list[str] = []
        answers = [0]

        def keep_serving():
            while not stop.is_set():
                try:
                    if served.get("alive") != b"yes":
                        failures.append("wrong answer")
                    answers[0] += 1
                except Exception as e:  # noqa: BLE001 - any failure fails the test
                    failures.append(repr(e))
                    return

        t = threading.Thread(target=keep_serving)
        t.start()
        silent: list[socket.socket] = []
        try:
            garbage(self.tls_port, GARBAGE_CONNECTIONS, hello, silent)
        finally:
            for x in silent:
                abort(x)
            stop.set()
            t.join(30)
        self.assertEqual(failures, [])
        self.assertGreater(answers[0], 0)
        self.rs.assert_alive()
        self.assertEqual(served.get("alive"), b"yes")
        served.close()
        served.connection_pool.disconnect()
        wait_until(lambda: fd_count(self.rs.pid) <= baseline, 20, "descriptors back to baseline")
        self.assertGreater(self.info("tls_handshake_errors"), errors_before)


@respite_only
class TlsProtectedMode(unittest.TestCase):

    def test_refused_tls_client_gets_denied_at_once(self):
        """Protected mode refuses a non-loopback TLS client as it refuses a plain one: with
        -DENIED after the handshake, and the connection closed, not left to the handshake
        deadline."""
        from test_acl import own_address
        addr = own_address()
        if addr is None:
            self.skipTest("this machine has no non-loopback address to connect from")
        with RedisServer() as up:
            tls_port = free_port()
            args = ["--bind", "0.0.0.0"] + server_tls_args(tls_port) + ["--tls-handshake-timeout-ms", "30000"]
            with Respite(up, args=args):
                ctx = ssl.create_default_context(cafile=c("ca.crt"))
                ctx.check_hostname = False
                t0 = time.monotonic()
                with socket.create_connection((addr, tls_port), timeout=10) as raw:
                    with ctx.wrap_socket(raw) as s:
                        got = b""
                        try:
                            while chunk := s.recv(4096):
                                got += chunk
                        except (ssl.SSLError, ConnectionResetError):
                            pass
                self.assertTrue(got.startswith(b"-DENIED respite is running in protected mode"), got)
                self.assertLess(time.monotonic() - t0, 10, "closed after the reply, not at the deadline")


@respite_only
class TlsClientAuth(unittest.TestCase):
    """--tls-auth-clients yes (Redis's default), and certificates the client must refuse."""

    def test_auth_clients_yes(self):
        with RedisServer() as up:
            tls_port = free_port()
            with Respite(up, args=server_tls_args(tls_port, auth="yes")):
                self.assertEqual(cli(tls_port, "PING", cert="client").stdout.strip(), b"PONG")
                no_cert = cli(tls_port, "PING")
                self.assertNotEqual(no_cert.stdout.strip(), b"PONG")
                other = cli(tls_port, "PING", cert="otherclient")
                self.assertNotEqual(other.stdout.strip(), b"PONG")

    def test_expired_server_certificate_is_refused_by_the_client(self):
        with RedisServer() as up:
            tls_port = free_port()
            with Respite(up, args=server_tls_args(tls_port, cert="expired")):
                p = cli(tls_port, "PING")
                self.assertNotEqual(p.stdout.strip(), b"PONG")
                with self.assertRaises(ssl.SSLCertVerificationError) as e:
                    peer_cn(tls_port)
                self.assertIn("expired", e.exception.verify_message)
            # A certificate from a CA the client does not trust: refused as well.
            other_port = free_port()
            with Respite(up, args=server_tls_args(other_port, cert="otherserver")):
                self.assertNotEqual(cli(other_port, "PING").stdout.strip(), b"PONG")

    def test_startup_errors(self):
        tls_port = str(free_port())
        cases = [
            (["--tls-port", tls_port], b"tls-cert-file"),
            (["--tls-port", tls_port, "--tls-cert-file", c("ca.key"), "--tls-key-file", c("server.key"),
              "--tls-auth-clients", "no"], b"cannot load certificate"),
            (["--tls-port", tls_port, "--tls-cert-file", c("server.crt"), "--tls-key-file",
              c("client.key"), "--tls-auth-clients", "no"], b"key values mismatch"),
            (["--tls-port", tls_port, "--tls-cert-file", c("server.crt"), "--tls-key-file",
              c("server.key")], b"tls-ca-cert"),
        ]
        for args, text in cases:
            p = run(*harness.respite_argv("--port", str(free_port()), "--upstream", "127.0.0.1:1", *args))
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(text, p.stderr)

    def test_encrypted_key_file(self):
        """An encrypted key loads with tls-key-file-pass; without it (or with a wrong one) the
        start fails with the reason, never waiting on a passphrase prompt. The passphrase is not
        in the log nor in PROXY CONFIG GET."""
        tls_port = free_port()
        base = ["--port", str(free_port()), "--upstream", "127.0.0.1:1", "--tls-port", str(tls_port),
                "--tls-cert-file", c("server.crt"), "--tls-key-file", c("server-enc.key"),
                "--tls-auth-clients", "no"]
        for extra in ([], ["--tls-key-file-pass", "wrong"]):
            p = run(*harness.respite_argv(*base, *extra), stdin=subprocess.DEVNULL, timeout=20,
                    start_new_session=True)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn(b"cannot load private key", p.stderr)
        with RedisServer() as up:
            args = server_tls_args(tls_port, cert="server") + ["--tls-key-file-pass", "s3cret"]
            args[args.index("--tls-key-file") + 1] = c("server-enc.key")
            with Respite(up, args=args) as rs:
                self.assertEqual(cli(tls_port, "PING").stdout.strip(), b"PONG")
                shown = rs.client().execute_command("PROXY", "CONFIG", "GET", "*")
                self.assertNotIn(b"s3cret", b" ".join(x if isinstance(x, bytes) else b"" for x in shown))
                self.assertNotIn(b"s3cret", rs.proc.log_path.read_bytes())

    def test_upstream_server_name_too_long(self):
        p = run(*harness.respite_argv("--port", str(free_port()), "--upstream", "127.0.0.1:1",
                                      "--upstream-tls", "--upstream-tls-server-name", "a" * 300))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"255 bytes", p.stderr)

    def test_maxclients_error_over_tls(self):
        with RedisServer() as up:
            tls_port = free_port()
            with Respite(up, args=server_tls_args(tls_port) + ["--maxclients", "1"]):
                first = tls_client(tls_port)
                wait_admitted(first)
                p = cli(tls_port, "PING")
                self.assertIn(b"max number of clients reached", p.stdout + p.stderr)
                self.assertTrue(first.ping())
                first.close()

    def test_refused_and_silent_tls_clients_do_not_hold_descriptors(self):
        """At maxclients, TLS clients that send half a ClientHello then FIN, and clients that
        say nothing, are closed (the FIN at once, the silent ones after a short grace), although
        the handshake deadline is a minute and there is no idle timeout."""
        hello = client_hello()
        with RedisServer() as up:
            tls_port = free_port()
            args = server_tls_args(tls_port) + ["--maxclients", "1", "--tls-handshake-timeout-ms", "60000"]
            with Respite(up, args=args) as rs:
                first = tls_client(tls_port)
                wait_admitted(first)
                baseline = fd_count(rs.pid)
                held = []
                try:
                    for _ in range(50):
                        s = socket.create_connection((HOST, tls_port), timeout=5)
                        s.sendall(hello[: len(hello) // 2])
                        s.shutdown(socket.SHUT_WR)  # FIN, but the socket stays open here
                        held.append(s)
                    for _ in range(50):
                        held.append(socket.create_connection((HOST, tls_port), timeout=5))
                    wait_until(lambda: fd_count(rs.pid) > baseline, 5, "the clients accepted")
                    wait_until(lambda: fd_count(rs.pid) <= baseline, 15, "descriptors back to baseline")
                finally:
                    for s in held:
                        abort(s)
                self.assertTrue(first.ping())
                first.close()

    def test_handshake_deadline(self):
        """A TLS client that does not complete its handshake in --tls-handshake-timeout-ms is
        closed; one that did stays, however idle."""
        hello = client_hello()
        with RedisServer() as up:
            tls_port = free_port()
            with Respite(up, args=server_tls_args(tls_port) + ["--tls-handshake-timeout-ms", "500"]) as rs:
                served = tls_client(tls_port)
                self.assertTrue(served.ping())
                baseline = fd_count(rs.pid)
                held = []
                try:
                    for i in range(20):
                        s = socket.create_connection((HOST, tls_port), timeout=5)
                        if i % 2:
                            s.sendall(hello)
                        held.append(s)
                    wait_until(lambda: fd_count(rs.pid) > baseline, 5, "the clients accepted")
                    wait_until(lambda: fd_count(rs.pid) <= baseline, 15, "descriptors back to baseline")
                    for s in held:  # closed by respite
                        s.settimeout(5)
                        try:
                            while s.recv(4096):
                                pass
                        except ConnectionResetError:
                            pass
                finally:
                    for s in held:
                        abort(s)
                self.assertTrue(served.ping())
                served.close()

    def test_config_file_directives(self):
        tls_port = free_port()
        with RedisServer() as up, tempfile.TemporaryDirectory() as d:
            conf = Path(d) / "respite.conf"
            conf.write_text(f"tls-port {tls_port}\ntls-cert-file {c('server.crt')}\n"
                            f"tls-key-file {c('server.key')}\ntls-auth-clients no\n")
            with Respite(up, args=["--config", str(conf)]):
                self.assertEqual(cli(tls_port, "PING").stdout.strip(), b"PONG")


@respite_only
class Https(unittest.TestCase):

    def test_http_port_over_tls(self):
        import json
        import urllib.request
        with RedisServer() as up:
            http_port = free_port()
            args = ["--http-port", str(http_port), "--http-tls", "--tls-cert-file", c("server.crt"),
                    "--tls-key-file", c("server.key"), "--tls-auth-clients", "no"]
            with Respite(up, args=args) as rs:
                rs.client().set("hk", "hv")
                ctx = ssl.create_default_context(cafile=c("ca.crt"))
                url = f"https://localhost:{http_port}/lookup?key=hk"
                wait_until(lambda: harness.port_open(http_port), 5, "the HTTPS port")
                with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
                    self.assertEqual(json.loads(resp.read())["value"], "hv")
                # Plain HTTP on that port is a failed handshake, not an answer.
                with socket.create_connection((HOST, http_port), timeout=5) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    self.assertNotIn(b"200", s.recv(100))

    def test_https_handshake_deadline(self):
        """An HTTPS connection that does not finish its handshake within
        --tls-handshake-timeout-ms is closed (well before HTTP's 60 s idle timeout); an HTTPS
        request on a fresh connection is still answered."""
        import urllib.request
        hello = client_hello()
        with RedisServer() as up:
            http_port = free_port()
            args = ["--http-port", str(http_port), "--http-tls", "--tls-cert-file", c("server.crt"),
                    "--tls-key-file", c("server.key"), "--tls-auth-clients", "no",
                    "--tls-handshake-timeout-ms", "500"]
            with Respite(up, args=args) as rs:
                wait_until(lambda: harness.port_open(http_port), 5, "the HTTPS port")
                held = []
                try:
                    for i in range(10):
                        s = socket.create_connection((HOST, http_port), timeout=5)
                        if i % 2:
                            s.sendall(hello)  # a ClientHello, then silence
                        held.append(s)
                    wait_until(lambda: conns_on_port(rs.pid, http_port) > 0, 5, "the connections accepted")
                    wait_until(lambda: conns_on_port(rs.pid, http_port) == 0, 15, "all of them closed")
                finally:
                    for s in held:
                        abort(s)
                ctx = ssl.create_default_context(cafile=c("ca.crt"))
                with urllib.request.urlopen(f"https://localhost:{http_port}/healthz", context=ctx,
                                            timeout=10) as resp:
                    self.assertEqual(resp.status, 200)


@respite_only
class TlsReload(unittest.TestCase):

    def test_reload_keeps_connections_and_new_ones_see_the_new_certificate(self):
        with RedisServer() as up:
            tls_port = free_port()
            with Respite(up, args=server_tls_args(tls_port)) as rs:
                admin = rs.client()
                old = tls_client(tls_port)
                old.set("k", "before")
                self.assertEqual(peer_cn(tls_port), "localhost")
                # A bad certificate: an error, and the old one stays.
                with self.assertRaises(Exception) as e:
                    admin.execute_command("PROXY", "CONFIG", "SET", "tls-cert-file", c("ca.key"))
                self.assertIn("Unable to update TLS configuration", str(e.exception))
                self.assertEqual(peer_cn(tls_port), "localhost")
                self.assertEqual(admin.execute_command("PROXY", "CONFIG", "GET", "tls-cert-file")[1].decode(),
                                 c("server.crt"))
                # A certificate and its key together.
                self.assertTrue(admin.execute_command("PROXY", "CONFIG", "SET", "tls-cert-file", c("server2.crt"),
                                                      "tls-key-file", c("server2.key")))
                wait_until(lambda: peer_cn(tls_port) == "second", 5, "the new certificate")
                self.assertEqual(old.get("k"), b"before")  # the existing connection goes on
                old.set("k", "after")
                self.assertEqual(tls_client(tls_port).get("k"), b"after")
                old.close()

    def test_concurrent_reloads_leave_every_loop_with_the_same_certificate(self):
        """Two admins reload different certificates at once, on several connections (so on
        both loops): afterwards every loop serves the same one (the last reload made)."""
        with RedisServer() as up:
            tls_port = free_port()
            with Respite(up, args=server_tls_args(tls_port) + ["--threads", "2"]) as rs:
                errors: list[str] = []

                def reload(cert):
                    admins = [rs.client() for _ in range(4)]
                    try:
                        for i in range(100):
                            admins[i % 4].execute_command("PROXY", "CONFIG", "SET", "tls-cert-file", c(f"{cert}.crt"),
                                                          "tls-key-file", c(f"{cert}.key"))
                    except Exception as e:  # noqa: BLE001 - any failure fails the test
                        errors.append(repr(e))

                threads = [threading.Thread(target=reload, args=(cert,)) for cert in ("server", "server2")]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                self.assertEqual(errors, [])
                wait_until(lambda: len({peer_cn(tls_port) for _ in range(30)}) == 1, 5,
                           "every loop serving the same certificate")

    def test_sighup_reloads_the_files(self):
        with RedisServer() as up, tempfile.TemporaryDirectory() as d:
            crt, key = Path(d) / "cur.crt", Path(d) / "cur.key"
            shutil.copy(c("server.crt"), crt)
            shutil.copy(c("server.key"), key)
            tls_port = free_port()
            args = ["--tls-port", str(tls_port), "--tls-cert-file", str(crt), "--tls-key-file", str(key),
                    "--tls-auth-clients", "no"]
            with Respite(up, args=args) as rs:
                kept = tls_client(tls_port)
                kept.ping()
                shutil.copy(c("server2.crt"), crt)
                shutil.copy(c("server2.key"), key)
                os.kill(rs.pid, 1)  # SIGHUP
                wait_until(lambda: peer_cn(tls_port) == "second", 5, "the reloaded certificate")
                crt.write_text("not a certificate\n")
                os.kill(rs.pid, 1)
                wait_until(lambda: b"not reloaded" in rs.proc.log_path.read_bytes(), 5, "the warning")
                self.assertEqual(peer_cn(tls_port), "second")
                self.assertTrue(kept.ping())
                rs.assert_alive()
                kept.close()


@respite_only
class TlsUpstream(unittest.TestCase):

    def test_upstream_that_never_answers_the_handshake_is_dropped_and_retried(self):
        """A peer that accepts TCP and then says nothing: each connection respite makes fails
        at --upstream-timeout-ms and is made again (with backoff), so the node does not stay
        stuck on one dead handshake; clients get errors, not a hang."""
        listener = socket.create_server((HOST, 0))
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept():
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except OSError:
                    pass

        t = threading.Thread(target=accept)
        t.start()
        try:
            port = listener.getsockname()[1]
            with Respite(None, upstream_addr=f"{HOST}:{port}",
                         args=upstream_tls_args(cert=None) + ["--upstream-timeout-ms", "300"]) as rs:
                with harness.RawConn(rs.port) as cl:
                    self.assertTrue(str(cl.call("SET", "a", "1")).startswith("ERR upstream"))
                wait_until(lambda: int(harness.proxy_info(rs.port)["upstream_connects"]) >= 3, 15,
                           "connections made again after the silent handshakes timed out")
        finally:
            stop.set()
            t.join(5)
            for s in held:
                s.close()
            listener.close()

    def test_upstream_without_client_certificate(self):
        with TlsRedis(auth="no") as up:
            with Respite(None, upstream_addr=f"{HOST}:{up.port}", args=upstream_tls_args(cert=None)) as rs:
                r = rs.client()
                r.set("a", "1")
                self.assertEqual(r.get("a"), b"1")
                self.assertEqual(r.get("a"), b"1")

    def test_upstream_checked_against_its_host_by_default(self):
        """Without --upstream-tls-server-name the upstream's certificate must name the host it
        is reached at (here 127.0.0.1, an IP entry): a certificate from the trusted CA for
        another name is refused; the right one is accepted (the control)."""
        for cert, good in (("server", True), ("evil", False)):
            with TlsRedis(auth="no", cert=cert) as up:
                with Respite(None, upstream_addr=f"{HOST}:{up.port}",
                             args=upstream_tls_args(cert=None, server_name=None) + ["--log-level", "verbose"]) as rs:
                    if good:
                        rs.client().set("a", "1")
                        self.assertEqual(rs.client().get("a"), b"1")
                        continue
                    with self.assertRaises(redis.exceptions.ResponseError):
                        rs.client().set("a", "1")
                    text = rs.client().execute_command("PROXY", "INFO").decode()
                    self.assertIn("upstream_connected:0", text)
                    wait_until(lambda: b"IP address mismatch" in rs.proc.log_path.read_bytes(), 10,
                               "the refusal's reason in the log")

    def test_upstream_refusing_our_certificate_is_retried_with_backoff(self):
        """An upstream that requires a client certificate respite does not present: under
        TLS 1.3 respite's handshake completes before the server's refusal (an alert), which must
        not count as the node being up: the attempts follow the reconnect backoff (50 ms,
        doubling), not the 10 ms timer."""
        with TlsRedis(auth="yes") as up:
            def received():
                out = cli(up.port, "INFO", "stats", cert="client").stdout.decode()
                return int(out.split("total_connections_received:")[1].split()[0])

            with Respite(None, upstream_addr=f"{HOST}:{up.port}",
                         args=upstream_tls_args(cert=None, server_name=None)) as rs:
                start_count, start = received(), time.monotonic()
                deadline = start + 2.0
                while time.monotonic() < deadline:
                    text = rs.client().execute_command("PROXY", "INFO").decode()
                    self.assertIn("upstream_connected:0", text)
                    time.sleep(0.2)  # a sampling interval, not a wait for a result
                elapsed = time.monotonic() - start
                attempts = received() - start_count - 1  # our own INFO connection
            # The schedule: attempt k waits 50 * 2^(k-1) ms; a loop makes at most this many.
            allowed, t, wait = 1, 0.0, 0.05
            while t + wait <= elapsed:
                t, wait, allowed = t + wait, wait * 2, allowed + 1
            loops = int(harness.THREADS or "1")
            # Each loop's node has a shared connection and a tracking link, each backing off.
            self.assertLessEqual(attempts, (allowed + 2) * loops * 2, f"{attempts} in {elapsed:.1f} s")

    def test_upstream_that_fails_verification_is_not_used(self):
        verbose = ["--log-level", "verbose"]
        with TlsRedis(auth="no", cert="otherserver", cacert="otherca.crt") as up:
            with Respite(None, upstream_addr=f"{HOST}:{up.port}", args=upstream_tls_args(cert=None) + verbose) as rs:
                with self.assertRaises(redis.exceptions.ResponseError):
                    rs.client().set("a", "1")
                text = rs.client().execute_command("PROXY", "INFO").decode()
                self.assertIn("upstream_connected:0", text)
                wait_until(lambda: b"unable to get local issuer certificate" in rs.proc.log_path.read_bytes(),
                           10, "the refusal's reason in the log")
        with TlsRedis(auth="no") as up:
            with Respite(None, upstream_addr=f"{HOST}:{up.port}",
                         args=upstream_tls_args(cert=None, server_name="wrong.example") + verbose) as rs:
                with self.assertRaises(redis.exceptions.ResponseError):
                    rs.client().set("a", "1")
                wait_until(lambda: b"hostname mismatch" in rs.proc.log_path.read_bytes().lower(),
                           10, "the refusal's reason in the log")

    def test_cluster_over_tls(self):
        """The slot map read over TLS (the blocking client, CLUSTER SHARDS' "tls-port") and the
        data connections to every master over TLS."""
        import cluster_harness as ch
        plain_argv = ch.Node.argv

        def tls_argv(node):
            if not hasattr(node, "tls_port"):
                node.tls_port = free_port()
            return plain_argv(node) + [*server_tls_args(node.tls_port), "--tls-ca-cert-file", c("ca.crt"),
                                       "--tls-cluster", "yes", "--tls-replication", "yes"]

        ch.Node.argv = tls_argv
        try:
            cluster = ch.RedisCluster(masters=3).start()
        finally:
            ch.Node.argv = plain_argv
        try:
            seed = cluster.nodes[0]
            with Respite(None, upstream_addr=f"{HOST}:{seed.tls_port}",
                         args=["--cluster", *upstream_tls_args(cert=None)]) as rs:
                r = rs.client()
                keys = [f"k{i}" for i in range(200)]
                for k in keys:
                    r.set(k, k)
                self.assertEqual(r.mget(keys), [k.encode() for k in keys])
                # Every master got some of them, over its TLS port only.
                self.assertTrue(all(int(n.info("keyspace").get("db0", "keys=0").split(",")[0][5:]) > 0
                                    for n in cluster.nodes))
        finally:
            cluster.close()

    def test_sentinel_over_tls(self):
        """The blocking client's TLS path (ask_sentinels at start) and the Sentinel watcher."""
        with TlsRedis(auth="no") as up:
            with TlsRedis(auth="no", sentinel=True) as sen:
                p = cli(sen.port, "SENTINEL", "MONITOR", "m", HOST, str(up.port), "1")
                self.assertEqual(p.stdout.strip(), b"OK", p.stdout + p.stderr)
                with Respite(None, upstream_addr=None,
                             args=["--sentinel", f"{HOST}:{sen.port}", "--sentinel-master", "m",
                                   *upstream_tls_args(cert=None)]) as rs:
                    r = rs.client()
                    r.set("s", "1")
                    self.assertEqual(r.get("s"), b"1")
                    self.assertEqual(cli(up.port, "GET", "s").stdout.strip(), b"1")


if __name__ == "__main__":
    unittest.main(verbosity=2)
