"""A question as the server shows it to the model: the system prompt, the question, the
model's own chat template (thinking on or off). The server's prompts and the quantizer's
calibration text both come from here, so the two cannot drift apart.

Only the standard library here: the tokenizer is the caller's."""

from __future__ import annotations

DEFAULT_SYSTEM_PROMPT = (
    "你是CUDA与并行计算课程的助教。请用简洁、准确的教科书式中文直接回答问题，"
    "先给出结论，再用一两句话说明关键原因；不要寒暄，不要重复问题。"
)


def render_question(tokenizer, system_prompt: str, question: str, enable_thinking: bool) -> str:
    """The prompt text for one question: a system message unless ``system_prompt`` is
    empty, the user message, and the template's opening of the assistant turn."""
    messages = [{"role": "user", "content": question}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )
