#!/usr/bin/env bash
# Create .venv-lmeval once per requirements change: lm-evaluation-harness's own environment
# (its pins are not vLLM's; no torch: its local-completions model only sends HTTP requests and
# tokenizes them). tests/test_lm_eval.py runs its lm_eval against the test servers.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LMEVAL_VENV:-.venv-lmeval}
stamp="$VENV/.installed-$(sha256sum <requirements-lmeval.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up $VENV for lm-evaluation-harness (a minute or two, once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r requirements-lmeval.txt >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
