#!/usr/bin/env python3
"""Drives corecache with pymemcache, a Python memcached client nobody here wrote.

Run by tests/interop.rs (`pymemcache_client::*`) against a server it started:

    python3 tests/interop/pymemcache_check.py HOST:PORT [HOST:PORT ...]

The first server gets the single-server checks; with two or more, the
client-side hashing check (pymemcache's HashClient) spreads keys over all of
them. The servers run on held clocks: to let time pass, the script prints
`advance SECONDS` and waits for the caller to move the first server's clock
and answer `advanced` on stdin. Exits 0 when every check passed; otherwise prints what failed and
exits 1. Exits 3 when pymemcache itself cannot be imported, so the caller can
say which package is missing.
"""

import sys

try:
    import pymemcache
    from pymemcache.client.base import Client
    from pymemcache.client.hash import HashClient
except ImportError as error:  # the caller turns this into "install ..."
    print(f"cannot import pymemcache: {error}", file=sys.stderr)
    sys.exit(3)


def parse_server(text):
    host, port = text.rsplit(":", 1)
    return (host, int(port))


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def advance_clock(seconds):
    """Has the caller move the first server's held clock `seconds` on."""
    print(f"advance {seconds}", flush=True)
    answer = sys.stdin.readline().strip()
    check(answer == "advanced", f"the caller did not advance the clock: {answer!r}")


def noreply_is_the_default_for_set(client):
    # pymemcache's Client defaults to noreply=True for storage commands: the
    # server must store without answering, and the next request must not
    # see a stray reply.
    check(client.set("py:noreply", b"quiet") is True, "noreply set returns True")
    check(client.get("py:noreply") == b"quiet", "noreply set was stored")
    # Many of them in a row, then one read: none lost, none answered.
    for i in range(500):
        client.set(f"py:quiet:{i}", str(i).encode())
    got = client.get_many([f"py:quiet:{i}" for i in range(500)])
    check(len(got) == 500, f"500 noreply sets, {len(got)} read back")
    check(all(got[f"py:quiet:{i}"] == str(i).encode() for i in range(500)),
          "noreply values read back intact")
    # delete/incr/touch with noreply, then a request with a reply.
    client.delete("py:quiet:0", noreply=True)
    client.incr("py:quiet:1", 10, noreply=True)
    client.touch("py:quiet:2", 3600, noreply=True)
    check(client.get("py:quiet:0") is None, "noreply delete deleted")
    check(client.get("py:quiet:1") == b"11", "noreply incr incremented")
    check(client.get("py:quiet:2") == b"2", "noreply touch kept the value")


def get_many_returns_hits_only(client):
    values = {f"py:many:{i}": f"value-{i}".encode() * (i + 1) for i in range(50)}
    check(client.set_many(values, noreply=False) == [], "set_many stored everything")
    keys = [f"py:many:{i}" for i in range(60)]  # the last 10 are absent
    got = client.get_many(keys)
    check(got == values, f"get_many: {len(got)} of 50 hits, or wrong values")
    check(client.get_many([]) == {}, "get_many of nothing")
    # A value with the protocol's own delimiters in it, and a large one.
    awkward = b"line\r\nEND\r\nVALUE x 0 1\r\n\x00\xff"
    big = bytes(range(256)) * 2000  # 512000 bytes
    client.set("py:awkward", awkward, noreply=False)
    client.set("py:big", big, noreply=False)
    got = client.get_many(["py:big", "py:missing", "py:awkward"])
    check(got == {"py:big": big, "py:awkward": awkward}, "binary-safe get_many")


def gets_and_cas(client):
    check(client.set("py:cas", b"one", noreply=False) is True, "set for cas")
    value, token = client.gets("py:cas")
    check(value == b"one" and token is not None, f"gets: {value!r} {token!r}")
    check(client.cas("py:cas", b"two", token) is True, "cas with a fresh token")
    check(client.get("py:cas") == b"two", "cas stored")
    check(client.cas("py:cas", b"three", token) is False, "cas with a stale token")
    check(client.get("py:cas") == b"two", "a failed cas stored nothing")
    value, newer = client.gets("py:cas")
    check(newer != token, "the token changed with the value")
    check(client.cas("py:absent", b"x", newer) is None, "cas on a missing key")
    got = client.gets_many(["py:cas", "py:absent"])
    check(list(got) == ["py:cas"] and got["py:cas"] == (b"two", newer), f"gets_many {got}")


