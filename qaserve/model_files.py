"""Model folders: the context a model declares, and the folders from the manifest that
``python -m prep download`` writes (``MODEL_MANIFEST``).

The hub client chooses where a model lands (ModelScope turns ``Qwen3-0.6B`` into
``Qwen3-0___6B`` in one layout and ``Qwen--Qwen3-0.6B/snapshots/master`` in another),
so the server takes the folder from the manifest instead of building it from the id,
and checks that every file listed there is still present with its size.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TypeVar

from prep.manifest import Manifest, ManifestError
from qaserve.settings import ModelSettings

Model = TypeVar("Model", bound=ModelSettings)

__all__ = ["ManifestError", "with_manifest_paths"]

logger = logging.getLogger(__name__)


def with_manifest_paths(settings: Model) -> Model:
    """Settings whose model_dir (and draft_model_dir, and the adapters served beside the
    model) come from MODEL_MANIFEST, if set. A served adapter there is the default one
    unless DEFAULT_ADAPTER says otherwise."""
    if not settings.model_manifest:
        return settings
    path = Path(settings.model_manifest)
    manifest = Manifest.read(path)
    update = {"model_dir": manifest.model.checked_folder(path)}
    if manifest.draft:
        update["draft_model_dir"] = manifest.draft.checked_folder(path)
    elif manifest.draft_error:
        logger.warning("no draft model in %s: %s", path, manifest.draft_error)
    served = {adapter.name: adapter.checked_folder(path) for adapter in manifest.served_adapters()}
    if served:
        update["lora_adapters"] = {**served, **settings.lora_adapters}
        update["default_adapter"] = settings.default_adapter or next(iter(served))
    return settings.model_copy(update=update)


def declared_context(model_dir: str) -> int | None:
    """The context the model's config.json declares (max_position_embeddings), if any."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():  # a tokenizer folder alone (the fast tests' fake engine)
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    declared = config.get("max_position_embeddings")
    return int(declared) if declared else None
