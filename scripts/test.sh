#!/usr/bin/env bash
# The test command: set up .venv (and .venv-py310, .venv-quant) and the container tools if
# needed, lint, run the fast tests under Python 3.10 (the evaluation image's), then the whole suite on
# the CPU (the container check included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
bash scripts/setup_quant_venv.sh >/dev/null
bash scripts/setup_container_tools.sh
# The web UI test drives Debian's Chromium (its own browser downloads cannot work here).
browser=(chromium chromium-driver fonts-wqy-microhei)
if ! dpkg -s "${browser[@]}" >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq "${browser[@]}" >/dev/null
fi
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
python310=$(bash scripts/setup_fast_venv.sh)
if [ -n "$python310" ]; then
  echo "Python 3.10: compiling every source file, then the fast tests" >&2
  "$python310" -m compileall -q -x '(^|/)\.venv' qaserve prep clients devtools eval bench tests serve.py
  "$python310" -m pytest tests/fast -q -p no:cacheprovider
fi
exec "$VENV/bin/python" -m pytest "$@"
