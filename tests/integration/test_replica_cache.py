"""The cache with --read-from replica: misses filled from a replica through its own invalidation
link and tracked fetch connection, and coherent with writes through respite (keyed, scripts,
commands respite does not know) and with writes made on the primary (seen when the replica
applies them, SWAPDB included)."""

import harness
from harness import proxy_info, wait_until
from test_replicas import ReplicaSetup, calls


def node_tracking(client, k: int) -> str:
    """The `tracking=` of PROXY INFO's node<k> line as the loop serving `client`'s connection
    sees it (each loop has its own links)."""
    line = harness.parse_info(client.execute_command("PROXY", "INFO")).get(f"node{k}", "")
    return dict(kv.split("=", 1) for kv in line.split(",") if "=" in kv).get("tracking", "")


class CacheFillsFromReplica(ReplicaSetup):
    """The cache on: its misses are filled from the replica (its own invalidation link and
    tracked fetch connection), and stay coherent with writes through respite and on the
    primary."""

    def reader(self):
        r = self.px.client()
        wait_until(lambda: node_tracking(r, 1) == "up", 10, "the replica's invalidation link")
        return r

    def test_misses_are_filled_from_the_replica(self):
        c = self.px.client()
        r = self.reader()
        sets0 = calls(self.primary, "set")
        for i in range(200):
            self.assertTrue(c.set(f"fill:{i}", f"value-{i}"))
        self.assertEqual(calls(self.primary, "set") - sets0, 200)
        self.wait_applied()
        gp0, gr0 = calls(self.primary, "get"), calls(self.replica, "get")
        for i in range(200):
            self.assertEqual(r.get(f"fill:{i}"), f"value-{i}".encode())
        self.assertEqual(calls(self.replica, "get") - gr0, 200,
                         "every miss was filled from the replica")
        self.assertEqual(calls(self.primary, "get") - gp0, 0)
        for i in range(200):  # now cached: nobody is asked
            self.assertEqual(r.get(f"fill:{i}"), f"value-{i}".encode())
        self.assertEqual(calls(self.replica, "get") - gr0, 200, "the second round was cached")
        self.assertEqual(node_tracking(r, 0), "up")

    def test_a_direct_write_on_the_primary_arrives_when_the_replica_applies_it(self):
        c = self.px.client()
        r = self.reader()
        c.set("direct:k", "old")
        self.wait_applied()
        gr0 = calls(self.replica, "get")
        self.assertEqual(r.get("direct:k"), b"old")
        self.assertEqual(r.get("direct:k"), b"old")
        self.assertEqual(calls(self.replica, "get") - gr0, 1, "filled from the replica, then cached")
        self.relay.pause()
        try:
            self.primary.client().set("direct:k", "new")  # behind respite's back
            # Not applied by the replica yet: what respite read from it is what it has.
            for _ in range(10):
                self.assertEqual(r.get("direct:k"), b"old")
        finally:
            self.relay.resume()
        # The replica applies it and its tracking link says so.
        wait_until(lambda: r.get("direct:k") == b"new", 5, "the replica's invalidation")

    def test_a_script_write_waits_for_the_replica(self):
        """A script writes a key it does not declare: respite cannot know which, so the reply
        waits until the replica has applied it (or, past a bound, the cache is flushed)."""
        c = self.px.client()
        r = self.reader()
        script = "return redis.call('SET', ARGV[1], ARGV[2])"
        for lagging in (False, True):
            key = f"script:{lagging}"
            c.set(key, "old")
            self.wait_applied()
            self.assertEqual(r.get(key), b"old")
            self.assertEqual(r.get(key), b"old")  # cached, from the replica
            if lagging:
                self.relay.pause()
            try:
                for i in range(5):
                    self.assertEqual(c.eval(script, 0, key, f"new{i}"), b"OK")
                    got = r.get(key)
                    self.assertEqual(got, f"new{i}".encode(),
                                     f"read after the script's reply (replica lagging: {lagging})")
            finally:
                self.relay.resume()

    def test_the_replica_link_lost_flushes_and_comes_back(self):
        c = self.px.client()
        r = self.reader()
        c.set("link:k", "v")
        self.wait_applied()
        self.assertEqual(r.get("link:k"), b"v")
        gr0 = calls(self.replica, "get")
        self.assertEqual(r.get("link:k"), b"v")
        self.assertEqual(calls(self.replica, "get"), gr0, "cached")
        # The replica drops respite's invalidation links (what they reported would be lost).
        self.assertGreater(self.replica.client().client_kill_filter(_type="pubsub"), 0)
        wait_until(lambda: node_tracking(r, 1) == "up", 10, "the link to come back")
        # What was read from the replica went with the link: read again (from a node).
        gp0, gr0 = calls(self.primary, "get"), calls(self.replica, "get")
        self.assertEqual(r.get("link:k"), b"v")
        self.assertEqual(calls(self.primary, "get") + calls(self.replica, "get") - gp0 - gr0, 1,
                         "the entry was flushed with the link")

    def test_the_fetch_connection_killed_is_opened_again(self):
        """The replica drops the tracked fetch connection (the link stays): fills go to the
        primary meanwhile, then to the replica again on a new one."""
        c = self.px.client()
        r = self.reader()
        for i in range(200):  # written and applied, never read: each GET below is a miss
            c.set(f"refetch:{i}", i)
        self.wait_applied()
        self.assertEqual(r.get("refetch:0"), b"0")  # the fetch connection is open
        rc = self.replica.client()
        tracked = [cl["id"] for cl in rc.client_list() if "t" in cl["flags"]]
        self.assertTrue(tracked, "respite's tracked fetch connection on the replica")
        for cid in tracked:
            rc.client_kill_filter(_id=cid)
        keys = iter(range(1, 200))

        def next_fill_on_replica():
            i = next(keys)
            g0 = calls(self.replica, "get")
            self.assertEqual(r.get(f"refetch:{i}"), str(i).encode())
            return calls(self.replica, "get") > g0
        wait_until(next_fill_on_replica, 3, "a fill read from the replica again")


