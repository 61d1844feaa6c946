#!/usr/bin/env bash
# Beyond one process (BENCHMARKS.md): demo instances on one Redis started here, each held by a
# load process of its own with 19,000 authenticated clients (each process may hold at most
# 20,000 open files), and broadcasts to `io-default` reaching every client of every instance.
#
#   bash scripts/bench-fleet.sh            # RUNS=3 by default; results in target/bench-fleet/
#
# For each run: 1, 2 and 4 instances on Redis' classic pub/sub with a burst of 40 broadcasts
# (the fleet's capacity: deliveries/s at saturation, server CPU per delivery, Redis CPU per
# publish), 4 instances with 20 broadcasts at 1/s (latency below saturation), and both again
# on sharded pub/sub (REDIS_SHARDED=1). Fresh instances for every case. Per-run lines go to
# target/bench-fleet/runs.jsonl, the summaries (median, min, max) to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
PER_INSTANCE=${PER_INSTANCE:-19000}
BIN=target/release/examples
source scripts/bench-servers.sh
bench_output target/bench-fleet

cargo build --release --example demo --example load
start_redis
REDIS=redis://127.0.0.1:$REDIS_PORT

BURST=(--messages 40 --rate 1000)
STEADY=(--messages 20 --rate 1)

# fleet LABEL INSTANCES [demo's VAR=value...] -- load options: fresh instances, one load
# process each, one run.
fleet() {
    local label=$1 n=$2; shift 2
    local env=()
    while [ "$1" != -- ]; do env+=("$1"); shift; done
    shift
    local urls=() started=()
    for _ in $(seq "$n"); do
        start_server "$BIN/demo" REDIS_URL="$REDIS" "${env[@]}"
        urls+=(--url "http://127.0.0.1:$PORT"); started+=("$PID")
    done
    "$BIN/load" --scenario fleet "${urls[@]}" --processes "$n" --clients $((n * PER_INSTANCE)) \
        --redis "$REDIS" --label "$label" "$@" | grep -v '"runs":' >> "$OUT/runs.jsonl"
    stop_servers "${started[@]}"
}

for run in $(seq "$RUNS"); do
    echo "bench-fleet: run $run/$RUNS" >&2
    for n in 1 2 4; do
        fleet classic-burst "$n" -- "${BURST[@]}"
    done
    fleet classic-steady 4 -- "${STEADY[@]}"
    fleet sharded-burst 4 REDIS_SHARDED=1 -- "${BURST[@]}"
    fleet sharded-steady 4 REDIS_SHARDED=1 -- "${STEADY[@]}"
done
"$BIN/load" --summarize "$OUT/runs.jsonl" | tee "$OUT/summary.jsonl"
