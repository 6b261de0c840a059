#!/usr/bin/env bash
# Runs a command with the local broker and registry up; stops them afterwards if it started them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
started=0
if ! bash scripts/infra.sh status | grep 'Kafka: running' >/dev/null; then  # no -q: an early close would fail the pipe (pipefail)
  bash scripts/infra.sh up
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then bash scripts/infra.sh down >/dev/null || true; fi; }
trap cleanup EXIT INT TERM
"$@"
