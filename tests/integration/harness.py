"""Process and socket harness for respite's integration tests.

Standard library only (redis-py is imported lazily by the helpers that return a client).

- Free loopback ports: bind port 0 on 127.0.0.1, release, and retry the whole start with a new
  port if the process fails to come up (someone else may have taken the port meanwhile).
- RedisServer / Respite: context managers that start a subprocess, wait for its port with a
  bounded loop and stop it by pid (SIGTERM, then SIGKILL after a bound). Children also get
  PR_SET_PDEATHSIG so that they die with the test process even if it is SIGKILLed.
- Raw sockets: send bytes, read until N complete RESP replies, until close, or until quiet,
  always with a deadline; a small RESP2/RESP3 reply reader for raw-socket tests.

Environment:
  RESPITE_BIN      path of the respite binary (default <repo>/build/respite)
  RESPITE_DIRECT=1 point the tests at redis-server itself instead of respite (to check that the
                   tests are right); tests about respite-only behaviour skip themselves then.
  RESPITE_KEEP_LOGS=1  print the tail of every respite log when it is stopped.
  RESPITE_THREADS=N    start every respite with `--threads N` unless the test passes its own
                       --threads (CTest's integration_threads2.* entries set 2).
"""

from __future__ import annotations

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
import threading
import time
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
REDIS_BENCHMARK = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"
HOST = "127.0.0.1"

DIRECT = os.environ.get("RESPITE_DIRECT", "") not in ("", "0")
THREADS = os.environ.get("RESPITE_THREADS", "").strip()

START_ATTEMPTS = 5
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def respite_bin() -> str:
    env = os.environ.get("RESPITE_BIN")
    if env:
        return env
    for cand in (REPO / "build" / "respite", REPO / "build" / "proxy" / "respite"):
        if cand.exists():
            return str(cand)
    return str(REPO / "build" / "respite")


def with_threads(args: list[str]) -> list[str]:
    """respite's arguments with `--threads RESPITE_THREADS` added, unless unset or the arguments
    name --threads themselves. Every respite a test starts goes through here."""
    if not THREADS or any(a == "--threads" or a.startswith("--threads=") for a in args):
        return list(args)
    return list(args) + ["--threads", THREADS]


def respite_argv(*args: str) -> list[str]:
    """The command line of a respite a test starts itself (not through Respite)."""
    return [respite_bin()] + with_threads(list(args))


# --------------------------------------------------------------------------------------------
# Process bookkeeping: everything we start is remembered and killed at exit, whatever happens.

_live: dict[int, subprocess.Popen] = {}
_live_lock = threading.Lock()


def _kill_all_live() -> None:
    with _live_lock:
        procs = list(_live.values())
    for p in procs:
        _stop_popen(p, timeout=2.0)


atexit.register(_kill_all_live)


def _sigterm_to_exit(signum, frame):  # ctest timeout sends SIGTERM: unwind so cleanups run
    raise SystemExit(128 + signum)


if threading.current_thread() is threading.main_thread():
    with contextlib.suppress(Exception):
        signal.signal(signal.SIGTERM, _sigterm_to_exit)

_libc = None
with contextlib.suppress(Exception):
    _libc = ctypes.CDLL(None, use_errno=True)


