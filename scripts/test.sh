#!/usr/bin/env bash
# make test: everything CI needs, against the native stack (run through with-stack.sh, which
# starts the stack when it is not running): the fast tier of `make check` (lint, types, unit
# tests on both cores), then every test that needs the stack, chaos included. With
# arguments, pytest runs just those (after lint and types).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

if [ $# -gt 0 ]; then
  "$VENV/bin/ruff" check .
  "$VENV/bin/ruff" format --check .
  "$VENV/bin/mypy"
  exec "$VENV/bin/python" -m pytest "$@"
fi
bash scripts/check.sh
echo "[test] the tiers on the stack: integration, dags, e2e, chaos"
"$VENV/bin/python" -m pytest -m "not unit" --durations=25
