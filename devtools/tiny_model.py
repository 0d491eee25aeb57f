"""Build a tiny random-weight Qwen3 model that vLLM and transformers can load.

The tokenizer is a byte-level BPE trained on the project's own text, the chat
template follows Qwen3's (``enable_thinking`` adds an empty think block), and
``<think>``/``</think>`` and the tool tags are added tokens, as in the real Qwen3
tokenizer; the template renders tools as Qwen3's does.
Run as a script to write one: ``python -m devtools.tiny_model OUT_DIR``.
``tiny_engine_env`` gives the settings that serve it on a CPU machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from devtools.launcher import ROOT
from prep.datafile import json_lines

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]
# Qwen's tool tags are single tokens too (vLLM's hermes tool parser looks them up).
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]

# Tools as Qwen3's template renders them: described in the system turn, calls as <tool_call>
# blocks in the assistant's turn, results as <tool_response> blocks in a user turn. A
# conversation without tools renders as before.
TOOLS_SYSTEM = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name "
    "and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call>'
    "<|im_end|>\\n' }}"
    "{%- endif %}"
)
CHAT_TEMPLATE = (
    TOOLS_SYSTEM + "{%- for message in messages %}"
    "{%- if tools and loop.first and message['role'] == 'system' %}"
    "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
    "{{- '<|im_start|>assistant\\n' + (message['content'] or '') }}"
    "{%- for call in message['tool_calls'] %}"
    "{%- if message['content'] or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": \"' + call['function']['name'] + '\", \"arguments\": ' }}"
    "{{- call['function']['arguments'] | tojson }}{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}"
    "{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


def project_text() -> list[str]:
    """The project's QA data (questions and answers, Chinese with code and English terms).

    Only data.jsonl: the README and sources change with every commit, and with them the
    vocabulary and so every random weight; the test model should stay the same.
    """
    records = (record for _, record in json_lines(ROOT / "data.jsonl"))
    return [message["content"] for record in records for message in record["messages"]]


def train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(project_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.add_tokens(THINK_TOKENS + TOOL_TOKENS)  # not special: they survive decoding, as in Qwen3
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, vocab_size: int = 4096, seed: int = 0) -> Path:
    """Write tokenizer, config and random float32 weights to ``out_dir``."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(vocab_size)
    tokenizer.save_pretrained(out)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5,  # large random weights keep greedy text varied
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(out, safe_serialization=True)
    return out


def model_or_tiny(model: Path | None, scratch: Path) -> Path:
    """The model folder given, or else the tiny model, built under ``scratch``."""
    return model if model is not None else build_tiny_model(scratch / "tiny")


def tiny_engine_env(model_dir: str | Path, **extra: str) -> dict[str, str]:
    """Settings that run the tiny model on a CPU machine, reproducibly."""
    env = {
        "MODEL_DIR": str(model_dir),
        "DTYPE": "float32",  # bf16 greedy output changes with batch shape
        "ENFORCE_EAGER": "1",
        "MAX_MODEL_LEN": "1024",
        "GPU_MEMORY_UTILIZATION": "0.3",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_MAX_NUM_SEQS": "256",
        "VLLM_MAX_NUM_BATCHED_TOKENS": "8192",
        "WARMUP_DATA_PATH": str(ROOT / "data.jsonl"),
        "WARMUP_NUM_SAMPLES": "4",
    }
    env.update(extra)
    return env


# vLLM's own OpenAI server (``python -m``: the ``vllm`` command does not run with vllm-cpu)
# and its flag for each engine setting of ``tiny_engine_env``, so both servers run one engine.
VLLM_OPENAI_SERVER = ["-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1"]
VLLM_FLAG_OF_SETTING = {
    "DTYPE": "--dtype",
    "MAX_MODEL_LEN": "--max-model-len",
    "GPU_MEMORY_UTILIZATION": "--gpu-memory-utilization",
    "VLLM_MAX_NUM_SEQS": "--max-num-seqs",
    "VLLM_MAX_NUM_BATCHED_TOKENS": "--max-num-batched-tokens",
}


def vllm_openai_server(model_dir: str | Path) -> tuple[list[str], dict[str, str]]:
    """The python arguments (the port comes apart, as ``--port``) and the environment that
    serve the tiny model with vLLM's own OpenAI server, on the engine settings of
    ``tiny_engine_env``, under the model id this server gives it (the folder's name)."""
    settings = tiny_engine_env(model_dir)
    argv = [
        *VLLM_OPENAI_SERVER,
        "--model",
        str(model_dir),
        "--served-model-name",
        Path(model_dir).name,
        "--enforce-eager",
        "--seed",
        "0",  # the server's SEED default
        *(arg for name, flag in VLLM_FLAG_OF_SETTING.items() for arg in (flag, settings[name])),
        # Tool calls as this server reads them (Qwen's <tool_call> blocks: vLLM's hermes
        # parser), and constrained JSON as compact as this server's (COMPACT_JSON's default).
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "hermes",
        *compact_json_flags(),
    ]
    environment = {
        "VLLM_CPU_KVCACHE_SPACE": settings["VLLM_CPU_KVCACHE_SPACE"],
        # Forced calls (required, named) as JSON, as this server and vLLM 0.10 force them;
        # current vLLM otherwise forces its parser's own tag format (a structural tag).
        "VLLM_ENFORCE_STRICT_TOOL_CALLING": "0",
    }
    return argv, environment


def compact_json_flags() -> list[str]:
    """The installed vLLM's command-line flags for the engine arguments this server starts
    its engine with under COMPACT_JSON."""
    import dataclasses

    from vllm import AsyncEngineArgs

    from qaserve.engine.vllm_backend import compact_json_kwargs

    accepted = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    flags = []
    for name, value in compact_json_kwargs(accepted).items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        else:
            flags += [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
    return flags


if __name__ == "__main__":
    print(build_tiny_model(sys.argv[1]))