def _child_setup() -> None:
    # Die with the parent (PR_SET_PDEATHSIG = 1), so a SIGKILLed test leaves nothing behind.
    if _libc is not None:
        with contextlib.suppress(Exception):
            _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def _stop_popen(p: subprocess.Popen, timeout: float = STOP_TIMEOUT, sig=signal.SIGTERM):
    """Stop one process by pid: sig, wait up to timeout, then SIGKILL. Returns its exit code."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5.0)
    with _live_lock:
        _live.pop(p.pid, None)
    return p.returncode


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(port: int, timeout: float = START_TIMEOUT, proc: subprocess.Popen | None = None,
                  ping: bool = False) -> bool:
    """Bounded wait until the port accepts connections (and answers PING if ping=True).
    Returns False on timeout or if proc exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as s:
                if not ping:
                    return True
                s.settimeout(1.0)
                s.sendall(b"PING\r\n")
                data = s.recv(64)
                if data and not data.startswith(b"-LOADING"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def wait_until(pred, timeout: float, what: str) -> None:
    """Polls `pred` every 20 ms until it is true; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def wait_port_closed(port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_open(port, 0.2):
            return True
        time.sleep(0.02)
    return False


class Proc:
    """A started subprocess with a log file; stop() by pid with a bound."""

    def __init__(self, argv: list[str], log_path: Path, cwd: str | None = None, name: str = "proc"):
        self.argv = argv
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=cwd, preexec_fn=_child_setup)
        with _live_lock:
            _live[self.popen.pid] = self.popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT, sig=signal.SIGTERM):
        rc = _stop_popen(self.popen, timeout=timeout, sig=sig)
        with contextlib.suppress(Exception):
            self.log.close()
        return rc

    def kill(self):
        return self.stop(timeout=0.0, sig=signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(Exception):
            self.log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server on a free loopback port with its own temp dir."""

    def __init__(self, args: list[str] | None = None, port: int | None = None,
                 password: str | None = None):
        self.args = list(args or [])
        self.password = password
        self.port = port
        self.tmp = Path(tempfile.mkdtemp(prefix="respite-redis-"))
        self.proc: Proc | None = None

    def argv(self, port: int) -> list[str]:
        a = [REDIS_SERVER, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.tmp), "--logfile", ""]
        if self.password is not None:
            a += ["--requirepass", self.password]
        return a + self.args

    def start(self) -> "RedisServer":
        fixed = self.port is not None
        last = ""
        attempts = 1 if fixed else START_ATTEMPTS
        for _ in range(attempts):
            port = self.port if fixed else free_port()
            proc = Proc(self.argv(port), self.tmp / f"redis-{port}.log", cwd=str(self.tmp), name="redis")
            if wait_for_port(port, START_TIMEOUT, proc.popen, ping=True):
                self.port, self.proc = port, proc
                return self
            last = proc.log_tail()
            proc.stop(timeout=1.0)
        raise RuntimeError(f"redis-server did not start: {last}")

    def restart_same_port(self, timeout: float = START_TIMEOUT) -> None:
        """Start again on the same port (after kill()/stop()). Bounded retries while the port is
        still in TIME_WAIT/busy."""
        assert self.port is not None
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            proc = Proc(self.argv(self.port), self.tmp / "redis.log", cwd=str(self.tmp), name="redis")
            if wait_for_port(self.port, max(0.5, deadline - time.monotonic()), proc.popen, ping=True):
                self.proc = proc
                return
            last = proc.log_tail()
            proc.stop(timeout=1.0)
            time.sleep(0.1)
        raise RuntimeError(f"redis-server did not restart on port {self.port}: {last}")

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def kill(self):
        if self.proc is not None:
            self.proc.kill()

    def pause_process(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume_process(self):
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)

    def client(self, **kw):
        import redis
        kw.setdefault("socket_timeout", 10)
        if self.password is not None:
            kw.setdefault("password", self.password)
        return redis.Redis(host=HOST, port=self.port, **kw)

    def close(self):
        if self.proc is not None:
            self.resume_process()
            self.proc.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False


# What AddressSanitizer, LeakSanitizer and UBSan print (a build with -DRESPITE_SANITIZE=ON,
# scripts/test --sanitize). A report fails the test that stops that respite, even when the
# process survived it (UBSan without halt_on_error) or it came at exit (leaks).
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer")


