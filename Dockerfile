# qaserve on a vLLM image, with the model fetched at build time and no network at run time.
#
#   docker build -t qaserve --build-arg MODEL_ID=owner/name --secret id=model_token,src=token.txt .
#
# BASE_IMAGE must ship python3, vLLM, torch, transformers, fastapi and uvicorn: the MetaX
# evaluation image (default), vllm/vllm-openai for NVIDIA, quay.io/ascend/vllm-ascend for
# Ascend (see the README). Stages: the base with the server's few extra dependencies; a
# model stage that downloads with the model tools in prep/ (its ModelScope client stays
# there); the final image.
ARG BASE_IMAGE=cr.metax-tech.com/public-ai-release/maca/vllm:maca.ai3.1.0.7-torch2.6-py310-ubuntu22.04-amd64

FROM ${BASE_IMAGE} AS base
WORKDIR /app
COPY requirements.txt ./
RUN python3 -m pip install --no-cache-dir -r requirements.txt

# The model before the server's code: a change to qaserve/ or serve.py reuses this layer
# and never downloads again (a change in prep/, the model tools, downloads again).
FROM base AS model
COPY requirements-download.txt ./
RUN python3 -m pip install --no-cache-dir -r requirements-download.txt
# MODEL_SOURCE: auto (ModelScope, or a folder), modelscope, hf (HF_ENDPOINT mirror), local.
# For a local folder: put it in model-src/ and build with MODEL_ID=/model-src.
ARG MODEL_ID=Qwen/Qwen3-0.6B
ARG MODEL_REVISION=master
ARG MODEL_SOURCE=auto
ARG DRAFT_MODEL_ID=
ARG DRAFT_MODEL_REVISION=master
ARG DRAFT_REQUIRED=0
ARG HF_ENDPOINT=
# A LoRA adapter (ModelScope id or /model-src/...): merged into the model with peft, or
# served beside it by vLLM (ADAPTER_MODE=serve); without MODEL_ID its own config names the base.
ARG ADAPTER_ID=
ARG ADAPTER_REVISION=master
ARG ADAPTER_MODE=merge
ARG ADAPTER_NAME=
COPY model-src/ /model-src/
COPY prep/ prep/
# The token comes only as a build secret (id model_token): never an ARG or ENV, so it is in
# no layer and no history. Without one, public models download as usual.
RUN --mount=type=secret,id=model_token,required=false \
    python3 -m prep download --cache-dir /models --manifest /models/manifest.json
# QUANTIZE=w4a16|w8a8|fp8: quantize the model with llmcompressor in a venv of its own (its
# pins collide with vLLM's); calibration from data.jsonl as served. Empty: no quantization.
ARG QUANTIZE=
ARG QUANTIZE_ALGORITHM=gptq
ARG CALIBRATION_SAMPLES=64
ARG CALIBRATION_MAX_LENGTH=512
COPY requirements-quantize.txt data.jsonl ./
RUN if [ -n "$QUANTIZE" ]; then \
      python3 -m venv --system-site-packages /opt/quant \
      && /opt/quant/bin/pip install --no-cache-dir -r requirements-quantize.txt \
      && /opt/quant/bin/python -m prep quantize --manifest /models/manifest.json \
        --scheme "$QUANTIZE" --algorithm "$QUANTIZE_ALGORITHM" \
        --samples "$CALIBRATION_SAMPLES" --max-length "$CALIBRATION_MAX_LENGTH"; \
    fi

FROM base
COPY --from=model /models /models
COPY serve.py data.jsonl ./
# Only what serving imports: the server, and prep/ (the manifest, adapters, data file and
# prompt rendering it shares with the model tools); the chat clients and dev tools stay out.
COPY qaserve/ qaserve/
COPY prep/ prep/

# Run time is offline: the model is in /models, and no library may look for a hub.
# VLLM_HOST_IP: without it vLLM finds its own address by a UDP connect to 8.8.8.8
# (tests/test_offline.py caught it); one container talks to itself over loopback.
# PYTHONPATH: vLLM's engine core builds its scheduler from qaserve by name (held steps,
# docs/backends.md), also in a Ray worker that did not start in /app.
ENV MODEL_MANIFEST=/models/manifest.json \
    PYTHONPATH=/app \
    VLLM_HOST_IP=127.0.0.1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    VLLM_USE_MODELSCOPE=False \
    VLLM_NO_USAGE_STATS=1 \
    VLLM_DO_NOT_TRACK=1 \
    DO_NOT_TRACK=1
# Serving defaults: the competition profile (qaserve/profiles.py, README "Competition"),
# set for the judge's run; override any value with -e at run time, or PROFILE=general.
ENV PROFILE=competition \
    HOST=0.0.0.0 \
    PORT=8000 \
    USE_VLLM=auto \
    WARMUP_DATA_PATH=/app/data.jsonl \
    LOG_LEVEL=info

EXPOSE 8000
# GET / answers only once the engine is loaded and warmed up; loading can take minutes.
HEALTHCHECK --interval=30s --timeout=10s --start-period=600s --retries=3 \
    CMD ["python3", "-m", "qaserve.healthcheck"]
CMD ["python3", "serve.py"]
