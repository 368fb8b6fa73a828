#!/usr/bin/env bash
# make check: the fast tier, no stack: ruff, mypy (src, tests, bench) and the unit tests on
# both cores. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
started=$(date +%s)

echo "[check] lint: ruff check, ruff format --check"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "[check] types: mypy --strict over src, tests and bench"
"$VENV/bin/mypy"
echo "[check] unit tests (tests/unit, no stack)"
"$VENV/bin/python" -m pytest tests/unit -m unit -n 2 -p no:cacheprovider -q "$@"
echo "[check] passed in $(($(date +%s) - started)) s"