class CacheFillsUnknownCommand(ReplicaSetup):
    """A write respite's table does not know (APPEND renamed on both servers): its reply waits
    for the replica the cache filled from, as a script's does."""
    server_args = ["--rename-command", "APPEND", "MYAPPEND"]

    def test_unknown_write_then_cached_read(self):
        c = self.px.client()
        r = self.px.client()
        wait_until(lambda: node_tracking(r, 1) == "up", 10, "the replica's invalidation link")
        c.set("ua:k", "old")
        self.wait_applied()
        self.assertEqual(r.get("ua:k"), b"old")
        self.assertEqual(r.get("ua:k"), b"old")  # cached, from the replica
        self.relay.pause()
        try:
            for i in range(3):
                c.execute_command("MYAPPEND", "ua:k", f"+{i}")
                want = "old" + "".join(f"+{j}" for j in range(i + 1))
                self.assertEqual(r.get("ua:k"), want.encode(), "read after the unknown write")
        finally:
            self.relay.resume()


class CacheFillsSwapdb(ReplicaSetup):
    """SWAPDB made directly on the primary sends no invalidation (Redis 7.0) on the primary nor
    on the replica: respite sees each node's SWAPDB count change and flushes when the replica
    applies it too, not only when the primary ran it."""

    def test_swapdb_on_the_primary_reaches_cache_filled_from_the_replica(self):
        r = self.px.client()
        wait_until(lambda: node_tracking(r, 1) == "up", 10, "the replica's invalidation link")
        p = self.primary.client()
        p.set("sw:k", "db0-value")
        p.execute_command("SELECT", 1)
        self.primary.client(db=1).set("sw:k", "db1-value")
        self.wait_applied()
        wait_until(lambda: self.replica.client(db=1).get("sw:k") == b"db1-value", 10,
                   "the replica to have both dbs")
        self.assertEqual(r.get("sw:k"), b"db0-value")
        self.relay.pause()
        try:
            p.swapdb(0, 1)  # behind respite's back; the replica does not have it yet
            # The primary's count moved: the cache is flushed; a fill from the replica still
            # reads db0's old value (a direct write is seen when the replica applies it).
            wait_until(lambda: r.get("sw:k") == b"db0-value" and
                       int(proxy_info(self.px.port).get("swapdb_flushes", "0")) >= 1, 5,
                       "the primary's SWAPDB seen")
        finally:
            self.relay.resume()
        wait_until(lambda: r.get("sw:k") == b"db1-value", 5,
                   "the replica's SWAPDB to reach the cache")


if __name__ == "__main__":
    harness.run_tests()
