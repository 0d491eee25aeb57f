"""The /predict API's serving object: answers, its counters and the /info view."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from fastapi.responses import Response

from qaserve.api import metrics
from qaserve.api.admission import Admission
from qaserve.api.body import model_response
from qaserve.api.predict.protocol import InfoResponse, PredictRequest, PredictResponse
from qaserve.api.serving import ServingBase
from qaserve.core.answerer import Answerer, Answers
from qaserve.core.warmup import WarmupReport
from qaserve.engine import Engine, GenParams
from qaserve.settings import ApiSettings


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


@dataclass
class StartReport:
    """How the server came up, for /info."""

    model_dir: str
    settings: dict  # the effective settings, keys only as a count
    warmup: WarmupReport
    # Variables that look meant for the server but that it ignores, with why.
    unread_environment: dict[str, str] = field(default_factory=dict)


class PredictServing(ServingBase):
    def __init__(
        self,
        engine: Engine,
        configured: GenParams,
        api: ApiSettings,
        answerer: Answerer,
        start: StartReport,
        admission: Admission,
    ):
        super().__init__(engine, configured, api)
        self.answerer = answerer
        self.start = start
        self.admission = admission
        self.counters = Counters()

    async def predict(self, body: PredictRequest) -> Response:
        single = isinstance(body.prompt, str)
        questions = body.questions()
        self.check_batch(len(questions), "prompt", f"{len(questions)} prompts")
        deadline = None
        if self.api.predict_deadline_seconds is not None:
            deadline = time.monotonic() + self.api.predict_deadline_seconds
        # Batch items go after /v1's interactive requests (lower priorities go first).
        overrides = {**body.overrides(), "priority": self.api.predict_priority}
        self.counters.in_flight += 1
        try:
            answers = await self.answerer.answer(questions, overrides, deadline)
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
            constrains_output=engine.constrains_output,
            engine_details=engine.details,
            model=self.start.model_dir,
            context_length=self.answerer.context_len,
            system_prompt=self.answerer.system_prompt,
            warmup=asdict(self.start.warmup),
            counters=asdict(self.counters),
            admission=self.admission.report(),
            engine_stats=self.engine.stats,
            settings=self.start.settings,
            unread_environment=self.start.unread_environment,
        )
