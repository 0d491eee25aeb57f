#!/usr/bin/env bash
# The test command: set up .venv and the container tools if needed, lint, run the whole
# suite on the CPU (the container check included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
bash scripts/setup_container_tools.sh
# The web UI test drives Debian's Chromium (its own browser downloads cannot work here).
browser=(chromium chromium-driver fonts-wqy-microhei)
if ! dpkg -s "${browser[@]}" >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq "${browser[@]}" >/dev/null
fi
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
exec "$VENV/bin/python" -m pytest "$@"
