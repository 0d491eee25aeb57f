#!/usr/bin/env bash
# Create .venv-py310 once per requirements change: Python 3.10 (the evaluation image's
# Python) with what the fast tests need, no vLLM. Prints the venv's python on stdout, or
# nothing (and says why on stderr) where no Python 3.10 interpreter exists.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FAST_VENV:-.venv-py310}
python310=$(bash scripts/find_python310.sh)
if [ -z "$python310" ]; then
  echo "NO PYTHON 3.10 INTERPRETER HERE: the 3.10 run of the fast tests is skipped" >&2
  exit 0
fi
stamp="$VENV/.installed-$(cat requirements.txt requirements-eval.txt requirements-fast.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up $VENV with $python310 (once)" >&2
  "$python310" -m venv "$VENV"
  "$VENV/bin/pip" install -q -r requirements-fast.txt >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "$VENV/bin/python"
