"""Model folders from the manifest that ``download_model.py`` writes (``MODEL_MANIFEST``).

The hub client chooses where a model lands (ModelScope turns ``Qwen3-0.6B`` into
``Qwen3-0___6B`` in one layout and ``Qwen--Qwen3-0.6B/snapshots/master`` in another),
so the server takes the folder from the manifest instead of building it from the id,
and checks that every file listed there is still present with its size.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from qaserve.settings import Settings

logger = logging.getLogger(__name__)


class ManifestError(RuntimeError):
    pass


def checked_folder(entry: dict, manifest: Path) -> str:
    """The entry's folder, after checking each listed file is there with its listed size."""
    folder = Path(entry["path"])
    for listed in entry["files"]:
        path = folder / listed["path"]
        size = path.stat().st_size if path.is_file() else None
        if size != listed["size"]:
            found = "missing" if size is None else f"{size} bytes"
            raise ManifestError(
                f"{manifest}: {entry['id']} file {path} is {found}, "
                f"the manifest says {listed['size']} bytes"
            )
    return str(folder)


def with_manifest_paths(settings: Settings) -> Settings:
    """Settings whose model_dir (and draft_model_dir) come from MODEL_MANIFEST, if set."""
    if not settings.model_manifest:
        return settings
    path = Path(settings.model_manifest)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"MODEL_MANIFEST={path} cannot be read: {exc}") from exc
    update = {"model_dir": checked_folder(manifest["model"], path)}
    if manifest.get("draft"):
        update["draft_model_dir"] = checked_folder(manifest["draft"], path)
    elif manifest.get("draft_error"):
        logger.warning("no draft model in %s: %s", path, manifest["draft_error"])
    return settings.model_copy(update=update)
