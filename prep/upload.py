"""Upload a model folder (merged, quantized) to a ModelScope repository with its client.

The token comes only from a file (a build or CI secret; default /run/secrets/model_token):
never a flag or a variable, and never printed, not even inside the hub's error messages.
The hub is ModelScope's, or the one MODELSCOPE_DOMAIN names (the client reads it).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Annotated

from pydantic_settings import BaseSettings, SettingsConfigDict

from prep.flags import Flag, add_flags, parsed_settings

log = logging.getLogger("prep.upload")

DEFAULT_TOKEN_FILE = "/run/secrets/model_token"


class UploadSettings(BaseSettings):
    """The environment ``python -m prep upload`` reads; each field is also its flag."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)

    upload_folder: Annotated[str, Flag("--folder", "the model folder to upload")] = ""
    upload_repo: Annotated[str, Flag("--repo", "owner/name; created if missing")] = ""
    upload_revision: Annotated[str, Flag("--revision")] = "master"
    upload_token_file: Annotated[str, Flag("--token-file")] = DEFAULT_TOKEN_FILE
    upload_private: Annotated[bool, Flag("--private", "create the repository private")] = False
    upload_message: Annotated[str, Flag("--message")] = "Upload a model prepared with qaserve"


class UploadError(RuntimeError):
    pass


def read_token(path: Path) -> str:
    if not path.is_file():
        raise UploadError(f"token file {path} does not exist: the hub needs a token to upload")
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise UploadError(f"token file {path} is empty")
    return token


def upload(settings: UploadSettings, token: str) -> None:
    from modelscope.hub.api import HubApi

    folder, repo = Path(settings.upload_folder), settings.upload_repo
    if not (folder / "config.json").is_file():
        raise UploadError(f"{folder} holds no model (no config.json)")
    if repo.count("/") != 1:
        raise UploadError(f"repository {repo!r} is not owner/name")
    api = HubApi(token=token)
    visibility = "private" if settings.upload_private else "public"
    api.create_repo(repo, repo_type="model", visibility=visibility, exist_ok=True)
    api.upload_folder(
        repo_id=repo,
        folder_path=str(folder),
        revision=settings.upload_revision,
        commit_message=settings.upload_message,
        use_cache=False,  # its resume record would be written into the model folder
    )


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m prep upload", description=__doc__)
    add_flags(parser, UploadSettings)
    settings = parsed_settings(parser.parse_args(argv), UploadSettings)
    if not settings.upload_folder or not settings.upload_repo:
        parser.error("--folder and --repo are required")
    token = ""
    try:
        token = read_token(Path(settings.upload_token_file))
        upload(settings, token)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        hidden = message.replace(token, "***") if token else message
        log.error("upload of %s failed: %s", settings.upload_folder, hidden)
        return 1
    where = f"{settings.upload_repo}@{settings.upload_revision}"
    log.info("%s uploaded to %s", settings.upload_folder, where)
    return 0
