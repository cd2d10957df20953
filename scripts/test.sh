#!/usr/bin/env bash
# Install everything the test suite needs, then run the whole suite.
#   bash scripts/test.sh [pytest args...]
# On Debian/Ubuntu (as root or with sudo) it also installs the system tools
# some tests use (virtual display, tray host, Secret Service, Chromium).
# Where they are missing, those tests skip with a message naming the package;
# CI (CI=true) turns every skip into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${TRAYWIRE_SKIP_SYSTEM:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
  if $SUDO true 2>/dev/null; then
    bash scripts/system-deps.sh
  else
    echo "note: not root and no passwordless sudo; skipping system packages (see scripts/system-deps.sh)" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
bash scripts/test-extras.sh

if [ "${CI:-}" = "true" ]; then export TRAYWIRE_STRICT_SKIPS=1; fi
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/pytest "$@"
