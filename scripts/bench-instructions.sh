#!/usr/bin/env bash
# Instructions per client cycle (connect, join the namespace, authenticate, disconnect), the
# stack (examples/demo.rs) against bare socketioxide (examples/bare_socketioxide.rs), counted
# by valgrind's callgrind: the same figure run after run, whatever else the machine does, where
# CPU time per handshake varies by ±15 % (BENCHMARKS.md).
#
#   bash scripts/bench-instructions.sh        # CLIENTS=1000 by default; profiles in target/bench-instructions/
#
# Each server runs under callgrind; 50 warm-up cycles, then the counters are zeroed, CLIENTS
# cycles (20 at a time) are run by the load tool, and the counters dumped. The profiles are
# kept for callgrind_annotate (built with line tables: `cargo build --profile profiling`).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-1000}
OUT=target/bench-instructions
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cargo build --profile profiling --example demo --example bare_socketioxide
cargo build --release --example load
source scripts/bench-servers.sh

# cycles NAME: prints NAME's instructions per cycle.
cycles() {
    local name=$1 port log
    port=$(free_port)
    log="$OUT/$name.log"
    rm -f "$OUT/$name".callgrind.*
    PORT=$port RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.callgrind.%p" \
        "target/profiling/examples/$name" > "$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 600); do grep -q "listening on" "$log" && break; sleep 0.1; done
    local url=http://127.0.0.1:$port
    target/release/examples/load --url "$url" --scenario connect --clients 50 --concurrency 10 > /dev/null 2>&1
    callgrind_control --zero "$pid" > /dev/null
    target/release/examples/load --url "$url" --scenario connect --clients "$CLIENTS" --concurrency 20 > /dev/null 2>&1
    callgrind_control --dump "$pid" > /dev/null
    stop_servers "$pid"
    local total
    total=$(sed -n 's/^summary: //p' "$OUT/$name".callgrind.*.1)
    echo "$name $((total / CLIENTS))"
}

bare=$(cycles bare_socketioxide)
stack=$(cycles demo)
echo "$bare"
echo "$stack"
python3 -c "import sys; b=int(sys.argv[1]); s=int(sys.argv[2]); print(f'instructions per cycle: bare {b}, the stack {s}: {s/b:.2f}x')" "${bare#* }" "${stack#* }"
