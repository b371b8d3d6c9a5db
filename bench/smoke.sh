#!/usr/bin/env bash
# Seconds-long smoke of natter-bench against Natter, for CI: 10 direct rooms for
# 3 s (closed loop), 4 groups of 5 for 3 s (fan-out), a short
# reconnect-then-sync run, a few searches in a room of 2,000 messages and three
# 2 MiB uploads. Exits non-zero when a message is lost or duplicated, a file
# comes back different (or anything else in the contract breaks).
#
#   bench/smoke.sh                # builds Natter and natter-bench (debug) first
#   NATTER_BIN=target/release/natter BENCH_BIN=target/release/natter-bench bench/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

if [ -z "${NATTER_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  cargo build -j 2 -p natter -p natter-bench --bins
fi
NATTER_BIN=${NATTER_BIN:-target/debug/natter}
BENCH_BIN=${BENCH_BIN:-target/debug/natter-bench}

TMP=$(mktemp -d -t natter-smoke.XXXXXX)
NATTER_PID=""
cleanup() {
  [ -n "$NATTER_PID" ] && stop_pid "$NATTER_PID"
  rm -rf "$TMP"
}
trap cleanup EXIT

if ! start_natter "$NATTER_BIN" "$TMP/data" "$TMP/natter.log"; then
  echo "smoke: Natter did not start:" >&2
  cat "$TMP/natter.log" >&2 || true
  exit 1
fi
echo "smoke: Natter at $NATTER_URL (pid $NATTER_PID)"

status=0
timeout 120 "$BENCH_BIN" --url "$NATTER_URL" pairs --rooms 10 --duration 3 --warmup 0.5 --server-pid "$NATTER_PID" || status=1
timeout 120 "$BENCH_BIN" --url "$NATTER_URL" groups --groups 4 --members 5 --duration 3 --warmup 0.5 --server-pid "$NATTER_PID" || status=1
timeout 120 "$BENCH_BIN" --url "$NATTER_URL" reconnect --rooms 4 --duration 3 --online-ms 700 --offline-ms 300 || status=1
timeout 120 "$BENCH_BIN" --url "$NATTER_URL" search --messages 2000 --rounds 2 || status=1
timeout 120 "$BENCH_BIN" --url "$NATTER_URL" uploads --size-mb 2 --count 3 --server-pid "$NATTER_PID" || status=1
if ! kill -0 "$NATTER_PID" 2>/dev/null; then
  echo "smoke: Natter died during the run" >&2
  tail -n 50 "$TMP/natter.log" >&2 || true
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "smoke: FAILED (Natter log tail follows)" >&2
  tail -n 30 "$TMP/natter.log" >&2 || true
else
  echo "smoke: ok"
fi
exit "$status"
