#!/usr/bin/env bash
# Python packages for tests that pip's extras cannot express (no-deps installs).
set -euo pipefail
cd "$(dirname "$0")/.."
