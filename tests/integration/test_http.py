"""The HTTP endpoint (issue 7, item 3): /lookup through the cache, /metrics, /healthz.

respite runs with --http-port on a free port; requests go over http.client (keep-alive) or raw
sockets (pipelining, limits, bad input). The upstream redis-server holds the data; PROXY INFO and
/metrics are the witnesses of cache hits. Skipped under RESPITE_DIRECT=1 (redis-server has no
HTTP endpoint).
"""

import base64
import contextlib
import http.client
import json
import re
import signal
import socket
import time
import unittest
import urllib.parse

import harness
from harness import (CONTROL_FACTOR, HOST, MachineDelay, ProxyTestCase, RawConn, RedisServer,
                     Respite, free_port, proxy_info, respite_only, wait_for_port)


class HttpRespite(Respite):
    """Respite with --http-port on a fresh free port for every start attempt."""

    def __init__(self, upstream, args=None, **kw):
        super().__init__(upstream, args, **kw)
        self.http_port = None

    def argv(self, port):
        if port:
            self.http_port = free_port()
        return super().argv(port) + ["--http-port", str(self.http_port or 0)]

    def start(self):
        super().start()
        if not wait_for_port(self.http_port, 5.0, self.proc.popen):
            raise RuntimeError(f"HTTP port {self.http_port} not open: {self.log_tail()}")
        return self


def parse_metrics(text):
    """{name or name{labels}: float}, plus the TYPE of every family."""
    values, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values, types


def read_http_response(sock_file):
    """One response from a file over a socket: (status, headers dict lowercased, body)."""
    status_line = sock_file.readline()
    if not status_line:
        raise EOFError("connection closed before a response")
    version, status, _ = status_line.decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        line = sock_file.readline().decode("latin-1")
        if line in ("\r\n", "\n", ""):
            break
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = sock_file.read(n) if n else b""
    return int(status), headers, body


def read_until_closed(sock, timeout=5.0):
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


