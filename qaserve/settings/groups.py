"""The settings by layer. Each group is what one layer takes: the server process, the model
and its names, the engine, generation (sampling, prompting, length), the APIs, warmup.
``Settings`` (qaserve/settings/__init__.py) reads them all from the environment at once and
hands each layer its group; a group can also be built alone (tests do).

Field names are the environment names (case-insensitive); ``also_read_as`` adds the public
reference container's names for the same setting.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from prep.adapters import parse_adapters
from prep.chat import DEFAULT_SYSTEM_PROMPT
from qaserve.settings.fields import (
    BudgetRule,
    MaxTokens,
    Penalty,
    Priority,
    RepetitionPenalty,
    SentenceCap,
    StrList,
    Temperature,
    TopK,
    TopP,
    also_read_as,
    json_object_from_env,
    list_from_env,
)
from qaserve.settings.profiles import CODE_KEYWORDS, LONG_KEYWORDS

DEFAULT_BUDGET_RULES = [
    BudgetRule(name="code", keywords=CODE_KEYWORDS, max_tokens=384, max_sentences=0),
    BudgetRule(name="long", keywords=LONG_KEYWORDS, max_tokens=320),
]


class ServerSettings(BaseModel):
    """The process: where it listens, how it logs, stops, and watches its engine."""

    host: str = "0.0.0.0"
    port: int = 8000
    log_level: str = "info"
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)
    keep_alive_seconds: int = Field(default=75, gt=0)
    # A dead engine: how often it is looked for, and how long the server answers 503
    # before it exits (code 3) to be restarted.
    engine_check_seconds: float = Field(default=1.0, gt=0)
    engine_dead_exit_seconds: float = Field(default=3.0, ge=0)


class ModelSettings(BaseModel):
    """The model folders and the names the model and its adapters are served under."""

    model_dir: str = "model"
    # The manifest of the download step (python -m prep download): when set, the model and
    # draft folders come from it (the hub client names them, so they are never guessed),
    # overriding MODEL_DIR.
    model_manifest: str | None = None
    trust_remote_code: bool = False
    draft_model_dir: str | None = Field(
        default=None, validation_alias=also_read_as("draft_model_dir", "spec_draft_model_dir")
    )
    # LoRA adapters served beside the model by vLLM (name -> folder; the manifest adds its
    # own), each picked by its name as a /v1 request's model.
    lora_adapters: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # The model /predict (and a /v1 request naming none) answers with: an adapter's name or
    # the base's; None: the manifest's served adapter if it has one, else the base.
    default_adapter: str | None = None
    served_model_name: str | None = None  # None: the model folder's name

    _parse_adapters = field_validator("lora_adapters", mode="before")(parse_adapters)


class EngineSettings(BaseModel):
    """The backend and everything vLLM is started with."""

    # Backend choice: "auto" tries vLLM and falls back to transformers.
    use_vllm: Literal["auto"] | bool = "auto"
    force_vllm: bool = False  # the reference container's name for USE_VLLM=1
    hf_batch_size: int = Field(default=16, gt=0)
    hf_device: str = "auto"

    dtype: str = "auto"
    # None: the model's own context, as vLLM does (a larger value is lowered to it at start).
    max_model_len: int | None = Field(default=None, gt=0)
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
    # vLLM's periodic throughput log; its per-step bookkeeping costs server CPU.
    log_engine_stats: bool = False
    # The order vLLM takes waiting requests in: "priority" (a request's priority, lower
    # first, then arrival) or "fcfs" (arrival only).
    scheduling_policy: Literal["priority", "fcfs"] = "priority"
    # Constrained JSON (structured outputs, forced tool calls) without whitespace between its
    # tokens, on vLLM's xgrammar backend (vLLM allows the switch on no other): a small model
    # can otherwise spend its whole budget on blanks and never close the object.
    compact_json: bool = True
    # Any other argument of the installed vLLM's AsyncEngineArgs, by its name (a JSON
    # object). Checked at start: a name this vLLM lacks, or one a setting here builds, fails it.
    vllm_engine_args: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict)

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

    _parse_engine_args = field_validator("vllm_engine_args", mode="before")(json_object_from_env)

    @model_validator(mode="after")
    def _force_vllm(self):
        if self.force_vllm:
            self.use_vllm = True
        return self


class GenerationSettings(BaseModel):
    """How answers are made: sampling defaults, the prompt, and length control."""

    # Sampling defaults (a request may override them)
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

    _split_lists = field_validator(
        "stop_strings",
        "example_markers",
        "long_answer_keywords",
        "hard_code_question_keywords",
        mode="before",
    )(list_from_env)

    @field_validator("sentence_endings")
    @classmethod
    def _endings_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("SENTENCE_ENDINGS needs at least one character")
        return value

    @model_validator(mode="after")
    def _reference_routing(self):
        """The reference container's routing knobs, folded into the budget rules."""
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

    def routed_rules(self) -> list[BudgetRule]:
        """The budget rules questions are routed by (none with DISABLE_TOKEN_ROUTING)."""
        return [] if self.disable_token_routing else self.budget_rules

    def longest_answer(self) -> int:
        """The largest token budget any question can get."""
        return max([self.max_new_tokens, *(rule.max_tokens for rule in self.budget_rules)])

    def engine_stop_strings(self) -> list[str]:
        return [*self.stop_strings, *(["\n\n"] if self.stop_on_double_newline else [])]


class ApiSettings(BaseModel):
    """The HTTP APIs: /predict's batch contract, request limits, keys and /v1's default mode."""

    batch_mode: bool = False
    max_batch_size: int = Field(default=4096, gt=0)
    # A /predict request still running after this many seconds stops its unfinished
    # answers and returns each as far as it got (None: no deadline).
    predict_deadline_seconds: float | None = Field(default=None, gt=0)
    # Bodies past this are refused (413) while they stream in, before being buffered:
    # 32 MiB holds a 10,000-question batch many times over.
    max_request_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    api_key: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    protect_predict: bool = False
    default_mode: Literal["fast", "slow"] = "fast"
    # Admission: the generating work taken at once (0: no limit). Past a limit a request is
    # refused at once (429, Retry-After), unless nothing else is in flight: a lone request
    # is always admitted, so one batch of up to MAX_BATCH_SIZE items always runs. The
    # defaults also admit a default-sized question set sent as single requests all at once.
    max_requests_in_flight: int = Field(default=4096, ge=0)
    max_items_in_flight: int = Field(default=8192, ge=0)  # /predict prompts, /v1 prompts x n
    retry_after_seconds: int = Field(default=1, ge=0)
    # The engine priority of /predict items (lower first; /v1 requests default to 0).
    predict_priority: Priority = 10

    _split_keys = field_validator("api_key", mode="before")(list_from_env)


class WarmupSettings(BaseModel):
    """Warmup: questions from the data file through /predict's path before GET / answers."""

    warmup_data_path: str = "data.jsonl"
    warmup_num_samples: int = Field(default=8, ge=0)
    warmup_max_tokens: MaxTokens | None = None  # None: each question's own budget
    warmup_repeat: int = Field(default=1, ge=1)  # passes over the same questions
    warmup_timeout_seconds: float = Field(default=120.0, gt=0)
