#!/usr/bin/env bash
# Run a command against the native stack: reuse a running stack, or start one for the command
# and stop it again afterwards (also on failure or Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
stack() { "$VENV/bin/python" -m iot_pipeline.stack "$@"; }

started=0
cleanup() { if [ "$started" = 1 ]; then stack down; fi; }
trap cleanup EXIT

if stack is-up; then
  echo "[stack] reusing the running stack"
else
  echo "[stack] starting the native stack (stopped again at the end)"
  started=1
  stack up
fi
"$@"
