"""LoRA adapter folders: what their peft config says, and which adapter a request picks.

An adapter is a folder with peft's ``adapter_config.json`` (``peft_type`` LORA, rank ``r``,
``base_model_name_or_path``) and its weights. The server serves adapters beside the base
model with vLLM's LoRA support (LORA_ADAPTERS, or the manifest); ``python -m prep download``
reads the base model's name from the same config.

Only the standard library here: the server imports this module too.
"""

from __future__ import annotations

import json
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
# The ranks vLLM's max_lora_rank takes, 0.10 through current releases.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class AdapterError(ValueError):
    pass


def adapter_config(folder: str | Path) -> dict:
    """The folder's peft config; AdapterError unless it is a LoRA adapter."""
    path = Path(folder) / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{folder} is no LoRA adapter: {path} cannot be read ({exc})") from exc
    if config.get("peft_type") != "LORA":
        raise AdapterError(f"{path}: peft_type is {config.get('peft_type')!r}, not 'LORA'")
    return config


def base_model_of(folder: str | Path) -> str:
    base = adapter_config(folder).get("base_model_name_or_path")
    if not base:
        raise AdapterError(f"{folder}/{ADAPTER_CONFIG} names no base model: set MODEL_ID")
    return base


def max_lora_rank(folders: list[str]) -> int:
    """The smallest max_lora_rank vLLM takes that holds every adapter's rank."""
    largest = max(int(adapter_config(folder)["r"]) for folder in folders)
    fitting = [rank for rank in VLLM_LORA_RANKS if rank >= largest]
    if not fitting:
        raise AdapterError(f"LoRA rank {largest} exceeds vLLM's largest, {VLLM_LORA_RANKS[-1]}")
    return fitting[0]


def parse_adapters(value: object) -> object:
    """LORA_ADAPTERS as a mapping name -> folder: a JSON object, or comma-separated
    ``name=folder`` items (a bare folder is named after itself)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        return json.loads(text)
    adapters: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, folder = item.rpartition("=")
        adapters[name or Path(folder.rstrip("/")).name] = folder
    return adapters


def pick_adapter(requested: str, base_name: str, adapters: dict[str, str]) -> str | None:
    """The adapter a model name picks: None for the base model; LookupError for neither."""
    if requested == base_name:
        return None
    if requested in adapters:
        return requested
    served = ", ".join(repr(name) for name in [base_name, *adapters])
    raise LookupError(f"model {requested!r} is not served here; this server serves {served}")
