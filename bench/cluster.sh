#!/usr/bin/env bash
# What one message costs across nodes (issue 12, "Fan-out cost"): Natter on
# PostgreSQL + Redis as 1 node, as 3 nodes reached directly, and as 3 nodes
# behind nginx (deploy/nginx.conf); and 1+2idle, 3 nodes with every socket on
# the first (what a node pays for traffic it has no socket for). For each: open-loop pairs at 500 msgs/s
# (p50/p99 send→receive, the two sockets of every room on different nodes),
# a stepwise search for the largest offered rate with zero loss, a longer run
# at that rate, and the CPU time of every process (each natter node, PostgreSQL,
# Redis, nginx, the load generator) per delivered message. Prints Markdown tables.
#
#   bench/cluster.sh [--quick] [--out DIR] [--no-build] [--only 1,1+2idle,3,3nginx]
#   bench/cluster.sh --render DIR     # the tables of an earlier run again
#
# Needs: PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth: a throwaway
# database is created and dropped at exit), Redis on 127.0.0.1:6379 (a unique
# channel prefix), nginx. Environment: PG_HOST, PG_PORT, PG_USER, REDIS_URL,
# NATTER_ARGS (more flags for every node). ~10 minutes; --quick ~3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. bench/lib.sh

QUICK=0 OUT="" BUILD=1 ONLY="1,1+2idle,3,3nginx" RENDER=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT=$2; shift ;;
    --no-build) BUILD=0 ;;
    --only) ONLY=$2; shift ;;
    --render) RENDER=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "cluster: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
