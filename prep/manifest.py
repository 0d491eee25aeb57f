"""The manifest ``python -m prep download`` writes and the server reads: where each model landed.

    {"format": 2, "model": entry, "draft": entry or null, "draft_error": "..." (optional),
     "base": entry or null, "adapters": [adapter, ...], "quantization": {...} or null}

An entry names the model (id, revision, source), the folder the hub client chose, and each
file in it with its size, so the server can check the folder is still whole. ``model`` is
the folder the server loads; when it was made from a download (a LoRA adapter merged into
it, or quantized), ``base`` is that download. An adapter entry says whether it was merged
into ``model`` or is served beside it by vLLM under its name.

Only the standard library and pydantic here: the server imports this module, and the image
carries none of the model tools' own dependencies.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

FORMAT = 2  # the manifest format this code reads and writes


class ManifestError(RuntimeError):
    pass


class ListedFile(BaseModel):
    path: str  # relative to the entry's folder
    size: int


def listed_files(folder: Path) -> list[ListedFile]:
    """Every file under ``folder`` with its size; hidden ones (hub bookkeeping) left out."""
    relative = (path.relative_to(folder) for path in sorted(folder.rglob("*")) if path.is_file())
    return [
        ListedFile(path=str(rel), size=(folder / rel).stat().st_size)
        for rel in relative
        if not any(part.startswith(".") for part in rel.parts)
    ]


class Entry(BaseModel):
    id: str
    revision: str
    source: str
    path: str
    files: list[ListedFile]

    def checked_folder(self, manifest: Path) -> str:
        """The folder, after checking each listed file is there with its listed size."""
        folder = Path(self.path)
        for listed in self.files:
            path = folder / listed.path
            size = path.stat().st_size if path.is_file() else None
            if size != listed.size:
                found = "missing" if size is None else f"{size} bytes"
                raise ManifestError(
                    f"{manifest}: {self.id} file {path} is {found}, "
                    f"the manifest says {listed.size} bytes"
                )
        return str(folder)


class Adapter(Entry):
    name: str  # the model name a /v1 request picks it by
    merged: bool  # True: merged into the manifest's model; False: served beside it


class Quantization(BaseModel):
    scheme: str  # w4a16, w8a8, fp8
    algorithm: str  # gptq, awq, rtn
    calibration_samples: int  # prompts sampled from the data (0: none needed)
    seed: int


class Manifest(BaseModel):
    format: int = FORMAT
    model: Entry
    draft: Entry | None = None
    draft_error: str | None = None  # why the draft was skipped; written only when set
    base: Entry | None = None  # the download ``model`` was made from, if it was
    adapters: list[Adapter] = []
    quantization: Quantization | None = None

    def entries(self) -> list[Entry]:
        """Every folder the manifest names."""
        return [e for e in (self.model, self.draft, self.base, *self.adapters) if e is not None]

    def served_adapters(self) -> list[Adapter]:
        return [adapter for adapter in self.adapters if not adapter.merged]

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """The manifest in ``path``; ManifestError if it is unreadable, old or malformed."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ManifestError(f"manifest {path} cannot be read: {exc}") from exc
        # Before the shape: another format may well have another shape.
        if isinstance(data, dict) and data.get("format") != FORMAT:
            raise ManifestError(
                f"manifest {path} has format {data.get('format')!r}, this version reads "
                f"format {FORMAT}: write it again with this version's python -m prep download"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'manifest'}: {error['msg']}"
                for error in exc.errors()
            )
            raise ManifestError(f"manifest {path} is malformed: {problems}") from exc

    def write(self, path: Path) -> None:
        data = self.model_dump(mode="json")
        if self.draft_error is None:
            del data["draft_error"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
