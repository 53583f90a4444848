#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test of
# the workspace. On a fresh Debian machine this is all the set-up there is.
#
#   bash tests/run.sh            # everything
#   bash tests/run.sh protocol   # extra arguments go to the test runner (a filter)
set -euo pipefail
cd "$(dirname "$0")/.."

# Programs some tests drive for real: memcached (loadgen and comparisons),
# libmemcached-tools, nutcracker, Debian's python3 with pymemcache and
# openssl's s_client (interoperability, tests/interop.rs), nc (the smoke test).
packages=(memcached libmemcached-tools nutcracker netcat-openbsd python3 python3-pymemcache openssl)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tests/run.sh: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "tests/run.sh: please install: ${missing[*]} (needs root and apt-get)" >&2
        exit 1
    fi
fi

# The memory tests (tests/hostile.rs) spawn the release build: build it
# once here rather than inside the first of them.
cargo build --release --quiet --bin corecache
if cargo nextest --version >/dev/null 2>&1; then
    # nextest does not run doctests; they go first so the summary of the
    # whole run is the last thing printed.
    cargo test --workspace --doc --quiet
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
