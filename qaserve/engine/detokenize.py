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

from collections.abc import Callable, Sequence

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
