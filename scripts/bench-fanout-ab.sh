#!/usr/bin/env bash
# The Redis fan-out of two revisions side by side: two demo instances of each on one Redis,
# 1,000 clients and 200 sends at 200/s (bench-load.sh's fan-out), runs interleaved so that
# both see the same machine. SCENARIO=connect (5,000 authenticated handshakes, 200 at once)
# or SCENARIO=churn (200 workers connecting, authenticating and leaving for 5 s) compare one
# instance each on local delivery instead, a fresh one per run.
#
#   bash scripts/bench-fanout-ab.sh BASE_REV [RUNS]   # RUNS=3 by default; BASE_REV against HEAD's tree
#   SCENARIO=connect bash scripts/bench-fanout-ab.sh BASE_REV 5
#
# Per-run lines go to target/bench-fanout-ab/runs.jsonl, the summaries (median, min, max, by
# label `base` and `head`) to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bench-fanout-ab.sh BASE_REV [RUNS]}
RUNS=${2:-3}
SCENARIO=${SCENARIO:-fanout}
case $SCENARIO in
    fanout) ARGS=(--scenario fanout --clients 1000 --messages 200 --rate 200) ;;
    connect) ARGS=(--scenario connect --clients 5000 --concurrency 200) ;;
    churn) ARGS=(--scenario churn --workers 200 --duration-ms 5000) ;;
    *) echo "SCENARIO is fanout, connect or churn" >&2; exit 1 ;;
esac
OUT=target/bench-fanout-ab
mkdir -p "$OUT/base" "$OUT/head"
: > "$OUT/runs.jsonl"

cargo build --release --example demo --example load
cp target/release/examples/demo target/release/examples/load "$OUT/head/"
tree=$(mktemp -d)
git worktree add -q --detach "$tree" "$BASE"
# The same target directory: only this crate and its examples are rebuilt.
target="$PWD/target"
(cd "$tree" && CARGO_TARGET_DIR="$target" cargo build --release --example demo)
cp target/release/examples/demo "$OUT/base/"
git worktree remove --force "$tree"
# Cargo keeps the base's build apart but copies its binary over HEAD's: put HEAD's back.
cp "$OUT/head/demo" target/release/examples/demo

source scripts/bench-servers.sh
start_redis

# start BIN: a demo on an ephemeral port (on Redis for the fan-out); sets PORT and PID.
start() {
    local redis=()
    [ "$SCENARIO" = fanout ] && redis=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT")
    start_server "$1" "${redis[@]}"
}

for run in $(seq "$RUNS"); do
    echo "bench-fanout-ab: run $run/$RUNS" >&2
    for label in base head; do
        start "$OUT/$label/demo"; A=$PORT; PA=$PID; URLS=(--url "http://127.0.0.1:$A"); STARTED=("$PA")
        if [ "$SCENARIO" = fanout ]; then
            start "$OUT/$label/demo"; URLS+=(--url "http://127.0.0.1:$PORT"); STARTED+=("$PID")
        fi
        "$OUT/head/load" "${URLS[@]}" --label "$label" "${ARGS[@]}" | grep -v '"runs":' >> "$OUT/runs.jsonl"
        stop_servers "${STARTED[@]}"
    done
done
"$OUT/head/load" --summarize "$OUT/runs.jsonl"