render_table() { # RESULTS: the Markdown tables
python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
NAMES = {"1": "1 node", "3": "3 nodes, direct", "3nginx": "3 nodes behind nginx",
         "1+2idle": "3 nodes, every socket on node 1"}
def passed(r):  # the same test as run() in bench/cluster.sh
    try:
        return (r["ok"] is True and r["counts"]["unacked"] == 0 and not r["ack_errors"]
                and r["delivered_per_s"] >= 0.95 * r["offered"]
                and r["latency_us"]["send_receive"]["p99"] < 1_000_000)
    except (KeyError, TypeError):
        return False
def ms(us):
    return f"{us / 1000:.1f}"
configs = []
for r in rows:
    if r.get("config") not in configs:
        configs.append(r.get("config"))
print("| cluster | send→receive p50 / p99 at 500 msgs/s | lost / dup at 500 | largest rate with zero loss, kept pace | there: delivered, p50 / p99 | steps (offered msgs/s: ✓ pass, ✗ fail) | load average |")
print("|---|---|---|---|---|---|---|")
best = {}
for c in configs:
    rs = [r for r in rows if r.get("config") == c]
    f = next((r for r in rs if r["kind"] == "fixed500"), None)
    conf = [r for r in rs if r["kind"] == "confirm"]
    ok = [r for r in conf if passed(r)]
    b = max(ok, key=lambda r: r["offered"]) if ok else None
    best[c] = b
    steps = ", ".join(f"{r['offered']:,} {'✓' if passed(r) else '✗'}" for r in rs if r["kind"] == "step")
    if f and "latency_us" in f:
        l, k = f["latency_us"]["send_receive"], f["counts"]
        at500 = f"{ms(l['p50'])} / {ms(l['p99'])} ms"
        ld500 = f"{k['lost']} / {k['duplicated']}"
    else:
        at500 = ld500 = "failed"
    if b:
        l = b["latency_us"]["send_receive"]
        there = f"{b['delivered_per_s']:,.0f} msgs/s, {ms(l['p50'])} / {ms(l['p99'])} ms"
        rate = f"**{b['offered']:,} msgs/s** ({b['duration_s']:.0f} s run)"
    else:
        sp = [r for r in rs if r["kind"] == "step" and passed(r)]
        there = "—"
        rate = (f"{max(r['offered'] for r in sp):,} msgs/s in a {sp[0]['duration_s']:.0f} s step; " if sp else "") + \
            "the longer runs at " + ", ".join(f"{r['offered']:,}" for r in conf) + " did not pass"
    loads = sorted({r.get("loadavg", "?").split()[0] for r in rs}, key=lambda x: float(x) if x != "?" else 0)
    if c == "1+2idle":
        continue  # no search: only in the CPU table
    print(f"| {NAMES.get(c, c)} | {at500} | {ld500} | {rate} | {there} | {steps} | {loads[0]}–{loads[-1]} |")
print()
print("CPU time per delivered message (µs), from /proc/PID/stat over the measured window")
print("(✗: that run did not pass: it lost messages or did not keep pace):")
print()
print("| cluster | offered msgs/s | natter, each node | natter, all nodes | PostgreSQL | Redis | nginx | all server-side | load generator | cores busy (all × delivered/s) | lost / dup |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for c in configs:
    rs = [r for r in rows if r.get("config") == c]
    for r in [r for r in rs if r["kind"] in ("fixed500", "confirm", "fixed")]:
        if not r or "cpu_us_per_delivered" not in r:
            continue
        u = r["cpu_us_per_delivered"]
        nodes = [v for k, v in sorted(u.items()) if k.startswith("natter") and v is not None]
        natter = sum(nodes)
        pg, rd, ng = u.get("postgres"), u.get("redis"), u.get("nginx")
        total = natter + sum(x for x in (pg, rd, ng) if x is not None)
        fmt = lambda x: "—" if x is None else f"{x:,.0f}"
        busy = (total + (u.get("bench") or 0)) * r["delivered_per_s"] / 1e6
        k = r["counts"]
        mark = "" if passed(r) else " ✗"
        print(f"| {NAMES.get(c, c)} | {r['offered']:,}{mark} | {' + '.join(fmt(x) for x in nodes)} | {fmt(natter)} | "
              f"{fmt(pg)} | {fmt(rd)} | {fmt(ng)} | {fmt(total)} | {fmt(u.get('bench'))} | {busy:.2f} of 2 | "
              f"{k['lost']} / {k['duplicated']} |")
PY
}
if [ -n "$RENDER" ]; then
  render_table "$RENDER/results.jsonl"
  exit 0
fi

PG_HOST=${PG_HOST:-127.0.0.1} PG_PORT=${PG_PORT:-5432} PG_USER=${PG_USER:-postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
ROOMS=200
if [ "$QUICK" = 1 ]; then
  FIXED_WARM=1 FIXED_DUR=3 STEP_WARM=1 STEP_DUR=2 CONFIRM_DUR=3 BISECT=1 START=1000 CAP=8000
else
  FIXED_WARM=2 FIXED_DUR=10 STEP_WARM=1 STEP_DUR=4 CONFIRM_DUR=10 BISECT=3 START=1000 CAP=64000
fi
OUT=${OUT:-$(mktemp -d -t natter-cluster.XXXXXX)}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
RUN_ID="$(date +%s)_$$"
REDIS_PREFIX="natter-bench-cluster-$RUN_ID"

psql_q() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 -Atc "$1"; }

PIDS=() DBS=() NGINX_PID="" NGINX_DIR=""
stop_all() {
  local p
  [ -n "$NGINX_PID" ] && stop_pid "$NGINX_PID"
  NGINX_PID=""
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
}
cleanup() {
  stop_all
  local db
  for db in "${DBS[@]}"; do psql_q "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
  # The nodes keep nothing in Redis but channels; drop any key under the prefix all the same.
  redis-cli -u "$REDIS_URL" --scan --pattern "$REDIS_PREFIX*" 2>/dev/null |
    xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BEST_1=""
command -v nginx >/dev/null || [[ ",$ONLY," != *,3nginx,* ]] || {
  echo "cluster: nginx is not installed (apt-get install nginx-light), or pass --only 1,3" >&2; exit 2; }
psql_q "select 1" >/dev/null || { echo "cluster: no PostgreSQL at $PG_HOST:$PG_PORT" >&2; exit 2; }
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | tr -d '\r' | sed -n 's/^process_id://p')
[ -n "$REDIS_PID" ] || { echo "cluster: no Redis at $REDIS_URL" >&2; exit 2; }
# PostgreSQL's postmaster: the parent of its checkpointer.
CKPT=$(psql_q "select pid from pg_stat_activity where backend_type = 'checkpointer'")
POSTMASTER=$(awk '{print $4}' "/proc/$CKPT/stat" 2>/dev/null || true)

if [ "$BUILD" = 1 ]; then
  cargo build --release -j 2 -p natter -p natter-bench --bins
fi
BIN="$ROOT/target/release/natter"
BENCH="$ROOT/target/release/natter-bench"

# nginx_conf NGINX_PORT NODE_PORTS ADDR...: deploy/nginx.conf pointed at these
# nodes, the per-client connection cap lifted (every bench socket comes from one
# address), plus one port per node (NODE_PORTS, comma-separated) proxying to that
# node only with the same server block: so the bench chooses each socket's node.
nginx_conf() {
  python3 - "$ROOT/deploy/nginx.conf" "$@" <<'PY'
import re, sys
conf = open(sys.argv[1]).read()
port, node_ports, addrs = sys.argv[2], sys.argv[3].split(","), sys.argv[4:]
conf = re.sub(r"        server 127\.0\.0\.1:808[1-9][^;]*;\n", "", conf)
conf = conf.replace("upstream natter {", "upstream natter {\n" + "".join(
    f"        server {a} max_fails=1 fail_timeout=5s;\n" for a in addrs), 1)
conf = conf.replace("limit_conn natter_per_client 64;", "limit_conn natter_per_client 60000;")
start = conf.index("    server {")
end = conf.rindex("}")  # the end of the http block
block = conf[start:end]
assert "listen 127.0.0.1:8080;" in block and "proxy_pass http://natter;" in block
extra = ""
for i, (p, a) in enumerate(zip(node_ports, addrs)):
    extra += f"\n    upstream natter_node{i} {{\n        server {a};\n        keepalive 64;\n    }}\n\n"
    extra += block.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{p};").replace(
        "proxy_pass http://natter;", f"proxy_pass http://natter_node{i};")
conf = conf[:start] + block.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};") + extra + conf[end:]
print(conf, end="")
PY
}

