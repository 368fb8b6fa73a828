#!/usr/bin/env bash
# make test: lint, then unit and integration tests against the native stack.
# Reuses a running stack; otherwise starts one and stops it again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
stack() { "$VENV/bin/python" -m iot_pipeline.stack "$@"; }

started=0
cleanup() { if [ "$started" = 1 ]; then stack down; fi; }
trap cleanup EXIT

if stack is-up; then
  echo "[test] reusing the running stack"
else
  echo "[test] starting the native stack for the tests"
  started=1
  stack up
fi

echo "[test] lint: ruff check, ruff format --check, mypy --strict"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"

echo "[test] pytest"
"$VENV/bin/python" -m pytest "$@"
