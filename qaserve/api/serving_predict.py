"""The /predict API's serving object: answers, its counters and the /info view."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from fastapi.responses import Response

from qaserve.api import metrics
from qaserve.api.body import invalid_request, model_response
from qaserve.api.protocol import HealthResponse, InfoResponse, PredictRequest, PredictResponse
from qaserve.core.answerer import Answerer, Answers
from qaserve.core.warmup import WarmupReport
from qaserve.engine import Engine, EngineDeadError
from qaserve.settings import Settings


@dataclass
class Counters:
    """/predict traffic since the server became ready (warmup not included)."""

    requests: int = 0
    items: int = 0
    output_tokens: int = 0
    engine_seconds: float = 0.0
    in_flight: int = 0
    cut_at_deadline: int = 0  # items PREDICT_DEADLINE_SECONDS stopped

    def add(self, answers: Answers) -> None:
        self.requests += 1
        self.items += len(answers.texts)
        self.output_tokens += answers.output_tokens
        self.engine_seconds += answers.seconds
        self.cut_at_deadline += answers.cut_at_deadline


class PredictServing:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        answerer: Answerer,
        warmup: WarmupReport,
        unread_environment: dict[str, str],
    ):
        self.settings = settings
        self.engine = engine
        self.answerer = answerer
        self.warmup = warmup
        # Variables that look meant for the server but that it ignores, with why.
        self.unread_environment = unread_environment
        self.counters = Counters()

    def health(self) -> HealthResponse:
        if (reason := self.engine.dead_reason()) is not None:
            raise EngineDeadError(f"the engine is dead: {reason}")
        return HealthResponse(status="batch" if self.settings.batch_mode else "ok")

    async def predict(self, body: PredictRequest) -> Response:
        single = isinstance(body.prompt, str)
        questions = [body.prompt] if single else body.prompt
        limit = self.settings.max_batch_size
        if len(questions) > limit:
            message = f"batch of {len(questions)} prompts exceeds MAX_BATCH_SIZE={limit}"
            raise invalid_request("too_long", ("body", "prompt"), message, len(questions))
        deadline = None
        if self.settings.predict_deadline_seconds is not None:
            deadline = time.monotonic() + self.settings.predict_deadline_seconds
        self.counters.in_flight += 1
        try:
            answers = await self.answerer.answer(questions, body.overrides(), deadline)
        finally:
            self.counters.in_flight -= 1
        self.counters.add(answers)
        metrics.ITEMS.inc(len(answers.texts))
        metrics.OUTPUT_TOKENS.inc(answers.output_tokens)
        reply = PredictResponse(response=answers.texts[0] if single else answers.texts)
        headers = {
            "X-Process-Seconds": f"{answers.seconds:.6f}",
            "X-Output-Tokens": str(answers.output_tokens),
            "X-Cut-At-Deadline": str(answers.cut_at_deadline),
        }
        return model_response(reply, headers)

    @property
    def system_prompt(self) -> str:
        return self.answerer.system_prompt

    @system_prompt.setter
    def system_prompt(self, text: str) -> None:
        self.answerer.system_prompt = text

    def info(self) -> InfoResponse:
        engine = self.engine.info
        return InfoResponse(
            backend=engine.backend,
            engine=engine.engine,
            backend_version=engine.version,
            vllm_version=engine.version if engine.backend == "vllm" else None,
            fallback_reason=engine.fallback_reason,
            engine_details=engine.details,
            model=self.settings.model_dir,
            context_length=self.answerer.context_len,
            system_prompt=self.answerer.system_prompt,
            warmup=asdict(self.warmup),
            counters=asdict(self.counters),
            engine_stats=self.engine.stats,
            settings=self.settings.public_dict(),
            unread_environment=self.unread_environment,
        )
