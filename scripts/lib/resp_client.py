"""A minimal RESP2 client over a raw socket, shared by the scripts (bench, the cache demos).

Standard library only (Debian's /usr/bin/python3); no side effects on import. Pipelining is the
caller's: send many encoded commands, then read as many replies. Replies decode to str (simple),
RespError (error), int, bytes or None (bulk), list or None (array).
"""
import contextlib
import socket

HOST = "127.0.0.1"


class RespError(str):
    pass


def encode(*args):
    """A command as a RESP multibulk; str arguments are UTF-8, ints their decimal text."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = b"%d" % a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port, timeout=30.0, host=HOST):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send(self, data):
        self.sock.sendall(data)

    def _more(self):
        # Drop what was read once it is most of the buffer, so long pipelines stay bounded.
        if self.pos > (1 << 16) and self.pos * 2 > len(self.buf):
            del self.buf[:self.pos]
            self.pos = 0
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError("connection closed by peer")
        self.buf += chunk

    def _line(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos:end])
                self.pos = end + 2
                return line
            self._more()

    def _take(self, n):
        while len(self.buf) - self.pos < n + 2:
            self._more()
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n + 2
        return data

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._take(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError("unexpected reply %r" % line[:80])

    def call(self, *args):
        self.send(encode(*args))
        return self.read()

    def pipeline(self, commands):
        """Sends pre-encoded commands in one write and returns their replies."""
        self.send(b"".join(commands))
        return [self.read() for _ in commands]


def parse_info(text):
    """INFO-format text (`# Section` headers, `name:value` lines) as a dict of strings."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("latin-1")
    out = {}
    for line in str(text).splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            out[k] = v
    return out
