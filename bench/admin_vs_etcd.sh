#!/usr/bin/env bash
# Admin API vs its references, one run, one load generator (wrk, its own process):
#   Aether's admin API (admin_bench.py serve-aether: uvicorn + httptools, SQLite, fsync per put),
#   the bare Litestar app (admin_bench.py serve-bare: pyjwt on every request, a dict),
#   etcd 3.4 single member through its JSON gateway (/v3/kv/range linearizable, /v3/kv/put).
# Usage: bench/admin_vs_etcd.sh   (env: REPS DUR THREADS CONNS RESULTS, as in ../shared/bench/lib.sh;
#        SHARED: the shared bench folder, default /work/shared/bench). Needs etcd-server and wrk.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SHARED=${SHARED:-/work/shared/bench}
PY=${PY:-$HERE/../.venv/bin/python}
source "$SHARED/lib.sh"
export BENCH_LUA_COMMON="$SHARED/lua/common.lua" BENCH_NKEYS=${BENCH_NKEYS:-1000}
ETCD_PORT=22379 BARE_PORT=${BARE_PORT:-28181} AETHER_PORT=${AETHER_PORT:-28182}
WORK=$(mktemp -d /tmp/admin-vs-etcd.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && stop_pid "$p"; done
  PIDS=()
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM


# token_and_seed PORT LOGIN_JSON -> prints a token after writing cfg-00000..NKEYS-1 once
token_and_seed() {
  "$PY" - "$1" "$2" <<'PYEOF'
import http.client, json, sys
port, login = int(sys.argv[1]), sys.argv[2]
import os
n = int(os.environ["BENCH_NKEYS"])
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("POST", "/login", login, {"Content-Type": "application/json"})
r = c.getresponse(); body = r.read()
if r.status != 200:
    sys.exit(f"login on {port} failed: {r.status} {body[:200]!r}")
tok = json.loads(body)["access_token"]
for k in range(n):
    v = {"value": {"name": f"cfg-{k:05d}", "version": k, "owner": "team-bench", "enabled": True,
                   "replicas": 3, "data": "y" * 100}}
    c.request("PUT", f"/configs/cfg-{k:05d}", json.dumps(v),
              {"Content-Type": "application/json", "Authorization": f"Bearer {tok}"})
    r = c.getresponse(); body = r.read()
    if r.status not in (200, 201):
        sys.exit(f"seed PUT on {port} failed: {r.status} {body[:200]!r}")
print(tok)
PYEOF
}

machine_info > "$RESULTS/machine.txt"
etcd --version | head -1 >> "$RESULTS/machine.txt"
"$PY" --version >> "$RESULTS/machine.txt"

log "etcd single member on :$ETCD_PORT"
mkdir -p "$WORK/etcd"
setsid etcd --name s1 --data-dir "$WORK/etcd/data" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:22380" --initial-advertise-peer-urls "http://127.0.0.1:22380" \
  --initial-cluster "s1=http://127.0.0.1:22380" --initial-cluster-state new --initial-cluster-token "admin-bench-$$" \
  --logger zap --log-outputs "$WORK/etcd/etcd.log" </dev/null >"$WORK/etcd/stdout.log" 2>&1 &
PIDS+=($!)
log "bare Litestar on :$BARE_PORT, Aether on :$AETHER_PORT"
setsid "$PY" "$HERE/admin_bench.py" serve-bare "$BARE_PORT" </dev/null >/dev/null 2>"$WORK/bare.err" &
PIDS+=($!)
mkdir -p "$WORK/aether"
# Aether's audit log (a line per write) goes to /dev/null, as in admin_bench.py.
setsid "$PY" "$HERE/admin_bench.py" serve-aether "$AETHER_PORT" "$WORK/aether" </dev/null >/dev/null 2>"$WORK/aether.err" &
PIDS+=($!)
echo "${PIDS[*]}" > "$RESULTS/pids"   # etcd bare aether, for py-spy while the run is on

wait_http "http://127.0.0.1:$ETCD_PORT/health" 200
python3 "$SHARED/etcd_populate.py" "http://127.0.0.1:$ETCD_PORT" "$BENCH_NKEYS" >&2
for p in $BARE_PORT $AETHER_PORT; do
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$p/configs/x" && break; sleep 0.1; done
done
BARE_JWT=$(token_and_seed "$BARE_PORT" '{}')
AETHER_JWT=$(token_and_seed "$AETHER_PORT" "{\"username\":\"admin\",\"password\":\"bench-admin-password\"}")
log "seeded $BENCH_NKEYS configs on each app"

E=http://127.0.0.1:$ETCD_PORT B=http://127.0.0.1:$BARE_PORT A=http://127.0.0.1:$AETHER_PORT
warmup "$E" etcd_put.lua
BENCH_JWT=$BARE_JWT wrk -t"$THREADS" -c16 -d3s -s "$HERE/lua/admin_get.lua" "$B" >/dev/null 2>&1 || true
BENCH_JWT=$AETHER_JWT wrk -t"$THREADS" -c16 -d3s -s "$HERE/lua/admin_get.lua" "$A" >/dev/null 2>&1 || true
for c in $CONNS; do
  BENCH_SERIALIZABLE=0 bench etcd1-range-linearizable "$c" "$E" etcd_range.lua
  BENCH_JWT=$BARE_JWT ANCHORS="$HERE" bench bare-litestar-GET "$c" "$B" admin_get.lua
  BENCH_JWT=$AETHER_JWT ANCHORS="$HERE" bench aether-GET "$c" "$A" admin_get.lua
  bench etcd1-put "$c" "$E" etcd_put.lua
  BENCH_JWT=$BARE_JWT ANCHORS="$HERE" bench bare-litestar-PUT "$c" "$B" admin_put.lua
  BENCH_JWT=$AETHER_JWT ANCHORS="$HERE" bench aether-PUT "$c" "$A" admin_put.lua
done
cp "$WORK/aether.err" "$WORK/bare.err" "$RESULTS/" 2>/dev/null || true
cleanup
python3 "$SHARED/summarize.py" "$RESULTS/raw.txt" | tee "$RESULTS/summary.md"
log "results in $RESULTS"
