"""What every backend is started from, takes and returns, so the rest of the server ignores
which one runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from typing import Protocol

from qaserve.settings import EngineSettings, ModelSettings, Settings


@dataclass(frozen=True)
class EngineStart:
    """What the engine layer starts from: the model's folders, the engine settings, and the
    largest token budget a question can get (no start rule shrinks the context below it)."""

    model: ModelSettings
    engine: EngineSettings
    longest_answer: int

    @classmethod
    def of(cls, settings: Settings) -> EngineStart:
        """The engine layer's part of the whole settings."""
        return cls(settings.model, settings.engine, settings.generation.longest_answer())


@dataclass(frozen=True)
class OutputConstraint:
    """What the answer must match, enforced token by token by the engine (vLLM's structured
    outputs): one of a JSON schema (as JSON text, so the params stay hashable), any JSON
    object, a regex, a choice among strings, or an EBNF grammar."""

    json_schema: str | None = None
    json_object: bool = False
    regex: str | None = None
    choice: tuple[str, ...] | None = None
    grammar: str | None = None

    def engine_fields(self) -> dict:
        """The keywords of vLLM's StructuredOutputsParams (GuidedDecodingParams in 0.10)."""
        fields_ = {
            "json": self.json_schema,
            "json_object": self.json_object or None,
            "regex": self.regex,
            "choice": list(self.choice) if self.choice is not None else None,
            "grammar": self.grammar,
        }
        return {name: value for name, value in fields_.items() if value is not None}


@dataclass(frozen=True)
class GenParams:
    """Sampling and stopping for one prompt."""

    max_tokens: int
    stop: tuple[str, ...] = ()
    seed: int | None = None  # None: unseeded
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1  # -1: no top-k cut
    # Penalties: repetition divides repeated tokens' logits; frequency and presence
    # subtract, as in OpenAI's API.
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # Log-probabilities of each generated token and of this many alternatives (None: none).
    logprobs: int | None = None
    # The same for the prompt's tokens (None: none).
    prompt_logprobs: int | None = None
    # Stop once this many sentence endings were generated (0: no cap).
    max_sentences: int = 0
    sentence_endings: str = "。！？"
    # The LoRA adapter that answers, by its LORA_ADAPTERS name; None: the base model.
    adapter: str | None = None
    # The engine's order under SCHEDULING_POLICY=priority: lower first (vLLM's meaning).
    priority: int = 0
    # What the answer must match (None: anything); only engines with constrains_output do it.
    constraint: OutputConstraint | None = None

    def engine_sampling(self) -> dict:
        """The fields an engine's sampling takes (vLLM's SamplingParams keywords)."""
        taken = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NOT_SAMPLING}
        taken["stop"] = list(self.stop) or None
        return taken


# GenParams fields outside the engine's sampling: the stopping qaserve enforces itself, and
# what goes with the request to the engine apart (the adapter, the priority) or in vLLM's own
# class (the constraint).
NOT_SAMPLING = frozenset({"max_sentences", "sentence_endings", "adapter", "priority", "constraint"})


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text, its log-probability and the likeliest alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()  # (token, logprob), likeliest first
    # For vLLM's own prompt_logprobs shape (keyed by token id, with ranks): the token's id and
    # rank (1: the likeliest), and the ids of ``top``.
    token_id: int = -1
    rank: int = 0
    top_ids: tuple[int, ...] = ()


@dataclass
class GenResult:
    """A whole answer, or one streamed piece of it."""

    text: str
    output_tokens: int  # tokens the engine generated for this text
    # "stop", "length", "sentences", "deadline" (cut where it stood), "abort"; None mid-stream
    finish_reason: str | None
    logprobs: list[TokenLogprob] | None = None  # one per token, when GenParams asked for them
    # With GenParams.prompt_logprobs, on the first piece: one per prompt token after the first
    # (nothing predicts the first).
    prompt_logprobs: list[TokenLogprob] | None = None


@dataclass
class BackendInfo:
    backend: str  # "vllm" or "transformers"
    engine: str  # engine class that runs
    version: str
    fallback_reason: str | None = None
    details: dict = field(default_factory=dict)
    # Settings the start ladder changed to bring the engine up (the server runs with them).
    adjusted: dict = field(default_factory=dict)
    # Whether GenParams.constraint is honoured (structured outputs, forced tool calls).
    constrains_output: bool = False


class EngineConfigError(ValueError):
    """The engine settings ask for what the installed engine cannot do: the server stops
    (no retry, no fallback, which would serve other than configured)."""


class RequestRefused(ValueError):
    """The engine refused a request's parameters before generating (a schema or grammar it
    cannot compile): the client's error, not the server's."""


class EngineDeadError(RuntimeError):
    """The engine can answer nothing more (its process died); the server must restart."""


class Engine(Protocol):
    info: BackendInfo
    stats: dict[str, int]  # live engine counters for /info

    async def generate(self, prompt_ids: list[int], params: GenParams) -> GenResult:
        """Generate one answer."""

    def stream(self, prompt_ids: list[int], params: GenParams) -> AsyncIterator[GenResult]:
        """Generate one answer piece by piece; the last piece has the finish reason."""

    async def generate_batch(
        self, prompts: list[list[int]], params: list[GenParams], deadline: float | None = None
    ) -> list[GenResult]:
        """Generate answers for all prompts, in order. At ``deadline`` (time.monotonic()),
        every unfinished answer stops and comes back as far as it got (finish "deadline")."""

    async def shutdown(self) -> None:
        """Stop the engine and every process it started."""

    def dead_reason(self) -> str | None:
        """Why the engine can no longer answer; None while it can. Cheap enough to poll."""


def count_sentence_ends(text: str, endings: str) -> int:
    return sum(text.count(mark) for mark in endings)


async def join_chunks(chunks: AsyncIterator[GenResult]) -> GenResult:
    parts: list[str] = []
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob] | None = None
    tokens, finish = 0, None
    async for chunk in chunks:
        parts.append(chunk.text)
        tokens += chunk.output_tokens
        finish = chunk.finish_reason or finish
        if chunk.logprobs is not None:
            logprobs = logprobs or []
            logprobs.extend(chunk.logprobs)
        prompt_logprobs = prompt_logprobs or chunk.prompt_logprobs
    return GenResult("".join(parts), tokens, finish or "length", logprobs, prompt_logprobs)
