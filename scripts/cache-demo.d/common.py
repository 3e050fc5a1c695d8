"""Shared pieces of scripts/eviction-demo, scripts/stampede-demo and scripts/hit-ratio.

Standard library only (Debian's /usr/bin/python3). Starts a throwaway redis-server and respite on
free loopback ports, talks RESP over raw sockets (pipelined reads, fast reply counting), and reads
the two witnesses of upstream traffic: the upstream redis-server's own `INFO commandstats` and
respite's `PROXY INFO cache`.

Every process is started by this module, remembered by pid, and stopped by pid (SIGTERM, then
SIGKILL after a bound) on exit, on an exception and on SIGINT/SIGTERM; children also get
PR_SET_PDEATHSIG so they die with the script even if it is SIGKILLed.
"""
import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import resp_client  # noqa: E402
from resp_client import RespError, encode, parse_info  # noqa: E402,F401  (re-exported)

HOST = "127.0.0.1"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
POLICIES = ["noeviction", "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu",
            "allkeys-random", "volatile-random", "volatile-ttl", "tinylfu"]


def log(msg=""):
    print(msg, flush=True)


def respite_bin():
    b = os.environ.get("RESPITE_BIN")
    if not b:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        b = os.path.join(root, "build", "release", "respite")
    b = os.path.abspath(b)
    if not os.access(b, os.X_OK):
        sys.exit("respite binary not found: %s (build it, or set RESPITE_BIN)" % b)
    return b


# ---------------------------------------------------------------------------------------------
# Processes.

_live = {}  # pid -> Popen
_libc = None
with contextlib.suppress(Exception):
    _libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    if _libc is not None:
        with contextlib.suppress(Exception):
            _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def stop_pid(p, timeout=5.0):
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5.0)
    _live.pop(p.pid, None)


def _stop_all():
    for p in list(_live.values()):
        stop_pid(p, timeout=2.0)


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as s:
                s.settimeout(1.0)
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


class Server:
    """One started process listening on a loopback port; stop() by pid."""

    def __init__(self, name, argv_for_port, tmp):
        self.name = name
        last = ""
        for _ in range(5):  # another process may take the free port meanwhile: retry
            port = free_port()
            logpath = os.path.join(tmp, "%s-%d.log" % (name, port))
            with open(logpath, "ab") as logf:
                p = subprocess.Popen(argv_for_port(port), stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=tmp, preexec_fn=_child_setup)
            _live[p.pid] = p
            if _wait_port(port, p):
                self.port, self.proc, self.logpath = port, p, logpath
                return
            stop_pid(p, 1.0)
            with contextlib.suppress(OSError), open(logpath, errors="replace") as f:
                last = f.read()[-2000:]
        raise RuntimeError("%s did not start: %s" % (name, last))

    def stop(self):
        stop_pid(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="respite-demo-")

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
        return False


def start_redis(tmp, extra=()):
    return Server("redis", lambda port: [REDIS_SERVER, "--port", str(port), "--bind", HOST,
                                         "--save", "", "--appendonly", "no", "--daemonize", "no",
                                         "--dir", tmp, "--logfile", ""] + list(extra), tmp)


def start_respite(tmp, upstream_port, args, wait_cache=True):
    b = respite_bin()
    s = Server("respite", lambda port: [b, "--port", str(port), "--bind", HOST, "--upstream",
                                        "%s:%d" % (HOST, upstream_port)] + list(args), tmp)
    if wait_cache:
        try:
            wait_cache_usable(s.port)
        except BaseException:
            s.stop()
            raise
    return s


def wait_cache_usable(port, timeout=10.0):
    """respite reads through to the upstream, caching nothing, until its invalidation link is
    up. Waits (bounded) for `tracking_link:up` in PROXY INFO cache, or, from a respite that does
    not report it, for a probe key to be cached; the probe entry is flushed again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Conn(port) as c:
            info = parse_info(c.call("PROXY", "INFO", "cache"))
            if "tracking_link" in info:
                if info["tracking_link"] == "up":
                    return
            else:
                c.call("GET", "__respite_demo_probe__")
                if int(proxy_cache_info(port).get("cache_keys", 0)) > 0:
                    c.call("PROXY", "CACHE", "FLUSH")
                    return
        time.sleep(0.02)
    raise RuntimeError("respite's cache did not become usable within %.0f s" % timeout)


# ---------------------------------------------------------------------------------------------
# RESP over a raw socket: the scripts' shared client (scripts/lib/resp_client.py), plus reply
# counting for the demos' big pipelined reads.

class Conn(resp_client.Conn):
    def count_bulk_replies(self, n):
        """Reads n replies that must be bulk strings or nil; returns (values, nils, errors)
        without building objects for the values."""
        vals = nils = errs = 0
        for _ in range(n):
            line = self._line()
            t = line[:1]
            if t == b"$":
                ln = int(line[1:])
                if ln < 0:
                    nils += 1
                    continue
                while len(self.buf) - self.pos < ln + 2:
                    self._more()
                self.pos += ln + 2
                vals += 1
            elif t == b"-":
                errs += 1
            else:
                raise ValueError("unexpected reply %r" % line[:80])
        return vals, nils, errs


def get_cmd(key):
    k = key.encode() if isinstance(key, str) else key
    return b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k)


def read_keys(conn, keys, batch=256):
    """GETs every key (pipelined in batches). Returns (values, nils, errors)."""
    tv = tn = te = 0
    for i in range(0, len(keys), batch):
        part = keys[i:i + batch]
        conn.send(b"".join(get_cmd(k) for k in part))
        v, n, e = conn.count_bulk_replies(len(part))
        tv += v
        tn += n
        te += e
    return tv, tn, te


def proxy_cache_info(port):
    """respite's PROXY INFO cache, numbers as ints."""
    with Conn(port) as c:
        r = c.call("PROXY", "INFO", "cache")
    if isinstance(r, RespError) or r is None:
        raise RuntimeError("PROXY INFO cache failed: %r" % (r,))
    out = {}
    for k, v in parse_info(r).items():
        try:
            out[k] = int(v)
        except ValueError:
            with contextlib.suppress(ValueError):
                out[k] = float(v)
    return out


