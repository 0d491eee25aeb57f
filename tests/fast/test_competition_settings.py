"""The competition kit above the engine: the profile, the reference container's names,
the variables nobody reads, the deadline's wiring and the warmup passes."""

import logging
import re
import time

import pytest

from prep.download import DownloadSettings
from qaserve.profiles import COMPETITION
from qaserve.settings import (
    READ_AT_BUILD_TIME,
    REFERENCE_WITHOUT_EQUIVALENT,
    Settings,
    environment_names,
)
from tests.fast.test_settings import readme_section

anyio = pytest.mark.anyio

# Every variable the public reference container's serve.py reads (YukinoStuki2/metax-llm-public).
REFERENCE_SERVE_NAMES = [
    "MODEL_ID",
    "MODEL_DIR",
    "MAX_NEW_TOKENS",
    "MAX_NEW_TOKENS_CODE",
    "MAX_NEW_TOKENS_CODE_HARD",
    "MAX_NEW_TOKENS_CODE_SOFT",
    "HARD_CODE_MIN_HITS",
    "LONG_ANSWER_ENABLE_DEFAULT",
    "LONG_ANSWER_MIN_HITS",
    "DISABLE_TOKEN_ROUTING",
    "WARMUP_DATA_PATH",
    "WARMUP_NUM_SAMPLES",
    "WARMUP_NUM_SAMPLES_CAP",
    "WARMUP_REPEAT",
    "STOP_STRINGS",
    "STOP_ON_DOUBLE_NEWLINE",
    "BATCH_MODE",
    "BATCH_CONCURRENCY",
    "TEMPERATURE",
    "TOP_P",
    "TOP_K",
    "REPETITION_PENALTY",
    "FREQUENCY_PENALTY",
    "CODE_QUESTION_KEYWORDS",
    "HARD_CODE_QUESTION_KEYWORDS",
    "LONG_ANSWER_KEYWORDS",
    "OUTPUT_TRIM_EXAMPLES",
    "OUTPUT_MAX_SENTENCES",
    "ENABLE_SPECULATIVE_DECODING",
    "SPEC_NUM_SPECULATIVE_TOKENS",
    "SPEC_METHOD",
    "SPEC_NGRAM_LOOKUP_MAX",
    "SPEC_NGRAM_LOOKUP_MIN",
    "SPEC_DRAFT_MODEL_DIR",
    "SPEC_DRAFT_MODEL_ID",
    "SPEC_DISABLE_BY_BATCH_SIZE",
    "SPEC_DRAFT_MAX_MODEL_LEN",
    "SPEC_DRAFT_OPTIONAL",
    "USE_VLLM",
    "FORCE_VLLM",
    "DEBUG_NET",
    "VLLM_LOG_LEVEL",
    "SERVE_VLLM_ENGINE",
    "VLLM_BATCH_USE_LLM",
    "FAST_CHAT_TEMPLATE",
    "GPU_MEMORY_UTILIZATION",
    "DTYPE",
    "MAX_MODEL_LEN",
    "VLLM_QUANTIZATION",
    "VLLM_LOAD_FORMAT",
    "VLLM_KV_CACHE_DTYPE",
    "KV_CACHE_DTYPE",
    "ENABLE_PREFIX_CACHING",
    "VLLM_TOKENIZER_POOL_SIZE",
    "VLLM_TOKENIZER_POOL_TYPE",
    "VLLM_MAX_NUM_SEQS",
    "VLLM_MAX_NUM_BATCHED_TOKENS",
    "VLLM_ENFORCE_EAGER",
    "DEFAULT_MAX_MODEL_LEN",
    "VLLM_COMPILATION_CONFIG",
    "SAFE_MAX_MODEL_LEN",
    "TRANSFORMERS_DTYPE",
    "LOG_TOKEN_ROUTING",
]


