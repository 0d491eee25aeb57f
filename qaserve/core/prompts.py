"""Prompt building: the model's own chat template, a system prompt, thinking off."""

from __future__ import annotations

from prep.chat import render_question
from qaserve.model_files import declared_context

CUT_MARGIN_TOKENS = 64


def context_length(model_dir: str, configured: int | None) -> int:
    """The context the engine runs with: MAX_MODEL_LEN, else the model's own limit."""
    return configured or declared_context(model_dir) or 4096


# Questions the chat template must place verbatim, between the same two pieces of text, before
# a batch is rendered by joining those pieces (see PromptBuilder.frame): whitespace a template
# might trim, markup a template might test for, an empty question.
FRAME_PROBES = (
    "什么是warp？",
    "  leading and trailing spaces \n",
    "<tool_response>\n{}\n</tool_response>",
    "</think>after<think>",
    "",
)
_SLOT = "\x00question\x00"


class PromptBuilder:
    """The one way from text to token ids: chat rendering, tokenizing, cutting to fit."""

    def __init__(self, tokenizer, context_len: int, enable_thinking: bool):
        self.tokenizer = tokenizer
        self.context_len = context_len
        self.enable_thinking = enable_thinking
        # No token spells more characters than its longest vocabulary entry, so a question
        # cut to this many characters still holds every token that can fit the context
        # (plus a margin, so the tokens at the cut come out as in the whole text).
        longest = max(map(len, tokenizer.get_vocab()))
        self.max_question_chars = (context_len + CUT_MARGIN_TOKENS) * longest
        # The Rust tokenizer behind a fast tokenizer: the same ids as calling the tokenizer,
        # without building a BatchEncoding, and with the GIL released while it encodes.
        self._rust = getattr(tokenizer, "backend_tokenizer", None)
        self._frames: dict[str, tuple[str, str] | None] = {}

    @classmethod
    def load(cls, model_dir: str, context_len: int, enable_thinking: bool, trust_remote_code: bool):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        return cls(tokenizer, context_len, enable_thinking)

    def render(self, system_prompt: str, question: str) -> str:
        return render_question(self.tokenizer, system_prompt, question, self.enable_thinking)

    def frame(self, system_prompt: str) -> tuple[str, str] | None:
        """The text before and after the question in every rendered prompt, where the template
        places each probe question verbatim between them; None where it does not (then each
        question is rendered on its own). Joining costs a microsecond, the template 50-100."""
        if system_prompt not in self._frames:
            pieces = self.render(system_prompt, _SLOT).split(_SLOT)
            framed = None
            if len(pieces) == 2:
                head, tail = pieces
                if all(self.render(system_prompt, q) == head + q + tail for q in FRAME_PROBES):
                    framed = (head, tail)
            self._frames = {system_prompt: framed}  # the system prompt changes rarely
        return self._frames[system_prompt]

    def render_chat(
        self,
        messages: list[dict],
        enable_thinking: bool,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
        tools: list[dict] | None = None,
    ) -> str:
        return self.tokenizer.apply_chat_template(
            messages,
            tools=tools,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            enable_thinking=enable_thinking,
        )

    def token_ids(self, text: str) -> list[int]:
        if self._rust is None:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._rust.encode(text, add_special_tokens=False).ids

    def token_ids_many(self, texts: list[str]) -> list[list[int]]:
        """Token ids of rendered prompts, in bulk."""
        if self._rust is None:
            return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [encoding.ids for encoding in self._rust.encode_batch(texts, False)]

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    def token_strs(self, ids: list[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(ids)

    def decode(self, ids: list[int]) -> str:
        """The text of token ids; ValueError names the first id outside the vocabulary."""
        self.check_ids(ids)
        return self.tokenizer.decode(ids)

    def check_ids(self, ids: list[int]) -> None:
        """ValueError naming the first id outside the vocabulary."""
        vocabulary = len(self.tokenizer)
        unknown = next((i for i in ids if not 0 <= i < vocabulary), None)
        if unknown is not None:
            raise ValueError(f"token {unknown} is not in the {vocabulary}-token vocabulary")

    def completion_ids(self, prompts: list[str | list[int]]) -> list[list[int]]:
        """Raw completion prompts: texts tokenized in bulk with the tokenizer's special tokens
        (as vLLM's completions tokenize them), token ids checked and taken as they are."""
        texts = [p for p in prompts if isinstance(p, str)]
        encoded = iter(self.tokenizer(texts)["input_ids"] if texts else [])
        for p in prompts:
            if not isinstance(p, str):
                self.check_ids(p)
        return [next(encoded) if isinstance(p, str) else p for p in prompts]

    def prompt_texts(self, system_prompt: str, questions: list[str]) -> list[str]:
        """The rendered prompt of each question. A question far longer than the context is cut
        by characters first: tokenizing megabytes that cannot fit anyway would take seconds."""
        questions = [q[: self.max_question_chars] for q in questions]
        framed = self.frame(system_prompt)
        if framed is None:
            return [self.render(system_prompt, q) for q in questions]
        head, tail = framed
        return [head + q + tail for q in questions]

    def fit_all(
        self,
        system_prompt: str,
        questions: list[str],
        encoded: list[list[int]],
        max_new_tokens: list[int],
    ) -> list[list[int]]:
        """``encoded`` (the ids of ``prompt_texts``), each prompt that leaves no room for its
        answer budget cut to fit."""
        return [
            ids
            if len(ids) + budget <= self.context_len
            else self._fit(system_prompt, q[: self.max_question_chars], budget)
            for ids, q, budget in zip(encoded, questions, max_new_tokens, strict=True)
        ]

    def encode_many(
        self, system_prompt: str, questions: list[str], max_new_tokens: list[int]
    ) -> list[list[int]]:
        """Token ids per question, each cut to leave room for its answer budget."""
        encoded = self.token_ids_many(self.prompt_texts(system_prompt, questions))
        return self.fit_all(system_prompt, questions, encoded, max_new_tokens)

    def _fit(self, system_prompt: str, question: str, max_new_tokens: int) -> list[int]:
        """Keep the start of an over-long question so prompt plus answer fit the context."""
        limit = self.context_len - max_new_tokens
        question_ids = self.token_ids(question)
        keep = len(question_ids)
        while True:
            text = self.tokenizer.decode(question_ids[:keep])
            ids = self.token_ids(self.render(system_prompt, text))
            if len(ids) <= limit or keep == 0:
                return ids[-limit:] if len(ids) > limit else ids
            keep = max(0, keep - (len(ids) - limit))
