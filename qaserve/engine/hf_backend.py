"""transformers fallback: batched ``generate`` with left padding.

Used when vLLM is absent or fails to start (and USE_VLLM allows it). Items with
the same sampling settings share a micro-batch; the batch runs to its longest
budget and each row is cut back to its own. Stop strings and the sentence cap
are applied after generation here. The repetition, frequency and presence
penalties follow vLLM's definition (``Penalties``), not ``generate``'s own.
Requests run one ``generate_batch`` at a time, in arrival order: no priorities.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
from collections.abc import AsyncIterator
from itertools import groupby

from qaserve.engine.detokenize import answer_text, prompt_context
from qaserve.engine.types import BackendInfo, EngineStart, GenParams, GenResult, TokenLogprob

logger = logging.getLogger(__name__)


def _sampling_key(params: GenParams) -> tuple:
    return (
        params.temperature,
        params.top_p,
        params.top_k,
        params.repetition_penalty,
        params.frequency_penalty,
        params.presence_penalty,
        params.seed,
    )


class Penalties:
    """vLLM's penalties as a transformers logits processor, for a batch sharing one setting.

    As vLLM's ``apply_penalties`` does, in this order: the repetition penalty scales the
    logit of every token seen in the prompt or the output so far (a positive one times
    1/penalty, any other times penalty), then each token's logit loses ``frequency`` times
    its count in the output, then ``presence`` once if it is in the output at all. Only
    generated tokens count for the last two, and left padding counts for none: transformers'
    own repetition penalty would also penalise the padding token of every shorter prompt.
    """

    def __init__(
        self,
        prompts: list[list[int]],
        width: int,
        repetition: float,
        frequency: float,
        presence: float,
    ):
        self._prompts = prompts
        self._width = width  # generated tokens start here in every row of input_ids
        self._repetition = repetition
        self._frequency = frequency
        self._presence = presence
        self._in_prompt = None  # rows x vocabulary, built on the first step

    @classmethod
    def of(cls, prompts: list[list[int]], width: int, params: GenParams) -> Penalties | None:
        """The processor for these settings; None where no penalty is set."""
        if params.repetition_penalty == 1.0 and not (
            params.frequency_penalty or params.presence_penalty
        ):
            return None
        return cls(
            prompts,
            width,
            params.repetition_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        )

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[:, self._width :]
        counts = torch.zeros_like(scores)
        counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        in_output = counts > 0
        if self._repetition != 1.0:
            seen = self._prompt_mask(scores) | in_output
            penalty = torch.where(seen, self._repetition, 1.0).to(scores.dtype)
            scores = scores * torch.where(scores > 0, 1.0 / penalty, penalty)
        return scores - self._frequency * counts - self._presence * in_output.to(scores.dtype)

    def _prompt_mask(self, scores):
        import torch

        if self._in_prompt is None:
            rows, vocab = scores.shape
            mask = torch.zeros((rows, vocab), dtype=torch.bool)
            for row, ids in enumerate(self._prompts):
                mask[row, [token for token in ids if token < vocab]] = True
            self._in_prompt = mask.to(scores.device)
        return self._in_prompt


def plan_micro_batches(params: list[GenParams], size: int) -> list[list[int]]:
    """Indices grouped by sampling settings, similar budgets together, at most ``size`` each."""
    order = sorted(
        range(len(params)), key=lambda i: (_sampling_key(params[i]), params[i].max_tokens)
    )
    batches: list[list[int]] = []
    for _, group in groupby(order, key=lambda i: _sampling_key(params[i])):
        members = list(group)
        batches.extend(members[start : start + size] for start in range(0, len(members), size))
    return batches


def padded_batch_attention() -> str | None:
    """ "eager" where SDPA would turn left-padded rows into NaN; None: transformers' default.

    vLLM 0.10's CPU build imports intel_extension_for_pytorch, and with it loaded, SDPA gives NaN
    logits for every position of a row that has padding (measured: transformers 4.53, torch 2.6,
    IPEX 2.6), so after a failed vLLM start every shorter prompt of a batch would come back empty.
    """
    if "intel_extension_for_pytorch" not in sys.modules:
        return None
    logger.warning(
        "intel_extension_for_pytorch is loaded (by vLLM's CPU build): the fallback uses eager "
        "attention, as SDPA returns NaN for left-padded rows with it"
    )
    return "eager"


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    positions = [pos for pos in (text.find(stop) for stop in stops) if pos >= 0]
    return (text[: min(positions)], True) if positions else (text, False)


class TransformersEngine:
    def __init__(self, model, tokenizer, info: BackendInfo, batch_size: int):
        self._model = model
        self._tokenizer = tokenizer
        self._decode = functools.partial(tokenizer.decode, skip_special_tokens=True)
        self._batch_size = batch_size
        self._lock = asyncio.Lock()
        self.info = info
        self.stats: dict[str, int] = {}  # generate() runs whole batches: nothing to count

    @classmethod
    def start(cls, start: EngineStart, reason: str | None) -> TransformersEngine:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_files, settings = start.model, start.engine
        if model_files.lora_adapters:
            raise RuntimeError(
                f"the transformers backend cannot serve LoRA adapters ({reason}); serve them "
                f"on vLLM, or merge them at build time (ADAPTER_MODE=merge)"
            )
        device = settings.hf_device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer = AutoTokenizer.from_pretrained(
            model_files.model_dir, trust_remote_code=model_files.trust_remote_code
        )
        attention = padded_batch_attention()
        model = AutoModelForCausalLM.from_pretrained(
            model_files.model_dir,
            torch_dtype=settings.dtype,  # the name transformers 4.x (eval image) knows
            trust_remote_code=model_files.trust_remote_code,
            **({"attn_implementation": attention} if attention else {}),
        ).to(device)
        model.eval()
        info = BackendInfo(
            backend="transformers",
            engine=type(model).__name__,
            version=transformers.__version__,
            fallback_reason=reason,
            details={
                "device": device,
                "batch_size": settings.hf_batch_size,
                "attention": model.config._attn_implementation,
                "scheduling": "arrival order (priority not supported)",
            },
        )
        if settings.scheduling_policy == "priority":
            logger.warning(
                "SCHEDULING_POLICY=priority: the transformers backend serves requests in arrival "
                "order; their priorities (PREDICT_PRIORITY, /v1's priority) are ignored"
            )
        logger.info("transformers %s backend ready on %s", info.version, device)
        return cls(model, tokenizer, info, settings.hf_batch_size)

    async def generate(self, prompt_ids: list[int], params: GenParams) -> GenResult:
        return (await self.generate_batch([prompt_ids], [params]))[0]

    async def stream(self, prompt_ids: list[int], params: GenParams) -> AsyncIterator[GenResult]:
        """The whole answer as one piece: this fallback does not stream token by token."""
        yield await self.generate(prompt_ids, params)

    async def generate_batch(
        self, prompts: list[list[int]], params: list[GenParams], deadline: float | None = None
    ) -> list[GenResult]:
        # One model, one batch at a time; generate() runs off the event loop.
        async with self._lock:
            return await asyncio.to_thread(self._generate_all, prompts, params, deadline)

    def _generate_all(
        self, prompts: list[list[int]], params: list[GenParams], deadline: float | None
    ) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(prompts)
        for indices in plan_micro_batches(params, self._batch_size):
            rows = self._generate_rows(
                [prompts[i] for i in indices], [params[i] for i in indices], deadline
            )
            for index, result in zip(indices, rows, strict=True):
                results[index] = result
        return results  # type: ignore[return-value]

    def _generate_rows(
        self, prompts: list[list[int]], params: list[GenParams], deadline: float | None
    ) -> list[GenResult]:
        import torch
        from transformers import LogitsProcessorList

        pad_id = self._tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self._tokenizer.eos_token_id
        width = max(len(ids) for ids in prompts)
        input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in prompts])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts])
        first = params[0]
        if first.seed is not None:
            torch.manual_seed(first.seed)
        sampling = {"do_sample": False}
        if first.temperature > 0:
            sampling = {
                "do_sample": True,
                "temperature": first.temperature,
                "top_p": first.top_p,
                "top_k": max(0, first.top_k),
            }
        penalties = Penalties.of(prompts, width, first)
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=input_ids.to(self._model.device),
                attention_mask=mask.to(self._model.device),
                max_new_tokens=max(p.max_tokens for p in params),
                # 1.0: none of generate()'s own, nor the model's generation_config's.
                repetition_penalty=1.0,
                logits_processor=LogitsProcessorList([penalties] if penalties else []),
                pad_token_id=pad_id,
                return_dict_in_generate=True,
                # The model's own logits, before sampling reshapes them (as vLLM reports).
                output_logits=any(p.logprobs is not None for p in params),
                # generate() stops after the step that passes this many seconds.
                max_time=None if deadline is None else max(0.0, deadline - time.monotonic()),
                **sampling,
            )
        return [
            self._row_result(output, row, p, width, prompt)
            for row, (p, prompt) in enumerate(zip(params, prompts, strict=True))
        ]

    def _row_result(
        self, output, row: int, params: GenParams, width: int, prompt_ids: list[int]
    ) -> GenResult:
        new_ids = output.sequences[row][width:].tolist()[: params.max_tokens]
        eos = self._model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        # Short of its budget without an end token: generate() ran out of time.
        finish = "length" if len(new_ids) == params.max_tokens else "deadline"
        for position, token in enumerate(new_ids):
            if token in eos_ids:
                new_ids, finish = new_ids[:position], "stop"
                break
        # As vLLM's detokenizer shows it (no bytes of a character the answer stopped inside).
        context = prompt_context(self._decode, prompt_ids)
        text = answer_text(self._decode, context, new_ids, stopped=False)
        text, stopped = cut_at_stop(text, params.stop)
        logprobs = prompt_logprobs = None
        if params.logprobs is not None:
            steps = [output.logits[step][row] for step in range(len(new_ids))]
            logprobs = self._token_logprobs(steps, new_ids, params.logprobs)
        if params.prompt_logprobs is not None:
            prompt_logprobs = self._prompt_logprobs(prompt_ids, params.prompt_logprobs)
        return GenResult(
            text=text,
            output_tokens=len(new_ids),
            finish_reason="stop" if stopped else finish,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
        )

    def _prompt_logprobs(self, prompt_ids: list[int], top: int) -> list[TokenLogprob]:
        """Each prompt token after the first, as the model predicted it from those before
        (one forward pass over the prompt alone, unpadded)."""
        import torch

        with torch.inference_mode():
            ids = torch.tensor([prompt_ids], device=self._model.device)
            logits = self._model(input_ids=ids).logits[0]
        return self._token_logprobs(list(logits[:-1]), prompt_ids[1:], top)

    def _token_logprobs(self, step_logits: list, token_ids: list[int], top: int):
        """Each token's logprob under the logits of its step, and the ``top`` likeliest."""
        import torch

        chosen = []
        for logits, token_id in zip(step_logits, token_ids, strict=True):
            scores = torch.log_softmax(logits.float(), dim=-1)
            best = torch.topk(scores, top)
            ids, values = best.indices.tolist(), best.values.tolist()
            logprob = scores[token_id]
            chosen.append(
                TokenLogprob(
                    self._tokenizer.decode([token_id]),
                    logprob.item(),
                    tuple(
                        (self._tokenizer.decode([i]), value)
                        for i, value in zip(ids, values, strict=True)
                    ),
                    token_id=token_id,
                    rank=int((scores > logprob).sum().item()) + 1,  # vLLM's rank: 1 + likelier
                    top_ids=tuple(ids),
                )
            )
        return chosen

    async def shutdown(self) -> None:
        self._model = None
        logger.info("transformers backend released")

    def dead_reason(self) -> str | None:
        return None  # it runs in this process: it lives as long as the server
