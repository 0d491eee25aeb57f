#!/usr/bin/env bash
# The test command: set up .venv (and .venv-py310, .venv-quant, .venv-judge, .venv-lmeval) and
# the container tools if needed, lint, run the fast tests under Python 3.10 (the evaluation
# image's), then the whole suite on the CPU (the container check included) and the
# engine-facing tests (marked judge_stack) again on the judge's stack: Python 3.10, torch
# 2.6.0, vLLM 0.10.0. The suites run in two lanes at once (see below): each engine computes on
# one core and a test session spends most of its time starting engines, so two lanes take
# about the time of the longer one.
set -euo pipefail
cd "$(dirname "$0")/.."
background=()
scratch=$(mktemp -d)
trap 'kill "${background[@]}" 2>/dev/null || true; rm -rf "$scratch"' EXIT
# The venvs build at the same time (mostly downloads and unpacking); apt runs meanwhile.
bash scripts/setup_venv.sh &
background+=($!)
bash scripts/setup_quant_venv.sh >/dev/null &
background+=($!)
bash scripts/setup_lmeval_venv.sh &
background+=($!)
judge_python_file=$scratch/judge-python
bash scripts/setup_judge_venv.sh >"$judge_python_file" &
background+=($!)
python310_file=$scratch/python310
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
# Lane 1: the whole suite on the current stack. Lane 2: the judge's stack, then, on a full run
# (no arguments), the current stack's container and lifecycle tests, which lane 1 leaves out:
# they even out the lanes. Last, once both lanes are done, alone: the tests marked
# takes_free_memory, which take the machine's free memory on purpose (vLLM's memory defaults;
# a server of the other lane starting meanwhile would leave their engine short of it).
later=(tests/test_container.py tests/test_lifecycle.py)
lane1=("$@")
if [ $# -eq 0 ]; then
  lane1=("${later[@]/#/--ignore=}")
fi
lane2() {
  local judge_status=0 later_status=0
  if [ -n "$judge_python" ]; then
    echo "the judge's stack (vLLM 0.10.0, $judge_python): the engine-facing tests again"
    "$judge_python" -m pytest -m judge_stack -p no:cacheprovider "$@" || judge_status=$?
    if [ "$judge_status" -eq 5 ]; then
      judge_status=0 # the arguments selected no engine-facing test
    fi
  fi
  if [ $# -eq 0 ]; then
    echo "the current stack (vLLM in $VENV): ${later[*]}"
    "$VENV/bin/python" -m pytest -p no:cacheprovider -m "not takes_free_memory" "${later[@]}" ||
      later_status=$?
  fi
  if [ "$judge_status" -ne 0 ]; then
    return "$judge_status"
  fi
  return "$later_status"
}
lane2 "$@" >"$scratch/lane2.log" 2>&1 &
background+=($!)
status=0
"$VENV/bin/python" -m pytest "${lane1[@]}" || status=$?
lane2_status=0
wait "${background[0]}" || lane2_status=$?
background=()
echo "lane 2:" >&2
cat "$scratch/lane2.log"
alone_status=0
if [ $# -eq 0 ]; then
  echo "alone, last: the tests that take the machine's free memory" >&2
  "$VENV/bin/python" -m pytest -p no:cacheprovider -m takes_free_memory "${later[@]}" ||
    alone_status=$?
fi
for lane_status in "$status" "$lane2_status" "$alone_status"; do
  if [ "$lane_status" -ne 0 ]; then
    exit "$lane_status"
  fi
done
