# Sourced by the bench scripts: their output folder, servers on ephemeral ports, a Redis of
# their own, and the cleanup of both when the script ends. The servers' stderr goes to
# SERVER_LOG (bench_output sets it; /dev/null otherwise).

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# bench_output DIR: makes DIR (OUT), empties its runs.jsonl and servers.log (SERVER_LOG).
bench_output() {
    OUT=$1
    SERVER_LOG=$OUT/servers.log
    mkdir -p "$OUT"
    : > "$OUT/runs.jsonl"
    : > "$SERVER_LOG"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server BINARY [VAR=value...]: runs BINARY on an ephemeral port with the given
# environment; sets PORT and PID.
start_server() {
    local bin=$1; shift
    local log; log=$(mktemp)
    env PORT=0 RUST_LOG=warn "$@" "$bin" > "$log" 2>> "${SERVER_LOG:-/dev/null}" &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 200); do grep -q "listening on" "$log" && break; sleep 0.05; done
    PORT=$(sed -n 's/^listening on //p' "$log")
    rm -f "$log"
    [ -n "$PORT" ] || { echo "$bin did not start" >&2; exit 1; }
}

stop_servers() { kill "$@"; wait "$@" 2>/dev/null || true; }

# start_redis: a redis-server on a free port, nothing kept on disk; sets REDIS_PORT.
start_redis() {
    command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 1; }
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --save '' --appendonly no >> "${SERVER_LOG:-/dev/null}" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
}
