#!/usr/bin/env bash
# The load comparison of BENCHMARKS.md, in one run on this machine: a bare socketioxide server
# (examples/bare_socketioxide.rs), the full stack on local delivery (examples/demo.rs), and two
# demo instances on a Redis started here, driven by the load tool (examples/load.rs).
#
#   bash scripts/bench-load.sh            # RUNS=5 by default; results in target/bench-load/
#
# Each connect run gets a fresh server, so that its memory figure starts from an empty heap.
# Per-run lines go to target/bench-load/runs.jsonl, the summaries (median, min, max) to
# target/bench-load/summary.jsonl and stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
BIN=target/release/examples
source scripts/bench-servers.sh
bench_output target/bench-load

cargo build --release --example demo --example bare_socketioxide --example load
# start NAME [VAR=value...]: the release example NAME on an ephemeral port; sets PORT and PID.
start() { local bin=$1; shift; start_server "$BIN/$bin" "$@"; }
stop() { stop_servers "$1"; }

load() { "$BIN/load" "$@" | grep -v '"runs":' >> "$OUT/runs.jsonl"; }

CONNECT=(--scenario connect --clients 5000 --concurrency 200)
FANOUT=(--scenario fanout --clients 1000 --messages 200 --rate 200)
ROOMS=(--scenario rooms --clients 1000 --rooms 10 --messages 200 --rate 200)
CHURN=(--scenario churn --workers 200 --duration-ms 5000)
FLOOD=(--scenario fanout --clients 1000 --messages 200 --rate 200 --flood 50000)
# The ping at scale: just under the 20,000 open files each process may hold, the seeds' 30 s
# interval, held 60 s, once for each server after the runs (SKIP_HOLD=1 skips it: about 2.5 minutes).
HOLD=(--scenario hold --clients 19900 --concurrency 200 --duration-ms 60000)

start_redis
REDIS="REDIS_URL=redis://127.0.0.1:$REDIS_PORT"

for run in $(seq "$RUNS"); do
    echo "bench-load: run $run/$RUNS" >&2
    for target in bare stack; do
        bin=bare_socketioxide; [ $target = stack ] && bin=demo
        start $bin; load --url "http://127.0.0.1:$PORT" --label $target "${CONNECT[@]}"; stop "$PID"
        start $bin
        for s in FANOUT ROOMS CHURN; do
            declare -n args=$s
            load --url "http://127.0.0.1:$PORT" --label $target "${args[@]}"
        done
        load --url "http://127.0.0.1:$PORT" --label "$target+flood" "${FLOOD[@]}"
        stop "$PID"
    done
    # Two demo instances on one Redis: clients and sends spread over both.
    start demo "$REDIS"; A=$PORT; PA=$PID
    start demo "$REDIS"; B=$PORT; PB=$PID
    load --url "http://127.0.0.1:$A" --url "http://127.0.0.1:$B" --label stack+redis "${CONNECT[@]}"
    stop_servers "$PA" "$PB"
    start demo "$REDIS"; A=$PORT; PA=$PID
    start demo "$REDIS"; B=$PORT; PB=$PID
    for s in FANOUT ROOMS CHURN; do
        declare -n args=$s
        load --url "http://127.0.0.1:$A" --url "http://127.0.0.1:$B" --label stack+redis "${args[@]}"
    done
    stop_servers "$PA" "$PB"
done
if [ "${SKIP_HOLD:-0}" = 0 ]; then
    for target in bare stack; do
        bin=bare_socketioxide; [ $target = stack ] && bin=demo
        start $bin; load --url "http://127.0.0.1:$PORT" --label $target "${HOLD[@]}"; stop "$PID"
    done
fi
"$BIN/load" --summarize "$OUT/runs.jsonl" | tee "$OUT/summary.jsonl"
