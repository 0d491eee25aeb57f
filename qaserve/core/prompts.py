"""Prompt building: the model's own chat template, a system prompt, thinking off."""

from __future__ import annotations

from prep.chat import render_question
from qaserve.model_files import declared_context

CUT_MARGIN_TOKENS = 64


def context_length(model_dir: str, configured: int | None) -> int:
    """The context the engine runs with: MAX_MODEL_LEN, else the model's own limit."""
    return configured or declared_context(model_dir) or 4096


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

    @classmethod
    def load(cls, model_dir: str, context_len: int, enable_thinking: bool, trust_remote_code: bool):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        return cls(tokenizer, context_len, enable_thinking)

    def render(self, system_prompt: str, question: str) -> str:
        return render_question(self.tokenizer, system_prompt, question, self.enable_thinking)

    def render_chat(self, messages: list[dict], enable_thinking: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=enable_thinking,
        )

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def completion_ids(self, prompts: list[str]) -> list[list[int]]:
        """Raw completion prompts, in bulk, with the tokenizer's special tokens (as vLLM's
        completions tokenize them)."""
        return self.tokenizer(prompts)["input_ids"]

    def encode_many(
        self, system_prompt: str, questions: list[str], max_new_tokens: list[int]
    ) -> list[list[int]]:
        """Token ids per question, each cut to leave room for its answer budget. A question
        far longer than the context is cut by characters first: tokenizing megabytes that
        cannot fit anyway would take seconds."""
        questions = [q[: self.max_question_chars] for q in questions]
        texts = [self.render(system_prompt, q) for q in questions]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [
            ids if len(ids) + budget <= self.context_len else self._fit(system_prompt, q, budget)
            for ids, q, budget in zip(encoded, questions, max_new_tokens, strict=True)
        ]

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
