"""A LoRA adapter on the tiny model, made with peft: merged at build time by python -m prep download
and served on the real engine, and served directly by vLLM beside its base. Both give the
greedy text of transformers running the adapter (peft), token for token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from devtools.launcher import Server
from devtools.tiny_model import tiny_engine_env
from tests.test_download_model import manifest_of, run_download

pytestmark = pytest.mark.judge_stack  # engine-facing: run on vLLM 0.10 too

QUESTIONS = ["什么是warp？", "解释共享内存的bank冲突。", "CUDA中的线程块是什么？"]
SYSTEM_PROMPT = "你是助教。"
BUDGET = 16


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory) -> Path:
    """A rank-8 LoRA adapter with random weights (peft's default makes B zero: no change)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, torch_dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"],
        init_lora_weights=False,
    )
    out = tmp_path_factory.mktemp("adapters") / "cuda-tutor"
    get_peft_model(model, config).save_pretrained(out)
    return out


def served_prompts(model_dir: Path) -> list[str]:
    from transformers import AutoTokenizer

    from qaserve.core.prompts import PromptBuilder

    prompts = PromptBuilder(AutoTokenizer.from_pretrained(model_dir), 1024, False)
    return [prompts.render(SYSTEM_PROMPT, question) for question in QUESTIONS]


def transformers_answers(model_dir: Path, adapter_dir: Path | None) -> list[str]:
    """Greedy answers of transformers (with the adapter through peft when given)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    if adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    answers = []
    for prompt in served_prompts(model_dir):
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=BUDGET, do_sample=False)
        answers.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return answers


@pytest.fixture(scope="module")
def expected(tiny_model, adapter) -> dict[str, list[str]]:
    return {
        "adapter": transformers_answers(tiny_model, adapter),
        "base": transformers_answers(tiny_model, None),
    }


@contextmanager
def serving(manifest: Path, log: Path) -> Iterator[httpx.Client]:
    """A client of the real server on the manifest's model (and adapters)."""
    env = tiny_engine_env(
        "/nonexistent",  # the manifest names the folders
        MODEL_MANIFEST=str(manifest),
        MAX_NEW_TOKENS=str(BUDGET),
        BUDGET_RULES="[]",
        SYSTEM_PROMPT=SYSTEM_PROMPT,
        WARMUP_NUM_SAMPLES="0",
    )
    with Server(env, log) as server, httpx.Client(base_url=server.url, timeout=300) as client:
        yield client


def completions(client: httpx.Client, model: str, prompts: list[str]) -> list[str]:
    body = {"model": model, "prompt": prompts, "max_tokens": BUDGET, "temperature": 0}
    reply = client.post("/v1/completions", json=body)
    assert reply.status_code == 200, reply.text
    choices = sorted(reply.json()["choices"], key=lambda c: c["index"])
    return [c["text"] for c in choices]


def test_merged_adapter_serves_the_adapters_answers(adapter, expected, tiny_model, tmp_path):
    done = run_download(tmp_path, "http://127.0.0.1:9", ADAPTER_ID=str(adapter))
    assert done.returncode == 0, done.stderr
    manifest = manifest_of(tmp_path)
    # The base came from the adapter's own config; the model is the merged folder.
    assert manifest["base"]["id"] == str(tiny_model)
    assert manifest["model"]["source"] == "merged"
    merged = Path(manifest["model"]["path"])
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()
    assert [(a["name"], a["merged"]) for a in manifest["adapters"]] == [("cuda-tutor", True)]
    assert expected["adapter"] != expected["base"]  # the adapter changes the answers

    with serving(tmp_path / "cache/manifest.json", tmp_path / "server.log") as client:
        model = client.get("/v1/models").json()["data"]
        assert [m["id"] for m in model] == ["cuda-tutor"]  # the merged folder's name
        answers = completions(client, "cuda-tutor", served_prompts(merged))
        predicted = client.post("/predict", json={"prompt": QUESTIONS}).json()["response"]
    assert answers == expected["adapter"]
    assert predicted == [answer.strip() for answer in expected["adapter"]]


def test_adapter_served_directly_beside_its_base(adapter, expected, tiny_model, tmp_path):
    done = run_download(
        tmp_path,
        "http://127.0.0.1:9",
        ADAPTER_ID=str(adapter),
        ADAPTER_MODE="serve",
        ADAPTER_NAME="tutor",
        MODEL_ID=str(tiny_model),  # named, not taken from the adapter's config
    )
    assert done.returncode == 0, done.stderr
    manifest = manifest_of(tmp_path)
    assert manifest["base"] is None and manifest["model"]["source"] == "local"
    assert [(a["name"], a["merged"]) for a in manifest["adapters"]] == [("tutor", False)]

    base = Path(manifest["model"]["path"]).name
    prompts = served_prompts(tiny_model)
    with serving(tmp_path / "cache/manifest.json", tmp_path / "server.log") as client:
        models = client.get("/v1/models").json()["data"]
        assert [(m["id"], m["parent"]) for m in models] == [(base, None), ("tutor", base)]
        with_adapter = completions(client, "tutor", prompts)
        without = completions(client, base, prompts)
        # /predict answers with the manifest's adapter.
        predicted = client.post("/predict", json={"prompt": QUESTIONS}).json()["response"]
        info = client.get("/info").json()
    assert with_adapter == expected["adapter"]
    assert without == expected["base"]
    assert predicted == [answer.strip() for answer in expected["adapter"]]
    assert info["engine_details"]["lora_adapters"] == {"tutor": manifest["adapters"][0]["path"]}
    assert info["settings"]["default_adapter"] == "tutor"
