#!/usr/bin/env bash
# The tiers of `make test` that need the native stack (run through with-stack.sh, which starts
# the stack when it is not running): integration, dags, e2e and chaos, one after the other,
# with the slowest tests listed at the end. `make test` runs `make check` (lint, types, unit
# tests) before it, without the stack. With arguments, pytest runs just those.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

if [ $# -gt 0 ]; then
  exec "$VENV/bin/python" -m pytest "$@"
fi
echo "[test] the tiers on the stack: integration, dags, e2e, chaos"
started=$(date +%s)
"$VENV/bin/python" -m pytest -m "not unit" --durations=25
echo "[test] the stack tiers passed in $(($(date +%s) - started)) s"
