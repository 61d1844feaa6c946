#!/usr/bin/env bash
# Every test of the project, from a fresh clone: the Rust suites (unit, integration against a
# real server and client, doc tests, the examples' own tests) and the JavaScript interop
# suite (the official socket.io-client against the demo server).
# Installs what it needs: the npm packages of the interop suites, and Node, redis-server,
# promtool (Debian's prometheus) and Chromium (the Admin UI in a browser) through apt-get
# where they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
# The fan-out tests start their own redis-server on free ports.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# tests/js/metrics.test.mjs checks the demo's /metrics with Prometheus' promtool.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The Admin UI suite opens the UI in Debian's headless Chromium (puppeteer-core drives it).
[ -n "${CHROMIUM_BIN:-}" ] || command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== npm packages of the interop tests"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

echo "== Rust: unit, integration and example tests"
# The example binaries themselves: tests/examples.rs and the interop suite run them.
cargo build --examples --features test-util
cargo test --all-targets --features test-util
echo "== Rust: doc tests"
cargo test --doc

echo "== JavaScript interop: socket.io-client against the demo, the chat example and the protocol suite's reference server; Redis fleets (classic, and sharded on a Redis Cluster) with the npm Redis packages; the Admin UI in headless Chromium"
target_dir=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
(cd tests/js && DEMO_BIN="$target_dir/debug/examples/demo" EMITTER_BIN="$target_dir/debug/examples/emitter" \
  CONFORMANCE_BIN="$target_dir/debug/examples/protocol_conformance" CHAT_BIN="$target_dir/debug/examples/chat" \
  FLEET_BIN="$target_dir/debug/examples/fleet" \
  node --test interop.test.mjs fanout.test.mjs conformance.test.mjs chat.test.mjs fleet.test.mjs sharded.test.mjs \
    metrics.test.mjs admin-ui.test.mjs cors.test.mjs)
