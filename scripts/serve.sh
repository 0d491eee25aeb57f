#!/usr/bin/env bash
# Set up .venv if needed and start the server on port 8000 (settings from the environment).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec "${VENV:-.venv}/bin/python" serve.py
