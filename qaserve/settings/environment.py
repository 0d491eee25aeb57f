"""The environment audit: variables that look meant for the server but that it does not
read, each with why. A name of the public reference container that has no equivalent
here, or a near miss of a name that is read (a typo), is reported at start (a WARNING)
and in /info's ``unread_environment``, instead of being ignored in silence.

What is read comes from the settings classes themselves: the server's ``Settings`` (with
the reference names it reads as aliases) and the build-time tools' settings, whose
variables mean something in the image's build, not to the server.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping

from pydantic_settings import BaseSettings

from prep.download import DownloadSettings
from qaserve.settings import Settings
from qaserve.settings.fields import read_names

# Names the public reference container reads that have no equivalent here.
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
    "VLLM_COMPILATION_CONFIG": "VLLM_ENGINE_ARGS='{\"compilation_config\": ...}' passes it",
    "VLLM_TOKENIZER_POOL_SIZE": "prompts are tokenized by the server, in a thread",
    "VLLM_TOKENIZER_POOL_TYPE": "prompts are tokenized by the server, in a thread",
    "SPEC_DISABLE_BY_BATCH_SIZE": "not passed to vLLM (its V1 engine dropped the option)",
    "SPEC_DRAFT_MAX_MODEL_LEN": "the draft model runs with the main model's context",
    "SPEC_DRAFT_OPTIONAL": "the download step: DRAFT_REQUIRED=0 makes the draft optional",
    "FAST_CHAT_TEMPLATE": "prompts are always rendered by the model's own chat template",
    "LOG_TOKEN_ROUTING": "the budget each question got is in the eval details instead",
    "DEBUG_NET": "the server makes no network calls at run time",
    "VLLM_LOG_LEVEL": "LOG_LEVEL sets the server's level; vLLM reads VLLM_LOGGING_LEVEL",
}

# The build-time tools' settings: what the image's build reads, not the server.
BUILD_TIME_SETTINGS: tuple[type[BaseSettings], ...] = (DownloadSettings,)


def names_read_by(settings_class: type[BaseSettings]) -> set[str]:
    """Every variable a settings class reads, upper-case: field names and their aliases."""
    fields = settings_class.model_fields.items()
    return {alias.upper() for name, field in fields for alias in read_names(name, field)}


def server_environment_names() -> set[str]:
    return names_read_by(Settings)


def build_time_names() -> set[str]:
    return set().union(*map(names_read_by, BUILD_TIME_SETTINGS))


def unread_environment(
    known_elsewhere: Iterable[str] = (), environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """Variables that look meant for this server but that it does not read, with why.
    ``known_elsewhere``: names other parts read (vLLM's own)."""
    read = server_environment_names()
    skip = read | build_time_names() | set(known_elsewhere)
    candidates = sorted(read | REFERENCE_WITHOUT_EQUIVALENT.keys())
    unread = {}
    for raw in environ:
        name = raw.upper()
        if name in skip:
            continue
        if name in REFERENCE_WITHOUT_EQUIVALENT:
            unread[raw] = f"no equivalent here: {REFERENCE_WITHOUT_EQUIVALENT[name]}"
        elif near := difflib.get_close_matches(name, candidates, n=1, cutoff=0.85):
            unread[raw] = f"not read; did you mean {near[0]}?"
    return unread