def upstream_calls(port):
    """calls per command (get, mget, pttl, ...) from the upstream's INFO commandstats."""
    with Conn(port) as c:
        r = c.call("INFO", "commandstats")
    out = {}
    for k, v in parse_info(r).items():
        if k.startswith("cmdstat_"):
            fields = dict(x.split("=", 1) for x in v.split(","))
            out[k[len("cmdstat_"):]] = int(fields.get("calls", 0))
    return out


class FetchWitness:
    """Upstream reads between two points, counted on the upstream itself: GET and MGET calls
    (fetch commands) and PTTL calls (respite sends one PTTL per key it fetches, so this is the
    number of keys fetched)."""

    def __init__(self, upstream_port):
        self.port = upstream_port
        self.reset()

    def reset(self):
        self.base = upstream_calls(self.port)

    def diff(self):
        now = upstream_calls(self.port)
        d = {k: now.get(k, 0) - self.base.get(k, 0) for k in ("get", "mget", "pttl")}
        # INFO itself is not counted by the keys we look at.
        return d


def set_config(port, name, value):
    with Conn(port) as c:
        r = c.call("PROXY", "CONFIG", "SET", name, str(value))
    if isinstance(r, RespError):
        raise RuntimeError("PROXY CONFIG SET %s %s: %s" % (name, value, r))


def load_upstream(port, items, batch=1000):
    """SETs (key, value, ex_seconds_or_None) directly on the upstream, pipelined."""
    with Conn(port) as c:
        for i in range(0, len(items), batch):
            cmds = []
            for k, v, ex in items[i:i + batch]:
                cmds.append(encode("SET", k, v) if ex is None else encode("SET", k, v, "EX", ex))
            for r in c.pipeline(cmds):
                if isinstance(r, RespError):
                    raise RuntimeError("upstream SET: %s" % r)


def gnuplot_available():
    return shutil.which("gnuplot") is not None


def run_gnuplot(script, cwd):
    p = subprocess.run(["gnuplot"], input=script.encode(), cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        log("gnuplot failed: %s" % p.stdout.decode(errors="replace")[-500:])
        return False
    return True


class UpstreamMonitor:
    """MONITOR on the upstream: which keys respite fetched, one by one. collect() ends the
    window with an ECHO of a unique marker sent straight to the upstream; everything respite
    made the upstream execute before its replies reached us is in the stream before it."""

    def __init__(self, upstream_port):
        self.port = upstream_port
        self.conn = Conn(upstream_port)
        r = self.conn.call("MONITOR")
        if r != "OK":
            raise RuntimeError("MONITOR: %r" % (r,))
        self.n = 0

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def collect(self, timeout=30.0):
        """Returns the list of argument lists seen since the previous collect()."""
        self.n += 1
        marker = "respite-demo-marker-%d-%d" % (os.getpid(), self.n)
        with Conn(self.port) as c:
            c.call("ECHO", marker)
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.conn._line().decode("latin-1")
            args = _monitor_args(line)
            if args[:2] == ["ECHO", marker] or args[:2] == ["echo", marker]:
                return out
            out.append(args)
        raise RuntimeError("MONITOR marker not seen")


def _monitor_args(line):
    # +1700000000.123456 [0 127.0.0.1:5555] "GET" "key"
    i = line.find("] ")
    if i < 0:
        return []
    s = line[i + 2:]
    args, cur, inq, j = [], [], False, 0
    while j < len(s):
        ch = s[j]
        if inq:
            if ch == "\\" and j + 1 < len(s):
                nxt = s[j + 1]
                if nxt == "x" and j + 3 < len(s):
                    cur.append(chr(int(s[j + 2:j + 4], 16)))
                    j += 4
                    continue
                cur.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
                j += 2
                continue
            if ch == '"':
                inq = False
                args.append("".join(cur))
                cur = []
            else:
                cur.append(ch)
        elif ch == '"':
            inq = True
        j += 1
    return args


def fetched_keys(monitor_args):
    """Keys read by GET/MGET in a list of MONITOR argument lists."""
    keys = []
    for a in monitor_args:
        if not a:
            continue
        cmd = a[0].upper()
        if cmd == "GET" and len(a) == 2:
            keys.append(a[1])
        elif cmd == "MGET":
            keys.extend(a[1:])
    return keys
