"""An answer's text from its token ids, decoded once when it is done, as vLLM's incremental
detokenizer would have shown it.

vLLM decodes each request token by token in the server process, to check stop strings and to
stream; where neither is wanted that per-token work is most of the server's CPU per output
token. Decoding the whole answer at the end gives the same text when it follows the same
three rules as vLLM's fast (``DecodeStream``) detokenizer:

- the answer is decoded after a few prompt tokens, so that its first characters decode in
  context (a tokenizer may drop a word's leading space at the start of a text);
- a token that ended the answer by being a stop token (EOS) adds no text;
- the text ends after the last token where it ended on a whole character: bytes of a
  character the answer stopped inside are never shown.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

REPLACEMENT = "\ufffd"  # what a decoder shows for bytes that are not (yet) a character

# Token ids -> text.
Decode = Callable[[list[int]], str]
# The last prompt tokens an answer is decoded after, and their text.
PromptContext = tuple[list[int], str]


def prompt_context(decode: Decode, prompt_ids: Sequence[int]) -> PromptContext:
    """The last prompt tokens the answer is decoded after, and their text: the shortest tail
    of 4 to 23 tokens that decodes to whole characters, as vLLM primes its decoder."""
    if len(prompt_ids) > 4:
        for length in range(4, min(len(prompt_ids) + 1, 24)):
            tail = list(prompt_ids[-length:])
            text = decode(tail)
            if REPLACEMENT not in text:
                return tail, text
    return list(prompt_ids), decode(list(prompt_ids))


def last_whole(decode: Decode, ids: list[int], lowest: int = 0) -> tuple[int, str]:
    """The longest prefix of ``ids``, of at least ``lowest`` tokens, that decodes to whole
    characters (``lowest`` where none does), and its text: how far a token-by-token decoder
    has shown them."""
    end = len(ids)
    text = decode(ids)
    while end > lowest and text.endswith(REPLACEMENT):
        end -= 1
        text = decode(ids[:end])
    return end, text


def answer_text(
    decode: Decode, prompt: PromptContext, output_ids: Sequence[int], stopped: bool
) -> str:
    """The text of ``output_ids`` after ``prompt`` (``stopped``: the last one is the stop
    token that ended the answer). One decode, unless the prompt or the answer ends inside a
    character."""
    context, before = prompt
    ids = context + list(output_ids[:-1] if stopped else output_ids)
    start = len(context)
    if before.endswith(REPLACEMENT):  # the prompt's last bytes wait for the answer's
        start, before = last_whole(decode, context)
    end, text = last_whole(decode, ids, lowest=start)
    if text.startswith(before):
        return text[len(before) :]
    return decode(ids[len(context) : end])  # a decoder whose text is not prefix-stable


def byte_level_decoder(tokenizer) -> Decode | None:
    """A decoder for a byte-level BPE tokenizer (Qwen's, GPT-2's) that joins each token's
    bytes from a table: about four times faster than the Rust decoder's per-call work on an
    answer. The same text as ``tokenizer.decode(ids, skip_special_tokens=True)``
    (``tokenizer``: a tokenizers.Tokenizer), as its ByteLevel decoder makes it: a token maps
    char by char to bytes, or to its own UTF-8 where a char has no byte, special tokens are
    left out, and the bytes are read as UTF-8 with each bad sequence replaced. None for any
    other tokenizer, and (with a WARNING) where a check against the tokenizer's own decoding
    at start finds a difference."""
    if json.loads(tokenizer.to_str()).get("decoder", {}).get("type") != "ByteLevel":
        return None
    byte_of = {char: byte for byte, char in enumerate(_byte_chars())}
    special = {i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
    table = []
    for token_id in range(tokenizer.get_vocab_size(with_added_tokens=True)):
        token = tokenizer.id_to_token(token_id)
        if token is None or token_id in special:
            table.append(b"")
        elif all(char in byte_of for char in token):
            table.append(bytes(byte_of[char] for char in token))
        else:
            table.append(token.encode())

    def decode(ids: list[int]) -> str:
        try:
            return b"".join([table[i] for i in ids]).decode("utf-8", "replace")
        except IndexError:  # an id past the tokenizer's vocabulary: it drops those
            return tokenizer.decode(ids, skip_special_tokens=True)

    differences = _differences(decode, tokenizer, len(table))
    if differences:
        logger.warning(
            "byte-level decoding differs from the tokenizer's for %s: answers use the "
            "tokenizer's decoder",
            differences[:3],
        )
        return None
    return decode


def _byte_chars() -> list[str]:
    """The char that stands for each byte in a byte-level BPE vocabulary (GPT-2's mapping)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = iter(range(256, 512))
    return [chr(byte if byte in printable else next(others)) for byte in range(256)]


def _differences(decode: Decode, tokenizer, vocab_size: int) -> list[list[int]]:
    """Token id sequences that ``decode`` and the tokenizer decode differently: every token
    alone, and random runs (seeded) where bytes of several tokens make up characters."""
    rng = random.Random(0)
    runs = [[i] for i in range(vocab_size)]
    runs += [[rng.randrange(vocab_size) for _ in range(rng.randint(2, 24))] for _ in range(2000)]
    expected = tokenizer.decode_batch(runs, skip_special_tokens=True)
    return [ids for ids, text in zip(runs, expected, strict=True) if decode(ids) != text]
