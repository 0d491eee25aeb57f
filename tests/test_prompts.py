import pytest

from qaserve.core.prompts import PromptBuilder, context_length


@pytest.fixture(scope="module")
def builder(tiny_model):
    return PromptBuilder.load(str(tiny_model), 256, enable_thinking=False, trust_remote_code=False)


def test_template_turns_thinking_off_and_carries_the_system_prompt(builder):
    text = builder.render("简短回答。", "什么是warp？")
    assert text.startswith("<|im_start|>system\n简短回答。<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert "<|im_start|>system" not in builder.render("", "什么是warp？")


def test_long_question_is_cut_to_fit_the_context(builder):
    question = "共享内存" * 400
    short = "什么是warp？"
    ids = builder.encode_many("系统", [question, short], [100, 100])
    assert len(ids[0]) <= 256 - 100
    assert builder.tokenizer.decode(ids[0]).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    expected = builder.tokenizer(builder.render("系统", short), add_special_tokens=False)
    assert ids[1] == expected["input_ids"]


def test_context_length_prefers_the_setting(tiny_model):
    assert context_length(str(tiny_model), 512) == 512
    assert context_length(str(tiny_model), None) == 4096
