"""Every setting the server reads, from the environment, in one typed object.

Names follow the public reference container where it has one (MODEL_DIR,
BATCH_MODE, MAX_NEW_TOKENS, ...), and its other names are read as aliases, so existing
env files keep working; the names it reads that mean nothing here, and near misses of
ours, are reported (``unread_environment``). ``PROFILE`` picks a set of defaults
(qaserve/profiles.py) under the environment. The README documents each field with its
default; ``tests/fast/test_settings.py`` keeps the two in step.
"""

from __future__ import annotations

import difflib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from prep.adapters import parse_adapters, pick_adapter
from prep.chat import DEFAULT_SYSTEM_PROMPT
from qaserve.profiles import CODE_KEYWORDS, LONG_KEYWORDS, PROFILES

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
        keywords=CODE_KEYWORDS,
        max_tokens=384,
        max_sentences=0,
    ),
    BudgetRule(
        name="long",
        keywords=LONG_KEYWORDS,
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


def also_read_as(name: str, *reference_names: str) -> AliasChoices:
    """A setting's own name, then the public reference container's names for it."""
    return AliasChoices(name, *reference_names)


# Names the public reference container reads that have no equivalent here: a migrated env
# file that sets one gets a WARNING naming it, and /info lists it, instead of silence.
REFERENCE_WITHOUT_EQUIVALENT = {
    "MAX_NEW_TOKENS_CODE_SOFT": "no 'code-ish' question class here; see BUDGET_RULES",
    "CODE_QUESTION_KEYWORDS": "no 'code-ish' question class here; see BUDGET_RULES",
    "HARD_CODE_MIN_HITS": "a budget rule matches on one keyword",
    "LONG_ANSWER_MIN_HITS": "a budget rule matches on one keyword",
    "LONG_ANSWER_ENABLE_DEFAULT": "the long rule's keywords are in BUDGET_RULES",
    "WARMUP_NUM_SAMPLES_CAP": "WARMUP_NUM_SAMPLES is the count; WARMUP_TIMEOUT_SECONDS bounds it",
    "BATCH_CONCURRENCY": "a /predict batch enters the engine whole; VLLM_MAX_NUM_SEQS bounds it",
    "VLLM_BATCH_USE_LLM": "one async engine serves batches and single requests alike",
    "SERVE_VLLM_ENGINE": "one async engine serves batches and single requests alike",
    "TRANSFORMERS_DTYPE": "DTYPE applies to the transformers fallback too",
    "DEFAULT_MAX_MODEL_LEN": "MAX_MODEL_LEN; the start ladder lowers it if the card needs",
    "SAFE_MAX_MODEL_LEN": "MAX_MODEL_LEN; the start ladder lowers it if the card needs",
    "VLLM_COMPILATION_CONFIG": "not passed to vLLM; ENFORCE_EAGER turns compilation off",
    "VLLM_TOKENIZER_POOL_SIZE": "prompts are tokenized by the server, in a thread",
    "VLLM_TOKENIZER_POOL_TYPE": "prompts are tokenized by the server, in a thread",
    "SPEC_DISABLE_BY_BATCH_SIZE": "not passed to vLLM (its V1 engine dropped the option)",
    "SPEC_DRAFT_MAX_MODEL_LEN": "the draft model runs with the main model's context",
    "SPEC_DRAFT_OPTIONAL": "download_model.py: DRAFT_REQUIRED=0 makes the draft optional",
    "FAST_CHAT_TEMPLATE": "prompts are always rendered by the model's own chat template",
    "LOG_TOKEN_ROUTING": "the budget each question got is in the eval details instead",
    "DEBUG_NET": "the server makes no network calls at run time",
    "VLLM_LOG_LEVEL": "LOG_LEVEL sets the server's level; vLLM reads VLLM_LOGGING_LEVEL",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    # Named defaults (qaserve/profiles.py): "competition" in the image, "general" elsewhere.
    profile: Literal["general", "competition"] = "general"

    # Model and server
    model_dir: str = "model"
    # download_model.py's manifest: when set, the model and draft folders come from it
    # (the hub client names them, so they are never guessed), overriding MODEL_DIR.
    model_manifest: str | None = None
    host: str = "0.0.0.0"
    port: int = 8000
    batch_mode: bool = False
    max_batch_size: int = Field(default=4096, gt=0)
    # A /predict request still running after this many seconds stops its unfinished
    # answers and returns each as far as it got (None: no deadline).
    predict_deadline_seconds: float | None = Field(default=None, gt=0)
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
    force_vllm: bool = False  # the reference container's name for USE_VLLM=1
    hf_batch_size: int = Field(default=16, gt=0)
    hf_device: str = "auto"

    # vLLM engine
    dtype: str = "auto"
    max_model_len: int | None = Field(default=4096, gt=0)
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)
    vllm_max_num_seqs: int = Field(default=256, gt=0)
    vllm_max_num_batched_tokens: int = Field(default=8192, gt=0)
    enable_prefix_caching: bool = True
    quantization: str | None = Field(
        default=None, validation_alias=also_read_as("quantization", "vllm_quantization")
    )
    kv_cache_dtype: str = Field(
        default="auto", validation_alias=also_read_as("kv_cache_dtype", "vllm_kv_cache_dtype")
    )
    load_format: str = Field(
        default="auto", validation_alias=also_read_as("load_format", "vllm_load_format")
    )
    enforce_eager: bool = Field(
        default=False, validation_alias=also_read_as("enforce_eager", "vllm_enforce_eager")
    )
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
    spec_ngram_prompt_lookup_max: int = Field(
        default=4,
        gt=0,
        validation_alias=also_read_as("spec_ngram_prompt_lookup_max", "spec_ngram_lookup_max"),
    )
    spec_ngram_prompt_lookup_min: int = Field(
        default=1,
        gt=0,
        validation_alias=also_read_as("spec_ngram_prompt_lookup_min", "spec_ngram_lookup_min"),
    )
    draft_model_dir: str | None = Field(
        default=None, validation_alias=also_read_as("draft_model_dir", "spec_draft_model_dir")
    )

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
    # The reference container's routing knobs, on the rule of the same meaning: its
    # MAX_NEW_TOKENS_CODE is the long-answer budget, its _HARD one the explicit-code budget.
    max_new_tokens_code: MaxTokens | None = None  # the "long" rule's budget
    max_new_tokens_code_hard: MaxTokens | None = None  # the "code" rule's budget
    long_answer_keywords: StrList = Field(default_factory=list)  # more "long" keywords
    hard_code_question_keywords: StrList = Field(default_factory=list)  # more "code" keywords
    disable_token_routing: bool = False  # every question gets MAX_NEW_TOKENS
    stop_strings: StrList = Field(default_factory=list)
    stop_on_double_newline: bool = False  # a blank line ends the answer
    max_sentences: SentenceCap = Field(
        default=0, validation_alias=also_read_as("max_sentences", "output_max_sentences")
    )
    sentence_endings: str = "。！？"
    trim_examples: bool = Field(
        default=False, validation_alias=also_read_as("trim_examples", "output_trim_examples")
    )
    example_markers: StrList = Field(default_factory=lambda: ["例如", "比如"])
    trim_partial_sentence: bool = False

    # OpenAI-compatible API (/v1)
    served_model_name: str | None = None  # None: the model folder's name
    api_key: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    protect_predict: bool = False
    default_mode: Literal["fast", "slow"] = "fast"

    # Warmup: questions from the data file through /predict's path before GET / answers.
    warmup_data_path: str = "data.jsonl"
    warmup_num_samples: int = Field(default=8, ge=0)
    warmup_max_tokens: MaxTokens | None = None  # None: each question's own budget
    warmup_repeat: int = Field(default=1, ge=1)  # passes over the same questions
    warmup_timeout_seconds: float = Field(default=120.0, gt=0)

    _split_lists = field_validator(
        "stop_strings",
        "example_markers",
        "api_key",
        "long_answer_keywords",
        "hard_code_question_keywords",
        mode="before",
    )(_list_from_env)

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        """The chosen profile's values, for every setting the input leaves out."""
        if not isinstance(data, dict):
            return data
        profile = PROFILES.get(str(data.get("profile", "general")).lower(), {})
        for name, choice in profile.items():
            if not any(key in data for key in cls.read_names(name)):
                data[name] = choice.value
        return data

    @classmethod
    def read_names(cls, name: str) -> list[str]:
        """The names a setting is read under: its own, then the reference container's."""
        alias = cls.model_fields[name].validation_alias
        return list(alias.choices) if isinstance(alias, AliasChoices) else [name]

    @model_validator(mode="after")
    def _reference_routing(self) -> Settings:
        """The reference container's routing knobs, folded into the budget rules."""
        if self.force_vllm:
            self.use_vllm = True
        patches = {
            "long": (self.max_new_tokens_code, self.long_answer_keywords),
            "code": (self.max_new_tokens_code_hard, self.hard_code_question_keywords),
        }
        rules = []
        for rule in self.budget_rules:
            tokens, keywords = patches.get(rule.name, (None, []))
            rules.append(
                rule.model_copy(
                    update={
                        "max_tokens": tokens or rule.max_tokens,
                        "keywords": list(dict.fromkeys([*rule.keywords, *keywords])),
                    }
                )
            )
        self.budget_rules = rules
        return self

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

    def routed_rules(self) -> list[BudgetRule]:
        """The budget rules questions are routed by (none with DISABLE_TOKEN_ROUTING)."""
        return [] if self.disable_token_routing else self.budget_rules

    def engine_stop_strings(self) -> list[str]:
        return [*self.stop_strings, *(["\n\n"] if self.stop_on_double_newline else [])]


# What download_model.py reads at build time (tests keep the two in step): not for the server.
READ_AT_BUILD_TIME = frozenset(
    {
        "MODEL_ID",
        "MODEL_REVISION",
        "MODEL_SOURCE",
        "DRAFT_MODEL_ID",
        "DRAFT_MODEL_REVISION",
        "DRAFT_REQUIRED",
        "MODEL_CACHE_DIR",
        "MODEL_MANIFEST",
        "HF_ENDPOINT",
        "MODEL_TOKEN_FILE",
        "MODEL_TOKEN",
        "DOWNLOAD_RETRIES",
        "DOWNLOAD_BACKOFF_SECONDS",
        "ADAPTER_ID",
        "ADAPTER_REVISION",
        "ADAPTER_MODE",
        "ADAPTER_NAME",
    }
)


def environment_names() -> set[str]:
    """Every variable name the settings read, upper-case."""
    return {alias.upper() for name in Settings.model_fields for alias in Settings.read_names(name)}


def unread_environment(known_elsewhere: set[str] = frozenset()) -> dict[str, str]:
    """Variables that look meant for this server but that it does not read, with why.

    A reference-container name with no equivalent here, or a near miss of a name that is
    read (a typo). ``known_elsewhere``: names other parts read (vLLM's own, the build's).
    """
    read = environment_names()
    candidates = sorted(read | REFERENCE_WITHOUT_EQUIVALENT.keys())
    unread = {}
    for raw in os.environ:
        name = raw.upper()
        if name in read or name in known_elsewhere or name in READ_AT_BUILD_TIME:
            continue
        if name in REFERENCE_WITHOUT_EQUIVALENT:
            unread[raw] = f"no equivalent here: {REFERENCE_WITHOUT_EQUIVALENT[name]}"
        elif near := difflib.get_close_matches(name, candidates, n=1, cutoff=0.85):
            unread[raw] = f"not read; did you mean {near[0]}?"
    return unread


@lru_cache
def get_settings() -> Settings:
    return Settings()
