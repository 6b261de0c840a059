#!/usr/bin/env bash
# `make test`: starts a real Kafka broker and schema registry on test ports of their own, runs
# the whole suite with coverage (worker subprocesses included), stops what it started.
#
# Also used by scripts/reliability.sh, which sets EXECDIST_TEST_INFRA_DIR and the
# EXECDIST_TEST_*_PORT variables to ports of its own, EXECDIST_BROKERS=3 for the three-broker
# cluster, and passes --no-coverage (timings under fault injection are measured without the
# coverage tracer slowing the workers down).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export EXECDIST_INFRA_DIR=${EXECDIST_TEST_INFRA_DIR:-"$ROOT/.infra/test"}
export EXECDIST_KAFKA_PORT=${EXECDIST_TEST_KAFKA_PORT:-19092}
export EXECDIST_CONTROLLER_PORT=${EXECDIST_TEST_CONTROLLER_PORT:-19093}
export EXECDIST_REGISTRY_PORT=${EXECDIST_TEST_REGISTRY_PORT:-18081}
if [ -n "${EXECDIST_TEST_REGISTRY_MANAGEMENT_PORT:-}" ]; then
  export EXECDIST_REGISTRY_MANAGEMENT_PORT=$EXECDIST_TEST_REGISTRY_MANAGEMENT_PORT
else
  # derived from the test registry's port (infra.sh), not taken from a shell set up for
  # `make run` or the bench, whose registry may be using that port
  unset EXECDIST_REGISTRY_MANAGEMENT_PORT
fi
EXECDIST_BROKER=$(bash scripts/infra.sh bootstrap)
export EXECDIST_BROKER
export EXECDIST_SCHEMA_REGISTRY_URL="http://127.0.0.1:$EXECDIST_REGISTRY_PORT/apis/ccompat/v7"
if [ "${EXECDIST_BROKERS:-1}" = 3 ]; then export EXECDIST_REPLICATION_FACTOR=3; fi

started=0
cleanup() {
  if [ "$started" = 1 ]; then bash scripts/infra.sh down >/dev/null || true; fi
}
trap cleanup EXIT INT TERM

bash scripts/infra.sh up
started=1

gate=1
coverage=1
args=()
for arg in "$@"; do
  case "$arg" in
    --no-cov-gate) gate=0 ;;
    --no-coverage) gate=0; coverage=0 ;;
    *) args+=("$arg") ;;
  esac
done
set -- "${args[@]}"

if [ "$coverage" = 0 ]; then
  set +e
  .venv/bin/python -m pytest "$@"
  status=$?
  set -e
  exit "$status"
fi

rm -f .coverage .coverage.*
export COVERAGE_PROCESS_START="$ROOT/pyproject.toml"
set +e
.venv/bin/coverage run -m pytest "$@"
status=$?
set -e
.venv/bin/coverage combine -q >/dev/null 2>&1 || true
if [ "$gate" = 0 ]; then exit "$status"; fi
echo "[test] coverage of execdist/ (the gate is 85 % of lines):"
if ! .venv/bin/coverage report --fail-under=85; then
  [ "$status" -ne 0 ] || status=1
  echo "[test] coverage is below the 85 % gate"
fi
exit "$status"
