"""Big requests on the fake engine: a question far past the context, a 10,000-item batch."""

import asyncio
import time

import pytest

from qaserve.core.prompts import PromptBuilder

pytestmark = pytest.mark.anyio


def test_the_character_cut_keeps_the_same_beginning(tokenizer_dir):
    builder = PromptBuilder.load(str(tokenizer_dir), 256, False, False)
    question = "共享内存的bank冲突 " * 5000  # 70,000 characters, far past 256 tokens
    assert len(question) > builder.max_question_chars
    cut = builder.encode_many("系统", [question], [100])[0]
    assert cut == builder._fit("系统", question, 100)  # as if the whole text were tokenized
    assert len(cut) <= 256 - 100


async def test_a_question_of_megabytes_is_answered_fast(start_api):
    async with start_api() as api:
        started = time.perf_counter()
        reply = await api.http.post("/predict", json={"prompt": "线程" * 2_000_000})
        assert reply.status_code == 200
        assert time.perf_counter() - started < 5
        prompt_ids, params = api.engine.calls[0]
        assert len(prompt_ids) + params.max_tokens <= 4096


async def test_health_answers_at_once_while_a_10000_item_batch_is_prepared(start_api):
    async with start_api(max_batch_size=10_000) as api:
        prompts = [f"什么是CUDA中的warp？请详细说明第{i}种情况。" for i in range(10_000)]
        batch = asyncio.create_task(api.http.post("/predict", json={"prompt": prompts}))
        waits = []
        while not batch.done():
            started = time.perf_counter()
            assert (await api.http.get("/")).status_code == 200
            waits.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
        reply = await batch
        assert len(reply.json()["response"]) == 10_000
        waits.sort()
        median, slowest = waits[len(waits) // 2], waits[-1]
        print(
            f"\nGET / during the batch: {len(waits)} probes, median {median * 1000:.0f} ms, "
            f"slowest {slowest * 1000:.0f} ms"
        )
        # The batch takes seconds to prepare: a loop blocked by it would answer none of these
        # quickly. The bound on the slowest leaves room for a full garbage collection.
        assert len(waits) > 10 and median < 0.05 and slowest < 0.5
