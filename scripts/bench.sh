#!/usr/bin/env bash
# make bench: benchmarks against baselines run in the same invocation (not tests).
# Reuses a running stack; otherwise starts one and stops it again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
stack() { "$VENV/bin/python" -m iot_pipeline.stack "$@"; }
started=0
cleanup() { if [ "$started" = 1 ]; then stack down; fi; }
trap cleanup EXIT
if ! stack is-up; then started=1; stack up; fi
"$VENV/bin/python" bench/bench_generator.py "$@"
