"""The transformers fallback's penalties, on hand-made logits: vLLM's definition (repetition over
prompt and output, then frequency and presence over the output only), and no processor at all
when no penalty is set."""

import pytest

from qaserve.engine.hf_backend import Penalties, plan_micro_batches
from qaserve.engine.types import GenParams

torch = pytest.importorskip("torch", reason="the Python 3.10 run has no torch")

VOCAB = 6
PAD = 0


def step(prompts, generated, logits, **penalties):
    """The logits after the penalties, at the step that follows ``generated`` (one list per row)."""
    width = max(len(ids) for ids in prompts)
    rows = [
        [PAD] * (width - len(ids)) + ids + out for ids, out in zip(prompts, generated, strict=True)
    ]
    processor = Penalties.of(prompts, width, GenParams(max_tokens=8, **penalties))
    scores = torch.tensor(logits, dtype=torch.float32)
    return processor(torch.tensor(rows), scores.clone()).tolist()


def test_no_penalty_adds_no_processor():
    assert Penalties.of([[1, 2]], 2, GenParams(max_tokens=8)) is None


def test_frequency_scales_with_the_count_in_the_output_and_ignores_the_prompt():
    logits = [[1.0] * VOCAB]
    # token 3 generated twice, token 4 once; token 5 only in the prompt
    after = step([[5, 5, 5]], [[3, 4, 3]], logits, frequency_penalty=0.5)
    assert after == [[1.0, 1.0, 1.0, 1.0 - 2 * 0.5, 1.0 - 0.5, 1.0]]


def test_presence_counts_once_and_ignores_the_prompt():
    logits = [[1.0] * VOCAB]
    after = step([[5, 5, 5]], [[3, 4, 3]], logits, presence_penalty=0.25)
    assert after == [[1.0, 1.0, 1.0, 0.75, 0.75, 1.0]]


def test_both_together_subtract_both():
    logits = [[1.0] * VOCAB]
    after = step([[5]], [[3, 3, 3]], logits, frequency_penalty=0.5, presence_penalty=0.25)
    assert after[0][3] == pytest.approx(1.0 - 3 * 0.5 - 0.25)
    assert after[0][5] == 1.0


def test_negative_penalties_favour_what_was_generated():
    logits = [[1.0] * VOCAB]
    after = step([[5]], [[3, 3]], logits, frequency_penalty=-0.5, presence_penalty=-0.25)
    assert after[0][3] == pytest.approx(1.0 + 2 * 0.5 + 0.25)


def test_repetition_covers_prompt_and_output_and_comes_before_the_subtraction():
    logits = [[2.0, 2.0, -2.0, 2.0, 2.0, 2.0]]
    # token 2 in the prompt (negative logit: multiplied), token 3 in the output (divided,
    # then the frequency penalty subtracted from the divided logit), token 5 in neither
    after = step([[2]], [[3]], logits, repetition_penalty=2.0, frequency_penalty=0.5)
    assert after == [[2.0, 2.0, -4.0, 2.0 / 2.0 - 0.5, 2.0, 2.0]]


def test_left_padding_is_not_prompt():
    logits = [[2.0] * VOCAB, [2.0] * VOCAB]
    # the second, shorter prompt is padded with token 0 on the left
    after = step([[1, 2, 3], [4]], [[], []], logits, repetition_penalty=2.0)
    assert after[1][PAD] == 2.0
    assert after[1][4] == 1.0
    assert after[0][1:4] == [1.0, 1.0, 1.0]


def test_each_row_counts_its_own_output():
    logits = [[1.0] * VOCAB, [1.0] * VOCAB]
    after = step([[5], [5]], [[3, 3], [4, 3]], logits, frequency_penalty=1.0)
    assert [after[0][3], after[0][4]] == [-1.0, 1.0]
    assert [after[1][3], after[1][4]] == [0.0, 0.0]


def test_requests_with_different_penalties_never_share_a_batch():
    params = [
        GenParams(max_tokens=8),
        GenParams(max_tokens=8, frequency_penalty=0.1),
        GenParams(max_tokens=8, presence_penalty=0.1),
        GenParams(max_tokens=8, frequency_penalty=0.1),
    ]
    batches = sorted(sorted(batch) for batch in plan_micro_batches(params, size=8))
    assert batches == [[0], [1, 3], [2]]
