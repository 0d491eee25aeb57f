"""Quantize a model with llmcompressor into a folder vLLM loads (compressed-tensors).

Schemes: ``w4a16`` (4-bit weights; GPTQ, AWQ or round-to-nearest), ``w8a8`` (int8 weights
and activations; SmoothQuant + GPTQ, or round-to-nearest), ``fp8`` (FP8 weights, dynamic
FP8 activations; needs no calibration). Calibration text comes from data.jsonl as the
server renders it (prep/calibration.py), with the server's SYSTEM_PROMPT and ENABLE_THINKING.
Runs in its own environment (.venv-quant, requirements-quantize.txt): llmcompressor's pins
collide with vLLM's.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from prep.chat import DEFAULT_SYSTEM_PROMPT
from prep.flags import Flag, add_flags, parsed_settings
from prep.manifest import Entry, Manifest, Quantization, listed_files

log = logging.getLogger("prep.quantize")

Scheme = Literal["w4a16", "w8a8", "fp8"]
Algorithm = Literal["gptq", "awq", "rtn"]


class QuantizeSettings(BaseSettings):
    """The environment ``python -m prep quantize`` reads; each field is also its flag."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)

    quantize: Annotated[Scheme, Flag("--scheme")] = "w8a8"
    quantize_algorithm: Annotated[
        Algorithm, Flag("--algorithm", "gptq, awq (w4a16 only) or rtn (no calibration)")
    ] = "gptq"
    model_manifest: Annotated[
        str, Flag("--manifest", "take its model, and make the quantized one its model")
    ] = ""
    quantize_model: Annotated[str, Flag("--model", "the model folder (without --manifest)")] = ""
    quantize_output: Annotated[
        str, Flag("--output", "default: <model folder>-<scheme> beside the model")
    ] = ""
    calibration_data: Annotated[str, Flag("--data")] = "data.jsonl"
    calibration_samples: Annotated[int, Flag("--samples", "distinct questions drawn")] = 64
    calibration_seed: Annotated[int, Flag("--seed")] = 0
    calibration_max_length: Annotated[int, Flag("--max-length", "tokens per sample, at most")] = 512


class PromptSettings(BaseSettings):
    """SYSTEM_PROMPT and ENABLE_THINKING, read as the server reads them (an empty
    SYSTEM_PROMPT is no system prompt, so no env_ignore_empty): calibration renders as served."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    system_prompt: Annotated[
        str, Flag("--system-prompt", "the served system prompt (empty: none)")
    ] = DEFAULT_SYSTEM_PROMPT
    enable_thinking: Annotated[
        bool, Flag("--enable-thinking", "calibrate with thinking on, as served with it")
    ] = False


def needs_calibration(scheme: str, algorithm: str) -> bool:
    return scheme != "fp8" and algorithm != "rtn"


def recipe(scheme: str, algorithm: str) -> list:
    from llmcompressor.modifiers.awq import AWQModifier
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    common = {"targets": "Linear", "ignore": ["lm_head"]}
    if algorithm == "awq" and scheme != "w4a16":
        raise ValueError(f"AWQ makes 4-bit weights: use --scheme w4a16, not {scheme}")
    if not needs_calibration(scheme, algorithm):
        preset = {"w4a16": "W4A16", "w8a8": "W8A8", "fp8": "FP8_DYNAMIC"}[scheme]
        return [QuantizationModifier(scheme=preset, **common)]
    if scheme == "w8a8":  # llmcompressor's int8 recipe: smooth the activations, then GPTQ
        return [SmoothQuantModifier(smoothing_strength=0.8), GPTQModifier(scheme="W8A8", **common)]
    if algorithm == "awq":
        allow_awq_without_accelerator()
        return [AWQModifier(scheme="W4A16_ASYM", **common)]
    return [GPTQModifier(scheme="W4A16", **common)]


def allow_awq_without_accelerator() -> None:
    """AWQ pins its cached activations for faster copies to an accelerator; on a machine
    without one pinning fails ("Cannot access accelerator device"), and has no use."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if not torch.accelerator.is_available():
        IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None


def calibration_dataset(settings: QuantizeSettings, prompt: PromptSettings, tokenizer):
    from datasets import Dataset

    from prep.calibration import calibration_texts

    texts = calibration_texts(
        Path(settings.calibration_data),
        tokenizer,
        settings.calibration_samples,
        settings.calibration_seed,
        system_prompt=prompt.system_prompt,
        enable_thinking=prompt.enable_thinking,
    )
    encoded = tokenizer(
        texts,
        add_special_tokens=False,
        truncation=True,
        max_length=settings.calibration_max_length,
    )
    return Dataset.from_dict(dict(encoded))


def quantize(
    settings: QuantizeSettings, prompt: PromptSettings, source: Path, target: Path
) -> Quantization:
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scheme, algorithm = settings.quantize, settings.quantize_algorithm
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, torch_dtype="auto")
    steps = recipe(scheme, algorithm)
    options, samples = {}, 0
    if needs_calibration(scheme, algorithm):
        dataset = calibration_dataset(settings, prompt, tokenizer)
        samples = len(dataset)
        options = {
            "dataset": dataset,
            "num_calibration_samples": samples,
            "max_seq_length": settings.calibration_max_length,
        }
    log.info("%s (%s) of %s: %d calibration samples", scheme, algorithm, source, samples)
    oneshot(model=model, recipe=steps, **options)
    model.save_pretrained(target, save_compressed=True)
    tokenizer.save_pretrained(target)
    return Quantization(
        scheme=scheme,
        algorithm="rtn" if scheme == "fp8" else algorithm,
        calibration_samples=samples,
        seed=settings.calibration_seed,
    )


def output_folder(settings: QuantizeSettings, source: Path) -> Path:
    if settings.quantize_output:
        return Path(settings.quantize_output)
    return source.with_name(f"{source.name}-{settings.quantize}")


def quantized_entry(made_from: Entry, scheme: str, target: Path) -> Entry:
    return Entry(
        id=made_from.id,
        revision=made_from.revision,
        source=f"quantized-{scheme}",
        path=str(target.resolve()),
        files=listed_files(target),
    )


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m prep quantize", description=__doc__)
    add_flags(parser, QuantizeSettings)
    add_flags(parser, PromptSettings)
    args = parser.parse_args(argv)
    settings = parsed_settings(args, QuantizeSettings)
    prompt = parsed_settings(args, PromptSettings)
    manifest = None
    if settings.model_manifest:
        manifest = Manifest.read(Path(settings.model_manifest))
        source = Path(manifest.model.checked_folder(Path(settings.model_manifest)))
    elif settings.quantize_model:
        source = Path(settings.quantize_model)
    else:
        parser.error("name the model: --manifest or --model")
    target = output_folder(settings, source)
    started = time.perf_counter()
    done = quantize(settings, prompt, source, target)
    log.info("%s written in %.1f s", target, time.perf_counter() - started)
    if manifest is not None:
        made_from = manifest.model
        manifest.base = manifest.base or made_from
        manifest.model = quantized_entry(made_from, done.scheme, target)
        manifest.quantization = done
        manifest.write(Path(settings.model_manifest))
        log.info("manifest %s now serves %s", settings.model_manifest, target)
    return 0
