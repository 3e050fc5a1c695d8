"""Bad and unusual input: respite must answer exactly as redis-server does, byte for byte.

Each case sends the same bytes on a fresh connection to the upstream redis-server and to respite
and compares everything received and whether the peer closed the connection.
"""

import socket

import harness
from harness import HOST, ProxyTestCase, assert_same_as_redis, encode_command

MB_ERR = b"-ERR Protocol error: invalid multibulk length\r\n"
BULK_ERR = b"-ERR Protocol error: invalid bulk length\r\n"


class ProtocolErrors(ProxyTestCase):

    def same(self, data, nreplies=None, expected=None, expect_close=None, chunks=None):
        return assert_same_as_redis(self, self.port, self.upstream.port, data, nreplies,
                                    expected, expect_close, chunks=chunks)

    def test_invalid_multibulk_length(self):
        self.same(b"*abc\r\n", expected=MB_ERR, expect_close=True)

    def test_negative_bulk_length(self):
        self.same(b"*1\r\n$-5\r\n", expected=BULK_ERR, expect_close=True)

    def test_expected_dollar(self):
        self.same(b"*1\r\n+PING\r\n", expected=b"-ERR Protocol error: expected '$', got '+'\r\n",
                  expect_close=True)

    def test_non_numeric_bulk_length(self):
        self.same(b"*1\r\n$abc\r\n", expected=BULK_ERR, expect_close=True)

    def test_multibulk_count_too_big(self):
        self.same(b"*2147483648\r\n", expected=MB_ERR, expect_close=True)

    def test_bulk_length_over_512mb(self):
        self.same(b"*1\r\n$536870913\r\n", expected=BULK_ERR, expect_close=True)

    def test_unbalanced_quotes(self):
        self.same(b'SET a "b\r\n', expected=b"-ERR Protocol error: unbalanced quotes in request\r\n",
                  expect_close=True)

    def test_too_big_inline(self):
        self.same(b"x" * 70000, expected=b"-ERR Protocol error: too big inline request\r\n",
                  expect_close=True)

    def test_owed_replies_flushed_before_error(self):
        # Local (PING) and forwarded (SET/DEL/GET) replies owed before the bad input come first,
        # then the error, then the close; the PING after the bad input is never answered.
        data = (b"PING\r\nSET respite:proto:a x\r\nDEL respite:proto:a\r\nSET respite:proto:a b\r\n"
                b"*1\r\n$4\r\nPING\r\nGET respite:proto:a\r\n*abc\r\nPING\r\n")
        self.same(data, expect_close=True,
                  expected=b"+PONG\r\n+OK\r\n:1\r\n+OK\r\n+PONG\r\n$1\r\nb\r\n" + MB_ERR)

    def test_many_owed_forwarded_replies_then_bad_bulk(self):
        data = b"SET respite:proto:n 0\r\n" + encode_command("INCR", "respite:proto:n") * 300 + b"*1\r\n$-5\r\n"
        got = self.same(data, expect_close=True)
        self.assertTrue(got.endswith(b":300\r\n" + BULK_ERR), got[-80:])

    def test_big_owed_reply_then_error(self):
        value = b"v" * (3 << 20)
        data = (encode_command("SET", "respite:proto:big", value) +
                encode_command("GET", "respite:proto:big") + b"*1\r\n+PING\r\n")
        got = self.same(data, expect_close=True)
        self.assertTrue(got.endswith(b"-ERR Protocol error: expected '$', got '+'\r\n"))

    def test_unknown_command_keeps_connection(self):
        self.same(b"FOO bar baz\r\nPING\r\n", nreplies=2, expect_close=False,
                  expected=b"-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' \r\n"
                           b"+PONG\r\n")
        self.same(encode_command("NOSUCHCMD", "x") + encode_command("ECHO", "still-here"),
                  nreplies=2, expect_close=False,
                  expected=b"-ERR unknown command 'NOSUCHCMD', with args beginning with: 'x' \r\n"
                           b"$10\r\nstill-here\r\n")

    def test_wrong_arity(self):
        self.same(b"GET\r\nSET x\r\nPING\r\n", nreplies=3, expect_close=False,
                  expected=b"-ERR wrong number of arguments for 'get' command\r\n"
                           b"-ERR wrong number of arguments for 'set' command\r\n+PONG\r\n")

    def test_empty_and_null_multibulk_ignored(self):
        self.same(b"*-1\r\n*0\r\n\r\n\r\nPING\r\n", nreplies=1, expect_close=False,
                  expected=b"+PONG\r\n")

    def test_bulk_crlf_not_checked(self):
        # Redis skips the two bytes after a bulk payload without checking them.
        self.same(b"*1\r\n$4\r\nPINGxx*1\r\n$4\r\nPING\r\n", nreplies=2, expect_close=False)

    def test_inline_quoting_and_escapes(self):
        data = (b'SET "respite:proto:q" 1\r\n'
                b'SET respite:proto:q "hello \\x41\\x42 world\\n"\r\n'
                b"GET 'respite:proto:q'\r\n"
                b"ECHO 'it\\'s'\r\n"
                b"  ECHO   spaced   \r\n")
        got = self.same(data, nreplies=5, expect_close=False)
        self.assertIn(b"$15\r\nhello AB world\n\r\n", got)

    def test_quotes_must_be_followed_by_space(self):
        self.same(b'ECHO "a"b\r\n', expect_close=True,
                  expected=b"-ERR Protocol error: unbalanced quotes in request\r\n")

    def test_byte_by_byte_pipeline(self):
        data = (encode_command("SET", "respite:proto:bb", "x\r\ny") + b"PING\r\n" +
                encode_command("GET", "respite:proto:bb") + encode_command("ECHO", ""))
        self.same(data, nreplies=4, expect_close=False, chunks=list(range(1, len(data))),
                  expected=b"+OK\r\n+PONG\r\n$4\r\nx\r\ny\r\n$0\r\n\r\n")

    def test_binary_value_roundtrip(self):
        value = bytes(range(256)) * 64 + b"\r\n\x00$5\r\n"
        data = encode_command("SET", "respite:proto:bin", value) + encode_command("GET", "respite:proto:bin")
        got = self.same(data, nreplies=2, expect_close=False)
        self.assertTrue(got.endswith(value + b"\r\n"))

    def test_big_value_in_chunks(self):
        value = b"0123456789abcdef" * (1 << 16)  # 1 MiB
        data = encode_command("SET", "respite:proto:chunks", value) + encode_command("STRLEN", "respite:proto:chunks")
        step = len(data) // 7
        got = self.same(data, nreplies=2, expect_close=False,
                        chunks=[step * i for i in range(1, 7)])
        self.assertEqual(got, b"+OK\r\n:%d\r\n" % len(value))

    def test_pipeline_then_half_close_gets_every_reply(self):
        """A client that pipelines many requests and then shuts down its sending side gets a
        reply to each before the close, as from Redis (the turn's command budget and the
        owed-replies limit make respite answer them over several loop turns)."""
        n = 20000
        data = encode_command("PING") * n + encode_command("SET", "respite:proto:hc", "v") * 700
        for port in (self.upstream.port, self.port):
            with socket.create_connection((HOST, port), timeout=10) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := s.recv(1 << 16):
                    got += chunk
            with self.subTest(port=port):
                self.assertEqual(got.count(b"+PONG\r\n"), n)
                self.assertEqual(got.count(b"+OK\r\n"), 700)


if __name__ == "__main__":
    harness.run_tests()
