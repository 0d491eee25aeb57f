"""The one place the server writes its own environment (``os.environ``), both at start:

- ``default_offline``: before any hub library or vLLM is imported, the variables that keep
  them off the network (no hub lookups, no usage reports, no address probe) are set, except
  where the user's environment already says otherwise: the server never reaches the network
  unless its user asks.
- ``export_to_vllm``: what vLLM's processes (its engine core, its workers) must find in their
  environment, just before the engine starts.

Everything else reads the environment through the settings and never changes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

logger = logging.getLogger(__name__)

OFFLINE = {
    # The hub clients (transformers, huggingface_hub, datasets): the model is on disk.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    # vLLM's usage reporting (and the common opt-out other libraries honour).
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
}
# Without it vLLM finds its own address by a UDP connect to 8.8.8.8; a single-node server
# talks to its own processes over loopback. Left alone for Ray, whose nodes need real ones.
LOOPBACK_HOST = {"VLLM_HOST_IP": "127.0.0.1"}


def default_offline(multi_node: bool) -> dict[str, str]:
    """Set the offline defaults the environment leaves unset; returns what was set."""
    wanted = {**OFFLINE, **({} if multi_node else LOOPBACK_HOST)}
    chosen = {name: value for name, value in wanted.items() if name not in os.environ}
    os.environ.update(chosen)
    return chosen


def export_to_vllm(variables: Mapping[str, str]) -> None:
    for name, value in variables.items():
        logger.info("for vLLM's processes: %s=%s", name, value)
        os.environ[name] = value
