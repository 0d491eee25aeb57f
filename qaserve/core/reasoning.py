"""Split Qwen3 output into reasoning and answer, as it streams or all at once: the one rule
for both APIs (/predict keeps the answer; /v1 returns both, apart).

With thinking on, Qwen3 writes ``<think>…</think>`` before the answer (some
templates put the opening tag in the prompt): text before ``</think>`` is
reasoning, and if the budget ran out first, all of it was. With thinking off the
template closes the think block itself, but a model that still opens one is
recognised by a leading ``<think>``. The tags are single tokens in Qwen3; a tag
split across two pieces is still found, because a possible tag start is held back.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def held_prefix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that could begin ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ReasoningSplitter:
    def __init__(self, thinking: bool):
        # "thinking", "answer", or "undecided" until the first text shows a <think> or not
        self.state = "thinking" if thinking else "undecided"
        self._buffer = ""
        self._answer_started = False

    def feed(self, text: str) -> tuple[str, str]:
        """(reasoning, answer) text that is certain after this piece."""
        self._buffer += text
        reasoning = answer = ""
        if self.state == "undecided":
            head = self._buffer.lstrip()
            if head.startswith(OPEN):
                self.state = "thinking"
            elif len(head) >= len(OPEN) or not OPEN.startswith(head):
                self.state = "answer"
        if self.state == "thinking":
            self._buffer = self._buffer.replace(OPEN, "")
            end = self._buffer.find(CLOSE)
            if end < 0:
                keep = max(held_prefix(self._buffer, CLOSE), held_prefix(self._buffer, OPEN))
                reasoning, self._buffer = _split(self._buffer, len(self._buffer) - keep)
                return reasoning, ""
            reasoning = self._buffer[:end]
            self._buffer = self._buffer[end + len(CLOSE) :]
            self.state = "answer"
        if self.state == "answer":
            answer = self._take_answer()
        return reasoning, answer

    def finish(self) -> tuple[str, str]:
        """Whatever is held back, once the text is complete."""
        if self.state == "thinking":
            reasoning, self._buffer = self._buffer, ""
            return reasoning, ""
        return "", self._take_answer()

    def _take_answer(self) -> str:
        piece, self._buffer = self._buffer, ""
        if not self._answer_started:
            piece = piece.lstrip()  # the blank lines after </think>
            self._answer_started = bool(piece)
        return piece


def _split(text: str, at: int) -> tuple[str, str]:
    return text[:at], text[at:]


def split_reasoning(text: str, thinking: bool) -> tuple[str, str]:
    """(reasoning, answer) of a complete text: what the splitter gives for it whole (the answer
    from its first non-blank character; its end as the model wrote it, as a stream sends it), in
    closed form (no object per answer: a 10,000-item batch splits in milliseconds). Complete,
    a text that closes a think block shows its reasoning even where none was opened (the
    template opened it), which a stream cannot know in time."""
    if thinking or CLOSE in text or text.lstrip().startswith(OPEN):
        reasoning, _, answer = text.replace(OPEN, "").partition(CLOSE)
        return reasoning, answer.lstrip()
    return "", text.lstrip()
