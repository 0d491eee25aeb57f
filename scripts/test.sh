#!/usr/bin/env bash
# The test command: set up .venv (and .venv-py310, .venv-quant, .venv-judge) and the container
# tools if needed, lint, run the fast tests under Python 3.10 (the evaluation image's), then the
# whole suite on the CPU (the container check included) and, at the same time, the
# engine-facing tests (marked judge_stack) again on the judge's stack: Python 3.10, torch
# 2.6.0, vLLM 0.10.0. Each suite's engines compute on one core and spend most of their time
# starting, so the two stacks side by side take about the time of the longer one.
set -euo pipefail
cd "$(dirname "$0")/.."
background=()
trap 'kill "${background[@]}" 2>/dev/null || true' EXIT
# The venvs build at the same time (mostly downloads and unpacking); apt runs meanwhile.
bash scripts/setup_venv.sh &
background+=($!)
bash scripts/setup_quant_venv.sh >/dev/null &
background+=($!)
judge_python_file=$(mktemp)
bash scripts/setup_judge_venv.sh >"$judge_python_file" &
background+=($!)
python310_file=$(mktemp)
bash scripts/setup_fast_venv.sh >"$python310_file" &
background+=($!)
bash scripts/setup_container_tools.sh
# The web UI test drives Debian's Chromium (its own browser downloads cannot work here).
browser=(chromium chromium-driver fonts-wqy-microhei)
if ! dpkg -s "${browser[@]}" >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq "${browser[@]}" >/dev/null
fi
for setup in "${background[@]}"; do
  wait "$setup"
done
background=()
judge_python=$(cat "$judge_python_file")
python310=$(cat "$python310_file")
VENV=${VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
if [ -n "$python310" ]; then
  echo "Python 3.10: compiling every source file, then the fast tests" >&2
  "$python310" -m compileall -q -x '(^|/)\.venv' qaserve prep clients devtools eval bench tests serve.py
  "$python310" -m pytest tests/fast -q -p no:cacheprovider
fi
judge_log=$(mktemp)
if [ -n "$judge_python" ]; then
  "$judge_python" -m pytest -m judge_stack -p no:cacheprovider "$@" >"$judge_log" 2>&1 &
  background+=($!)
fi
status=0
"$VENV/bin/python" -m pytest "$@" || status=$?
if [ -z "$judge_python" ]; then
  exit "$status"
fi
judge_status=0
wait "${background[0]}" || judge_status=$?
background=()
echo "the judge's stack (vLLM 0.10.0, $judge_python): the engine-facing tests again" >&2
cat "$judge_log"
# 5: the arguments selected no engine-facing test, which is no failure of the judge's stack.
if [ "$judge_status" -eq 5 ]; then
  judge_status=0
fi
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
exit "$judge_status"
