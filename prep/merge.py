"""Merge a LoRA adapter into its base model with peft, saved as a plain model folder."""

from __future__ import annotations

from pathlib import Path


def merge_adapter(base: Path, adapter: Path, target: Path) -> None:
    """``merge_and_unload`` the adapter into the base; the weights as safetensors in the
    base's dtype, beside the base's tokenizer and chat template."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype="auto")
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(target, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(target)
