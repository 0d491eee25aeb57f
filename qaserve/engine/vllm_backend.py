"""vLLM's async engine in-process: the one place that touches vLLM's API.

Works on vLLM 0.10 (the evaluation image) and on current releases. The
differences it covers: 0.10 names the request-log switch ``disable_log_requests``
(later ``enable_log_requests``), has no draft-model speculation (V1 has it from 0.15,
where the method must be named), and may hand back a V0 engine, which stops with
``shutdown_background_loop`` instead of ``shutdown``. A killed engine process: current
releases notice it within a second (``errored``, and EngineDeadError for the requests in
flight); 0.10 does not notice at all and its requests wait forever, so the adapter also
watches the engine's processes and ends their requests itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import functools
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

from pydantic import BaseModel

from prep.adapters import max_lora_rank
from qaserve.engine.detokenize import (
    REPLACEMENT,
    Decode,
    PromptContext,
    answer_text,
    byte_level_decoder,
    prompt_context,
)
from qaserve.engine.held_steps import HOLD_UNTIL, held_steps_scheduler, hold_until
from qaserve.engine.parallel import prepare_layout
from qaserve.engine.processes import engine_processes_die_with_this_process
from qaserve.engine.types import (
    BackendInfo,
    EngineConfigError,
    EngineDeadError,
    EngineStart,
    GenParams,
    GenResult,
    RequestRefused,
    TokenLogprob,
    count_sentence_ends,
    join_chunks,
)
from qaserve.process_env import export_to_vllm
from qaserve.settings import EngineSettings, ModelSettings

logger = logging.getLogger(__name__)


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def speculative_config(
    settings: EngineSettings, draft: str | None, vllm_version: str
) -> tuple[dict | None, str | None]:
    """The engine's speculative_config (``draft``: the draft model's folder), and a note when
    speculation had to be left off."""
    if not settings.enable_speculative_decoding:
        return None, None
    tokens = settings.spec_num_speculative_tokens
    if settings.spec_method == "ngram":
        return {
            "method": "ngram",
            "num_speculative_tokens": tokens,
            "prompt_lookup_max": settings.spec_ngram_prompt_lookup_max,
            "prompt_lookup_min": settings.spec_ngram_prompt_lookup_min,
        }, None
    if not draft or not (Path(draft) / "config.json").is_file():
        return None, f"draft model not found at DRAFT_MODEL_DIR={draft!r}; running without it"
    # 0.10 to 0.14 refuse a draft model when the engine is configured (NotImplementedError
    # "Speculative decoding with draft model is not supported yet"), which would fail the start.
    if _major_minor(vllm_version) < (0, 15):
        return None, f"vLLM {vllm_version} has no draft-model speculation; use SPEC_METHOD=ngram"
    return {
        "method": "draft_model",  # 0.15 does not infer it from the model (later releases do)
        "model": draft,
        "num_speculative_tokens": tokens,
        "draft_tensor_parallel_size": settings.tensor_parallel_size,
    }, None


# AsyncEngineArgs keywords that take an EngineSettings field as it is.
COPIED_SETTINGS = {
    "dtype": "dtype",
    "max_model_len": "max_model_len",
    "gpu_memory_utilization": "gpu_memory_utilization",
    "max_num_seqs": "vllm_max_num_seqs",
    "max_num_batched_tokens": "vllm_max_num_batched_tokens",
    "enable_prefix_caching": "enable_prefix_caching",
    "quantization": "quantization",
    "kv_cache_dtype": "kv_cache_dtype",
    "load_format": "load_format",
    "enforce_eager": "enforce_eager",
    "tensor_parallel_size": "tensor_parallel_size",
    "pipeline_parallel_size": "pipeline_parallel_size",
    "data_parallel_size": "data_parallel_size",
    "distributed_executor_backend": "distributed_executor_backend",
    "seed": "seed",
    "scheduling_policy": "scheduling_policy",
}
# Every keyword the settings build, and the setting (field name) each one comes from.
SETTING_OF_KEYWORD = {
    **COPIED_SETTINGS,
    "model": "model_dir",
    "trust_remote_code": "trust_remote_code",
    "speculative_config": "enable_speculative_decoding",
    "disable_log_stats": "log_engine_stats",
    "enable_lora": "lora_adapters",
    "max_loras": "lora_adapters",
    "max_lora_rank": "lora_adapters",
    "structured_outputs_config": "compact_json",
    "guided_decoding_backend": "compact_json",
    "guided_decoding_disable_any_whitespace": "compact_json",
}
# One log line per request costs real time in a 512-item batch. 0.10 names the switch
# disable_log_requests, later releases enable_log_requests: one of the two is always left out.
REQUEST_LOGS_OFF = {"disable_log_requests": True, "enable_log_requests": False}


def engine_kwargs(
    model: ModelSettings,
    settings: EngineSettings,
    accepted: set[str],
    spec: dict | None,
    vllm_version: str,
) -> dict:
    """AsyncEngineArgs keywords: the settings' own, limited to what this vLLM accepts (see
    ``drop_unaccepted``), then VLLM_ENGINE_ARGS (see ``check_engine_args``)."""
    check_engine_args(settings.vllm_engine_args, accepted, vllm_version)
    named = {
        **{keyword: getattr(settings, field) for keyword, field in COPIED_SETTINGS.items()},
        "model": model.model_dir,
        "trust_remote_code": model.trust_remote_code,
        "speculative_config": spec,
        "disable_log_stats": not settings.log_engine_stats,
        **lora_kwargs(model.lora_adapters),
    }
    kept = drop_unaccepted(named, accepted, vllm_version, (model, settings))
    logs_off = {key: value for key, value in REQUEST_LOGS_OFF.items() if key in accepted}
    compact = compact_json_kwargs(accepted) if settings.compact_json else {}
    held = {} if hold_refusal(settings) else {"scheduler_cls": HELD_STEPS_SCHEDULER}
    return {**logs_off, **kept, **compact, **held, **settings.vllm_engine_args}


def compact_json_kwargs(accepted: set[str]) -> dict:
    """The engine arguments for compact constrained JSON: a structured-outputs config in
    current releases, two guided-decoding arguments in 0.10. Both take the xgrammar backend,
    the one vLLM allows the switch on (and "auto"'s first choice)."""
    if "structured_outputs_config" in accepted:
        config = {"backend": "xgrammar", "disable_any_whitespace": True}
        return {"structured_outputs_config": config}
    return {"guided_decoding_backend": "xgrammar", "guided_decoding_disable_any_whitespace": True}


def engine_args(kwargs: dict):
    """vLLM's AsyncEngineArgs from the keywords: a structured-outputs config given as a dict
    (as /info shows it) becomes vLLM's class, which AsyncEngineArgs does not build itself."""
    from vllm import AsyncEngineArgs

    config = kwargs.get("structured_outputs_config")
    if isinstance(config, dict):
        from vllm.config import StructuredOutputsConfig

        kwargs = {**kwargs, "structured_outputs_config": StructuredOutputsConfig(**config)}
    return AsyncEngineArgs(**kwargs)


def check_engine_args(extra: dict, accepted: set[str], vllm_version: str) -> None:
    """VLLM_ENGINE_ARGS may name any argument of this vLLM's AsyncEngineArgs that no setting
    builds: a setting's keyword there would make one of the two win in silence."""
    taken = sorted(extra.keys() & SETTING_OF_KEYWORD.keys())
    if taken:
        raise EngineConfigError(
            "VLLM_ENGINE_ARGS: "
            + "; ".join(
                f"{key} comes from the setting {SETTING_OF_KEYWORD[key].upper()}: set it there"
                for key in taken
            )
        )
    unknown = sorted(extra.keys() - accepted)
    if unknown:
        hints = []
        for key in unknown:
            near = difflib.get_close_matches(key, accepted, n=1)
            hints.append(f"{key} (did you mean {near[0]}?)" if near else key)
        raise EngineConfigError(
            f"VLLM_ENGINE_ARGS: not an argument of vLLM {vllm_version}'s AsyncEngineArgs: "
            + ", ".join(hints)
        )


def drop_unaccepted(
    named: dict, accepted: set[str], vllm_version: str, groups: tuple[BaseModel, ...]
) -> dict:
    """The keywords this vLLM accepts. A setting this vLLM has no argument for is left out
    with a WARNING where it is at its default (running without it changes nothing one asked
    for), and fails the start where it was set (in the environment or by PROFILE) to
    something else: the server would not run as configured."""
    refused = []
    for keyword in sorted(named.keys() - accepted):
        field = SETTING_OF_KEYWORD[keyword]
        group = next(group for group in groups if field in type(group).model_fields)
        value = getattr(group, field)
        default = type(group).model_fields[field].get_default(call_default_factory=True)
        if field in group.model_fields_set and value != default:
            refused.append(f"{field.upper()}={value!r} (engine argument {keyword})")
        else:
            logger.warning(
                "vLLM %s has no engine argument %s: left out (%s is at its default)",
                vllm_version,
                keyword,
                field.upper(),
            )
    if refused:
        raise EngineConfigError(
            f"vLLM {vllm_version} has no engine argument for {', '.join(refused)}: "
            "unset it or install a vLLM that has it"
        )
    return {keyword: value for keyword, value in named.items() if keyword in accepted}


def lora_kwargs(adapters: dict[str, str]) -> dict:
    """LoRA support, sized for the configured adapters (all of them in one batch)."""
    folders = list(adapters.values())
    if not folders:
        return {}
    return {"enable_lora": True, "max_loras": len(folders), "max_lora_rank": max_lora_rank(folders)}


@functools.lru_cache(maxsize=512)
def vllm_sampling_params(
    params: GenParams,
    incremental: bool = False,
    detokenize: bool = True,
    held_until: float | None = None,
):
    """vLLM's SamplingParams, built once per distinct GenParams (a /predict batch has a handful)
    and shared by the requests: vLLM clones them before it changes any field.
    ``detokenize=False``: vLLM leaves the text to the caller (``answer_text``).
    ``held_until``: the engine holds the request's steps until then (``held_steps.py``)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    kind = RequestOutputKind.DELTA if incremental else RequestOutputKind.FINAL_ONLY
    taken = params.engine_sampling()
    if params.constraint is not None:
        taken.update(structured_outputs(params.constraint.engine_fields()))
    if held_until is not None:
        taken["extra_args"] = {HOLD_UNTIL: held_until}
    sampling = SamplingParams(**taken, output_kind=kind, detokenize=detokenize)
    if params.constraint is None and hasattr(sampling, "skip_clone"):
        # Current releases deep-copy each request's parameters unless told not to (about a
        # fifth of what a request costs the server) and 0.10 always does. The shallow copy
        # they make instead is enough: vLLM sets fields on its copy, and changes a shared
        # container only to add the model's EOS ids to the stop-id set, the same for every
        # request. (A constraint's parameters also record a grammar backend: deep-copied.)
        sampling.skip_clone = True
    return sampling


def structured_outputs(fields: dict) -> dict:
    """The SamplingParams keyword for a constraint in the installed vLLM: structured_outputs
    (StructuredOutputsParams) in current releases, guided_decoding (GuidedDecodingParams)
    in 0.10."""
    from vllm import sampling_params

    if hasattr(sampling_params, "StructuredOutputsParams"):
        return {"structured_outputs": sampling_params.StructuredOutputsParams(**fields)}
    return {"guided_decoding": sampling_params.GuidedDecodingParams(**fields)}


def token_logprobs(token_ids, positions, top: int) -> list[TokenLogprob]:
    """vLLM's per-position logprob maps (token id -> Logprob) for the tokens it generated, or
    for the prompt's tokens it was given."""
    chosen = []
    for token_id, position in zip(token_ids, positions, strict=True):
        ranked = sorted(
            (
                (entry.rank, entry_id, entry)
                for entry_id, entry in position.items()
                if entry.rank is not None and entry.rank <= top
            ),
            key=lambda ranked_entry: ranked_entry[0],
        )
        picked = position[token_id]
        alternatives = tuple((entry.decoded_token or "", entry.logprob) for _, _, entry in ranked)
        chosen.append(
            TokenLogprob(
                picked.decoded_token or "",
                picked.logprob,
                alternatives,
                token_id=token_id,
                rank=picked.rank,
                top_ids=tuple(entry_id for _, entry_id, _ in ranked),
            )
        )
    return chosen


@functools.cache
def _tokens_input():
    """vLLM's constructor of a rendered token prompt (None in 0.10, which has none)."""
    try:
        from vllm.inputs import tokens_input
    except ImportError:
        return None
    return tokens_input


def engine_prompt(prompt_ids: list[int]) -> dict:
    """Token ids as the engine takes them. Current releases take a rendered prompt
    (``tokens_input``) as it is and send a raw ``{"prompt_token_ids": ...}`` to a thread to be
    rendered: on a /predict batch that hop alone was about a sixth of the server's CPU."""
    rendered = _tokens_input()
    return rendered(prompt_ids) if rendered else {"prompt_token_ids": prompt_ids}


def bulk_decoder(engine) -> tuple[Decode | None, str]:
    """The decoding that gives the same text as vLLM's own detokenizer, once at the end, and
    how answers are detokenized, for /info. None where vLLM's text could differ: a V0 engine
    (0.10's fallback), a tokenizer vLLM detokenizes with its slow Python detokenizer, or a vLLM
    build that does not show which detokenizer it uses."""
    if not hasattr(engine, "output_processor"):
        return None, "by vLLM as it generates (a V0 engine)"
    try:
        tokenizer = engine.tokenizer
        # 0.10 hands out a TokenizerGroup, current releases the tokenizer itself.
        tokenizer = getattr(tokenizer, "get_lora_tokenizer", lambda: tokenizer)()
        fast = _vllm_detokenizes_fast(tokenizer)
        rust = tokenizer._tokenizer
    except (AttributeError, ImportError) as exc:
        logger.warning("answers are detokenized by vLLM as they are generated: %r", exc)
        return None, f"by vLLM as it generates (this build: {exc!r})"
    if not fast:
        return None, "by vLLM as it generates (its slow detokenizer for this tokenizer)"
    decode = byte_level_decoder(rust)
    how = "from a table of the tokens' bytes" if decode else "by the tokenizer"
    decode = decode or functools.partial(rust.decode, skip_special_tokens=True)
    return decode, (
        f"once per answer at its end ({how}), where no stream, stop string, logprobs or "
        "adapter needs text as it grows; else by vLLM as it generates"
    )


# VLLM_ENGINE_ARGS that change how the engine computes a step, not what a step's output carries
# for a request: answers' steps may still be held with them. Any other argument (routed experts,
# KV transfer, ...) may add to each output, which vLLM would then miss.
STEP_NEUTRAL_ARGS = frozenset(
    {
        "async_scheduling",
        "attention_backend",
        "block_size",
        "compilation_config",
        "cpu_offload_gb",
        "cuda_graph_sizes",
        "cudagraph_capture_sizes",
        "disable_cascade_attn",
        "disable_custom_all_reduce",
        "enable_chunked_prefill",
        "max_cudagraph_capture_size",
        "max_logprobs",
        "max_seq_len_to_capture",
        "num_gpu_blocks_override",
        "swap_space",
    }
)


def hold_refusal(settings: EngineSettings) -> str | None:
    """Why this engine may not hold steps (``held_steps.py``): they may carry more than token
    ids for an answer decoded at its end, or another scheduler is asked for. None: it may."""
    if settings.log_engine_stats:
        return "LOG_ENGINE_STATS=1: vLLM counts its stats from every step"
    if "scheduler_cls" in settings.vllm_engine_args:
        return "VLLM_ENGINE_ARGS names scheduler_cls: the engine runs that scheduler as it is"
    others = sorted(settings.vllm_engine_args.keys() - STEP_NEUTRAL_ARGS)
    if others:
        return f"VLLM_ENGINE_ARGS names {', '.join(others)}, which may add to every step's output"
    return None


# The engine argument scheduler_cls that holds steps in the engine core (held_steps.py).
HELD_STEPS_SCHEDULER = f"{held_steps_scheduler.__module__}.{held_steps_scheduler.__name__}"


def held_steps(engine, decode: Decode | None, refusal: str | None) -> tuple[bool, str]:
    """Whether the engine holds the steps of answers decoded at their end (``held_steps.py``),
    and where or why not, for /info."""
    if decode is None:
        return False, "none: answers are detokenized by vLLM as they are generated"
    if refusal:
        return False, f"none: {refusal}"
    chosen = engine.vllm_config.scheduler_config.scheduler_cls
    if chosen != HELD_STEPS_SCHEDULER:  # 0.10 puts its AsyncScheduler in for async_scheduling
        logger.warning("no steps held in the engine: vLLM runs the scheduler %s", chosen)
        return False, f"none: vLLM runs the scheduler {chosen}"
    return True, (
        "in the engine core: an answer decoded at its end comes from the engine in two "
        "outputs, its first and its last (every step from 1-2 s before a /predict deadline)"
    )


def count_outputs(engine, counts: dict[str, int]) -> None:
    """Counts the outputs vLLM's engine core sends this process (``counts["engine_outputs"]``),
    one add per step, around the output processor that takes them (V1 engines)."""
    processor = getattr(engine, "output_processor", None)
    if processor is None:
        return
    process = processor.process_outputs

    def counted(outputs, *args, **kwargs):
        counts["engine_outputs"] += len(outputs)
        return process(outputs, *args, **kwargs)

    processor.process_outputs = counted  # looked up on the instance at every step


def _vllm_detokenizes_fast(tokenizer) -> bool:
    """Whether vLLM gives this tokenizer its fast (tokenizers' DecodeStream) detokenizer."""
    from vllm.v1.engine import detokenizer

    if hasattr(detokenizer, "uses_fast_detokenizer"):
        return detokenizer.uses_fast_detokenizer(tokenizer)
    from transformers import PreTrainedTokenizerFast  # 0.10's rule

    return detokenizer.USE_FAST_DETOKENIZER and isinstance(tokenizer, PreTrainedTokenizerFast)


# How the engine orders waiting requests, for /info (by SCHEDULING_POLICY=priority or not).
SCHEDULING = {True: "by priority (lower first), then arrival", False: "arrival order (fcfs)"}

# vLLM's names for "the engine is gone" (V1 in every release, V0 and its RPC client in 0.10).
_VLLM_DEAD_ERRORS = {"EngineDeadError", "AsyncEngineDeadError", "MQEngineDeadError"}


class VllmEngine:
    def __init__(
        self,
        engine,
        info: BackendInfo,
        adapters: dict[str, str],
        by_priority: bool,
        refusal: str | None,
    ):
        """``refusal``: why answers' steps may not be held (``hold_refusal``), or None."""
        import psutil
        from vllm.lora.request import LoRARequest

        self._engine = engine
        # Under FCFS every request goes as priority 0: 0.10's V0 engine refuses any other.
        self._by_priority = by_priority
        self._lora = {
            name: LoRARequest(name, number, folder)
            for number, (name, folder) in enumerate(adapters.items(), start=1)
        }
        self.info = info
        self._decode, info.details["detokenize"] = bulk_decoder(engine)
        self._holds, info.details["held_steps"] = held_steps(engine, self._decode, refusal)
        # "aborted": requests stopped before the engine finished them (cap, client gone)
        self._counts = {"running": 0, "aborted": 0, "engine_outputs": 0}
        count_outputs(engine, self._counts)
        # The engine core (and its helpers); not what a failed start attempt left to reap.
        self._processes = [p for p in psutil.Process().children() if _alive(p)]
        self._requests: set[asyncio.Task] = set()
        self._dead: str | None = None

    @classmethod
    def start(cls, start: EngineStart) -> VllmEngine:
        import vllm
        from vllm import AsyncEngineArgs, AsyncLLMEngine
        from vllm.platforms import current_platform

        layout, environment = prepare_layout(start.engine, on_cpu=current_platform.is_cpu())
        resolved = {"tensor_parallel_size": layout["tensor_parallel_size"]}
        settings = start.engine.model_copy(update=resolved)
        model = start.model
        spec, spec_note = speculative_config(settings, model.draft_model_dir, vllm.__version__)
        if spec_note:
            logger.warning("speculative decoding off: %s", spec_note)
        accepted = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
        kwargs = engine_kwargs(model, settings, accepted, spec, vllm.__version__)
        args = engine_args(kwargs)
        export_to_vllm(environment)
        engine_processes_die_with_this_process()
        engine = AsyncLLMEngine.from_engine_args(args)
        by_priority = kwargs.get("scheduling_policy") == "priority"
        info = BackendInfo(
            backend="vllm",
            engine=type(engine).__name__,
            version=vllm.__version__,
            details={
                "engine_args": kwargs,
                "speculative_config": spec,
                "speculative_note": spec_note,
                "parallel": layout,
                "lora_adapters": model.lora_adapters,
                "scheduling": SCHEDULING[by_priority],
            },
            adjusted=resolved,
            constrains_output=True,
        )
        logger.info("vLLM %s engine %s ready", info.version, info.engine)
        return cls(engine, info, model.lora_adapters, by_priority, hold_refusal(settings))

    @property
    def stats(self) -> dict[str, int]:
        """Live counters, for /info: running and aborted requests, and the outputs the engine
        sent (fewer than one per step for each answer whose steps it holds)."""
        return dict(self._counts)

    def dead_reason(self) -> str | None:
        if self._dead is None:
            if getattr(self._engine, "errored", False):
                self._declare_dead("vLLM reports its engine errored")
            for process in self._processes:
                if not _alive(process):
                    self._declare_dead(f"engine process {process.pid} exited")
        return self._dead

    def _declare_dead(self, reason: str) -> None:
        if self._dead is None:
            self._dead = reason
            # Requests in flight would wait forever on vLLM 0.10: end them now (the one
            # that found out ends by itself).
            for task in self._requests - {asyncio.current_task()}:
                task.cancel()

    def _dead_error(self) -> EngineDeadError:
        return EngineDeadError(f"the vLLM engine is dead: {self._dead}")

    async def stream(self, prompt_ids: list[int], params: GenParams) -> AsyncIterator[GenResult]:
        """Text as it is generated; the last chunk carries the finish reason."""
        # Closed with this stream (client gone), not whenever the garbage collector gets to
        # it: until then vLLM would go on generating for nobody.
        chunks = self._run(prompt_ids, params, new_request_id(), math.inf, incremental=True)
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    async def generate(self, prompt_ids: list[int], params: GenParams) -> GenResult:
        return await join_chunks(self._run(prompt_ids, params, new_request_id(), math.inf))

    def _decoding_context(
        self, prompt_ids: list[int], params: GenParams, incremental: bool
    ) -> PromptContext | None:
        """The prompt context after which this server decodes the answer once it is done
        (vLLM's per-token detokenizing is most of the server's CPU per token), or None where
        vLLM decodes it: where something needs the text while it grows. Adapters keep vLLM's
        decoding, as they may bring their own tokenizer; so do token-id prompts that end
        inside a character, whose text current releases start with the whole prompt's
        (tokenizers' DecodeStream, primed with such a prompt)."""
        if (
            self._decode is None
            or incremental
            or params.stop
            or params.logprobs is not None
            or params.prompt_logprobs is not None
            or params.adapter is not None
        ):
            return None
        context = prompt_context(self._decode, prompt_ids)
        return None if context[1].endswith(REPLACEMENT) else context

    async def _run(
        self,
        prompt_ids: list[int],
        params: GenParams,
        request_id: str,
        held_until: float,
        incremental: bool | None = None,
    ) -> AsyncIterator[GenResult]:
        """``held_until``: until when the engine may hold the request's steps, if it holds
        them (``held_steps.hold_until``)."""
        if incremental is None:
            # Only a sentence cap needs to see the text grow; else the final output suffices.
            incremental = bool(params.max_sentences)
        context = self._decoding_context(prompt_ids, params, incremental)
        held = held_until if context is not None and self._holds else None
        stream = self._engine.generate(
            engine_prompt(prompt_ids),
            vllm_sampling_params(params, incremental, context is None, held),
            request_id,
            lora_request=self._lora[params.adapter] if params.adapter else None,
            priority=params.priority if self._by_priority else 0,
        )
        if self._dead is not None:
            raise self._dead_error()
        ends, engine_finished, answered = 0, False, False
        task = asyncio.current_task()
        self._requests.add(task)
        self._counts["running"] += 1
        try:
            # Leaving early (sentence cap, client gone) closes the stream: vLLM aborts it.
            async with aclosing(stream):
                async for output in stream:
                    answered, engine_finished = True, output.finished
                    piece = output.outputs[0]
                    finish = piece.finish_reason if output.finished else None
                    if params.max_sentences and finish is None:
                        ends += count_sentence_ends(piece.text, params.sentence_endings)
                        if ends >= params.max_sentences:
                            finish = "sentences"
                    logprobs = None
                    if params.logprobs is not None:
                        logprobs = token_logprobs(piece.token_ids, piece.logprobs, params.logprobs)
                    text = piece.text
                    if context is not None:
                        stopped = piece.finish_reason == "stop"
                        text = answer_text(self._decode, context, piece.token_ids, stopped)
                    result = GenResult(text, len(piece.token_ids), finish, logprobs)
                    if params.prompt_logprobs is not None and output.prompt_logprobs:
                        # On one output only (the first of a stream); the first entry is None.
                        result.prompt_logprobs = token_logprobs(
                            prompt_ids[1:], output.prompt_logprobs[1:], params.prompt_logprobs
                        )
                    yield result
                    if finish:
                        return
        except asyncio.CancelledError:
            if self._dead is None:
                raise
            if hasattr(task, "uncancel"):  # Python 3.11+: this cancel is handled here
                task.uncancel()
            raise self._dead_error() from None
        except Exception as exc:
            if not answered and _is_refusal(exc):
                # vLLM checks a request's parameters as it takes it in (a structured-output
                # schema or grammar it cannot compile): nothing was generated.
                raise RequestRefused(str(exc)) from exc
            if type(exc).__name__ not in _VLLM_DEAD_ERRORS:
                raise
            self._declare_dead(f"{type(exc).__name__}: {exc}")
            raise self._dead_error() from exc
        finally:
            self._requests.discard(task)
            self._counts["running"] -= 1
            self._counts["aborted"] += not engine_finished

    async def generate_batch(
        self, prompts: list[list[int]], params: list[GenParams], deadline: float | None = None
    ) -> list[GenResult]:
        # Every item enters the engine now, each with its own parameters, so
        # different budgets share the same running batch.
        if deadline is None:
            return list(await asyncio.gather(*map(self.generate, prompts, params)))
        return await self._generate_until(deadline, prompts, params)

    async def _generate_until(
        self, deadline: float, prompts: list[list[int]], params: list[GenParams]
    ) -> list[GenResult]:
        request_ids = [new_request_id() for _ in prompts]
        until = hold_until(deadline - time.monotonic())  # the cut needs every id by then
        tasks = [
            asyncio.ensure_future(join_chunks(self._run(prompt, one, request_id, until)))
            for prompt, one, request_id in zip(prompts, params, request_ids, strict=True)
        ]
        cut: dict[asyncio.Future, GenResult] = {}
        try:
            _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            # What each late answer has so far, read before its request is aborted.
            cut = {
                task: self._so_far(request_id, prompt, one)
                for task, request_id, prompt, one in zip(
                    tasks, request_ids, prompts, params, strict=True
                )
                if task in late
            }
        finally:  # also when this request is cancelled (its client left)
            for task in tasks:
                task.cancel()
        if cut:
            logger.warning("deadline: %d of %d answers cut where they stood", len(cut), len(tasks))
            await asyncio.wait(cut)  # their engine requests are aborted
        return [cut[task] if task in cut else task.result() for task in tasks]

    def _so_far(self, request_id: str, prompt_ids: list[int], params: GenParams) -> GenResult:
        """The text and token count of a running request, from vLLM's own output processor
        (its V1 engine, 0.10 through today): the final output vLLM hands an aborted request's
        caller carries them only from 0.10.1, and streaming every item to know them costs
        throughput. An engine without that state gives an empty answer, logged."""
        processor = getattr(self._engine, "output_processor", None)
        try:
            # Newer releases key the states by internal ids, one or more per request id.
            internal = getattr(processor, "external_req_ids", {}).get(request_id, [request_id])
            text_so_far = processor.request_states[internal[0]].detokenizer
            ids = list(text_so_far.output_token_ids)
            context = self._decoding_context(prompt_ids, params, bool(params.max_sentences))
            if context is not None:
                text = answer_text(self._decode, context, ids, stopped=False)
            else:
                text = text_so_far.get_next_output_text(False, False)
            return GenResult(text, len(ids), "deadline")
        except (AttributeError, IndexError, KeyError) as exc:
            logger.warning("deadline: no partial text from this engine (%r)", exc)
            return GenResult("", 0, "deadline")

    async def shutdown(self) -> None:
        stop = getattr(self._engine, "shutdown", None) or self._engine.shutdown_background_loop
        stop()
        logger.info("vLLM engine shut down")


_request_numbers = itertools.count()


def new_request_id() -> str:
    """A request id unique in this process."""
    return f"qa{next(_request_numbers):014x}"


def _is_refusal(exc: Exception) -> bool:
    """Whether vLLM refused a request as invalid: its ValueError in 0.10, its
    VLLMClientError (no ValueError) in current releases."""
    kinds = {kind.__name__ for kind in type(exc).__mro__}
    return isinstance(exc, ValueError) or "VLLMClientError" in kinds


def _alive(process) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
