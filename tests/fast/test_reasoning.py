import pytest

from qaserve.core.reasoning import ReasoningSplitter, split_reasoning


def stream(pieces: list[str], thinking: bool) -> tuple[str, str]:
    splitter = ReasoningSplitter(thinking)
    reasoning = answer = ""
    for piece in [*pieces, None]:
        r, a = splitter.feed(piece) if piece is not None else splitter.finish()
        reasoning, answer = reasoning + r, answer + a
    return reasoning, answer


@pytest.mark.parametrize(
    "pieces",
    [
        ["<think>\n先算索引。\n</think>\n\n答案是32。"],
        ["<think>", "\n先算", "索引。\n", "</think>", "\n\n答案", "是32。"],
        ["<thi", "nk>\n先算索引。\n</th", "ink>\n\n答案是32。"],  # tags split across pieces
        ["\n先算索引。\n</think>\n\n答案是32。"],  # template already opened the block
    ],
)
def test_slow_mode_separates_reasoning_from_the_answer(pieces):
    reasoning, answer = stream(pieces, thinking=True)
    assert reasoning.strip() == "先算索引。"
    assert answer == "答案是32。"


def test_reasoning_cut_by_the_budget_is_all_reasoning():
    assert stream(["<think>想到一半"], thinking=True) == ("想到一半", "")


def test_fast_mode_passes_answers_and_catches_a_leading_think_block():
    assert stream(["答案", "是32。"], thinking=False) == ("", "答案是32。")
    assert stream(["<", "think>推理</think>答案。"], thinking=False) == ("推理", "答案。")
    assert stream(["a < b"], thinking=False) == ("", "a < b")
    assert split_reasoning("<think>\n\n</think>\n\n答案。", thinking=False) == ("\n\n", "答案。")


@pytest.mark.parametrize(
    "text",
    [
        "<think>\n先算索引。\n</think>\n\n答案是32。",
        "<think>想到一半",
        "\n先算索引。\n</think>\n\n答案是32。",
        "<think>a</think>b</think>c",
        "答案是32。",
        "  <thi",
        "",
    ],
)
@pytest.mark.parametrize("thinking", [True, False])
def test_a_whole_text_splits_as_its_stream_does(text, thinking):
    pieces = list(text)  # one character at a time: every tag split across pieces
    if thinking or "</think>" not in text:
        assert split_reasoning(text, thinking) == stream(pieces, thinking)
    else:  # a stream in fast mode has sent the text before </think> as answer already
        assert split_reasoning(text, thinking) == stream(pieces, thinking=True)
