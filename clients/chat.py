"""Terminal chat with the server's /v1 API: streaming, multi-turn, fast/slow modes.

    python -m clients.chat [--url URL] [--api-key KEY] [--mode fast|slow]

The URL and key default to QASERVE_URL and QASERVE_API_KEY. Commands:
/mode fast|slow, /reset, /exit.
"""

from __future__ import annotations

import argparse
import sys

from openai import OpenAI

from clients.connection import add_connection_args, connect

HELP = "commands: /mode fast|slow, /reset (forget the conversation), /exit"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Chat with a qaserve server in the terminal.")
    add_connection_args(parser)
    parser.add_argument("--mode", choices=["fast", "slow"], default="fast")
    parser.add_argument("--system", default="", help="system prompt")
    parser.add_argument("--max-tokens", type=int, default=1024)
    return parser.parse_args(argv)


class Chat:
    def __init__(self, client: OpenAI, model: str, args: argparse.Namespace):
        self.client, self.model, self.args = client, model, args
        self.mode = args.mode
        self.history: list[dict] = []
        self.reset()

    def reset(self) -> None:
        self.history = [{"role": "system", "content": self.args.system}] if self.args.system else []

    def command(self, line: str) -> bool:
        """Run a /command; False means leave."""
        name, _, value = line.partition(" ")
        if name in ("/exit", "/quit"):
            return False
        if name == "/mode" and value.strip() in ("fast", "slow"):
            self.mode = value.strip()
            print(f"mode: {self.mode}")
        elif name == "/reset":
            self.reset()
            print("conversation cleared")
        else:
            print(HELP)
        return True

    def ask(self, question: str) -> None:
        self.history.append({"role": "user", "content": question})
        stream = self.client.chat.completions.create(
            model=self.model,
            messages=self.history,
            max_tokens=self.args.max_tokens,
            stream=True,
            extra_body={"mode": self.mode},
        )
        answer: list[str] = []
        thinking = False
        for chunk in stream:
            delta = chunk.choices[0].delta if chunk.choices else None
            reasoning = getattr(delta, "reasoning_content", None) if delta else None
            if reasoning:
                if not thinking:
                    print("[thinking] ", end="")
                    thinking = True
                print(reasoning, end="", flush=True)
            if delta and delta.content:
                if thinking:
                    print("\n[answer] ", end="")
                    thinking = False
                answer.append(delta.content)
                print(delta.content, end="", flush=True)
        print()
        self.history.append({"role": "assistant", "content": "".join(answer)})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    link = connect(args)
    chat = Chat(link.client, link.model, args)
    print(f"chatting with {chat.model} at {args.url} (mode {chat.mode}); {HELP}")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if line.startswith("/"):
            if not chat.command(line):
                return 0
        elif line:
            print("bot> ", end="", flush=True)
            chat.ask(line)


if __name__ == "__main__":
    sys.exit(main())
