#!/usr/bin/env bash
# A blindface cluster on this machine, for development and tests: three NATS servers with
# JetStream (client ports 14222-14224, routes 16222-16224, all on 127.0.0.1) and N matcher
# nodes (`blindface serve --cluster`, HTTPS on 127.0.0.1:17878...), each with its own
# cache directory. Everything lives under DIR (default: a new temporary directory) and
# stops on Ctrl-C.
#
#   scripts/cluster-local.sh [NODES=3] [DIR]
#
# BLINDFACE (default target/release/blindface) is the binary; NATS_SERVER (default
# nats-server, Debian's package) the NATS server. Loopback only: nothing here listens
# beyond 127.0.0.1.
set -euo pipefail

nodes=${1:-3}
dir=${2:-$(mktemp -d -t blindface-cluster.XXXXXX)}
bin=${BLINDFACE:-target/release/blindface}
nats=${NATS_SERVER:-nats-server}
nats_base=${NATS_BASE_PORT:-14222}
route_base=${ROUTE_BASE_PORT:-16222}
http_base=${HTTP_BASE_PORT:-17878}

command -v "$nats" >/dev/null || { echo "cluster-local: $nats not found (apt install nats-server)" >&2; exit 1; }
[ -x "$bin" ] || { echo "cluster-local: $bin not found (cargo build --release)" >&2; exit 1; }
mkdir -p "$dir"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

routes=""
for i in 0 1 2; do
    routes+="${routes:+,}nats://127.0.0.1:$((route_base + i))"
done
urls=""
for i in 0 1 2; do
    mkdir -p "$dir/nats$i"
    "$nats" -a 127.0.0.1 -p $((nats_base + i)) -n "nats$i" -js -sd "$dir/nats$i" \
        --cluster_name blindface --cluster "nats://127.0.0.1:$((route_base + i))" \
        --routes "$routes" >"$dir/nats$i.log" 2>&1 &
    pids+=($!)
    urls+="${urls:+,}nats://127.0.0.1:$((nats_base + i))"
done
for i in 0 1 2; do
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$((nats_base + i))") 2>/dev/null && break
        sleep 0.1
    done
done
echo "NATS: $urls (logs in $dir/nats*.log)"

matchers=""
for i in $(seq 0 $((nodes - 1))); do
    addr="127.0.0.1:$((http_base + i))"
    "$bin" serve --cluster "$urls" --addr "$addr" --data "$dir/node$i" \
        >"$dir/node$i.out" 2>"$dir/node$i.log" &
    pids+=($!)
    for _ in $(seq 300); do
        grep -q "listening on" "$dir/node$i.out" 2>/dev/null && break
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/node$i.log" >&2; exit 1; }
        sleep 0.1
    done
    matchers+="${matchers:+,}https://$addr"
    cat "$dir/node$i.out"
done
echo
echo "matcher: --matcher $matchers"
echo "data and logs: $dir; Ctrl-C stops everything"
wait
