"""An engine that satisfies qaserve's Engine protocol without a model.

It answers with queued texts (a default one when the queue is empty), records every
prompt and GenParams it was given, streams a text in pieces, can hold its work until a
gate opens, and can be told to fail, so the layers above the engine are tested in
milliseconds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from qaserve.engine import BackendInfo, EngineDeadError, GenParams, GenResult, TokenLogprob

DEFAULT_REPLY = "这是答案。"


@dataclass
class FakeEngine:
    info: BackendInfo = field(
        default_factory=lambda: BackendInfo(backend="fake", engine="FakeEngine", version="0")
    )
    stats: dict[str, int] = field(default_factory=lambda: {"running": 0, "aborted": 0})
    replies: deque[str] = field(default_factory=deque)
    calls: list[tuple[list[int], GenParams]] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)  # one per generate_batch
    failure: Exception | None = None  # raised by every call while set
    fail_after_pieces: int | None = None  # a stream raises ``failure`` after this many pieces
    piece_chars: int = 2
    shut_down: bool = False
    dead: str | None = None  # set it to kill the engine: every call then fails
    gate: asyncio.Event | None = None  # every call waits until it is set: work held in flight

    def queue(self, *texts: str) -> None:
        self.replies.extend(texts)

    async def _through_gate(self) -> None:
        if self.gate is not None:
            await self.gate.wait()

    def _next(self, prompt_ids: list[int], params: GenParams) -> str:
        if self.dead is not None:
            raise EngineDeadError(self.dead)
        self.calls.append((prompt_ids, params))
        if self.failure is not None and self.fail_after_pieces is None:
            raise self.failure
        return self.replies.popleft() if self.replies else DEFAULT_REPLY

    @staticmethod
    def _logprobs(text: str, params: GenParams) -> list[TokenLogprob] | None:
        """Each character a token of logprob -1/(n+1); alternatives "a", "b", ... below it."""
        if params.logprobs is None:
            return None
        return [
            TokenLogprob(
                char,
                -1 / (n + 1),
                tuple((chr(ord("a") + k), -1 / (n + 1) - k - 1) for k in range(params.logprobs)),
            )
            for n, char in enumerate(text)
        ]

    @staticmethod
    def _prompt_logprobs(prompt_ids: list[int], params: GenParams) -> list[TokenLogprob] | None:
        """Each prompt token after the first as the text "<id>", of logprob -0.5 and rank 1;
        its alternatives "x" of ids 1000, 1001, ..."""
        if params.prompt_logprobs is None:
            return None
        alternatives = tuple(("x", -1.0 - k) for k in range(params.prompt_logprobs))
        ids = tuple(range(1000, 1000 + params.prompt_logprobs))
        return [
            TokenLogprob(f"<{i}>", -0.5, alternatives, token_id=i, rank=1, top_ids=ids)
            for i in prompt_ids[1:]
        ]

    @classmethod
    def _finish(cls, text: str, params: GenParams, prompt_ids: list[int]) -> GenResult:
        # One token per character, cut at the budget, as an engine would stop.
        kept = text[: params.max_tokens]
        finish = "length" if len(kept) < len(text) else "stop"
        return GenResult(
            kept,
            len(kept),
            finish,
            cls._logprobs(kept, params),
            cls._prompt_logprobs(prompt_ids, params),
        )

    async def generate(self, prompt_ids: list[int], params: GenParams) -> GenResult:
        text = self._next(prompt_ids, params)  # recorded, then held at the gate
        await self._through_gate()
        return self._finish(text, params, prompt_ids)

    async def stream(self, prompt_ids: list[int], params: GenParams) -> AsyncIterator[GenResult]:
        text = self._next(prompt_ids, params)
        await self._through_gate()
        whole = self._finish(text, params, prompt_ids)
        size = self.piece_chars
        starts = range(0, len(whole.text), size) or [0]
        for number, start in enumerate(starts):
            if self.failure is not None and number == self.fail_after_pieces:
                raise self.failure
            piece = whole.text[start : start + size]
            finish = whole.finish_reason if number == len(starts) - 1 else None
            logprobs = whole.logprobs and whole.logprobs[start : start + size]
            prompt_logprobs = whole.prompt_logprobs if number == 0 else None
            yield GenResult(piece, len(piece), finish, logprobs, prompt_logprobs)

    async def generate_batch(
        self, prompts: list[list[int]], params: list[GenParams], deadline: float | None = None
    ) -> list[GenResult]:
        self.deadlines.append(deadline)
        results = []
        for prompt, one in zip(prompts, params, strict=True):
            results.append(await self.generate(prompt, one))
            await asyncio.sleep(0)  # as a real engine, the batch leaves the loop to others
        return results

    async def shutdown(self) -> None:
        self.shut_down = True

    def dead_reason(self) -> str | None:
        return self.dead
