"""Web chat UI (gradio) on the server's /v1 API: streaming, multi-turn, fast/slow.

    python -m clients.webui [--url URL] [--api-key KEY] [--port 7860]

Slow mode shows the model's reasoning folded above its answer.
"""

from __future__ import annotations

import argparse

import gradio as gr
from openai import APIStatusError

from clients.connection import Connection, add_connection_args, connect

REASONING_TITLE = "Reasoning"


def _text(content) -> str:
    """Message text, whether gradio hands it back as a string or as parts."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in parts)


def conversation(history: list[dict], system: str) -> list[dict]:
    """The chat as the API takes it: no folded reasoning, plain text."""
    messages = [{"role": "system", "content": system}] if system and system.strip() else []
    for message in history:
        if (message.get("metadata") or {}).get("title") != REASONING_TITLE:
            messages.append({"role": message["role"], "content": _text(message["content"])})
    return messages


def make_responder(client, model: str):
    def respond(question, history, mode, system, temperature, top_p, max_tokens):
        if not question.strip():
            yield "", history
            return
        history = [*history, {"role": "user", "content": question}]
        reasoning = {"role": "assistant", "content": "", "metadata": {"title": REASONING_TITLE}}
        answer = {"role": "assistant", "content": ""}
        try:
            stream = client.chat.completions.create(
                model=model,
                messages=conversation(history, system),
                stream=True,
                temperature=temperature,
                top_p=top_p,
                max_tokens=int(max_tokens),
                extra_body={"mode": mode},
            )
        except APIStatusError as error:  # e.g. the conversation outgrew the context
            message = error.body.get("message") if isinstance(error.body, dict) else error
            yield "", [*history, {"role": "assistant", "content": f"⚠ {message}"}]
            return
        for chunk in stream:
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is None:
                continue
            reasoning["content"] += getattr(delta, "reasoning_content", None) or ""
            answer["content"] += delta.content or ""
            yield "", [*history, *([reasoning] if reasoning["content"] else []), answer]
        reasoning["metadata"]["status"] = "done"  # folds the reasoning away
        yield "", [*history, *([reasoning] if reasoning["content"] else []), answer]

    return respond


def build_ui(link: Connection, default_max_tokens: int = 1024) -> gr.Blocks:
    client, model = link.client, link.model
    # analytics_enabled: gradio reports usage to its servers unless told not to.
    with gr.Blocks(title=f"qaserve · {model}", analytics_enabled=False) as ui:
        chatbot = gr.Chatbot(label=model, elem_id="chat", height=480)
        with gr.Row():
            question = gr.Textbox(
                placeholder="Ask a question, Enter to send", show_label=False, scale=5, elem_id="q"
            )
            send = gr.Button("Send", variant="primary", elem_id="send")
        with gr.Row():
            mode = gr.Radio(["fast", "slow"], value="fast", label="mode", elem_id="mode")
            clear = gr.Button("Clear")
        with gr.Accordion("System prompt and sampling", open=False):
            system = gr.Textbox(value="", label="system prompt", lines=2)
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="temperature")
            top_p = gr.Slider(0.05, 1, value=0.95, step=0.05, label="top_p")
            # Leave room for the prompt: at most half the context by default.
            budget = min(default_max_tokens, link.context_len // 2)
            max_tokens = gr.Slider(1, link.context_len, value=budget, step=1, label="max_tokens")
        inputs = [question, chatbot, mode, system, temperature, top_p, max_tokens]
        respond = make_responder(client, model)
        question.submit(respond, inputs, [question, chatbot])
        send.click(respond, inputs, [question, chatbot])
        clear.click(lambda: [], None, chatbot)
    return ui


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Web chat UI for a qaserve server.")
    add_connection_args(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-tokens", type=int, default=1024, help="initial max_tokens")
    args = parser.parse_args(argv)
    ui = build_ui(connect(args), args.max_tokens)
    ui.queue().launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
