#!/usr/bin/env bash
# `make reliability` (everything), `make reliability-quick` (the quick set: SIGKILL, SIGTERM, bad
# input, scaling) and `make soak` (the ten-minute soak alone).
#
# Scenarios that need one broker run against a single broker of their own; the broker-failure
# scenario runs against a three-broker cluster (replication factor 3, min.insync.replicas=2).
# Both use ports in 23000-23999, apart from `make test` (19092, 18081) and `make run` (9092,
# 8081); EXECDIST_REL_* variables move them. Each scenario's result line is appended to
# test-artifacts/reliability-results.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
mode=${1:-all}
shift || true

mkdir -p test-artifacts
export EXECDIST_REL_RESULTS=${EXECDIST_REL_RESULTS:-$ROOT/test-artifacts/reliability-results.txt}
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) make reliability ($mode), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >>"$EXECDIST_REL_RESULTS"

single() { # pytest arguments
  EXECDIST_BROKERS=1 \
  EXECDIST_TEST_INFRA_DIR="$ROOT/.infra/reliability" \
  EXECDIST_TEST_KAFKA_PORT=${EXECDIST_REL_KAFKA_PORT:-23192} \
  EXECDIST_TEST_CONTROLLER_PORT=${EXECDIST_REL_CONTROLLER_PORT:-23193} \
  EXECDIST_TEST_REGISTRY_PORT=${EXECDIST_REL_REGISTRY_PORT:-23281} \
  EXECDIST_TEST_REGISTRY_MANAGEMENT_PORT=${EXECDIST_REL_REGISTRY_MANAGEMENT_PORT:-23282} \
    bash scripts/test.sh --no-coverage -p no:cacheprovider -s --durations=0 "$@"
}

three_brokers() { # pytest arguments
  EXECDIST_BROKERS=3 \
  EXECDIST_TEST_INFRA_DIR="$ROOT/.infra/reliability-3" \
  EXECDIST_TEST_KAFKA_PORT=${EXECDIST_REL_CLUSTER_KAFKA_PORT:-23092} \
  EXECDIST_TEST_CONTROLLER_PORT=${EXECDIST_REL_CLUSTER_CONTROLLER_PORT:-23093} \
  EXECDIST_TEST_REGISTRY_PORT=${EXECDIST_REL_CLUSTER_REGISTRY_PORT:-23181} \
  EXECDIST_TEST_REGISTRY_MANAGEMENT_PORT=${EXECDIST_REL_CLUSTER_REGISTRY_MANAGEMENT_PORT:-23182} \
    bash scripts/test.sh --no-coverage -p no:cacheprovider -s --durations=0 "$@"
}

status=0
case "$mode" in
  quick) single tests/reliability -m reliability_quick "$@" || status=$? ;;
  soak) single tests/reliability -m soak "$@" || status=$? ;;
  all)
    single tests/reliability -m "not broker_cluster" "$@" || status=$?
    three_brokers tests/reliability -m broker_cluster "$@" || status=$?
    ;;
  *) echo "usage: $0 all|quick|soak [pytest arguments]" >&2; exit 2 ;;
esac
echo "[reliability] results: $EXECDIST_REL_RESULTS"
grep -A3 '^RESULT' "$EXECDIST_REL_RESULTS" | tail -n 60 || true
exit "$status"
