#!/usr/bin/env bash
# Runs one fuzz target with libFuzzer (cargo fuzz) for a bounded time.
#
#   bash fuzz/run.sh TARGET SECONDS [libFuzzer flags...]
#   TARGET: text, meta, binary or shard
#
# Installs cargo-fuzz from crates.io if it is missing. It builds on the
# stable toolchain with `--sanitizer none`: cargo fuzz needs nightly only
# for a sanitizer, and the code under test is safe Rust (its one unsafe
# module maps slab pages with mmap, which AddressSanitizer cannot see
# into). FUZZ_SANITIZER=address builds with ASan on the nightly toolchain
# where one is installed.
#
# The corpus grows in fuzz/work/TARGET (not committed), kept between runs;
# the seeds in fuzz/corpus/TARGET are read, never written. A crash or a
# failed check stops the run with a non-zero status and leaves the input in
# fuzz/artifacts/TARGET/: minimize it (`cargo fuzz tmin`), add it to
# fuzz/regressions/TARGET/ and to a unit test.
set -euo pipefail
cd "$(dirname "$0")"

if [ $# -lt 2 ]; then
    echo "usage: bash fuzz/run.sh TARGET SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2

case "$target" in
    text | meta) flags=(-max_len=8192 "-dict=dict/$target.dict") ;;
    binary) flags=(-max_len=4096 -dict=dict/binary.dict) ;;
    shard) flags=(-max_len=4096) ;;
    *)
        echo "fuzz/run.sh: no target $target (text, meta, binary, shard)" >&2
        exit 2
        ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi

sanitizer=${FUZZ_SANITIZER:-none}
toolchain=()
if [ "$sanitizer" != none ]; then
    toolchain=(+nightly)
fi

mkdir -p "work/$target"
# -timeout: an input that takes 10 s is a hang, and fails the run.
exec cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" "$target" \
    "work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${flags[@]}" "$@"
