"""Token counts with the served model's own tokenizer (transformers AutoTokenizer)."""

from __future__ import annotations

from pathlib import Path

from eval.errors import EvalError


def tokenizer_folder(explicit: str | None, server_model: str | None) -> str:
    """--tokenizer if given, else the model folder the server reports in /info."""
    folder = explicit or server_model
    if not folder:
        raise EvalError("the server does not report its model (GET /info); pass --tokenizer PATH")
    if not Path(folder).is_dir():
        origin = "--tokenizer" if explicit else "the server's model folder (GET /info)"
        raise EvalError(
            f"{origin} {folder!r} is not a folder on this machine; "
            "pass --tokenizer PATH with the model's tokenizer files"
        )
    return folder


class TokenCounter:
    def __init__(self, folder: str):
        from transformers import AutoTokenizer

        self.folder = folder
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise EvalError(f"no tokenizer could be loaded from {folder}: {exc}") from exc

    def count(self, texts: list[str]) -> list[int]:
        """Tokens per text, without the special tokens a chat template would add."""
        if not texts:
            return []
        encoded = self._tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]