class HttpCase(ProxyTestCase):
    """Shared helpers: one upstream and one respite with the HTTP endpoint for the class."""

    respite_extra_args: list = []

    @classmethod
    def setUpClass(cls):
        stack = contextlib.ExitStack()
        cls.addClassCleanup(stack.close)
        cls.upstream = stack.enter_context(RedisServer())
        cls.proxy = stack.enter_context(HttpRespite(cls.upstream, cls.respite_extra_args))
        cls.port = cls.proxy.port
        cls.http_port = cls.proxy.http_port

    def http(self, timeout=10.0):
        c = http.client.HTTPConnection(HOST, self.http_port, timeout=timeout)
        self.addCleanup(c.close)
        return c

    def get(self, path, conn=None, method="GET"):
        c = conn or self.http()
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()

    def lookup(self, key, db=None, conn=None):
        q = {"key": key}
        if db is not None:
            q["db"] = db
        return self.get("/lookup?" + urllib.parse.urlencode(q), conn)

    def metrics(self):
        status, headers, body = self.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"), headers)
        return parse_metrics(body.decode())

    def raw(self, timeout=5.0):
        s = socket.create_connection((HOST, self.http_port), timeout=timeout)
        self.addCleanup(s.close)
        return s

    def get_auth(self, path, authorization=None, method="GET"):
        c = self.http()
        c.request(method, path, headers={"Authorization": authorization} if authorization else {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()

    def assert_401(self, status, headers, body, head=False):
        self.assertEqual(status, 401, body)
        self.assertEqual(headers.get("www-authenticate"), 'Basic realm="respite"')
        self.assertEqual(headers.get("content-type"), "application/json")
        if not head:
            doc = json.loads(body)
            self.assertEqual(doc["status"], 401)
            self.assertTrue(doc["error"])
            self.assertNotIn("value", doc)

    def wait_tracking_up(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proxy_info(self.port)["tracking_link"] == "up":
                return
            time.sleep(0.05)
        self.fail("tracking link not up")


@respite_only
class Lookup(HttpCase):

    def setUp(self):
        self.up().flushall()

    def test_lookup_found(self):
        self.up().set("hk", "hello world")
        status, headers, body = self.lookup("hk")
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(json.loads(body), {"key": "hk", "value": "hello world", "status": 200})

    def test_lookup_missing_is_404(self):
        status, headers, body = self.lookup("respite:http:absent")
        self.assertEqual(status, 404)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(json.loads(body),
                         {"key": "respite:http:absent", "status": 404, "error": "not found"})

    def test_no_key_is_400(self):
        for path in ["/lookup", "/lookup?", "/lookup?other=1", "/lookup?key=", "/lookup?key",
                     "/lookup?key=%zz", "/lookup?key=a%2", "/lookup?key=a&key=b",
                     "/lookup?key=a&db=x", "/lookup?key=a&db=-1", "/lookup?key=a&db=99999"]:
            with self.subTest(path=path):
                status, headers, body = self.get(path)
                self.assertEqual(status, 400, body)
                doc = json.loads(body)
                self.assertEqual(doc["status"], 400)
                self.assertTrue(doc["error"])

    def test_url_decoding_and_db(self):
        key = "a b/c&d=e+f%ü"
        self.up().set(key, "v0")
        status, _, body = self.lookup(key)
        self.assertEqual((status, json.loads(body)), (200, {"key": key, "value": "v0", "status": 200}))
        # '+' is a space; %2B a plus sign.
        self.up().set("x y", "space")
        self.up().set("x+y", "plus")
        self.assertEqual(json.loads(self.get("/lookup?key=x+y")[2])["value"], "space")
        self.assertEqual(json.loads(self.get("/lookup?key=x%2By")[2])["value"], "plus")
        # db=N reads that database.
        db3 = self.upstream.client(db=3)
        db3.set("hk3", "in db 3")
        self.assertEqual(self.lookup("hk3")[0], 404)
        status, _, body = self.lookup("hk3", db=3)
        self.assertEqual((status, json.loads(body)["value"]), (200, "in db 3"))

    def test_json_escaping_and_binary_values(self):
        value = 'q"b\\s/\n\r\t\x00\x01\x1f\x7f é 日本 🎉'
        self.up().set("esc", value.encode())
        status, _, body = self.lookup("esc")
        self.assertEqual(status, 200)
        self.assertNotIn(b"\n", body)
        self.assertNotIn(b"\x00", body)
        doc = json.loads(body)
        self.assertEqual(doc["value"], value)
        self.assertNotIn("value_base64", doc)
        raw = b"\xff\xfeok\xc3"  # not UTF-8: replacement characters plus the exact bytes
        self.up().set("bin", raw)
        doc = json.loads(self.lookup("bin")[2])
        self.assertEqual(doc["value"], "\ufffd\ufffdok\ufffd")
        self.assertEqual(base64.b64decode(doc["value_base64"]), raw)
        self.up().set("empty", "")
        self.assertEqual(json.loads(self.lookup("empty")[2])["value"], "")

    def test_wrong_type_is_409(self):
        self.up().rpush("alist", "x")
        status, _, body = self.lookup("alist")
        self.assertEqual(status, 409, body)
        self.assertTrue(json.loads(body)["error"].startswith("WRONGTYPE"))

    def test_second_lookup_is_a_cache_hit(self):
        self.wait_tracking_up()
        self.up().set("cached", "v")
        before = int(proxy_info(self.port)["cache_hits"])
        gets = self.upstream_gets()
        self.assertEqual(self.lookup("cached")[0], 200)
        self.assertEqual(self.lookup("cached")[0], 200)
        self.assertEqual(int(proxy_info(self.port)["cache_hits"]), before + 1)
        self.assertEqual(self.upstream_gets() - gets, 1, "the second lookup reached the upstream")

    def test_lookup_sees_writes_through_respite(self):
        self.wait_tracking_up()
        px = self.px()
        px.set("rw", "one")
        self.assertEqual(json.loads(self.lookup("rw")[2])["value"], "one")
        px.set("rw", "two")
        self.assertEqual(json.loads(self.lookup("rw")[2])["value"], "two")
        px.delete("rw")
        self.assertEqual(self.lookup("rw")[0], 404)

    def upstream_gets(self):
        return harness.commandstats(self.upstream.port).get("get", 0)

    def test_metrics(self):
        values, types = self.metrics()
        for name in ["respite_cache_hits_total", "respite_cache_misses_total", "respite_up",
                     "respite_connected_clients", "respite_commands_processed_total"]:
            self.assertIn(name, values)
        self.assertEqual(types["respite_cache_hits_total"], "counter")
        self.assertEqual(types["respite_cache_misses_total"], "counter")
        self.assertEqual(types["respite_cache_keys"], "gauge")
        self.assertEqual(values["respite_up"], 1.0)
        # Every sample belongs to a family with a TYPE line, and every family has HELP.
        _, _, body = self.get("/metrics")
        text = body.decode()
        for name in values:
            self.assertIn(name.split("{")[0], types)
            self.assertIn(f"# HELP {name.split('{')[0]} ", text)
        for line in text.splitlines():
            if not line.startswith("#"):
                self.assertRegex(line, r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+]+$')

    def test_metrics_counters_increase(self):
        self.wait_tracking_up()
        self.up().set("m1", "v")
        v0, _ = self.metrics()
        self.lookup("m1")           # miss
        self.lookup("m1")           # hit
        self.lookup("m-absent")     # miss
        v1, _ = self.metrics()
        self.assertGreaterEqual(v1["respite_cache_misses_total"] - v0["respite_cache_misses_total"], 2)
        self.assertGreaterEqual(v1["respite_cache_hits_total"] - v0["respite_cache_hits_total"], 1)
        self.assertGreater(v1['respite_http_responses_total{code="200"}'],
                           v0.get('respite_http_responses_total{code="200"}', 0))

    def test_healthz(self):
        status, headers, body = self.get("/healthz")
        self.assertEqual((status, body), (200, b"ok\n"))

    def test_other_paths_and_methods(self):
        self.assertEqual(self.get("/nope")[0], 404)
        self.assertEqual(self.get("/lookup/")[0], 404)
        status, headers, _ = self.get("/lookup?key=hk", method="POST")
        self.assertEqual(status, 405)
        self.assertEqual(headers.get("allow"), "GET, HEAD")
        self.assertEqual(self.get("/healthz", method="DELETE")[0], 405)
        # HEAD: same status and headers, no body.
        c = self.http()
        c.request("HEAD", "/healthz")
        r = c.getresponse()
        self.assertEqual((r.status, r.getheader("Content-Length"), r.read()), (200, "3", b""))
        # Absolute-form targets work like origin-form ones.
        self.up().set("abs", "1")
        status, _, body = self.get(f"http://{HOST}:{self.http_port}/lookup?key=abs")
        self.assertEqual((status, json.loads(body)["value"]), (200, "1"))

    def test_keep_alive_two_requests_one_connection(self):
        self.up().set("ka", "v")
        c = self.http()
        status1, _, body1 = self.lookup("ka", conn=c)
        sock1 = c.sock
        status2, _, body2 = self.get("/healthz", conn=c)
        self.assertIs(c.sock, sock1, "http.client reconnected: the connection was not kept alive")
        self.assertEqual((status1, status2), (200, 200))
        self.assertEqual(json.loads(body1)["value"], "v")
        status3, _, _ = self.lookup("ka-missing", conn=c)
        self.assertEqual(status3, 404)
        self.assertIs(c.sock, sock1)

    def test_pipelined_requests_answered_in_order(self):
        self.up().set("p1", "one")
        self.up().set("p3", "three")
        s = self.raw()
        reqs = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in
                        [b"/lookup?key=p1", b"/healthz", b"/lookup?key=p2", b"/metrics",
                         b"/lookup?key=p3"] * 20)
        s.sendall(reqs)
        f = s.makefile("rb")
        for _ in range(20):
            got = [read_http_response(f) for _ in range(5)]
            self.assertEqual([g[0] for g in got], [200, 200, 404, 200, 200])
            self.assertEqual(json.loads(got[0][2])["value"], "one")
            self.assertEqual(got[1][2], b"ok\n")
            self.assertEqual(json.loads(got[2][2])["key"], "p2")
            self.assertIn(b"respite_cache_hits_total", got[3][2])
            self.assertEqual(json.loads(got[4][2])["value"], "three")

    def test_many_pipelined_requests(self):
        # More than the owed-responses bound: reading pauses and resumes, nothing is lost.
        self.up().set("pp", "v")
        s = self.raw(timeout=20)
        n = 2000
        s.sendall(b"GET /lookup?key=pp HTTP/1.1\r\n\r\n" * n)
        f = s.makefile("rb")
        for i in range(n):
            status, _, body = read_http_response(f)
            self.assertEqual(status, 200, i)
        self.assertEqual(json.loads(body)["value"], "v")

    def test_split_request(self):
        self.up().set("split", "s")
        s = self.raw()
        req = b"GET /lookup?key=split HTTP/1.1\r\nHost: x\r\n\r\n"
        for i in range(len(req)):
            s.sendall(req[i:i + 1])
            time.sleep(0.002)
        status, _, body = read_http_response(s.makefile("rb"))
        self.assertEqual((status, json.loads(body)["value"]), (200, "s"))

    def test_http10_closes_unless_keep_alive(self):
        s = self.raw()
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        data, closed = read_until_closed(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data)
        self.assertIn(b"Connection: close", data)
        self.assertTrue(closed)
        s = self.raw()
        s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        f = s.makefile("rb")
        for _ in range(2):
            status, headers, _ = read_http_response(f)
            self.assertEqual((status, headers.get("connection")), (200, "keep-alive"))

    def test_connection_close_header(self):
        s = self.raw()
        s.sendall(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
        data, closed = read_until_closed(s)
        self.assertEqual(data.count(b"HTTP/1.1 200"), 1, data)
        self.assertTrue(closed)

    def test_bad_request_closes_after_owed_responses(self):
        self.up().set("b1", "x")
        s = self.raw()
        s.sendall(b"GET /lookup?key=b1 HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
        data, closed = read_until_closed(s)
        first, rest = data.split(b"\r\n\r\n", 1)
        self.assertTrue(first.startswith(b"HTTP/1.1 200 OK"), data)
        self.assertIn(b"HTTP/1.1 400 Bad Request", rest)
        self.assertIn(b"Connection: close", rest)
        self.assertTrue(closed)

    def test_header_and_body_limits(self):
        s = self.raw()
        s.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        data, closed = read_until_closed(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 431 "), data[:100])
        self.assertTrue(closed)
        s = self.raw()
        s.sendall(b"GET /lookup?key=" + b"k" * 40000 + b" HTTP/1.1\r\n\r\n")
        data, closed = read_until_closed(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 431 "), data[:100])
        s = self.raw()
        s.sendall(b"GET /healthz HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 100000)
        data, closed = read_until_closed(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data[:100])
        self.assertTrue(closed)
        # Chunked bodies are counted as they arrive.
        s = self.raw()
        chunk = b"%x\r\n%s\r\n" % (30000, b"y" * 30000)
        s.sendall(b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n")
        data, closed = read_until_closed(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data[:100])
        # A small body is read and ignored.
        s = self.raw()
        s.sendall(b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /healthz HTTP/1.1\r\n\r\n")
        f = s.makefile("rb")
        self.assertEqual(read_http_response(f)[0], 200)
        self.assertEqual(read_http_response(f)[0], 200)

    def test_client_gone_before_the_value_arrives(self):
        # The lookup is in flight upstream when its connection closes; the answer arriving later
        # must not touch the closed connection.
        self.up().set("orphan", "v")
        self.px().execute_command("PROXY", "CACHE", "FLUSH")
        socks = []
        self.upstream.pause_process()
        try:
            for _ in range(5):
                s = socket.create_connection((HOST, self.http_port), timeout=5)
                s.sendall(b"GET /lookup?key=orphan HTTP/1.1\r\n\r\n")
                socks.append(s)
            time.sleep(0.2)
            for s in socks:
                s.close()
            time.sleep(0.2)
        finally:
            self.upstream.resume_process()
        time.sleep(0.2)
        self.proxy.assert_alive()
        status, _, body = self.lookup("orphan")
        self.assertEqual((status, json.loads(body)["value"]), (200, "v"))


@respite_only
class UpstreamDown(HttpCase):
    respite_extra_args = ["--upstream-timeout-ms", "500"]

    def test_healthz_and_lookup_503_when_upstream_stops(self):
        # Healthy once every loop has its upstream connection up: with two loops and a busy
        # machine that can come a little after respite's port opens.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.get("/healthz")[0] != 200:
            time.sleep(0.05)
        self.assertEqual(self.get("/healthz")[0], 200)
        self.upstream.stop()
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            status, _, body = self.get("/healthz")
            if status == 503:
                break
            time.sleep(0.05)
        self.assertEqual(status, 503)
        status, headers, body = self.lookup("anything")
        self.assertEqual(status, 503, body)
        doc = json.loads(body)
        self.assertEqual((doc["status"], doc["key"]), (503, "anything"))
        self.assertTrue(doc["error"])
        values, _ = self.metrics()
        self.assertEqual(values["respite_up"], 0.0)
        # Back on the same port: healthy again.
        self.upstream.restart_same_port()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.get("/healthz")[0] != 200:
            time.sleep(0.1)
        self.assertEqual(self.get("/healthz")[0], 200)

    def test_lookup_503_when_upstream_hangs(self):
        delay = MachineDelay()
        self.addCleanup(delay.stop)
        self.upstream.pause_process()
        try:
            t0 = time.monotonic()
            status, _, body = self.lookup("hung")
            took = time.monotonic() - t0
        finally:
            self.upstream.resume_process()
        self.assertEqual(status, 503, body)
        # Within --upstream-timeout-ms 500 (+ the machine's lateness, measured meanwhile).
        self.assertLess(took, delay.allow(0.5), delay.describe(0.5))


@respite_only
class Limits(HttpCase):
    respite_extra_args = ["--maxclients", "3"]

    def test_maxclients_applies_to_http_connections(self):
        held = []
        for _ in range(3):
            c = self.http()
            self.assertEqual(self.get("/healthz", conn=c)[0], 200)
            held.append(c)
        s = self.raw()
        s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        data, closed = read_until_closed(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 503 "), data)
        self.assertIn(b"max number of clients reached", data)
        self.assertTrue(closed)
        s.close()
        # One slot frees up: a new connection is served (once respite has seen the close).
        held.pop().close()
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            c = http.client.HTTPConnection(HOST, self.http_port, timeout=5)
            with contextlib.suppress(OSError, http.client.HTTPException):
                status = self.get("/healthz", conn=c)[0]
            c.close()
            if status == 200:
                break
            time.sleep(0.05)
        self.assertEqual(status, 200)


PASSWORD = "http-s3cret"


def basic_auth(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def status_kb(pid, field):
    """A /proc/<pid>/status size field (VmRSS, VmHWM) in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@respite_only
class Auth(HttpCase):
    """With --requirepass: /lookup and (by default) /metrics need the password, /healthz not."""
    respite_extra_args = ["--requirepass", PASSWORD]

    def test_lookup_needs_the_password(self):
        self.up().set("secret-key", "secret value")
        path = "/lookup?key=secret-key"
        self.assert_401(*self.get_auth(path))
        self.assert_401(*self.get_auth(path + "&db=1"))
        self.assert_401(*self.get_auth(path, method="HEAD"), head=True)
        for wrong in [basic_auth("default", "wrong"), basic_auth("default", PASSWORD + "x"),
                      basic_auth("default", ""), "Bearer wrong", "Bearer " + PASSWORD[:-1],
                      "Bearer", "Basic !!!", "Digest " + PASSWORD, PASSWORD]:
            with self.subTest(authorization=wrong):
                self.assert_401(*self.get_auth(path, wrong))
        for right in [basic_auth("default", PASSWORD), basic_auth("someone", PASSWORD),
                      "Bearer " + PASSWORD, "bearer " + PASSWORD]:
            with self.subTest(authorization=right):
                status, headers, body = self.get_auth(path, right)
                self.assertEqual(status, 200, body)
                self.assertEqual(json.loads(body),
                                 {"key": "secret-key", "value": "secret value", "status": 200})

    def test_authorization_header_edge_cases(self):
        self.up().set("ak", "v")
        # An empty Authorization value, and a second Authorization header: refused.
        for headers in [b"Authorization:\r\nX-Other: " + PASSWORD.encode() + b"\r\n",
                        b"Authorization: Bearer " + PASSWORD.encode() + b"\r\n"
                        b"Authorization: Bearer wrong\r\n"]:
            s = self.raw()
            s.sendall(b"GET /lookup?key=ak HTTP/1.1\r\n" + headers + b"\r\n")
            self.assert_401(*read_http_response(s.makefile("rb")))
        # After a header with an empty value, Authorization is still recognised.
        s = self.raw()
        s.sendall(b"GET /lookup?key=ak HTTP/1.1\r\nX-Empty:\r\nAuthorization: Bearer " +
                  PASSWORD.encode() + b"\r\n\r\n")
        self.assertEqual(read_http_response(s.makefile("rb"))[0], 200)
        # The header split into one-byte pieces (names and values arrive in parts), then a
        # second request on the same connection without it: the password is per request.
        s = self.raw()
        req = (b"GET /lookup?key=ak HTTP/1.1\r\nX-A: 1\r\nAuthorization: Bearer " +
               PASSWORD.encode() + b"\r\nX-B: 2\r\n\r\n")
        for i in range(len(req)):
            s.sendall(req[i:i + 1])
            time.sleep(0.001)
        f = s.makefile("rb")
        status, _, body = read_http_response(f)
        self.assertEqual((status, json.loads(body)["value"]), (200, "v"))
        s.sendall(b"GET /lookup?key=ak HTTP/1.1\r\n\r\n")
        self.assert_401(*read_http_response(f))

    def test_healthz_is_open(self):
        self.assertEqual(self.get_auth("/healthz")[:3:2], (200, b"ok\n"))

    def test_metrics_need_the_password_by_default(self):
        self.assert_401(*self.get_auth("/metrics"))
        status, headers, body = self.get_auth("/metrics", "Bearer " + PASSWORD)
        self.assertEqual(status, 200)
        self.assertIn(b"respite_up 1", body)
        values, _ = parse_metrics(body.decode())
        self.assertGreaterEqual(values['respite_http_responses_total{code="401"}'], 1)


@respite_only
class AuthMetricsOpen(HttpCase):
    """--http-metrics-auth no: /metrics is open, /lookup still needs the password."""
    respite_extra_args = ["--requirepass", PASSWORD, "--http-metrics-auth", "no"]

    def test_metrics_open_lookup_not(self):
        status, _, body = self.get_auth("/metrics")
        self.assertEqual(status, 200, body)
        self.assertIn(b"respite_up 1", body)
        self.up().set("k", "v")
        self.assert_401(*self.get_auth("/lookup?key=k"))
        self.assertEqual(self.get_auth("/lookup?key=k", "Bearer " + PASSWORD)[0], 200)


@respite_only
class MaxValue(HttpCase):
    respite_extra_args = ["--http-max-value", "1000"]

    def test_value_over_http_max_value_is_413(self):
        self.up().set("at-limit", b"\x01" * 1000)
        self.up().set("over-limit", b"\x01" * 1001)
        status, _, body = self.lookup("at-limit")
        self.assertEqual(status, 200, body[:200])
        self.assertEqual(json.loads(body)["value"], "\x01" * 1000)
        c = self.http()
        status, headers, body = self.lookup("over-limit", conn=c)
        self.assertEqual(status, 413, body[:200])
        self.assertEqual(headers["content-type"], "application/json")
        doc = json.loads(body)
        self.assertEqual((doc["status"], doc["key"]), (413, "over-limit"))
        self.assertIn("1001", doc["error"])
        self.assertNotIn("value", doc)
        # The connection stays usable.
        self.assertEqual(self.lookup("at-limit", conn=c)[0], 200)


@respite_only
class PipelinedBigValues(HttpCase):
    """128 pipelined /lookups of a 1 MiB value of control bytes (each ~5.6 MB of JSON) on one
    connection that does not read: respite stays responsive and its memory bounded."""

    def test_flood_of_big_lookups_from_a_client_that_does_not_read(self):
        value = bytes(range(32)) * (1 << 15)  # 1 MiB, every byte escaped as \u00XX or \n...
        self.assertEqual(len(value), 1 << 20)
        self.up().set("big-ctl", value)
        self.up().set("probe-k", "probe-v")
        probe = RawConn(self.port, timeout=5)
        self.addCleanup(probe.close)
        self.assertEqual(probe.call("PING"), "PONG")
        # The control: one whole /lookup of the value on this machine now (respite encodes it,
        # the test reads it). A probe may wait for one such encoding, not for the flood's 128.
        delay = MachineDelay()
        self.addCleanup(delay.stop)
        one = 0.0
        for _ in range(3):
            t0 = time.monotonic()
            self.assertEqual(self.lookup("big-ctl")[0], 200)
            one = max(one, time.monotonic() - t0)
        flood = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(flood.close)
        flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        flood.settimeout(10)
        flood.connect((HOST, self.http_port))
        flood.sendall(b"GET /lookup?key=big-ctl HTTP/1.1\r\nHost: x\r\n\r\n" * 128)
        worst, worst_what, rss_max = 0.0, None, 0
        for i in range(20):
            time.sleep(0.15)
            cmd = ("PING",) if i % 2 == 0 else ("GET", "probe-k")
            t0 = time.monotonic()
            try:
                reply = probe.call(*cmd, timeout=5)
            except TimeoutError:
                self.fail(f"probe {i} {cmd} got no reply within 5 s")
            took = time.monotonic() - t0
            self.assertEqual(reply, "PONG" if i % 2 == 0 else b"probe-v")
            if took > worst:
                worst, worst_what = took, (i, cmd)
            rss_max = max(rss_max, status_kb(self.proxy.pid, "VmRSS"))
        hwm = status_kb(self.proxy.pid, "VmHWM")
        late = delay.measured()
        bound = CONTROL_FACTOR * (one + late)
        print(f"\n  worst probe {worst * 1000:.1f} ms {worst_what} (bound {bound * 1000:.0f} ms = "
              f"{CONTROL_FACTOR} x (one /lookup {one * 1000:.0f} ms + machine lateness "
              f"{late * 1000:.0f} ms)); VmRSS max {rss_max // 1024} MB, "
              f"VmHWM {hwm // 1024} MB", flush=True)
        self.assertLess(worst, bound, f"a RESP probe waited {worst:.2f} s {worst_what}")
        self.assertLess(hwm, 300 * 1024, f"respite's peak RSS {hwm // 1024} MB")
        # The flood connection still gets its answers, in order, once it reads (past the first
        # batch of owed requests: parsing resumed).
        f = flood.makefile("rb")
        for n in range(24):
            status, _, body = read_http_response(f)
            self.assertEqual(status, 200, n)
            if n in (0, 23):
                doc = json.loads(body)
                self.assertEqual(doc["value"].encode("latin-1"), value)
        flood.close()
        self.assertEqual(probe.call("GET", "probe-k"), b"probe-v")


@respite_only
class Shutdown(unittest.TestCase):

    def test_sigterm_with_http_connections_exits_within_5s(self):
        with RedisServer() as up, HttpRespite(up) as px:
            idle = socket.create_connection((HOST, px.http_port), timeout=5)
            idle.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            read_http_response(idle.makefile("rb"))
            px.proc.popen.send_signal(signal.SIGTERM)
            rc = px.proc.popen.wait(timeout=5)
            self.assertEqual(rc, 0)
            data, closed = read_until_closed(idle, 2)
            self.assertTrue(closed)
            idle.close()


if __name__ == "__main__":
    harness.run_tests()
