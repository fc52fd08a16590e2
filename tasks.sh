#!/usr/bin/env bash
# latnas task runner: the README's two quick-start commands.
#   ./tasks.sh demo   set up .venv if missing, then run the main job end to end
#   ./tasks.sh test   set up .venv if missing, then run the test suite
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${LATNAS_VENV:-.venv}

setup() {
    local stamp="$VENV/.latnas-installed"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "[setup] creating $VENV with $PY"
        "$PY" -m venv "$VENV"
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "[setup] installing latnas and its dependencies (a few minutes the first time)"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e ".[test]"
        touch "$stamp"
    fi
}

case "${1:-}" in
    demo)
        setup
        shift
        exec "$VENV/bin/latnas" demo "$@"
        ;;
    test)
        setup
        shift
        set +e
        "$VENV/bin/python" -m pytest "$@"
        rc=$?
        set -e
        if [ "$rc" -eq 5 ]; then
            echo "pytest collected no tests: treating as failure" >&2
            exit 1
        fi
        exit "$rc"
        ;;
    *)
        echo "usage: ./tasks.sh demo|test [args]" >&2
        exit 2
        ;;
esac
