"""answer_text against the reference it replaces: tokenizers' DecodeStream, fed token by token
as vLLM's fast detokenizer feeds it (primed with the prompt's tail, the stop token left out).
The real-engine check of the same equality is tests/test_openai.py's decoded-once test."""

from __future__ import annotations

import functools
import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from devtools.tiny_model import project_text, train_tokenizer
from qaserve.engine import detokenize
from qaserve.engine.detokenize import answer_text, byte_level_decoder, prompt_context


def byte_level() -> Tokenizer:
    """The tiny model's tokenizer: byte-level BPE as Qwen's, with special and added tokens."""
    return train_tokenizer(vocab_size=4096)._tokenizer


def metaspace() -> Tokenizer:
    """A SentencePiece-style tokenizer, whose decoder drops the space that starts a text."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=["<unk>", "</s>"])
    tok.train_from_iterator(
        ["the quick brown fox jumps over the lazy dog", "host and device", *project_text()[:50]],
        trainer=trainer,
    )
    return tok


def streamed(tok: Tokenizer, prompt: list[int], output: list[int], stopped: bool) -> str:
    """What vLLM's fast detokenizer shows for ``output``."""
    decode = functools.partial(tok.decode, skip_special_tokens=True)
    stream = decoders.DecodeStream(skip_special_tokens=True)
    for token in prompt_context(decode, prompt)[0]:
        stream.step(tok, token)
    pieces = [stream.step(tok, token) for token in (output[:-1] if stopped else output)]
    return "".join(piece or "" for piece in pieces)


def decoder(tok: Tokenizer, kind: str):
    if kind == "byte table":
        decode = byte_level_decoder(tok)
        assert decode is not None
        return decode
    return functools.partial(tok.decode, skip_special_tokens=True)


@pytest.mark.parametrize(
    "make, kind",
    [(byte_level, "tokenizer"), (byte_level, "byte table"), (metaspace, "tokenizer")],
)
def test_answer_text_is_what_the_token_by_token_decoder_shows(make, kind):
    tok = make()
    decode = decoder(tok, kind)
    rng = random.Random(0)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    texts = project_text()[:200]
    cut_inside, stepped_back = 0, 0
    for case in range(1500):
        prompt = tok.encode(rng.choice(texts)).ids[: rng.randint(1, 40)]
        if case % 3:  # a model's answer: text cut anywhere
            answer = tok.encode(rng.choice(texts)).ids[: rng.randint(0, 60)]
        else:  # a random model's answer: any token, special ones included
            answer = [rng.randrange(vocab) for _ in range(rng.randint(0, 60))]
        stopped = bool(answer) and case % 5 == 0
        expected = streamed(tok, prompt, answer, stopped)
        context = prompt_context(decode, prompt)
        assert answer_text(decode, context, answer, stopped) == expected, (prompt, answer)
        whole = decode(answer[:-1] if stopped else answer)
        cut_inside += whole.endswith("\ufffd")
        stepped_back += whole.rstrip("\ufffd") != expected
    # The cases reach the rules that matter: answers cut inside a character, and text before
    # such a cut that the token-by-token decoder never showed.
    if make is byte_level:
        assert cut_inside >= 40 and stepped_back >= 5, (cut_inside, stepped_back)


def test_a_leading_space_decodes_in_context():
    tok = metaspace()
    decode = functools.partial(tok.decode, skip_special_tokens=True)
    prompt, answer = tok.encode("the quick").ids, tok.encode("brown fox").ids
    assert decode(answer) == "brown fox"  # alone, the decoder drops the word's space
    assert answer_text(decode, prompt_context(decode, prompt), answer, False) == " brown fox"


def test_the_stop_token_adds_no_text_and_a_cut_character_shows_nothing():
    tok = byte_level()
    decode = functools.partial(tok.decode, skip_special_tokens=True)
    prompt = prompt_context(decode, tok.encode("CUDA 程序中的 host").ids)
    answer = tok.encode(" and device").ids
    (full_stop,) = tok.encode("。").ids  # an ordinary token, here as a stop token id
    assert answer_text(decode, prompt, [*answer, full_stop], stopped=True) == " and device"
    assert answer_text(decode, prompt, [*answer, full_stop], stopped=False) == " and device。"
    # "程" is three bytes; "ç" is the token of its first byte alone.
    first_byte = tok.token_to_id("ç")
    assert decode([*answer, first_byte]).endswith("\ufffd")
    assert answer_text(decode, prompt, [*answer, first_byte], stopped=False) == " and device"


def test_the_byte_table_is_taken_only_where_it_decodes_as_the_tokenizer(monkeypatch, caplog):
    assert byte_level_decoder(metaspace()) is None  # not a byte-level tokenizer
    # A byte map off by one byte: the check at start finds it and keeps the tokenizer's decoder.
    chars = detokenize._byte_chars()
    monkeypatch.setattr(detokenize, "_byte_chars", lambda: chars[1:] + chars[:1])
    assert byte_level_decoder(byte_level()) is None
    assert "byte-level decoding differs from the tokenizer's" in caplog.text