# start_cluster CONFIG: sets URLS (comma-separated), CPU_ARGS, DB.
start_cluster() {
  local config=$1 n i
  case "$config" in 1) n=1 ;; 3|3nginx|1+2idle) n=3 ;; *) echo "cluster: unknown config $config" >&2; exit 2 ;; esac
  DB="natter_bench_${RUN_ID}_${config//+/_}"
  psql_q "CREATE DATABASE $DB" >/dev/null
  DBS+=("$DB")
  local dburl="postgres://$PG_USER@$PG_HOST:$PG_PORT/$DB"
  local urls=() addrs=()
  CPU_ARGS=()
  for i in $(seq 1 "$n"); do
    # shellcheck disable=SC2086
    start_natter "$BIN" "$OUT/data-$config-$i" "$OUT/natter-$config-$i.log" \
      --database-url "$dburl" --redis-url "$REDIS_URL" --redis-prefix "$REDIS_PREFIX-$config" \
      ${NATTER_ARGS:-} || { echo "cluster: node $i did not start (see $OUT/natter-$config-$i.log)" >&2; exit 1; }
    PIDS+=("$NATTER_PID")
    urls+=("$NATTER_URL")
    addrs+=("${NATTER_URL#http://}")
    CPU_ARGS+=(--cpu "natter$i=$NATTER_PID")
  done
  if [ "$config" = 3nginx ]; then
    NGINX_DIR="$OUT/nginx"
    mkdir -p "$NGINX_DIR/logs"
    local port ports=()
    port=$(free_port)
    for i in 1 2 3; do ports+=("$(free_port)"); done
    nginx_conf "$port" "$(IFS=,; echo "${ports[*]}")" "${addrs[@]}" >"$NGINX_DIR/nginx.conf"
    nginx -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" \
      -g "daemon off; pid $NGINX_DIR/nginx.pid; error_log $NGINX_DIR/error.log;" &
    NGINX_PID=$!
    urls=()
    for i in 0 1 2; do
      urls+=("http://127.0.0.1:${ports[$i]}")
      wait_http "http://127.0.0.1:${ports[$i]}" 20 "$NGINX_PID" || {
        echo "cluster: nginx did not answer (see $NGINX_DIR/error.log)" >&2; exit 1; }
    done
    # Master and workers (worker_processes auto), read again at each sample.
    CPU_ARGS+=(--cpu "nginx=@echo $NGINX_PID; pgrep -P $NGINX_PID")
  fi
  CPU_ARGS+=(--cpu "postgres=@psql -h $PG_HOST -p $PG_PORT -U $PG_USER -d postgres -Atc \"select pid from pg_stat_activity where datname = '$DB' or datname is null\"; echo $POSTMASTER")
  CPU_ARGS+=(--cpu "redis=$REDIS_PID")
  # 1+2idle: every socket on node 1, two more nodes on the same Redis channels
  # with no socket at all: what each node pays for the others' traffic.
  [ "$config" = 1+2idle ] && urls=("${urls[0]}")
  URLS=$(IFS=,; echo "${urls[*]}")
}

