"""The OpenAI-compatible API under /v1: models, chat completions, text completions, responses."""
