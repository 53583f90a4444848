#!/usr/bin/env python3
"""Drives corecache's --auth-file authentication with pymemcache.

Run by tests/interop.rs (`pymemcache_auth::*`) against a server started with
an auth file holding alice:secret:

    python3 tests/interop/pymemcache_auth.py HOST:PORT

pymemcache has no login call of its own: a client logs in the way memcached's
-Y documents, with a `set` whose value is "user password", sent with
noreply=False so that it reads the server's answer. Prints "N ok, M failed"
and exits 0 only when every check passed; exits 3 when pymemcache cannot be
imported, so the caller can name the package.
"""

import sys

try:
    from pymemcache.client.base import Client
    from pymemcache.exceptions import MemcacheClientError
except ImportError as error:  # the caller turns this into "install ..."
    print(f"cannot import pymemcache: {error}", file=sys.stderr)
    sys.exit(3)

from checks import run_checks  # beside this script


def client(server):
    host, port = server.rsplit(":", 1)
    return Client((host, int(port)), connect_timeout=10, timeout=10)


def raises(call, message):
    try:
        got = call()
    except MemcacheClientError as error:
        if message not in str(error):
            raise AssertionError(f"error {error!r}, not {message!r}")
        return
    raise AssertionError(f"no error: returned {got!r}")


def refused_before_login(server):
    c = client(server)
    raises(lambda: c.get("auth:a"), "unauthenticated")
    raises(lambda: c.set("auth:a", b"x", noreply=False), "bad authentication token format")
    raises(lambda: c.get("auth:a"), "unauthenticated")
    c.close()


def wrong_password(server):
    c = client(server)
    raises(lambda: c.set("login", b"alice wrong", noreply=False), "authentication failure")
    raises(lambda: c.get("auth:a"), "unauthenticated")
    c.close()


def served_after_login(server):
    c = client(server)
    assert c.set("login", b"alice secret", noreply=False) is True, "login"
    # The login stored nothing; from now on the connection is ordinary,
    # noreply sets included.
    assert c.get("login") is None, "the login is not an item"
    c.set("auth:a", b"in")
    values = {f"auth:{i}": str(i).encode() for i in range(100)}
    c.set_many(values)
    assert c.get("auth:a") == b"in", "get after a noreply set"
    assert c.get_many(list(values)) == values, "get_many"
    assert c.delete("auth:a", noreply=False) is True, "delete"
    c.close()


def main():
    server = sys.argv[1]
    checks = [
        ("requests before a login are refused", lambda: refused_before_login(server)),
        ("a wrong password is refused", lambda: wrong_password(server)),
        ("a logged-in client is served", lambda: served_after_login(server)),
    ]
    run_checks(checks)

if __name__ == "__main__":
    main()
