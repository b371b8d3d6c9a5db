#!/usr/bin/env bash
# How Natter grows: idle sockets (1k, 10k, 100k: RSS per socket, connect rate)
# and closed-loop pairs (10, 100, 1000 rooms: throughput, latency, CPU per
# message), one fresh Natter per step. Prints a Markdown table. ~6 min.
#
#   bench/scale.sh [--quick] [--out DIR] [--no-build]
# Environment: NATTER_ARGS adds flags to Natter's command line.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. bench/lib.sh

QUICK=0 OUT="" BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT=$2; shift ;;
    --no-build) BUILD=0 ;;
    *) echo "scale: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  SOCKETS=(1000 5000) ROOMS=(10 100) DUR=3 HOLD=3
else
  SOCKETS=(1000 10000 100000) ROOMS=(10 100 1000) DUR=10 HOLD=30
fi
OUT=${OUT:-$(mktemp -d -t natter-scale.XXXXXX)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
NATTER_PID=""
trap '[ -n "$NATTER_PID" ] && stop_pid "$NATTER_PID"' EXIT
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$BUILD" = 1 ]; then
  cargo build --release -j 2 -p natter -p natter-bench --bins
fi
BENCH="$ROOT/target/release/natter-bench"

step() { # LABEL ARGS...
  local label=$1 line rc=0
  shift
  rm -rf "$OUT/data"
  # shellcheck disable=SC2086
  start_natter "$ROOT/target/release/natter" "$OUT/data" "$OUT/natter-$label.log" ${NATTER_ARGS:-} || {
    echo "scale: Natter did not start" >&2; exit 1; }
  echo "scale: $label: natter-bench $*" >&2
  timeout 600 "$BENCH" --url "$NATTER_URL" --json "$@" --server-pid "$NATTER_PID" >"$OUT/$label.txt" 2>&1 || rc=$?
  sed '$d' "$OUT/$label.txt" | grep -v '^\(pairs\|idle\):' >&2 || true
  line=$(tail -n 1 "$OUT/$label.txt")
  jq -e . >/dev/null 2>&1 <<<"$line" || line='{"ok":false}'
  jq -c --arg l "$label" --argjson rc "$rc" '. + {label:$l, exit:$rc}' <<<"$line" >>"$RESULTS"
  stop_pid "$NATTER_PID"
  NATTER_PID=""
}

# Server and bench each need a descriptor per socket: clip steps to the open-file limit.
FD_LIMIT=$(ulimit -n)
for n in "${SOCKETS[@]}"; do
  if [ "$FD_LIMIT" != unlimited ] && [ "$n" -gt $((FD_LIMIT - 500)) ]; then
    echo "scale: $n sockets do not fit the open-file limit of $FD_LIMIT (raise it with" \
      "'ulimit -Hn', which needs CAP_SYS_RESOURCE); running $((FD_LIMIT - 500)) instead" >&2
    n=$((FD_LIMIT - 500))
  fi
  step "idle-$n" idle --sockets "$n" --hold "$HOLD" --settle 2
done
for r in "${ROOMS[@]}"; do
  step "pairs-$r" pairs --rooms "$r" --inflight 4 --duration "$DUR" --warmup 2
done

python3 - "$RESULTS" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| idle sockets | connected | connect rate | server RSS holding | RSS per socket | ok |")
print("|---|---|---|---|---|---|")
for r in rows:
    if r.get("scenario") != "idle":
        continue
    per = r.get("rss_per_socket_bytes")
    held = (r.get("rss_bytes") or {}).get("holding")
    print(f"| {r['sockets']:,} | {r['connected']:,} | {r['connect_per_s']:,.0f}/s | "
          f"{held / 1048576 if held else 0:,.0f} MiB | {per / 1024 if per is not None else float('nan'):.1f} KiB | {r['ok']} |")
print()
print("| rooms (sockets) | delivered msgs/s | send→receive p50 / p99 / max | server CPU per msg | lost / dup / out-of-order | ok |")
print("|---|---|---|---|---|---|")
for r in rows:
    if r.get("scenario") != "pairs":
        continue
    l = r["latency_us"]["send_receive"]
    c = r["counts"]
    cpu = (r.get("cpu_us_per_delivered") or {}).get("server")
    print(f"| {r['rooms']:,} ({2 * r['rooms']:,}) | {r['delivered_per_s']:,.0f} | "
          f"{l['p50'] / 1000:.1f} / {l['p99'] / 1000:.1f} / {l['max'] / 1000:.1f} ms | "
          f"{'n/a' if cpu is None else f'{cpu:.0f} µs'} | {c['lost']} / {c['duplicated']} / {c['out_of_order']} | {r['ok']} |")
PY
