#!/usr/bin/env bash
# `make run`: broker, registry, one worker and a demo feed in the foreground. Ctrl-C stops all.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

WEB_PORT=${EXECDIST_WEB_PORT:-6066}
export EXECDIST_ADMIN_TOKEN=${EXECDIST_ADMIN_TOKEN:-dev-admin-token}
# log lines for people here; workers elsewhere write JSON, one object a line
export EXECDIST_LOG_FORMAT=${EXECDIST_LOG_FORMAT:-console}
infra_was_running=0
if bash scripts/infra.sh status | grep -q 'Kafka: running'; then infra_was_running=1; fi

pids=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "[run] stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "$infra_was_running" = 0 ]; then bash scripts/infra.sh down; fi
  echo "[run] stopped"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

bash scripts/infra.sh up
mkdir -p data
# one worker process per core (at most one per partition) unless EXECDIST_PROCESSES says otherwise;
# process i serves web port WEB_PORT+i, and all of them stop with the supervisor's pid
echo "[run] starting the workers on http://127.0.0.1:$WEB_PORT and up (log: data/worker.log)"
.venv/bin/execdist worker --web-port "$WEB_PORT" >data/worker.log 2>&1 &
pids+=($!)

for i in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$WEB_PORT/health/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "[run] the workers exited; the end of their log:"; tail -20 data/worker.log; exit 1
  fi
  if [ $((i % 10)) -eq 0 ]; then echo "[run] waiting for the worker to become ready (${i}s)"; fi
  sleep 1
done

# a demo subscription for the blotter, kept across runs in data/demo-subscription.json (its token
# is shown only when it is created)
BLOTTER_URL=$(.venv/bin/python scripts/demo_subscription.py "http://127.0.0.1:$WEB_PORT" data/demo-subscription.json) || {
  echo "[run] could not create the demo subscription; the worker's log:"; tail -20 data/worker.log; exit 1; }

echo "[run] starting the demo feed (log: data/demo.log)"
.venv/bin/python -m execdist.demo --rate "${DEMO_RATE:-20}" >data/demo.log 2>&1 &
pids+=($!)

cat <<MSG

  execdist is running.
    blotter        $BLOTTER_URL
                   (live fills of the demo subscription, from a snapshot; open it in a browser)
    health         http://127.0.0.1:$WEB_PORT/health/ready
    metrics        http://127.0.0.1:$WEB_PORT/metrics
    Kafka          127.0.0.1:9092
    registry       http://127.0.0.1:8081/apis/ccompat/v7
    admin token    $EXECDIST_ADMIN_TOKEN   (send as 'Authorization: Bearer <token>')

  Try: curl -H 'Authorization: Bearer $EXECDIST_ADMIN_TOKEN' http://127.0.0.1:$WEB_PORT/api/v1/positions/ACC-EQ-01
  Press Ctrl-C to stop everything.

MSG
wait -n "${pids[@]}" || true
echo "[run] a process exited unexpectedly; see data/worker.log and data/demo.log"
exit 1
