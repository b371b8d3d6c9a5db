# Helpers shared by bench/smoke.sh and bench/compare.sh (sourced, not run).

# A free TCP port on 127.0.0.1 (the kernel picks it; a tiny race is acceptable here).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL SECONDS PID: waits until the server answers HTTP at all (any status).
wait_http() {
  local url=$1 deadline=$((SECONDS + $2)) pid=$3
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if curl -s -o /dev/null --max-time 2 "$url/api/v1/me"; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

# stop_pid PID: SIGTERM, up to 10 s, then SIGKILL; only the process we started.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# start_natter BIN DATA_DIR LOG: starts Natter on a free port with the load-test
# settings; sets NATTER_PID and NATTER_URL. Extra args after LOG are passed on.
start_natter() {
  local bin=$1 data=$2 log=$3
  shift 3
  mkdir -p "$data"
  "$bin" serve --addr 127.0.0.1:0 --data-dir "$data" \
    --send-rate 1000000 --send-burst 1000000 \
    --search-rate 1000000 --search-burst 1000000 \
    --argon2-memory-kib 64 --argon2-iterations 1 \
    --auth-attempts-per-account 1000000 --auth-attempts-per-address 1000000 \
    --max-connections-per-user 1000000 --max-connections 1000000 \
    --max-connections-per-address 1000000 "$@" >"$log.out" 2>"$log" &
  NATTER_PID=$!
  NATTER_URL=""
  local deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)) && [ -z "$NATTER_URL" ]; do
    kill -0 "$NATTER_PID" 2>/dev/null || break
    NATTER_URL=$(grep -o 'http://[0-9.:]*' "$log.out" 2>/dev/null | head -n1 || true)
    [ -n "$NATTER_URL" ] || sleep 0.2
  done
  [ -n "$NATTER_URL" ] && wait_http "$NATTER_URL" 30 "$NATTER_PID"
}
