"""The model tools' pieces that the server shares: the data-file reader, and the prompt
settings read as served."""

import json

import pytest

from prep.datafile import DataFileError, read_pairs, read_questions
from prep.quantize import PromptSettings
from qaserve.settings import Settings


def turn(role: str, content: object) -> dict:
    return {"role": role, "content": content}


def write_lines(path, lines: list) -> None:
    text = (
        line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) for line in lines
    )
    path.write_text("\n".join(text) + "\n", encoding="utf-8")


def test_the_data_file_gives_pairs_and_every_question_in_order(tmp_path):
    data = tmp_path / "data.jsonl"
    write_lines(
        data,
        [
            {"messages": [turn("user", " Q1 "), turn("assistant", "A1")]},
            "",
            {"messages": [turn("system", "S"), turn("user", "Q2"), turn("assistant", "A2")]},
            {"messages": [turn("user", "Q1"), turn("assistant", "A3"), turn("user", "Q3")]},
        ],
    )
    assert read_pairs(data) == [(" Q1 ", "A1"), ("Q2", "A2"), ("Q1", "A3")]
    assert read_questions(data) == [" Q1 ", "Q2", "Q1", "Q3"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad\.jsonl:2: not JSON"),
        ("[1, 2]", r"bad\.jsonl:2: expected a JSON object"),
        ({"question": "Q"}, r'bad\.jsonl:2: expected {"messages": \[...\]}'),
        ({"messages": [turn("assistant", "A"), turn("user", "Q")]}, r"bad\.jsonl:2: messages need"),
        (
            {"messages": [turn("user", ["Q"]), turn("assistant", "A")]},
            r"bad\.jsonl:2: messages need",
        ),
    ],
)
def test_a_bad_line_is_named_with_its_file_and_number(tmp_path, line, message):
    data = tmp_path / "bad.jsonl"
    write_lines(data, [{"messages": [turn("user", "Q"), turn("assistant", "A")]}, line])
    with pytest.raises(DataFileError, match=message):
        read_pairs(data)


def test_a_question_that_is_no_string_and_a_missing_file_are_errors(tmp_path):
    data = tmp_path / "bad.jsonl"
    write_lines(data, [{"messages": [turn("user", None)]}])
    with pytest.raises(DataFileError, match=r"bad\.jsonl:1: a user turn's content is not a str"):
        read_questions(data)
    with pytest.raises(DataFileError, match=r"missing\.jsonl does not exist"):
        read_questions(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    "env",
    [{}, {"SYSTEM_PROMPT": ""}, {"system_prompt": "你是助教。", "ENABLE_THINKING": "true"}],
)
def test_the_quantizer_reads_the_prompt_settings_as_the_server_does(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    served = Settings()
    prompt = PromptSettings()
    assert (prompt.system_prompt, prompt.enable_thinking) == (
        served.system_prompt,
        served.enable_thinking,
    )