def incr_and_decr(client):
    client.set("py:counter", b"10", noreply=False)
    check(client.incr("py:counter", 5) == 15, "incr")
    check(client.decr("py:counter", 3) == 12, "decr")
    check(client.decr("py:counter", 100) == 0, "decr stops at 0")
    check(client.incr("py:counter", 2**64 - 1) == 2**64 - 1, "incr to u64 max")
    check(client.incr("py:counter", 1) == 0, "incr wraps at 2**64")
    check(client.incr("py:no-counter", 1) is None, "incr on a missing key")
    check(client.decr("py:no-counter", 1) is None, "decr on a missing key")
    client.set("py:text", b"abc", noreply=False)
    try:
        client.incr("py:text", 1)
        raise AssertionError("incr on a non-number must be an error")
    except pymemcache.exceptions.MemcacheClientError:
        pass
    # The connection is still usable after the error reply. The counter
    # reads back as memcached stores it: a result shorter than the value it
    # replaced is written in place, padded with spaces to the old length
    # (20 digits of 2**64 - 1).
    check(client.get("py:counter") == b"0" + b" " * 19, "connection fine after CLIENT_ERROR")


def touch_sets_a_new_expiry(client):
    client.set("py:touch", b"soon", noreply=False)
    check(client.touch("py:touch", 3600, noreply=False) is True, "touch a key")
    check(client.touch("py:not-there", 10, noreply=False) is False, "touch a missing key")
    check(client.get("py:touch") == b"soon", "touch keeps the value")
    check(client.touch("py:touch", 1, noreply=False) is True, "touch to 1 s")
    check(client.get("py:touch") == b"soon", "a 1 s touch keeps the value for 1 s")
    advance_clock(1)
    check(client.get("py:touch") is None, "touched key expires after 1 s")


def storage_commands(client):
    check(client.add("py:add", b"a", noreply=False) is True, "add a new key")
    check(client.add("py:add", b"b", noreply=False) is False, "add an existing key")
    check(client.replace("py:add", b"c", noreply=False) is True, "replace")
    check(client.replace("py:nope", b"c", noreply=False) is False, "replace missing")
    check(client.append("py:add", b"+", noreply=False) is True, "append")
    check(client.prepend("py:add", b"-", noreply=False) is True, "prepend")
    check(client.get("py:add") == b"-c+", "append and prepend")
    check(client.delete("py:add", noreply=False) is True, "delete")
    check(client.delete("py:add", noreply=False) is False, "delete missing")
    # Flags travel with the value: pymemcache's serde would use them.
    client.set("py:flags", b"f", noreply=False, flags=1234)
    raw = Client(client.server, default_noreply=False)
    try:
        # pymemcache hides flags; ask the server directly through its socket.
        raw._connect()
        raw.sock.sendall(b"get py:flags\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n"):
            reply += raw.sock.recv(4096)
        check(reply == b"VALUE py:flags 1234 1\r\nf\r\nEND\r\n", f"flags: {reply!r}")
    finally:
        raw.close()


def get_many_of_10000_keys(client):
    # A 10,000-key get is one line of over 100 KB: memcached takes get lines
    # of any length, and so must corecache.
    values = {f"py:10k:{i:05}": str(i).encode() for i in range(10000)}
    check(client.set_many(values, noreply=False) == [], "set_many of 10,000 keys")
    got = client.get_many(list(values) + ["py:10k:missing"])
    check(got == values, f"get_many of 10,001 keys: {len(got)} hits, or wrong values")