def test_every_reference_name_is_read_or_has_a_stated_reason():
    accounted = environment_names() | REFERENCE_WITHOUT_EQUIVALENT.keys() | READ_AT_BUILD_TIME
    # The draft model is downloaded at build time here, under our own name.
    accounted |= {"SPEC_DRAFT_MODEL_ID"}
    assert set(REFERENCE_SERVE_NAMES) - accounted == set()


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("VLLM_QUANTIZATION", "fp8", "quantization", "fp8"),
        ("VLLM_ENFORCE_EAGER", "1", "enforce_eager", True),
        ("VLLM_LOAD_FORMAT", "safetensors", "load_format", "safetensors"),
        ("VLLM_KV_CACHE_DTYPE", "fp8", "kv_cache_dtype", "fp8"),
        ("OUTPUT_MAX_SENTENCES", "6", "max_sentences", 6),
        ("OUTPUT_TRIM_EXAMPLES", "1", "trim_examples", True),
        ("SPEC_NGRAM_LOOKUP_MAX", "8", "spec_ngram_prompt_lookup_max", 8),
        ("SPEC_NGRAM_LOOKUP_MIN", "2", "spec_ngram_prompt_lookup_min", 2),
        ("SPEC_DRAFT_MODEL_DIR", "/draft", "draft_model_dir", "/draft"),
        ("FORCE_VLLM", "1", "use_vllm", True),
        ("WARMUP_REPEAT", "2", "warmup_repeat", 2),
    ],
)
def test_reference_names_mean_the_same_here(monkeypatch, variable, value, field, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(Settings(), field) == expected


def test_reference_routing_knobs_reach_the_budget_rules(monkeypatch):
    monkeypatch.setenv("MAX_NEW_TOKENS_CODE", "150")  # the reference's long-answer budget
    monkeypatch.setenv("MAX_NEW_TOKENS_CODE_HARD", "200")
    monkeypatch.setenv("LONG_ANSWER_KEYWORDS", "算子,gemm")
    monkeypatch.setenv("STOP_ON_DOUBLE_NEWLINE", "1")
    settings = Settings()
    rules = {rule.name: rule for rule in settings.routed_rules()}
    assert rules["long"].max_tokens == 150 and rules["code"].max_tokens == 200
    assert rules["long"].keywords[-2:] == ["算子", "gemm"]
    assert "\n\n" in settings.engine_stop_strings()
    monkeypatch.setenv("DISABLE_TOKEN_ROUTING", "1")
    assert Settings().routed_rules() == []


def test_the_competition_profile_sets_defaults_that_the_environment_beats(monkeypatch):
    general = Settings()
    assert general.batch_mode is False and general.predict_deadline_seconds is None
    monkeypatch.setenv("PROFILE", "competition")
    monkeypatch.setenv("REPETITION_PENALTY", "1.2")
    monkeypatch.setenv("OUTPUT_MAX_SENTENCES", "4")  # a reference name beats the profile too
    chosen = Settings()
    assert chosen.batch_mode is True and chosen.max_model_len == 1024
    assert chosen.predict_deadline_seconds == COMPETITION["predict_deadline_seconds"].value
    assert chosen.repetition_penalty == 1.2 and chosen.max_sentences == 4
    assert [r.max_tokens for r in chosen.budget_rules] == [320, 288]


def test_the_readme_states_every_profile_value():
    text = readme_section("Competition")
    rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| `([^`]*)` \| [^|]+\|$", text, re.M))
    for name, choice in COMPETITION.items():
        if name != "budget_rules":
            shown = (
                str(choice.value).lower() if isinstance(choice.value, bool) else str(choice.value)
            )
            assert rows.get(name.upper()) == shown, name
    assert "code 320, long 288" in text


def test_build_time_names_are_download_models_own():
    read = {name.upper() for name in DownloadSettings.model_fields}
    assert read == READ_AT_BUILD_TIME


@anyio
async def test_unread_variables_are_warned_about_and_listed_in_info(start_api, monkeypatch, caplog):
    monkeypatch.setenv("MAX_NEW_TOKEN", "64")  # a typo
    monkeypatch.setenv("BATCH_CONCURRENCY", "512")  # the reference's, no equivalent
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # vLLM's own: not ours to judge
    with caplog.at_level(logging.WARNING, logger="qaserve.app"):
        async with start_api() as api:
            unread = (await api.http.get("/info")).json()["unread_environment"]
    assert "MAX_NEW_TOKENS" in unread["MAX_NEW_TOKEN"]
    assert "no equivalent" in unread["BATCH_CONCURRENCY"]
    assert "VLLM_CPU_KVCACHE_SPACE" not in unread
    assert "MAX_NEW_TOKEN is not used" in caplog.text


@anyio
async def test_the_deadline_reaches_the_engine_only_when_set(start_api):
    async with start_api() as api:
        await api.http.post("/predict", json={"prompt": ["a", "b"]})
        assert api.engine.deadlines == [None]
    async with start_api(predict_deadline_seconds=5) as api:
        sent = time.monotonic()
        await api.http.post("/predict", json={"prompt": ["a", "b"]})
        assert sent + 4 < api.engine.deadlines[0] <= time.monotonic() + 5


@anyio
async def test_warmup_runs_its_passes_at_the_warmup_budget(start_api):
    async with start_api(warmup_num_samples=3, warmup_max_tokens=8, warmup_repeat=2) as api:
        info = (await api.http.get("/info")).json()["warmup"]
        budgets = [params.max_tokens for _, params in api.engine.calls]
    assert budgets == [8] * 6
    assert (info["questions"], info["passes"], info["max_tokens"]) == (3, 2, 8)
    assert info["completed"]
