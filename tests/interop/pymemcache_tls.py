#!/usr/bin/env python3
"""Drives corecache over TLS with pymemcache and Python's ssl module.

Run by tests/interop.rs (`pymemcache_tls::*`) against a server it started
with --tls-ca, so client certificates are required:

    python3 tests/interop/pymemcache_tls.py HOST:PORT CA CLIENT_CERT CLIENT_KEY ROGUE_CERT ROGUE_KEY

The client that presents CLIENT_CERT must be served; one that presents none,
and one that presents ROGUE_CERT (signed by another CA), must be refused.
Prints "N ok, M failed" and exits 0 only when every check passed; exits 3
when pymemcache cannot be imported, so the caller can name the package.
"""

import ssl
import sys

try:
    from pymemcache.client.base import Client
    from pymemcache.exceptions import MemcacheUnexpectedCloseError
except ImportError as error:  # the caller turns this into "install ..."
    print(f"cannot import pymemcache: {error}", file=sys.stderr)
    sys.exit(3)

from checks import run_checks  # beside this script


def context(ca, cert=None, key=None):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    # The server certificate names localhost and 127.0.0.1: the client
    # checks it against the address it dials.
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def client(server, ctx):
    host, port = server.rsplit(":", 1)
    return Client((host, int(port)), tls_context=ctx, connect_timeout=10, timeout=10)


def served(server, ca, cert, key):
    c = client(server, context(ca, cert, key))
    assert c.set("tls:a", b"over tls", noreply=False) is True, "set"
    assert c.get("tls:a") == b"over tls", "get"
    values = {f"tls:{i}": str(i).encode() * 100 for i in range(200)}
    assert c.set_many(values, noreply=False) == [], "set_many"
    assert c.get_many(list(values)) == values, "get_many over TLS"
    assert c.set("tls:n", b"41", noreply=False) is True, "set a counter"
    assert c.incr("tls:n", 1) == 42, "incr"
    assert c.delete("tls:a", noreply=False) is True, "delete"
    assert c.get("tls:a") is None, "deleted"
    big = bytes(range(256)) * 2000
    assert c.set("tls:big", big, noreply=False) is True, "set 512 KB"
    assert c.get("tls:big") == big, "512 KB back intact"
    c.close()


def refused(server, ca, cert, key, who):
    c = client(server, context(ca, cert, key))
    try:
        got = c.get("tls:a")
    # A refusal shows as a TLS alert (SSLError), a reset (OSError), or the
    # connection closing before any reply (pymemcache's own error).
    except (ssl.SSLError, OSError, MemcacheUnexpectedCloseError) as error:
        return f"{who}: refused ({type(error).__name__}: {error})"
    raise AssertionError(f"{who} was served: get returned {got!r}")


def main():
    server, ca, cert, key, rogue_cert, rogue_key = sys.argv[1:7]
    checks = [
        ("a trusted client certificate is served", lambda: served(server, ca, cert, key)),
        ("no client certificate is refused",
         lambda: refused(server, ca, None, None, "no certificate")),
        ("another CA's certificate is refused",
         lambda: refused(server, ca, rogue_cert, rogue_key, "rogue certificate")),
    ]
    run_checks(checks)

if __name__ == "__main__":
    main()