def sanitizer_report(log_path: Path, context: int = 60) -> str:
    """The first sanitizer report in a log (with up to `context` lines from it), or ""."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if any(m in line for m in SANITIZER_MARKERS):
            return "\n".join(lines[i:i + context])
    return ""


class Respite:
    """respite in front of an upstream RedisServer. In RESPITE_DIRECT mode nothing is started
    and port is the upstream's port."""

    def __init__(self, upstream: RedisServer | None, args: list[str] | None = None,
                 upstream_addr: str | None = None, port: int | None = None):
        self.upstream = upstream
        self.args = list(args or [])
        self.upstream_addr = upstream_addr or (f"{HOST}:{upstream.port}" if upstream else None)
        self.port = port
        self.tmp = Path(tempfile.mkdtemp(prefix="respite-proxy-"))
        self.proc: Proc | None = None
        self.direct = DIRECT

    def argv(self, port: int) -> list[str]:
        a = ["--port", str(port), "--bind", HOST]
        if self.upstream_addr:
            a += ["--upstream", self.upstream_addr]
        return respite_argv(*a, *self.args)

    def start(self) -> "Respite":
        if self.direct:
            self.port = self.upstream.port
            return self
        binary = respite_bin()
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"respite binary not found or not executable: {binary} "
                               f"(build it, or set RESPITE_BIN)")
        fixed = self.port is not None
        last = ""
        for _ in range(1 if fixed else START_ATTEMPTS):
            port = self.port if fixed else free_port()
            proc = Proc(self.argv(port), self.tmp / f"respite-{port}.log", name="respite")
            if wait_for_port(port, START_TIMEOUT, proc.popen):
                self.port, self.proc = port, proc
                return self
            last = proc.log_tail()
            proc.stop(timeout=1.0)
        raise RuntimeError(f"respite did not start ({' '.join(self.argv(0))}): {last}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.direct or (self.proc is not None and self.proc.alive())

    def assert_alive(self):
        if not self.alive():
            rc = self.proc.popen.returncode if self.proc else None
            raise AssertionError(f"respite exited unexpectedly (rc={rc}); log tail:\n"
                                 f"{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return self.proc.log_tail(lines) if self.proc else ""

    def client(self, **kw):
        import redis
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host=HOST, port=self.port, **kw)

    def stop(self, timeout: float = STOP_TIMEOUT):
        if self.proc is None:
            return None
        crashed = not self.proc.alive()
        rc = self.proc.stop(timeout=timeout)
        if crashed or os.environ.get("RESPITE_KEEP_LOGS"):
            sys.stderr.write(f"--- respite log tail (rc={rc}) ---\n{self.log_tail()}\n---\n")
        report = sanitizer_report(self.proc.log_path)
        if report:
            raise AssertionError(f"sanitizer report in respite's log ({self.proc.log_path}):\n"
                                 f"{report}")
        return rc

    def close(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if exc[0] is not None and self.proc is not None:
            sys.stderr.write(f"--- respite log tail ---\n{self.log_tail()}\n---\n")
        self.close()
        return False


# --------------------------------------------------------------------------------------------
# RESP reply reader (RESP2 and RESP3).


class Incomplete(Exception):
    pass


class RespError(str):
    """An error reply (-ERR ... or !len RESP3 blob error); str of its text."""


class Push(list):
    """A RESP3 push (>) message."""


class Verbatim(bytes):
    pass


class BigNumber(int):
    pass


class Attribute(dict):
    pass


NULL = None


def _line(buf: bytes, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete()
    return buf[pos:end], end + 2


def parse_reply(buf: bytes, pos: int = 0):
    """Parse one reply at buf[pos:]. Returns (value, new_pos); raises Incomplete."""
    if pos >= len(buf):
        raise Incomplete()
    t = buf[pos:pos + 1]
    line, p = _line(buf, pos + 1)
    if t == b"+":
        return line.decode("latin-1"), p
    if t == b"-":
        return RespError(line.decode("latin-1")), p
    if t == b":":
        return int(line), p
    if t in (b"$", b"!", b"="):
        n = int(line)
        if n < 0:
            return None, p
        if len(buf) < p + n + 2:
            raise Incomplete()
        data = buf[p:p + n]
        if t == b"!":
            return RespError(data.decode("latin-1")), p + n + 2
        if t == b"=":
            return Verbatim(data), p + n + 2
        return data, p + n + 2
    if t in (b"*", b"~", b">"):
        n = int(line)
        if n < 0:
            return None, p
        items = []
        for _ in range(n):
            v, p = parse_reply(buf, p)
            items.append(v)
        if t == b"~":
            return set(items) if all(_hashable(x) for x in items) else items, p
        if t == b">":
            return Push(items), p
        return items, p
    if t in (b"%", b"|"):
        n = int(line)
        d = {} if t == b"%" else Attribute()
        for _ in range(n):
            k, p = parse_reply(buf, p)
            v, p = parse_reply(buf, p)
            d[_freeze(k)] = v
        if t == b"|":  # attribute: return the value that follows it
            return parse_reply(buf, p)
        return d, p
    if t == b"_":
        return None, p
    if t == b",":
        return float(line), p
    if t == b"#":
        return line == b"t", p
    if t == b"(":
        return BigNumber(int(line)), p
    raise ValueError(f"bad RESP type byte {t!r} at {pos}: {buf[pos:pos + 40]!r}")


def _hashable(x) -> bool:
    try:
        hash(x)
        return True
    except TypeError:
        return False


def _freeze(x):
    if isinstance(x, list):
        return tuple(_freeze(i) for i in x)
    return x


def split_replies(buf: bytes) -> tuple[list[bytes], bytes]:
    """Split buf into complete raw replies and the incomplete rest."""
    out = []
    pos = 0
    while pos < len(buf):
        try:
            _, np = parse_reply(buf, pos)
        except Incomplete:
            break
        out.append(buf[pos:np])
        pos = np
    return out, buf[pos:]


def encode_command(*args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


# --------------------------------------------------------------------------------------------
# Raw sockets.


class RawConn:
    """A raw TCP connection with a receive buffer. Every read has a deadline."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed = False
        self.timeout = timeout

    def send(self, data: bytes):
        self.sock.sendall(data)

    def cmd(self, *args):
        self.send(encode_command(*args))

    def _recv_some(self, deadline: float) -> bool:
        """Receive once. Returns False on close or timeout."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.closed = True
            return False
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def read_raw_replies(self, n: int, timeout: float | None = None) -> list[bytes]:
        """Read exactly n complete replies (raw bytes each). Raises TimeoutError with what was
        received if they do not arrive before the deadline or the connection closes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        out: list[bytes] = []
        while True:
            while len(out) < n:
                try:
                    _, np = parse_reply(self.buf, 0)
                except Incomplete:
                    break
                out.append(self.buf[:np])
                self.buf = self.buf[np:]
            if len(out) >= n:
                return out
            if not self._recv_some(deadline):
                why = "connection closed" if self.closed else "timeout"
                raise TimeoutError(f"{why} after {len(out)}/{n} replies; got {b''.join(out)[-300:]!r} "
                                   f"+ partial {self.buf[:300]!r}")

    def read_replies(self, n: int, timeout: float | None = None) -> list:
        return [parse_reply(r)[0] for r in self.read_raw_replies(n, timeout)]

    def read_reply(self, timeout: float | None = None):
        return self.read_replies(1, timeout)[0]

    def call(self, *args, timeout: float | None = None):
        self.cmd(*args)
        return self.read_reply(timeout)

    def read_until_close(self, timeout: float = 5.0) -> tuple[bytes, bool]:
        """Read everything until the peer closes. Returns (bytes, closed)."""
        deadline = time.monotonic() + timeout
        while not self.closed and self._recv_some(deadline):
            pass
        data, self.buf = self.buf, b""
        return data, self.closed

    def read_for(self, seconds: float) -> bytes:
        """Read whatever arrives within the given time (or until close)."""
        deadline = time.monotonic() + seconds
        while not self.closed and self._recv_some(deadline):
            pass
        data, self.buf = self.buf, b""
        return data

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def exchange(port: int, data: bytes, nreplies: int | None = None, timeout: float = 3.0,
             chunks: list[int] | None = None, settle: float = 0.3) -> tuple[bytes, bool]:
    """Send data on a fresh connection and collect the answer.

    nreplies=None: read until the peer closes (bounded by timeout).
    nreplies=N:    read N complete replies, then wait `settle` seconds for any extra bytes or a
                   close (so unexpected extra output is seen too).
    chunks: optional list of split offsets; the data is sent in pieces with short pauses.
    Returns (all bytes received, closed_by_peer)."""
    with RawConn(port, timeout=timeout) as c:
        if chunks:
            last = 0
            pause = 0.02 if len(chunks) < 20 else 0.002
            for off in chunks + [len(data)]:
                if off > last:
                    with contextlib.suppress(OSError):
                        c.send(data[last:off])
                    time.sleep(pause)
                last = off
        else:
            with contextlib.suppress(OSError):
                c.send(data)
        if nreplies is None:
            return c.read_until_close(timeout)
        got = b""
        try:
            got = b"".join(c.read_raw_replies(nreplies, timeout))
        except TimeoutError:
            got = c.buf
            c.buf = b""
            return got, c.closed
        extra = c.read_for(settle)
        return got + extra, c.closed


# --------------------------------------------------------------------------------------------
# Controls. A default test asserts behaviour, never speed: a deadline of respite's own (a timeout,
# the shutdown grace) is checked against that deadline plus how late this machine is right now,
# measured in the same test (MachineDelay), so a slow or busy machine widens the bound instead of
# failing the test.

CONTROL_FACTOR = 3       # times the control's lateness allowed on top of a deadline
CONTROL_SLACK_S = 0.25   # scheduling slack on top of a deadline


_control_redis: RedisServer | None = None


def control_redis() -> RedisServer:
    """The reference redis-server the controls run against (one per test file's run). --hz 100:
    its own timeouts are then checked every 10 ms, not every 100 ms."""
    global _control_redis
    if _control_redis is None:
        _control_redis = RedisServer(["--hz", "100"]).start()
        unittest.addModuleCleanup(_control_redis.close)
    return _control_redis


class MachineDelay:
    """The control for a deadline: how late this machine answers a timer right now. A thread
    waits on redis-server's own timeout over and over (BLPOP on a missing key, `seconds` each)
    through the same client code the tests use, for as long as the test runs, and keeps the
    worst lateness (the reply's arrival minus `seconds`). A round still waiting counts with how
    late it already is. Idle, that is 1-10 ms; with the other core busy it grows, and so does
    every bound made with allow().

    allow(base) = base + CONTROL_SLACK_S + CONTROL_FACTOR x the worst lateness: respite's timer
    that should fire at `base` is not later than redis-server's own timers, with room to spare.
    With --upstream-timeout-ms 1000 on an idle machine that is ~1.3 s, well under the 2 s that a
    deadline counted from the wrong moment gives. Start it when the test starts, stop() it at
    the end."""

    def __init__(self, seconds: float = 0.2):
        self.seconds = seconds
        self.port = control_redis().port
        self.lock = threading.Lock()
        self.worst = 0.0
        self.rounds = 0
        self.pending_since: float | None = None
        self.error: str | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            with RawConn(self.port, timeout=self.seconds + 60) as c:
                key = f"control:none:{id(self)}"
                while not self.stopped.is_set():
                    with self.lock:
                        self.pending_since = time.monotonic()
                    c.send(encode_command("BLPOP", key, f"{self.seconds:.3f}"))
                    r = c.read_reply()
                    late = time.monotonic() - self.pending_since - self.seconds
                    assert r is None, r
                    with self.lock:
                        self.pending_since = None
                        self.worst = max(self.worst, late)
                        self.rounds += 1
        except Exception as e:  # noqa: BLE001  (reported by allow())
            self.error = f"{type(e).__name__}: {e}"

    def late(self) -> float:
        with self.lock:
            worst = self.worst
            if self.pending_since is not None:
                worst = max(worst, time.monotonic() - self.pending_since - self.seconds)
        if self.error:
            raise AssertionError(f"the control (BLPOP timeouts on a redis-server) failed: {self.error}")
        return max(0.0, worst)

    def measured(self, rounds: int = 2, timeout: float = 30.0) -> float:
        """late() once the control has run at least `rounds` rounds (bounded wait): a test shorter
        than one round would otherwise have no control at all."""
        deadline = time.monotonic() + timeout
        while self.rounds < rounds and self.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.late()

    def allow(self, base: float, slack: float = CONTROL_SLACK_S) -> float:
        return base + slack + CONTROL_FACTOR * self.late()

    def describe(self, base: float, slack: float = CONTROL_SLACK_S) -> str:
        return (f"bound {self.allow(base, slack) * 1000:.0f} ms = {base * 1000:.0f} + "
                f"{slack * 1000:.0f} + {CONTROL_FACTOR} x {self.late() * 1000:.0f} ms, the "
                f"control's worst lateness over {self.rounds} redis-server timeouts")

    def stop(self):
        self.stopped.set()


# --------------------------------------------------------------------------------------------
# Test-case helpers.


def proxy_info(port: int, timeout: float = 5.0) -> dict[str, str]:
    """PROXY INFO parsed into a dict (empty if the command is not known)."""
    with RawConn(port, timeout) as c:
        r = c.call("PROXY", "INFO")
    if isinstance(r, RespError) or r is None:
        return {}
    return parse_info(r)


def link_up(conn: "RawConn") -> bool:
    """Whether the invalidation link of the loop serving `conn` is up. PROXY INFO's tracking_link
    is the asking connection's loop's (with --threads N each loop has its own link), so it is
    asked on the connection whose reads the test cares about, not on a fresh one."""
    r = conn.call("PROXY", "INFO", "cache")
    if isinstance(r, RespError) or r is None:
        return False
    return parse_info(r)["tracking_link"] == "up"


def wait_link_up(conn: "RawConn", timeout: float = 10.0) -> bool:
    """Bounded wait until link_up(conn); False if it is not up by then."""
    deadline = time.monotonic() + timeout
    while not link_up(conn):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def parse_info(text) -> dict[str, str]:
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("latin-1")
    out = {}
    for line in str(text).splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        out[k] = v
    return out


def commandstats(port: int, password: str | None = None) -> dict[str, int]:
    """calls per command from INFO commandstats of a redis-server."""
    with RawConn(port) as c:
        if password:
            c.call("AUTH", password)
        r = c.call("INFO", "commandstats")
    out = {}
    for k, v in parse_info(r).items():
        if k.startswith("cmdstat_"):
            fields = dict(x.split("=", 1) for x in v.split(","))
            out[k[len("cmdstat_"):]] = int(fields.get("calls", 0))
    return out


def respite_only(fn):
    """Skip in RESPITE_DIRECT mode: the test is about respite's own behaviour."""
    return unittest.skipIf(DIRECT, "RESPITE_DIRECT=1: respite-specific test")(fn)


class ProxyTestCase(unittest.TestCase):
    """One upstream redis-server and one respite for the whole class; processes are stopped by
    class cleanups even if setUpClass fails halfway."""

    upstream_args: list[str] = []
    upstream_password: str | None = None
    upstream_setup: list[tuple] = []   # commands run on the upstream before respite starts
    respite_args: list[str] = []

    @classmethod
    def setUpClass(cls):
        stack = contextlib.ExitStack()
        cls.addClassCleanup(stack.close)
        cls.upstream = stack.enter_context(
            RedisServer(cls.upstream_args, password=cls.upstream_password))
        if cls.upstream_setup:
            with RawConn(cls.upstream.port) as c:
                if cls.upstream_password:
                    c.call("AUTH", cls.upstream_password)
                for cmd in cls.upstream_setup:
                    r = c.call(*cmd)
                    if isinstance(r, RespError):
                        raise RuntimeError(f"upstream setup {cmd}: {r}")
        cls.proxy = stack.enter_context(Respite(cls.upstream, cls.respite_args))
        cls.port = cls.proxy.port

    def setUp(self):
        if not self.proxy.alive():
            self.fail(f"respite died before this test (rc={self.proxy.proc.popen.returncode}); "
                      f"see the first failure of this class")

    def tearDown(self):
        self.proxy.assert_alive()

    def up(self, **kw):
        return self.upstream.client(**kw)

    def px(self, **kw):
        return self.proxy.client(**kw)

    def raw(self, timeout: float = 5.0) -> RawConn:
        return RawConn(self.port, timeout)


def run_tests():
    """unittest.main() that exits nonzero on failure."""
    unittest.main(verbosity=2)


def assert_same_as_redis(tc: unittest.TestCase, proxy_port: int, redis_port: int, data: bytes,
                         nreplies: int | None = None, expected: bytes | None = None,
                         expect_close: bool | None = None, timeout: float = 3.0,
                         chunks: list[int] | None = None) -> bytes:
    """Send the same bytes to respite and to a real redis-server on fresh connections and
    require the same answer byte for byte (and the same close behaviour). The redis-server
    side runs first so the reference is known when the proxy side is compared; `expected`
    additionally pins the reference itself."""
    ref, ref_closed = exchange(redis_port, data, nreplies, timeout, chunks)
    if expected is not None:
        tc.assertEqual(ref, expected, "redis-server itself answered differently than the test "
                                      "expects (test bug)")
    if expect_close is not None:
        tc.assertEqual(ref_closed, expect_close, "redis-server close behaviour (test bug)")
    got, got_closed = exchange(proxy_port, data, nreplies, timeout, chunks)
    tc.assertEqual(got, ref, f"bytes differ from redis-server for input {data[:120]!r}")
    tc.assertEqual(got_closed, ref_closed,
                   f"connection {'closed' if got_closed else 'left open'} by respite, "
                   f"redis-server {'closed' if ref_closed else 'left it open'}; input {data[:120]!r}")
    return got
