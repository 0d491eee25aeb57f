"""Every setting the server reads, from the environment, in one typed object.

Names follow the public reference container where it has one (MODEL_DIR,
BATCH_MODE, MAX_NEW_TOKENS, ...) so existing env files keep working. The README
documents each field with its default; ``tests/test_settings.py`` keeps the two
in step.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from qaserve.adapters import parse_adapters, pick_adapter

DEFAULT_SYSTEM_PROMPT = (
    "你是CUDA与并行计算课程的助教。请用简洁、准确的教科书式中文直接回答问题，"
    "先给出结论，再用一两句话说明关键原因；不要寒暄，不要重复问题。"
)


# The limits of each sampling field, shared by the settings and every request that can
# override them (qaserve/api/protocol.py), so a value is valid in both or in neither.
MaxTokens = Annotated[int, Field(gt=0)]
Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]
TopK = Annotated[int, Field(ge=-1)]
RepetitionPenalty = Annotated[float, Field(gt=0)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
SentenceCap = Annotated[int, Field(ge=0)]  # 0: no cap


class BudgetRule(BaseModel):
    """A question class: questions containing any keyword get this length plan."""

    name: str
    keywords: list[str]
    max_tokens: MaxTokens
    max_sentences: SentenceCap | None = None  # None: the global cap


DEFAULT_BUDGET_RULES = [
    BudgetRule(
        name="code",
        keywords=["代码", "编写", "实现", "写出", "核函数", "kernel", "__global__"],
        max_tokens=384,
        max_sentences=0,
    ),
    BudgetRule(
        name="long",
        keywords=["详细", "比较", "分析", "论述", "阐述", "为什么", "区别"],
        max_tokens=320,
    ),
]


def _list_from_env(value: object) -> object:
    """Accept a JSON list or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part for part in text.split(",") if part] if text else []
    return value


StrList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    # Model and server
    model_dir: str = "model"
    # download_model.py's manifest: when set, the model and draft folders come from it
    # (the hub client names them, so they are never guessed), overriding MODEL_DIR.
    model_manifest: str | None = None
    host: str = "0.0.0.0"
    port: int = 8000
    batch_mode: bool = False
    max_batch_size: int = Field(default=4096, gt=0)
    # Bodies past this are refused (413) while they stream in, before being buffered:
    # 32 MiB holds a 10,000-question batch many times over.
    max_request_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    log_level: str = "info"
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)
    keep_alive_seconds: int = Field(default=75, gt=0)
    # A dead engine: how often it is looked for, and how long the server answers 503
    # before it exits (code 3) to be restarted.
    engine_check_seconds: float = Field(default=1.0, gt=0)
    engine_dead_exit_seconds: float = Field(default=3.0, ge=0)

    # Backend choice: "auto" tries vLLM and falls back to transformers.
    use_vllm: Literal["auto"] | bool = "auto"
    hf_batch_size: int = Field(default=16, gt=0)
    hf_device: str = "auto"

    # vLLM engine
    dtype: str = "auto"
    max_model_len: int | None = Field(default=4096, gt=0)
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)
    vllm_max_num_seqs: int = Field(default=256, gt=0)
    vllm_max_num_batched_tokens: int = Field(default=8192, gt=0)
    enable_prefix_caching: bool = True
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    load_format: str = "auto"
    enforce_eager: bool = False
    # Parallelism (vLLM's own): "auto" is every visible GPU, 1 on a CPU host.
    tensor_parallel_size: Literal["auto"] | Annotated[int, Field(gt=0)] = 1
    pipeline_parallel_size: int = Field(default=1, gt=0)
    data_parallel_size: int = Field(default=1, gt=0)
    distributed_executor_backend: Literal["mp", "ray"] | None = None  # None: vLLM decides
    # vLLM's CPU core groups per worker ("0-3|4-7"); set by the server when TP x PP > 1.
    vllm_cpu_omp_threads_bind: str | None = None
    seed: int = 0
    trust_remote_code: bool = False
    # vLLM's periodic throughput log; its per-step bookkeeping costs server CPU.
    log_engine_stats: bool = False

    # Speculative decoding: prompt-lookup n-grams, or a separate draft model.
    enable_speculative_decoding: bool = False
    spec_method: Literal["ngram", "draft"] = "ngram"
    spec_num_speculative_tokens: int = Field(default=4, gt=0)
    spec_ngram_prompt_lookup_max: int = Field(default=4, gt=0)
    spec_ngram_prompt_lookup_min: int = Field(default=1, gt=0)
    draft_model_dir: str | None = None

    # LoRA adapters served beside the model by vLLM (name -> folder; the manifest adds its
    # own), each picked by its name as a /v1 request's model.
    lora_adapters: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # The model /predict (and a /v1 request naming none) answers with: an adapter's name or
    # the base's; None: the manifest's served adapter if it has one, else the base.
    default_adapter: str | None = None

    # Sampling defaults (a /predict request may override them)
    max_new_tokens: MaxTokens = 256
    temperature: Temperature = 0.0
    top_p: TopP = 1.0
    top_k: TopK = -1
    repetition_penalty: RepetitionPenalty = 1.0
    frequency_penalty: Penalty = 0.0
    presence_penalty: Penalty = 0.0

    # Prompting
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    enable_thinking: bool = False

    # Length control
    budget_rules: list[BudgetRule] = Field(default_factory=lambda: list(DEFAULT_BUDGET_RULES))
    stop_strings: StrList = Field(default_factory=list)
    max_sentences: SentenceCap = 0
    sentence_endings: str = "。！？"
    trim_examples: bool = False
    example_markers: StrList = Field(default_factory=lambda: ["例如", "比如"])
    trim_partial_sentence: bool = False

    # OpenAI-compatible API (/v1)
    served_model_name: str | None = None  # None: the model folder's name
    api_key: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    protect_predict: bool = False
    default_mode: Literal["fast", "slow"] = "fast"

    # Warmup
    warmup_data_path: str = "data.jsonl"
    warmup_num_samples: int = Field(default=8, ge=0)
    warmup_timeout_seconds: float = Field(default=120.0, gt=0)

    _split_lists = field_validator("stop_strings", "example_markers", "api_key", mode="before")(
        _list_from_env
    )

    _parse_adapters = field_validator("lora_adapters", mode="before")(parse_adapters)

    @field_validator("sentence_endings")
    @classmethod
    def _endings_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("SENTENCE_ENDINGS needs at least one character")
        return value

    def public_dict(self) -> dict:
        """The effective settings, safe to show in /info: keys only as a count."""
        shown = self.model_dump(mode="json", exclude={"api_key"})
        shown["api_keys_configured"] = len(self.api_key)
        return shown

    @property
    def model_name(self) -> str:
        return self.served_model_name or Path(self.model_dir.rstrip("/")).name

    def adapter_for(self, model: str | None) -> str | None:
        """The adapter a model name picks (None: the base model); no name: the default.
        LookupError for a name that is neither the base's nor an adapter's."""
        if model is None:
            if self.default_adapter is None:
                return None
            model = self.default_adapter
        return pick_adapter(model, self.model_name, self.lora_adapters)


@lru_cache
def get_settings() -> Settings:
    return Settings()
