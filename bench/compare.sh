#!/usr/bin/env bash
# Natter against the two reference peers (shared/peers/node, shared/peers/flask),
# ONE AFTER ANOTHER on this machine, with the same natter-bench scenarios; prints
# a Markdown table with ratios against the node peer. See docs/benchmarks.md.
#
#   bench/compare.sh                 # full run (~8 min on 2 cores)
#   bench/compare.sh --quick         # ~1-2 min, small numbers, for a sanity check
#   bench/compare.sh --only natter,node
#
# Options: --quick, --only LIST, --out DIR (results; default a temp dir that is kept),
#          --peers DIR (default ../shared/peers), --no-build,
#          --render DIR (only print the table of an earlier run's DIR/results.jsonl).
# Environment: NATTER_ARGS adds flags to Natter's command line (e.g. "--sqlite-synchronous normal").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. bench/lib.sh

QUICK=0
ONLY="natter,node,flask"
OUT=""
PEERS_SRC="${NATTER_PEERS:-$ROOT/../shared/peers}"
BUILD=1
RENDER=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) ONLY=$2; shift ;;
    --out) OUT=$2; shift ;;
    --peers) PEERS_SRC=$2; shift ;;
    --no-build) BUILD=0 ;;
    --render) RENDER=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "compare: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

render_table() { # RESULTS ENV: the Markdown table
python3 - "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
env = open(sys.argv[2]).read().strip()
by = {}
for r in rows:
    by.setdefault(r["server"], {})[r.get("label")] = r
servers = list(by)
def get(s, label, *path):
    v = by.get(s, {}).get(label)
    for p in path:
        if not isinstance(v, dict):
            return None
        v = v.get(p)
    return v
def ms(us):
    return None if us is None else us / 1000.0
cols = [
    ("delivered msgs/s (closed loop)", lambda s: get(s, "closed", "delivered_per_s"), "{:,.0f}", True),
    ("server CPU per delivered msg (closed loop)", lambda s: get(s, "closed", "cpu_us_per_delivered", "server"), "{:.0f} µs", False),
    ("send→ack p50 / p99 (closed loop)", lambda s: (ms(get(s, "closed", "latency_us", "send_ack", "p50")), ms(get(s, "closed", "latency_us", "send_ack", "p99"))), "{:.1f} / {:.1f} ms", False),
    ("send→receive p50 / p99 at 500 msgs/s", lambda s: (ms(get(s, "open", "latency_us", "send_receive", "p50")), ms(get(s, "open", "latency_us", "send_receive", "p99"))), "{:.2f} / {:.2f} ms", False),
    ("send→receive p50 / p99 at 500 msgs/s, from the socket write", lambda s: (ms(get(s, "open", "latency_us", "send_receive_from_write", "p50")), ms(get(s, "open", "latency_us", "send_receive_from_write", "p99"))), "{:.2f} / {:.2f} ms", False),
    ("p99.9 / max at 500 msgs/s", lambda s: (ms(get(s, "open", "latency_us", "send_receive", "p999")), ms(get(s, "open", "latency_us", "send_receive", "max"))), "{:.1f} / {:.1f} ms", False),
    ("RSS per idle socket", lambda s: (lambda b: None if b is None else b / 1024.0)(get(s, "idle", "rss_per_socket_bytes")), "{:.1f} KiB", False),
]
def fmt(v, f):
    if v is None or (isinstance(v, tuple) and None in v):
        return None
    return f.format(*map(float, v)) if isinstance(v, tuple) else f.format(float(v))
def ratio(v, base, higher_better):
    if v is None or base is None:
        return ""
    a = v[-1] if isinstance(v, tuple) else v
    b = base[-1] if isinstance(base, tuple) else base
    if not a or not b or a <= 0 or b <= 0:
        return ""
    return f" ({a / b:.2f}× node)"
print("```")
print(env)
print("```")
print()
print("| server | " + " | ".join(c[0] for c in cols) + " | lost / dup / out-of-order / reconnect |")
print("|---" * (len(cols) + 2) + "|")
for s in servers:
    cells = []
    for name, f, spec, hb in cols:
        v = f(s)
        t = fmt(v, spec)
        if t is None:
            cells.append("failed" if any(not r.get("ok", True) and "error" in r for r in by[s].values()) else "n/a")
            continue
        cells.append(t + ("" if s == "node" else ratio(v, f("node") if "node" in by else None, hb)))
    integ = []
    lost = sum((get(s, l, "counts", "lost") or 0) for l in ("closed", "open", "reconnect"))
    dup = sum((get(s, l, "counts", k) or 0) for l in ("closed", "open", "reconnect") for k in ("duplicated", "duplicated_live", "duplicated_sync"))
    ooo = sum((get(s, l, "counts", "out_of_order") or 0) for l in ("closed", "open"))
    rec = get(s, "reconnect", "ok")
    bad = [l for l, r in by[s].items() if not r.get("ok", False)]
    integ = f"{lost} / {dup} / {ooo} / {'ok' if rec else 'FAILED' if rec is False else 'n/a'}"
    if bad:
        integ += " — not ok: " + ", ".join(str(b) for b in bad)
    print(f"| {s} | " + " | ".join(cells) + f" | {integ} |")
print()
print("Ratios are against the node peer (for two figures, of the second): above 1 is more throughput, or more latency / CPU / memory.")
PY
}

