"""The one place the server writes its own environment: variables that vLLM reads in the
processes it starts (its engine core, its workers), set just before the engine starts.
Everything else reads the environment through the settings and never changes it."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

logger = logging.getLogger(__name__)


def export_to_vllm(variables: Mapping[str, str]) -> None:
    for name, value in variables.items():
        logger.info("for vLLM's processes: %s=%s", name, value)
        os.environ[name] = value
