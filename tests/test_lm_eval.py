"""lm-evaluation-harness (.venv-lmeval, scripts/setup_lmeval_venv.sh) against this server and
against vLLM's own OpenAI server, offline: its local-completions model with the tiny model's
tokenizer (tokenized_requests=True) on two local tasks written here from data.jsonl, a
multiple-choice task scored by loglikelihood (echo with logprobs) and a short generation task.
Both servers must give the same scores from the same loglikelihoods and generations."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from devtools.launcher import ROOT
from prep.datafile import json_lines
from tests.constants import API_KEYS

pytestmark = pytest.mark.judge_stack  # engine-facing: vLLM 0.10's own server there

LM_EVAL = ROOT / ".venv-lmeval" / "bin" / "lm_eval"
QUESTIONS = 16
CHOICES = 4
PROMPT = "问题：{{question}}\n答案："
# Both servers run one engine on one model in float32; measured largest difference: 0.0.
LOGLIKELIHOOD_TOLERANCE = 1e-4
METRICS = {"qaserve_mc": ["acc,none", "acc_norm,none"], "qaserve_gen": ["exact_match,none"]}


def qa_pairs() -> list[tuple[str, str]]:
    records = (record for _, record in json_lines(ROOT / "data.jsonl"))
    return [tuple(m["content"] for m in record["messages"][:2]) for record in records]


def write_tasks(folder: Path) -> None:
    """Two task files and their data, as lm-evaluation-harness reads local tasks offline
    (dataset_path: json with data_files): each question of the first QUESTIONS of data.jsonl
    with its answer's opening and three others' as choices, the right one at a rotating place,
    and the same questions to be answered in a few tokens."""
    pairs = qa_pairs()[: QUESTIONS + CHOICES]
    openings = [answer[:24] for _, answer in pairs]
    mc, gen = folder / "mc.jsonl", folder / "gen.jsonl"
    with mc.open("w", encoding="utf-8") as mc_data, gen.open("w", encoding="utf-8") as gen_data:
        for i, (question, answer) in enumerate(pairs[:QUESTIONS]):
            wrong = openings[i + 1 : i + CHOICES]
            gold = i % CHOICES
            choices = [*wrong[:gold], openings[i], *wrong[gold:]]
            row = {"question": question, "choices": choices, "gold": gold}
            mc_data.write(json.dumps(row, ensure_ascii=False) + "\n")
            row = {"question": question, "answer": answer[:6]}
            gen_data.write(json.dumps(row, ensure_ascii=False) + "\n")
    common = {"test_split": "test", "doc_to_text": PROMPT}
    tasks = {
        "qaserve_mc": {
            "output_type": "multiple_choice",
            "dataset_kwargs": {"data_files": {"test": str(mc)}},
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{gold}}",
            "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        },
        "qaserve_gen": {
            "output_type": "generate_until",
            "dataset_kwargs": {"data_files": {"test": str(gen)}},
            "doc_to_target": "{{answer}}",
            "generation_kwargs": {"until": ["\n", "。"], "max_gen_toks": 12, "do_sample": False},
            "metric_list": [{"metric": "exact_match"}],
        },
    }
    for name, task in tasks.items():
        spec = {"task": name, "dataset_path": "json", **common, **task}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))


def run_lm_eval(url: str, model: Path, tasks: Path, out: Path) -> tuple[dict, dict]:
    """The results and, per task, each document's responses (loglikelihoods or texts)."""
    model_args = ",".join(
        [
            f"model={model.name}",
            f"base_url={url}/v1/completions",
            f"tokenizer={model}",
            "tokenizer_backend=huggingface",
            "tokenized_requests=True",
            "num_concurrent=1",
            "max_retries=1",
            "max_length=1024",
        ]
    )
    offline = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env = {
        **os.environ,
        **offline,
        "HF_HOME": str(out / "hf-home"),  # no cache of this machine's, nothing downloaded
        "OPENAI_API_KEY": API_KEYS[0],  # local-completions sends it; vLLM's server ignores it
    }
    command = [
        str(LM_EVAL),
        *("--model", "local-completions", "--model_args", model_args),
        *("--tasks", ",".join(METRICS), "--include_path", str(tasks)),
        *("--batch_size", "1", "--seed", "0", "--log_samples", "--output_path", str(out)),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"lm_eval failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    (results,) = out.rglob("results_*.json")
    responses = {}
    for task in METRICS:
        (samples,) = out.rglob(f"samples_{task}_*.jsonl")
        docs = (json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines())
        responses[task] = {doc["doc_id"]: doc["resps"] for doc in docs}
    return json.loads(results.read_text(encoding="utf-8"))["results"], responses


def loglikelihoods(responses: dict) -> list[tuple[float, bool]]:
    """Each request's loglikelihood and whether the continuation was the greedy one."""
    return [
        (float(r[0][0]), str(r[0][1]) == "True")
        for doc in sorted(responses)
        for r in responses[doc]
    ]


def test_lm_eval_scores_this_server_as_vllms_own(server, vllm_server, tiny_model, tmp_path):
    assert LM_EVAL.exists(), f"{LM_EVAL} is missing: run bash scripts/setup_lmeval_venv.sh"
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write_tasks(tasks)
    ours = run_lm_eval(server.url, tiny_model, tasks, tmp_path / "ours")
    theirs = run_lm_eval(vllm_server.url, tiny_model, tasks, tmp_path / "vllm")
    scores = [{t: {m: r[t][m] for m in METRICS[t]} for t in METRICS} for r, _ in (ours, theirs)]
    assert scores[0] == scores[1]
    ours_mc, theirs_mc = (
        loglikelihoods(responses["qaserve_mc"]) for _, responses in (ours, theirs)
    )
    assert len(ours_mc) == QUESTIONS * CHOICES
    gap = max(abs(a[0] - b[0]) for a, b in zip(ours_mc, theirs_mc, strict=True))
    assert gap <= LOGLIKELIHOOD_TOLERANCE
    assert [greedy for _, greedy in ours_mc] == [greedy for _, greedy in theirs_mc]
    assert ours[1]["qaserve_gen"] == theirs[1]["qaserve_gen"]
    print(f"lm_eval: {json.dumps(scores[0])} on both; largest loglikelihood gap {gap}")
