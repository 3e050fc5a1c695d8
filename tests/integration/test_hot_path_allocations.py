"""Cached reads do not allocate: the respite binary counts its heap allocations (a replacement of
the global operator new) and PROXY DEBUG ALLOCATIONS reports the count. After warm-up, a batch
of thousands of cache hits (GET and MGET, RESP2 and RESP3) must cost (almost) none: a per-hit
allocation would show up as thousands."""

import harness
from harness import ProxyTestCase, RawConn, encode_command

HITS_PER_ROUND_GET = 200
HITS_PER_ROUND_MGET = 50
ROUNDS = 20
# Buffers may still grow to their steady size once or twice during the batch.
MAX_ALLOCATIONS = 16


class HotPath(ProxyTestCase):
    # A long TTL so no entry expires (and is refetched, legitimately allocating) mid-batch.
    respite_args = ["--cache-ttl-ms", "600000", "--xfetch-beta", "0"]

    def allocations(self, c: RawConn) -> int:
        n = c.call("PROXY", "DEBUG", "ALLOCATIONS")
        self.assertIsInstance(n, int)
        return n

    def run_batch(self, c: RawConn, keys: list[str]) -> int:
        get = b"".join(encode_command("GET", k) for k in keys[:4]) * (HITS_PER_ROUND_GET // 4)
        mget = encode_command("MGET", *keys) * HITS_PER_ROUND_MGET
        before = self.allocations(c)
        for _ in range(ROUNDS):
            c.send(get + mget)
            replies = c.read_raw_replies(HITS_PER_ROUND_GET + HITS_PER_ROUND_MGET, timeout=10)
            self.assertEqual(len(replies), HITS_PER_ROUND_GET + HITS_PER_ROUND_MGET)
        return self.allocations(c) - before

    def test_cached_reads_do_not_allocate(self):
        keys = [f"respite:alloc:{i}" for i in range(10)]
        up = self.up()
        for i, k in enumerate(keys[:8]):
            up.set(k, "v" * (16 + i * 100))
        # keys[8:] stay missing upstream: negative entries are hits too.
        for proto in (2, 3):
            with RawConn(self.port) as c:
                if proto == 3:
                    c.call("HELLO", "3")
                # Warm: fill the cache and let every buffer reach its working size.
                for k in keys:
                    c.call("GET", k)
                self.run_batch(c, keys)
                info = harness.proxy_info(self.port)
                hits_before = int(info["cache_hits"])
                delta = self.run_batch(c, keys)
                info = harness.proxy_info(self.port)
                hits = int(info["cache_hits"]) - hits_before
                expected_hits = ROUNDS * (HITS_PER_ROUND_GET + HITS_PER_ROUND_MGET * len(keys))
                self.assertGreaterEqual(hits, expected_hits, info)
                print(f"\nRESP{proto}: {hits} cache hits, {delta} heap allocations")
                self.assertLessEqual(delta, MAX_ALLOCATIONS,
                                     f"cached reads allocate: {delta} allocations for {hits} hits")


if __name__ == "__main__":
    harness.run_tests()
