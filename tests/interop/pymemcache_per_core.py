#!/usr/bin/env python3
"""pymemcache's HashClient over corecache's per-core ports (--port-per-core).

Run by tests/interop.rs (`per_core_ports_pymemcache`):

    python3 tests/interop/pymemcache_per_core.py HOST:PORT HOST:PORT [...]

The ports are the server's per-core ports, listed as separate servers, as an
application would list N memcached servers. HashClient spreads keys over
them with rendezvous hashing; each key must read back through HashClient,
sit on exactly the port HashClient chose (a plain Client on every port asks),
and every port must have been given some keys. Prints `N keys on ports
[counts]` and exits 0 when all holds; prints what failed and exits 1
otherwise; exits 3 when pymemcache cannot be imported.
"""

import sys

try:
    from pymemcache.client.base import Client
    from pymemcache.client.hash import HashClient
except ImportError as error:  # the caller turns this into "install ..."
    print(f"cannot import pymemcache: {error}", file=sys.stderr)
    sys.exit(3)


def parse_server(text):
    host, port = text.rsplit(":", 1)
    return (host, int(port))


def main():
    servers = [parse_server(arg) for arg in sys.argv[1:]]
    if len(servers) < 2:
        print("give two or more HOST:PORT", file=sys.stderr)
        return 1
    client = HashClient(servers, timeout=10, connect_timeout=10)
    keys = [f"hc:{i}" for i in range(400)]
    values = {key: f"value of {key}".encode() * (1 + i % 7) for i, key in enumerate(keys)}
    # Stored with replies (the default is noreply), one by one and in bulk.
    for key in keys[:200]:
        if client.set(key, values[key], noreply=False) is not True:
            print(f"set {key} was not stored")
            return 1
    failed = client.set_many({k: values[k] for k in keys[200:]}, noreply=False)
    if failed:
        print(f"set_many failed for {failed}")
        return 1
    got = client.get_many(keys + ["hc:absent"])
    if got != values:
        wrong = [k for k in keys if got.get(k) != values[k]]
        print(f"get_many: {len(wrong)} keys wrong or missing, e.g. {wrong[:5]}")
        return 1
    for key in keys[::37]:
        if client.get(key) != values[key]:
            print(f"get {key} is wrong")
            return 1
    # Each key is on the port HashClient chose, and on no other.
    singles = {server: Client(server, timeout=10) for server in servers}
    counts = {server: 0 for server in servers}
    for key in keys:
        chosen = tuple(client._get_client(key).server)
        holders = [server for server, single in singles.items() if single.get(key) is not None]
        if holders != [chosen]:
            print(f"{key}: HashClient chose {chosen}, held by {holders}")
            return 1
        counts[chosen] += 1
    if min(counts.values()) == 0:
        print(f"a port got no keys: {counts}")
        return 1
    # Deletes go to the same port.
    for key in keys[:50]:
        if client.delete(key, noreply=False) is not True:
            print(f"delete {key} found nothing")
            return 1
    if client.get_many(keys[:50]):
        print("deleted keys still read back")
        return 1
    print(f"{len(keys)} keys on ports {[counts[s] for s in servers]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
