#!/usr/bin/env bash
# What TLS costs: one corecache with a plaintext and a TLS listener side by
# side, loaded through each in turn at pipeline 1 and 16, in one run. For
# each row: throughput, p99, the server's CPU per request (from
# /proc/<pid>/stat), then TLS's throughput and CPU as a ratio of plaintext's.
# Handshakes happen while loadgen connects, outside the measured window, so
# this is the cost of encrypting the traffic itself.
#
#   cargo build --release --workspace && bash benches/tls.sh
#
# DURATION (default 5s), THREADS (2), RUNTIME (thread-per-core), CONNECTIONS
# (50) and BIN (target/release) change the run. The certificates (an ECDSA
# P-256 CA and a server certificate for 127.0.0.1) are made with `openssl`
# for the run and deleted after it. On a 2-CPU machine the server and
# loadgen share the CPUs, so read the ratios between rows, not the absolute
# numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release}
duration=${DURATION:-5s}
threads=${THREADS:-2}
runtime=${RUNTIME:-thread-per-core}
connections=${CONNECTIONS:-50}
port=23211
tls_port=23212
hz=$(getconf CLK_TCK)

dir=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# A CA, and a server certificate it signs for the address loadgen dials.
quiet() { "$@" >/dev/null 2>&1 || { echo "tls.sh: failed: $*" >&2; exit 1; }; }
p256=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
quiet openssl req -x509 "${p256[@]}" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" \
  -days 2 -subj /CN=corecache-bench-ca
quiet openssl req "${p256[@]}" -keyout "$dir/server-key.pem" -out "$dir/server.csr" \
  -subj /CN=localhost
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$dir/ext"
quiet openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
  -CAcreateserial -days 2 -extfile "$dir/ext" -out "$dir/server.pem"

"$bin/corecache" --port "$port" --threads "$threads" --runtime "$runtime" -m 256 \
  --tls-cert "$dir/server.pem" --tls-key "$dir/server-key.pem" \
  --tls-listen "127.0.0.1:$tls_port" 2>"$dir/server.log" &
server=$!
for p in "$port" "$tls_port"; do
  for _ in $(seq 200); do nc -z 127.0.0.1 "$p" 2>/dev/null && break; sleep 0.05; done
  nc -z 127.0.0.1 "$p" || { echo "tls.sh: the server is not listening on $p" >&2; cat "$dir/server.log" >&2; exit 1; }
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
load() { # ADDR PIPELINE JSON [loadgen flags...]
  local addr=$1 pipeline=$2 json=$3
  shift 3
  "$bin/loadgen" --server "$addr" --threads 1 --connections "$connections" \
    --pipeline "$pipeline" --keys 100000 --value-size 32 --get-ratio 0.9 "$@" \
    --json "$json" >/dev/null
}

# Every key stored once, over plaintext; no row measures the prefill.
load "127.0.0.1:$port" 16 "$dir/prefill.json" --prefill --duration 1s --warmup 0s

printf '%-9s %4s %10s %8s %12s %10s %10s\n' transport pipe ops/s p99us cpu_us/req ops_ratio cpu_ratio
for pipeline in 1 16; do
  for transport in plaintext tls; do
    if [ "$transport" = tls ]; then
      addr="127.0.0.1:$tls_port"; flags=(--tls-ca "$dir/ca.pem")
    else
      addr="127.0.0.1:$port"; flags=()
    fi
    before=$(cpu_ticks "$server")
    load "$addr" "$pipeline" "$dir/$transport-$pipeline.json" "${flags[@]}" \
      --duration "$duration" --warmup 0s
    after=$(cpu_ticks "$server")
    python3 - "$transport" "$pipeline" "$((after - before))" "$hz" "$dir" <<'PY'
import json, sys
transport, pipeline, ticks, hz, dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
r = json.load(open(f"{dir}/{transport}-{pipeline}.json"))
if r["errors"]["total"]:
    sys.exit(f"tls.sh: {transport} at pipeline {pipeline}: {r['errors']}")
# The server's CPU over the whole loadgen run (its connects, and for TLS
# their 50 handshakes, a few ms, included) per request measured.
cpu_us = ticks / hz * 1e6 / r["requests"]
json.dump({"ops": r["ops_per_sec"], "cpu_us": cpu_us}, open(f"{dir}/{transport}-{pipeline}.row", "w"))
ratios = ("", "")
if transport == "tls":
    plain = json.load(open(f"{dir}/plaintext-{pipeline}.row"))
    ratios = (f"{r['ops_per_sec'] / plain['ops']:.2f}", f"{cpu_us / plain['cpu_us']:.2f}")
print(f"{transport:9} {pipeline:>4} {r['ops_per_sec']:10.0f} {r['latency_us']['p99']:8.0f} "
      f"{cpu_us:12.2f} {ratios[0]:>10} {ratios[1]:>10}")
PY
  done
done
echo "($runtime, $threads server threads, $connections connections, 32-byte values, 90% gets, $duration each)"
