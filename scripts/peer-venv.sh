#!/usr/bin/env bash
# The peer stream processor's own virtualenv for `make bench` (bench/peer/requirements.txt),
# built once and rebuilt only when its requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.stack/peer-venv
STAMP="$VENV/.requirements.sha256"
WANT=$(sha256sum bench/peer/requirements.txt | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
echo "peer: building $VENV (bench/peer/requirements.txt)"
PYTHON=${PYTHON:-python3.11}
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r bench/peer/requirements.txt
echo "$WANT" > "$STAMP"
echo "peer: ready"