if [ -n "$RENDER" ]; then
  render_table "$RENDER/results.jsonl" "$RENDER/env.txt"
  exit 0
fi

if [ "$QUICK" = 1 ]; then
  CLOSED=(pairs --rooms 50 --inflight 4 --duration 3 --warmup 1)
  OPEN=(pairs --rooms 50 --rate 500 --duration 3 --warmup 1)
  IDLE=(idle --sockets 1000 --hold 3 --settle 1)
  RECON=(reconnect --rooms 10 --duration 3 --online-ms 700 --offline-ms 300)
else
  CLOSED=(pairs --rooms 200 --inflight 4 --duration 10 --warmup 2)
  OPEN=(pairs --rooms 200 --rate 500 --duration 10 --warmup 2)
  IDLE=(idle --sockets 5000 --hold 30 --settle 3)
  RECON=(reconnect --rooms 20 --duration 5)
fi

OUT=${OUT:-$(mktemp -d -t natter-compare.XXXXXX)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
# Peers are installed once into a cache (npm builds better-sqlite3, which is slow)
# and set up again only when their files change.
PEERS_CACHE="${NATTER_PEERS_CACHE:-$ROOT/target/bench-peers}"
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"' EXIT

# Servers and the load generator need a descriptor per socket (root may raise the hard limit).
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log() { echo "compare: $*" >&2; }

if [ "$BUILD" = 1 ]; then
  log "building Natter and natter-bench (release)"
  cargo build --release -j 2 -p natter -p natter-bench --bins
fi
BENCH="$ROOT/target/release/natter-bench"
NATTER="$ROOT/target/release/natter"

# prepare_peer NAME: copies shared/peers/NAME into the cache and runs its setup.sh if needed.
prepare_peer() {
  local name=$1 src="$PEERS_SRC/$1" dst="$PEERS_CACHE/$1" stamp
  [ -d "$src" ] || { log "no peer at $src"; return 1; }
  stamp=$(cd "$src" && find . -type f -not -path './node_modules/*' -not -path './.venv/*' -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  if [ -f "$dst/.bench-stamp" ] && [ "$(cat "$dst/.bench-stamp")" = "$stamp" ]; then
    return 0
  fi
  log "setting up the $name peer in $dst (first time or changed)"
  mkdir -p "$dst"
  (cd "$src" && tar cf - --exclude=node_modules --exclude=.venv .) | (cd "$dst" && tar xf -)
  chmod -R u+w "$dst"
  (cd "$dst" && ./setup.sh) >"$OUT/$name-setup.log" 2>&1 || { log "$name setup failed (see $OUT/$name-setup.log)"; return 1; }
  echo "$stamp" >"$dst/.bench-stamp"
}

# start_server NAME [TAG]: a fresh server (its own database, TAG in its file names);
# sets SERVER_PID and SERVER_URL.
start_server() {
  local name=$1 tag=${2:-} port
  SERVER_PID=""
  SERVER_URL=""
  case "$name" in
    natter)
      # shellcheck disable=SC2086
      if start_natter "$NATTER" "$OUT/natter-data$tag" "$OUT/natter$tag.log" ${NATTER_ARGS:-}; then
        SERVER_PID=$NATTER_PID
        SERVER_URL=$NATTER_URL
        return 0
      fi
      SERVER_PID=$NATTER_PID
      return 1
      ;;
    node)
      prepare_peer node || return 1
      port=$(free_port)
      (cd "$PEERS_CACHE/node" && exec node server.js --port "$port" --db "$OUT/node$tag.db" --cheap-hash) \
        >"$OUT/node$tag.log" 2>&1 &
      ;;
    flask)
      prepare_peer flask || return 1
      port=$(free_port)
      (cd "$PEERS_CACHE/flask" && exec .venv/bin/python app.py --port "$port" --db "$OUT/flask$tag.db" --cheap-hash) \
        >"$OUT/flask$tag.log" 2>&1 &
      ;;
  esac
  SERVER_PID=$!
  SERVER_URL="http://127.0.0.1:$port"
  wait_http "$SERVER_URL" 60 "$SERVER_PID"
}

