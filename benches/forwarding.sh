#!/usr/bin/env bash
# What forwarding costs: corecache with 2 threads, thread-per-core against
# work-stealing, at pipeline 1 and 16, in one run. For each: throughput,
# p99, the server's own CPU per request (from /proc/<pid>/stat), the share
# of requests forwarded to the other thread, and requests per forward batch.
#
#   cargo build --release --workspace && bash benches/forwarding.sh
#
# On a 2-CPU machine the server's two threads and loadgen share the CPUs,
# so read the ratios between rows, not the absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
duration=${DURATION:-5s}
port=23111
hz=$(getconf CLK_TCK)

stat() { printf 'stats\r\n' | nc -q1 127.0.0.1 "$port" | awk -v k="$1" '$2 == k { print $3 }' | tr -d '\r'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

printf '%-16s %4s %10s %8s %12s %10s %10s\n' runtime pipe ops/s p99us cpu_us/req forwarded req/batch
for runtime in thread-per-core work-stealing; do
  for pipeline in 1 16; do
    "$bin/corecache" --port "$port" --threads 2 --runtime "$runtime" -m 256 2>/dev/null &
    server=$!
    until nc -z 127.0.0.1 "$port" 2>/dev/null; do sleep 0.05; done
    "$bin/loadgen" --server "127.0.0.1:$port" --threads 1 --connections 50 --pipeline "$pipeline" \
      --keys 100000 --value-size 32 --get-ratio 0.9 --prefill --duration 1s --warmup 0s >/dev/null
    before=$(cpu_ticks "$server"); fwd0=$(stat forwarded_requests); bat0=$(stat forward_messages)
    "$bin/loadgen" --server "127.0.0.1:$port" --threads 1 --connections 50 --pipeline "$pipeline" \
      --keys 100000 --value-size 32 --get-ratio 0.9 --duration "$duration" --warmup 0s \
      --json /tmp/forwarding.json >/dev/null
    after=$(cpu_ticks "$server"); fwd1=$(stat forwarded_requests); bat1=$(stat forward_messages)
    kill "$server"; wait "$server" 2>/dev/null || true
    python3 - "$runtime" "$pipeline" "$((after - before))" "$hz" "$((fwd1 - fwd0))" "$((bat1 - bat0))" <<'PY'
import json, sys
runtime, pipeline, ticks, hz, fwd, batches = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
r = json.load(open("/tmp/forwarding.json"))
requests = r["requests"]
cpu_us = ticks / hz * 1e6 / requests
share = fwd / requests
per_batch = fwd / batches if batches else 0
print(f"{runtime:16} {pipeline:>4} {r['ops_per_sec']:10.0f} {r['latency_us']['p99']:8.0f} "
      f"{cpu_us:12.2f} {share:10.2f} {per_batch:10.1f}")
PY
  done
done
