#!/usr/bin/env bash
# Create .venv-quant once per requirements change: the quantization tool's own environment
# (python -m prep quantize; llmcompressor's pins collide with vLLM's). The CPU torch where
# nvidia-smi lists no GPU (without the pin pip would fetch the CUDA build). Prints the venv's
# python on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${QUANT_VENV:-.venv-quant}
torch=()
if ! nvidia-smi -L >/dev/null 2>&1; then
  torch=("torch==2.13.0+cpu")
fi
stamp="$VENV/.installed-$(cat requirements-quantize.txt <(echo "${torch[@]}") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up $VENV for the quantization tool (a few minutes, once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${torch[@]}" -r requirements-quantize.txt >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "$VENV/bin/python"