# run_bench SERVER LABEL ARGS...: runs natter-bench, appends its JSON line tagged with server and label.
run_bench() {
  local server=$1 label=$2 line rc=0
  shift 2
  if ((SECONDS - START > BUDGET)); then
    log "$server: $label: skipped, the run is past its time budget of $BUDGET s"
    jq -cn --arg s "$server" --arg l "$label" '{server:$s, label:$l, ok:false, error:"skipped: time budget"}' >>"$RESULTS"
    return 1
  fi
  log "$server: $label: natter-bench $*"
  timeout 150 "$BENCH" --url "$SERVER_URL" --json "$@" >"$OUT/$server-$label.txt" 2>"$OUT/$server-$label.err" || rc=$?
  sed '$d' "$OUT/$server-$label.txt" >&2
  line=$(tail -n 1 "$OUT/$server-$label.txt")
  if ! jq -e . >/dev/null 2>&1 <<<"$line"; then
    line=$(jq -cn --arg e "natter-bench exited $rc without a result" '{ok:false,error:$e}')
  fi
  jq -c --arg s "$server" --arg l "$label" --argjson rc "$rc" '. + {server:$s, label:$l, exit:$rc}' <<<"$line" >>"$RESULTS"
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "$server died during $label"
    return 1
  fi
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "natter: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (+ local changes)'); node $(node --version 2>/dev/null || echo '?'); $(python3 --version 2>&1)"
  echo "mode: $([ "$QUICK" = 1 ] && echo quick || echo full)"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

IFS=, read -r -a SERVERS <<<"$ONLY"
# Peer installs (first time only) happen before the clock starts.
for server in "${SERVERS[@]}"; do
  case "$server" in node|flask) prepare_peer "$server" || true ;; esac
done
# Every natter-bench run is bounded (timeout 150 s); past this budget the rest are skipped,
# so the whole comparison stays well under 15 minutes even when a server hangs.
BUDGET=$([ "$QUICK" = 1 ] && echo 240 || echo 720)
START=$SECONDS
for server in "${SERVERS[@]}"; do
  log "=== $server ==="
  if ! start_server "$server"; then
    log "$server did not start (log: $OUT/$server.log)"
    jq -cn --arg s "$server" '{server:$s, label:"start", ok:false, error:"did not start"}' >>"$RESULTS"
    [ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"
    SERVER_PID=""
    continue
  fi
  log "$server at $SERVER_URL (pid $SERVER_PID)"
  echo "load average at the start of the $server turn: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
  run_bench "$server" closed "${CLOSED[@]}" --server-pid "$SERVER_PID" &&
    run_bench "$server" open "${OPEN[@]}" --server-pid "$SERVER_PID" &&
    run_bench "$server" reconnect "${RECON[@]}" || true
  stop_pid "$SERVER_PID"
  SERVER_PID=""
  # Memory per idle socket on a fresh process: garbage from the traffic runs (which a
  # garbage collector may free during the hold) must not blur the difference. Idle last:
  # closing thousands of sockets costs some servers seconds of CPU.
  if start_server "$server" -idle; then
    log "$server (fresh, for idle) at $SERVER_URL (pid $SERVER_PID)"
    run_bench "$server" idle "${IDLE[@]}" --server-pid "$SERVER_PID" || true
  else
    log "$server did not start again for idle"
    jq -cn --arg s "$server" '{server:$s, label:"idle", ok:false, error:"did not start"}' >>"$RESULTS"
  fi
  [ -n "$SERVER_PID" ] && stop_pid "$SERVER_PID"
  SERVER_PID=""
done
log "all runs took $((SECONDS - START)) s; results in $OUT"

render_table "$RESULTS" "$OUT/env.txt" | tee "$OUT/table.md"

# Non-zero when any run broke the contract (loss, duplicates, …) or a server failed.
if jq -e -s 'all(.ok == true)' "$RESULTS" >/dev/null; then
  exit 0
fi
log "some runs were not ok: $(jq -r -s '[.[] | select(.ok != true) | "\(.server)/\(.label)"] | join(", ")' "$RESULTS")"
exit 1
