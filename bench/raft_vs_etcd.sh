#!/usr/bin/env bash
# A 3-node Aether raft cluster vs a 3-member etcd cluster, one run, one load generator (wrk):
#   etcd 3.4 (../shared/bench/etcd_up.sh start cluster): PUT to the leader's JSON gateway;
#   Aether (raft_cluster_bench.py serve): PUT /configs/{name} on the leader's admin API;
#   then Aether without HTTP: CONNS proposers straight into the leader's raft transport.
# Usage: bench/raft_vs_etcd.sh   (env: REPS DUR THREADS CONNS RESULTS as in ../shared/bench/lib.sh;
#        SHARED: the shared bench folder, default /work/shared/bench). Needs etcd-server and wrk.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SHARED=${SHARED:-/work/shared/bench}
PY=${PY:-$HERE/../.venv/bin/python}
source "$SHARED/lib.sh"
export BENCH_LUA_COMMON="$SHARED/lua/common.lua" BENCH_NKEYS=${BENCH_NKEYS:-1000}
export ETCD_BASE=${ETCD_BASE:-/tmp/aether-bench-etcd-$$}
WORK=$(mktemp -d /tmp/raft-vs-etcd.XXXXXX)
AETHER_PID=""
cleanup() {
  [ -n "$AETHER_PID" ] && stop_pid "$AETHER_PID"
  AETHER_PID=""
  "$SHARED/etcd_up.sh" stop || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

machine_info > "$RESULTS/machine.txt"
etcd --version | head -1 >> "$RESULTS/machine.txt"
"$PY" --version >> "$RESULTS/machine.txt"

log "etcd: 3 members"
ETCD_LEADER=$("$SHARED/etcd_up.sh" start cluster | tail -1)
ETCD_LEADER=http://${ETCD_LEADER#http://}
python3 "$SHARED/etcd_populate.py" "$ETCD_LEADER" "$BENCH_NKEYS" >&2
log "aether: 3 nodes"
setsid "$PY" "$HERE/raft_cluster_bench.py" serve "$WORK/aether" "$WORK/info.json" \
  </dev/null >"$WORK/serve.out" 2>&1 &
AETHER_PID=$!
for _ in $(seq 900); do [ -s "$WORK/info.json" ] && break; sleep 0.2; done
[ -s "$WORK/info.json" ] || { cat "$WORK/serve.out" >&2; exit 1; }
A=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["leader"])' "$WORK/info.json")
export BENCH_JWT
BENCH_JWT=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$WORK/info.json")
log "etcd leader $ETCD_LEADER, aether leader $A"


warmup "$ETCD_LEADER" etcd_put.lua
wrk -t"$THREADS" -c16 -d3s -s "$HERE/lua/admin_put.lua" "$A" >/dev/null 2>&1 || true
for c in $CONNS; do
  bench etcd3-put "$c" "$ETCD_LEADER" etcd_put.lua
  ANCHORS="$HERE" bench aether3-PUT "$c" "$A" admin_put.lua
done
stop_pid "$AETHER_PID"; AETHER_PID=""
"$SHARED/etcd_up.sh" stop || true
log "aether raft transport, no HTTP"
# shellcheck disable=SC2086
"$PY" "$HERE/raft_cluster_bench.py" transport --duration "${DUR%s}" --conns $CONNS \
  | tee -a "$RESULTS/transport.jsonl" >&2
python3 "$SHARED/summarize.py" "$RESULTS/raw.txt" | tee "$RESULTS/summary.md"
cat "$RESULTS/transport.jsonl"
log "results in $RESULTS"
