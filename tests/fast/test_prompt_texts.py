"""Batch prompts: joined around the question when the chat template places it verbatim,
rendered one by one otherwise, and tokenized in bulk to the same ids as the tokenizer gives."""

import pytest

from devtools.launcher import ROOT
from prep.datafile import read_questions
from qaserve.core.prompts import PromptBuilder

SYSTEM = "你是助教。"


@pytest.fixture(scope="module")
def questions():
    odd = ["", "  空格 \n", "<tool_response>x</tool_response>"]
    return [*read_questions(ROOT / "data.jsonl"), *odd]


def builder_for(tokenizer_dir, template: str | None = None) -> PromptBuilder:
    builder = PromptBuilder.load(str(tokenizer_dir), 4096, False, False)
    if template is not None:
        builder.tokenizer.chat_template = template
    return builder


def test_joined_prompts_equal_the_template_rendering_each(tokenizer_dir, questions):
    builder = builder_for(tokenizer_dir)
    assert builder.frame(SYSTEM) is not None
    assert builder.prompt_texts(SYSTEM, questions) == [builder.render(SYSTEM, q) for q in questions]


def test_a_template_that_changes_the_question_is_rendered_per_question(tokenizer_dir, questions):
    trimming = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n"
        "{% endfor %}<|im_start|>assistant\n"
    )
    builder = builder_for(tokenizer_dir, trimming)
    assert builder.frame(SYSTEM) is None
    texts = builder.prompt_texts(SYSTEM, questions)
    assert texts == [builder.render(SYSTEM, q) for q in questions]
    assert "<|im_start|>user\n空格<|im_end|>" in texts[-2]


def test_the_frame_follows_the_system_prompt(tokenizer_dir):
    builder = builder_for(tokenizer_dir)
    first = builder.prompt_texts(SYSTEM, ["问"])[0]
    other = "另一个系统提示"
    assert builder.prompt_texts(other, ["问"])[0] == builder.render(other, "问")
    assert builder.prompt_texts(SYSTEM, ["问"])[0] == first


def test_bulk_ids_equal_the_tokenizers_own(tokenizer_dir, questions):
    builder = builder_for(tokenizer_dir)
    texts = builder.prompt_texts(SYSTEM, questions)
    expected = builder.tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert builder.token_ids_many(texts) == expected
    assert [builder.token_ids(text) for text in texts[:50]] == expected[:50]
