#!/usr/bin/env bash
# The two commands of the README, each doing its own set-up on a fresh machine:
#   ./run.sh demo    build and install vaspace in .venv, then run `vaspace demo`
#   ./run.sh test    the same set-up with the test extras, then the test suite
# Extra arguments go to the command (e.g. ./run.sh test -k switch).
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
VENV=${VASPACE_VENV:-.venv}

setup() {
    local extras=$1 editable=${2:-}
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
    # Tests run editable: some start subprocesses with PYTHONPATH=src, which
    # needs the compiled modules built in place.  .ci/run checks the plain
    # wheel separately.
    "$VENV/bin/python" -m pip install -q $editable ".[$extras]"
}

cmd=${1:-}
shift || true
case "$cmd" in
    demo)
        setup plot
        exec "$VENV/bin/vaspace" demo "$@"
        ;;
    test)
        setup test,bench -e
        "$VENV/bin/ruff" check .
        exec "$VENV/bin/python" -m pytest -q "$@"
        ;;
    *)
        echo "usage: $0 demo|test [args...]" >&2
        exit 2
        ;;
esac
