"""Named sets of setting defaults. ``PROFILE`` picks one; any variable set in the
environment still wins over the profile's value.

``competition`` is the image's default (the Dockerfile sets ``PROFILE=competition``): the
judge's run, a 0.6B-4B Qwen model on one 64 GB card (MetaX MXC500). Each value carries its
reason; the figures are from data.jsonl (563 pairs) measured with Qwen's own tokenizer (see
the README's competition section). Outside the image, ``general`` keeps the plain defaults.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# The question classes' keywords, shared by the general budget rules (groups.py)
# and this profile's: only the budgets differ.
CODE_KEYWORDS = ["代码", "编写", "实现", "写出", "核函数", "kernel", "__global__"]
LONG_KEYWORDS = ["详细", "比较", "分析", "论述", "阐述", "为什么", "区别"]


class Choice(NamedTuple):
    value: Any
    reason: str


COMPETITION: dict[str, Choice] = {
    "batch_mode": Choice(
        True,
        "the judge sends the whole set in one request only when GET / says batch; one batch "
        "runs at the raw engine's speed, single requests at about 0.7x",
    ),
    "predict_deadline_seconds": Choice(
        320.0,
        "every answer is back before the judge's 360 s limit, with 40 s to spare for the "
        "transfer; unfinished answers are cut, not lost",
    ),
    "max_model_len": Choice(
        1024,
        "the longest prompt of data.jsonl is 122 tokens (system prompt included) and the "
        "largest budget 320: 1024 leaves room for questions 5x longer, and a smaller context "
        "leaves more of the card to the KV cache",
    ),
    "vllm_max_num_seqs": Choice(
        1024, "a batch of up to 1024 questions runs at once instead of queueing"
    ),
    "vllm_max_num_batched_tokens": Choice(
        65536,
        "a 512-question batch (about 80 prompt tokens each) is prefilled in about one step",
    ),
    "scheduling_policy": Choice(
        "fcfs",
        "the judge sends one batch: nothing to put ahead of it; and vLLM 0.10's priority queue "
        "compares two requests that tie on priority and arrival time, which its Request class "
        "cannot do (later releases order them by id)",
    ),
    "gpu_memory_utilization": Choice(
        0.92,
        "a dedicated card: the KV cache takes what the weights leave (the start ladder lowers "
        "it if the card reports less free memory)",
    ),
    "enable_prefix_caching": Choice(
        True, "every prompt starts with the same system prompt; warmup fills the cache"
    ),
    "max_new_tokens": Choice(
        72,
        "questions no rule matches (280 of 563): reference answers are 55 tokens at the median, "
        "72 at p95; a 64-token cut already keeps 0.99 of the ceiling (cjk RougeL)",
    ),
    "budget_rules": Choice(
        [
            {
                "name": "code",
                "keywords": CODE_KEYWORDS,
                "max_tokens": 320,
                "max_sentences": 0,
            },
            {
                "name": "long",
                "keywords": LONG_KEYWORDS,
                "max_tokens": 288,
            },
        ],
        "code questions (120): reference answers 180 tokens at the median, 317 at p95; long "
        "ones (163): 231 and 295; each budget near its class's p95",
    ),
    "max_sentences": Choice(
        0,
        "no sentence cap: references run to 6 sentences at p90 and 9 at most, and the budgets "
        "already bound the length",
    ),
    "trim_examples": Choice(
        False, "85 of the 563 reference answers contain 例如 or 比如: cutting there loses words"
    ),
    "temperature": Choice(0.0, "greedy: the same answer every run"),
    "repetition_penalty": Choice(
        1.05, "small models loop under greedy decoding; a mild penalty breaks the loops"
    ),
    "frequency_penalty": Choice(0.1, "with the repetition penalty, against repeated phrases"),
    "warmup_num_samples": Choice(
        4096,
        "every question of data.jsonl (563): compiles the batch shapes and fills the prefix "
        "cache with the judge's kind of prompts",
    ),
    "warmup_max_tokens": Choice(8, "a tiny budget: warmup costs seconds, not minutes"),
    "warmup_repeat": Choice(2, "the second pass runs on a warm cache, as the judge's will"),
    "warmup_timeout_seconds": Choice(
        60.0, "the judge allows 180 s to health; loading the model takes the rest"
    ),
}

PROFILES: dict[str, dict[str, Choice]] = {"general": {}, "competition": COMPETITION}