# run CONFIG KIND RATE WARMUP DURATION: one open-loop pairs run; appends its JSON
# line to results.jsonl and prints "pass" or "fail" (zero loss and kept pace).
run() {
  local config=$1 kind=$2 rate=$3 warm=$4 dur=$5 label line rc=0
  label="$config-$kind-$rate"
  echo "cluster: $label: pairs --rooms $ROOMS --rate $rate ($warm s + $dur s) on $URLS" >&2
  timeout 300 "$BENCH" --url "$URLS" --json pairs --rooms "$ROOMS" --rate "$rate" \
    --warmup "$warm" --duration "$dur" "${CPU_ARGS[@]}" >"$OUT/$label.txt" 2>"$OUT/$label.err" || rc=$?
  line=$(tail -n 1 "$OUT/$label.txt")
  jq -e . >/dev/null 2>&1 <<<"$line" || line='{"ok":false}'
  jq -c --arg c "$config" --arg k "$kind" --argjson r "$rate" --argjson rc "$rc" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    '. + {config:$c, kind:$k, offered:$r, exit:$rc, loadavg:$load}' <<<"$line" >>"$RESULTS"
  # Zero loss: nothing lost, duplicated, unacknowledged or refused; kept pace:
  # at least 95 % of the offered rate delivered inside the window, p99 under 1 s.
  tail -n 1 "$RESULTS" | jq -r --argjson r "$rate" '
    if .ok == true and .counts.unacked == 0 and (.ack_errors | length) == 0
       and .delivered_per_s >= 0.95 * $r and .latency_us.send_receive.p99 < 1000000
    then "pass" else "fail" end'
  grep -E '^  (delivered|send→receive|sent )' "$OUT/$label.txt" >&2 || true
}

for config in ${ONLY//,/ }; do
  echo "cluster: === $config === load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  start_cluster "$config"
  run "$config" fixed500 500 "$FIXED_WARM" "$FIXED_DUR" >/dev/null
  if [ "$config" = 1+2idle ]; then
    # No search: the same load as 1 node's longest run, to compare CPU.
    run "$config" fixed "${BEST_1:-1500}" 2 "$CONFIRM_DUR" >/dev/null
    stop_all
    continue
  fi
  # Doubling, then bisecting between the last pass and the first failure.
  good=0 bad=0 rate=$START
  while [ "$rate" -le "$CAP" ]; do
    if [ "$(run "$config" step "$rate" "$STEP_WARM" "$STEP_DUR")" = pass ]; then
      good=$rate rate=$((rate * 2))
    else
      bad=$rate; break
    fi
  done
  if [ "$good" = 0 ]; then
    good=500  # below the first step: the 500 msgs/s run is the floor reported
  fi
  if [ "$bad" != 0 ]; then
    for _ in $(seq 1 "$BISECT"); do
      mid=$(((good + bad) / 2 / 50 * 50))
      [ "$mid" -gt "$good" ] && [ "$mid" -lt "$bad" ] || break
      if [ "$(run "$config" step "$mid" "$STEP_WARM" "$STEP_DUR")" = pass ]; then good=$mid; else bad=$mid; fi
    done
  fi
  # A longer run at the largest passing rate (CPU per message at full load); 10 % lower once if it fails.
  if [ "$(run "$config" confirm "$good" 2 "$CONFIRM_DUR")" != pass ]; then
    good=$((good * 9 / 10 / 50 * 50))
    run "$config" confirm "$good" 2 "$CONFIRM_DUR" >/dev/null
  fi
  [ "$config" = 1 ] && BEST_1=$good
  stop_all
done

echo "cluster: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
render_table "$RESULTS" | tee "$OUT/table.md"
echo "cluster: everything is in $OUT" >&2
