"""Connection options shared by the terminal and web chat clients."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from openai import OpenAI

from clients.settings import ClientSettings


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    env = ClientSettings()
    key = env.qaserve_api_key.get_secret_value() if env.qaserve_api_key else None
    parser.add_argument("--url", default=env.qaserve_url, help="server address (QASERVE_URL)")
    parser.add_argument("--api-key", default=key, help="API key (QASERVE_API_KEY)")
    parser.add_argument("--model", help="model id (default: the one the server lists)")


@dataclass
class Connection:
    client: OpenAI
    model: str
    context_len: int  # prompt plus answer, as the server reports it


def connect(args: argparse.Namespace) -> Connection:
    """An OpenAI client on the server's /v1, and the model to talk to."""
    client = OpenAI(base_url=args.url.rstrip("/") + "/v1", api_key=args.api_key or "none")
    models = {m.id: m for m in client.models.list().data}
    model = models[args.model] if args.model else next(iter(models.values()))
    return Connection(client, model.id, getattr(model, "max_model_len", None) or 4096)