def cachedump_and_cache_memlimit(client):
    client.set("py:dump", b"abc", noreply=False)
    # pymemcache reads `ITEM <key> <rest>` lines of `stats cachedump` into
    # a dict; look through every class `stats items` lists.
    items = client.stats("items")
    classes = sorted({int(name.split(b":")[1]) for name in items})
    dumped = {}
    for cls in classes:
        dumped.update(client.stats("cachedump", str(cls), "0"))
    check(dumped.get(b"py:dump") == b"[3 b; 0 s]", f"cachedump: {dumped.get(b'py:dump')!r}")
    check(client.stats("cachedump", "0", "0") == {}, "cachedump of class 0 is empty")
    check(client.cache_memlimit(32) is True, "cache_memlimit 32")
    check(int(client.stats()[b"limit_maxbytes"]) == 32 << 20, "limit_maxbytes after cache_memlimit")
    check(int(client.stats("settings")[b"maxbytes"]) == 32 << 20, "maxbytes after cache_memlimit")
    try:
        client.cache_memlimit(4)
        raise AssertionError("cache_memlimit 4 must be refused")
    except pymemcache.exceptions.MemcacheUnknownError as error:
        check(b"MEMLIMIT_TOO_SMALL" in str(error).encode(), f"the refusal: {error}")
    check(client.cache_memlimit(64) is True, "cache_memlimit 64")
    check(client.get("py:dump") == b"abc", "items survive a larger limit")


def stats_and_version(client):
    stats = client.stats()
    check(int(stats[b"curr_items"]) > 0, f"stats curr_items: {stats.get(b'curr_items')}")
    check(int(stats[b"cmd_get"]) > 0, "stats cmd_get")
    check(stats[b"version"] == client.version(), "stats version matches `version`")
    settings = client.stats("settings")
    check(int(settings[b"maxconns"]) > 0, "stats settings maxconns")


def flush_all_empties(client):
    check(client.flush_all(noreply=False) is True, "flush_all")
    check(client.get("py:cas") is None and client.get_many(["py:big", "py:awkward"]) == {},
          "nothing left after flush_all")


def hash_client_spreads_keys(servers):
    # Client-side hashing over several corecache instances: each key lives
    # on exactly one of them, and every key reads back through the hasher.
    ring = HashClient(servers, default_noreply=False)
    values = {f"py:ring:{i}": f"v{i}".encode() for i in range(200)}
    check(ring.set_many(values) == [], "HashClient set_many")
    check(ring.get_many(list(values)) == values, "HashClient get_many")
    singles = [Client(server, default_noreply=False) for server in servers]
    counts = []
    for single in singles:
        counts.append(len(single.get_many(list(values))))
        single.close()
    check(all(n > 0 for n in counts) and sum(counts) == 200,
          f"keys per server {counts}: each must hold some, 200 in all")
    ring.close()


def main():
    servers = [parse_server(arg) for arg in sys.argv[1:]]
    if not servers:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(f"pymemcache {pymemcache.__version__} against {servers}")
    client = Client(servers[0], connect_timeout=10, timeout=10)
    checks = [
        noreply_is_the_default_for_set,
        get_many_returns_hits_only,
        gets_and_cas,
        incr_and_decr,
        touch_sets_a_new_expiry,
        storage_commands,
        stats_and_version,
        get_many_of_10000_keys,
        cachedump_and_cache_memlimit,
        flush_all_empties,
    ]
    failed = 0
    for run in checks:
        try:
            run(client)
            print(f"ok   {run.__name__}")
        except Exception as error:  # report every check, then fail
            failed += 1
            print(f"FAIL {run.__name__}: {type(error).__name__}: {error}")
            client.close()  # a failed check may leave the socket mid-reply
    client.close()
    if len(servers) > 1:
        try:
            hash_client_spreads_keys(servers)
            print("ok   hash_client_spreads_keys")
        except Exception as error:
            failed += 1
            print(f"FAIL hash_client_spreads_keys: {type(error).__name__}: {error}")
    print(f"pymemcache checks: {len(checks) + (len(servers) > 1) - failed} ok, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
