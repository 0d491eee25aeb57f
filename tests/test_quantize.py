"""python -m prep quantize in its own environment (.venv-quant), on the tiny model: the
calibration prompts, the saved W4A16 config and tensors, and W8A8, FP8 and W4A16 models
served on the real engine through the manifest the tool rewrites."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from devtools.launcher import ROOT, Server
from devtools.tiny_model import tiny_engine_env
from prep.chat import DEFAULT_SYSTEM_PROMPT
from prep.manifest import Manifest
from tests.test_download_model import run_download

QUESTIONS = ["什么是warp？", "解释共享内存的bank冲突。"]


@pytest.fixture(scope="session")
def quant_python() -> str:
    """.venv-quant's python (scripts/setup_quant_venv.sh: a no-op once it is set up)."""
    done = subprocess.run(
        ["bash", "scripts/setup_quant_venv.sh"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return str(ROOT / done.stdout.strip())


def run_quantize(python: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-m", "prep", "quantize", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def downloaded(tiny_model, tmp_path_factory) -> Path:
    """A manifest for the tiny model, as python -m prep download writes it."""
    folder = tmp_path_factory.mktemp("download")
    done = run_download(folder, "http://127.0.0.1:9", MODEL_ID=str(tiny_model))
    assert done.returncode == 0, done.stderr
    return folder / "cache/manifest.json"


@functools.cache  # one quantization per label, whichever test asks first
def quantized_manifest(python: str, downloaded: Path, label: str, *args: str) -> Path:
    """A copy of the download's manifest, rewritten by the tool to serve the quantized model
    it wrote beside it (``label`` names both)."""
    manifest = downloaded.with_name(f"manifest-{label}.json")
    shutil.copy(downloaded, manifest)
    output = downloaded.with_name(label)
    done = run_quantize(
        python, "--manifest", str(manifest), "--output", str(output), "--samples", "16", *args
    )
    assert done.returncode == 0, done.stderr
    return manifest


def test_calibration_prompts_are_distinct_questions_in_the_served_format(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    from prep.calibration import calibration_texts

    data = tmp_path / "data.jsonl"
    pairs = [("什么是warp？", "线程束。"), ("什么是warp？", "重复"), ("什么是bank？", "存储体。")]
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in pairs
    ]
    data.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    served = {"system_prompt": DEFAULT_SYSTEM_PROMPT, "enable_thinking": False}
    texts = calibration_texts(data, tokenizer, count=5, seed=0, **served)
    assert sorted(texts) == sorted(
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n"
        f"<|im_start|>assistant\n<think>\n\n</think>\n\n{a}<|im_end|>"
        for q, a in [pairs[0], pairs[2]]
    )
    assert calibration_texts(data, tokenizer, 1, 7, **served) == calibration_texts(
        data, tokenizer, 1, 7, **served
    )
    # No system prompt (SYSTEM_PROMPT=""), thinking on: no system turn, no empty think block.
    bare = calibration_texts(data, tokenizer, 1, 0, system_prompt="", enable_thinking=True)
    assert bare[0].startswith("<|im_start|>user\n") and "<think>" not in bare[0]


@pytest.mark.parametrize("algorithm", ["gptq", "awq"])
def test_w4a16_saves_packed_4bit_weights(quant_python, downloaded, algorithm):
    from safetensors import safe_open

    label = f"w4a16-{algorithm}"
    args = ("--scheme", "w4a16", "--algorithm", algorithm)
    manifest = Manifest.read(quantized_manifest(quant_python, downloaded, label, *args))
    folder = Path(manifest.model.path)
    assert manifest.model.source == "quantized-w4a16" and manifest.base.source == "local"
    assert manifest.quantization.model_dump() == {
        "scheme": "w4a16",
        "algorithm": algorithm,
        "calibration_samples": 16,
        "seed": 0,
    }
    config = json.loads((folder / "config.json").read_text())["quantization_config"]
    weights = config["config_groups"]["group_0"]["weights"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == "pack-quantized"
    assert (weights["num_bits"], weights["type"], weights["strategy"]) == (4, "int", "group")
    assert weights["symmetric"] is (algorithm == "gptq")  # AWQ's scheme keeps a zero point
    assert config["ignore"] == ["lm_head"]
    with safe_open(folder / "model.safetensors", "pt") as tensors:
        names = set(tensors.keys())
        packed = tensors.get_tensor("model.layers.0.mlp.up_proj.weight_packed")
        scale = tensors.get_tensor("model.layers.0.mlp.up_proj.weight_scale")
    # up_proj is 256 x 128: eight 4-bit values per int32, one scale per group of 128 inputs.
    assert (str(packed.dtype), tuple(packed.shape)) == ("torch.int32", (256, 16))
    assert tuple(scale.shape) == (256, 1)
    assert "model.layers.0.mlp.up_proj.weight" not in names


def cpu_lacks_4bit_kernel() -> str | None:
    """Why vLLM cannot run a 4-bit model here, or None: its CPU build has the W4A16 GEMM
    (cpu_gemm_wna16) only in the AVX-512 library."""
    probe = (
        "import torch\nfrom vllm.platforms import current_platform as p\n"
        "p.import_kernels()\n"
        "print(p.is_cpu() and not hasattr(torch.ops._C, 'cpu_gemm_wna16'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if done.stdout.strip().splitlines()[-1] == "True":
        return "vLLM's CPU build here lacks cpu_gemm_wna16 (AVX-512 only): W4A16 needs it or a GPU"
    return None


@pytest.mark.parametrize("scheme", ["w8a8", "fp8", "w4a16"])
def test_quantized_model_serves_on_the_engine(quant_python, downloaded, scheme, tmp_path):
    if scheme == "w4a16" and (reason := cpu_lacks_4bit_kernel()):
        pytest.skip(reason)
    # W4A16 is GPTQ's by default: the model test_w4a16_saves_packed_4bit_weights made.
    label, extra = ("w4a16-gptq", ("--algorithm", "gptq")) if scheme == "w4a16" else (scheme, ())
    manifest = quantized_manifest(quant_python, downloaded, label, "--scheme", scheme, *extra)
    assert Manifest.read(manifest).model.source == f"quantized-{scheme}"
    env = tiny_engine_env(
        "/nonexistent",  # the manifest names the folder
        MODEL_MANIFEST=str(manifest),
        DTYPE="bfloat16",  # the CPU's int8 GEMM takes bfloat16 activations, not float32
        MAX_NEW_TOKENS="16",
        WARMUP_NUM_SAMPLES="0",
    )
    with Server(env, tmp_path / "server.log") as server:
        reply = httpx.post(f"{server.url}/predict", json={"prompt": QUESTIONS}, timeout=120)
        log = (tmp_path / "server.log").read_text(errors="replace")
    assert reply.status_code == 200, reply.text
    assert all(answer.strip() for answer in reply.json()["response"])
    assert "quantization=compressed-tensors" in log
