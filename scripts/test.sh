#!/usr/bin/env bash
# make test: lint, then unit and integration tests against the native stack
# (run through with-stack.sh, which starts the stack when it is not running).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

echo "[test] lint: ruff check, ruff format --check, mypy (strict: src, tests, bench)"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"

echo "[test] pytest"
"$VENV/bin/python" -m pytest "$@"
