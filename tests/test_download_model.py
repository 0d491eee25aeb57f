"""python -m prep download with the real ModelScope client against a local fake hub.

Each test runs the command as the Dockerfile does (settings from the environment) and
checks its exit code, its messages, the manifest, and what the server makes of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.launcher import ROOT, free_port
from prep import download
from qaserve.model_files import ManifestError, with_manifest_paths
from qaserve.settings import Settings
from tests.fake_modelscope import FakeModelScope, Repo

MODEL = "qaserve-test/tiny-qwen3.5"  # the "." is what older ModelScope layouts rename
DRAFT = "qaserve-test/tiny-draft"


@pytest.fixture
def hub(tiny_model):
    repo = Repo.from_folder(Path(tiny_model))
    repos = {MODEL: Repo({**repo.revisions, "v1.0": repo.revisions["master"]}), DRAFT: repo}
    with FakeModelScope(repos=repos) as running:
        yield running


def run_download(tmp_path: Path, hub_url: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "HOME": str(tmp_path),  # the client keeps its config under ~/.modelscope
        "MODELSCOPE_DOMAIN": hub_url,  # the variable old and new clients both honour
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "DOWNLOAD_BACKOFF_SECONDS": "0.1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "prep", "download"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def manifest_of(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "cache" / "manifest.json").read_text(encoding="utf-8"))


def test_download_writes_a_manifest_the_server_resolves(hub, tmp_path):
    done = run_download(
        tmp_path, hub.url, MODEL_ID=MODEL, MODEL_REVISION="v1.0", DRAFT_MODEL_ID=DRAFT
    )
    assert done.returncode == 0, done.stderr
    manifest = manifest_of(tmp_path)
    model = manifest["model"]
    assert (model["id"], model["revision"], model["source"]) == (MODEL, "v1.0", "modelscope")
    names = {f["path"] for f in model["files"]}
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= names
    assert all(
        f["size"] == (Path(model["path"]) / f["path"]).stat().st_size for f in model["files"]
    )
    assert any("Revision=v1.0" in path for path, status in hub.requests if status == 200)

    settings = with_manifest_paths(Settings(model_manifest=str(tmp_path / "cache/manifest.json")))
    assert settings.model_dir == model["path"]
    assert settings.draft_model_dir == manifest["draft"]["path"]


def test_renamed_legacy_folder_is_found_through_the_manifest(hub, tmp_path):
    # An older SDK left this model under its renamed folder; the client reuses it.
    legacy = tmp_path / "cache/modelscope/models/qaserve-test/tiny-qwen3___5"
    legacy.mkdir(parents=True)
    (legacy / "config.json").write_text("{}")
    done = run_download(tmp_path, hub.url, MODEL_ID=MODEL)
    assert done.returncode == 0, done.stderr
    assert manifest_of(tmp_path)["model"]["path"] == str(legacy)
    assert not (tmp_path / "cache/modelscope/models/qaserve-test/tiny-qwen3.5").exists()
    settings = with_manifest_paths(Settings(model_manifest=str(tmp_path / "cache/manifest.json")))
    assert settings.model_dir == str(legacy)
    assert json.loads((legacy / "config.json").read_text())["model_type"] == "qwen3"


def test_optional_draft_failure_warns_and_required_draft_fails(hub, tmp_path):
    optional = run_download(tmp_path, hub.url, MODEL_ID=MODEL, DRAFT_MODEL_ID="nobody/none")
    assert optional.returncode == 0, optional.stderr
    assert "draft model skipped" in optional.stderr
    manifest = manifest_of(tmp_path)
    assert manifest["draft"] is None and "nobody/none" in manifest["draft_error"]
    assert with_manifest_paths(Settings(model_manifest=str(tmp_path / "cache/manifest.json")))

    required = run_download(
        tmp_path / "second",
        hub.url,
        MODEL_ID=MODEL,
        DRAFT_MODEL_ID="nobody/none",
        DRAFT_REQUIRED="1",
    )
    assert required.returncode == 2
    assert "draft nobody/none@master" in required.stderr and "not found" in required.stderr
    assert not (tmp_path / "second/cache/manifest.json").exists()


def test_transient_5xx_is_retried_with_backoff(hub, tmp_path):
    # The client gives up after 4 tries of a listing here (one retry setting, 3 page tries),
    # so only the tool's own retry gets past the fifth 503.
    hub.fail_next(f"/api/v1/models/{MODEL}/repo/files", 5)
    done = run_download(
        tmp_path, hub.url, MODEL_ID=MODEL, MODELSCOPE_API_MAX_RETRIES="1", DOWNLOAD_RETRIES="3"
    )
    assert done.returncode == 0, done.stderr
    assert "attempt 1 failed" in done.stderr and "retrying in" in done.stderr
    statuses = [status for path, status in hub.requests if path.endswith("Recursive=True")]
    assert statuses == [503] * 5 + [200]


def test_bad_token_fails_clearly_and_is_never_shown(hub, tmp_path):
    hub.token = "right-token-0001"
    secret = tmp_path / "token"
    secret.write_text("wrong-token-9999\n")
    done = run_download(tmp_path, hub.url, MODEL_ID=MODEL, MODEL_TOKEN_FILE=str(secret))
    assert done.returncode == 3
    assert "refused the token (HTTP 401)" in done.stderr
    assert "wrong-token-9999" not in done.stdout + done.stderr

    secret.write_text("right-token-0001\n")
    done = run_download(tmp_path, hub.url, MODEL_ID=MODEL, MODEL_TOKEN_FILE=str(secret))
    assert done.returncode == 0, done.stderr
    assert "right-token-0001" not in done.stdout + done.stderr
    assert "right-token-0001" not in (tmp_path / "cache/manifest.json").read_text()


def test_missing_model_and_bad_revision_exit_with_a_reason(hub, tmp_path):
    missing = run_download(tmp_path, hub.url, MODEL_ID="qaserve-test/no-such-model")
    assert missing.returncode == 2
    assert "model qaserve-test/no-such-model@master" in missing.stderr
    assert "not found" in missing.stderr
    revision = run_download(tmp_path, hub.url, MODEL_ID=MODEL, MODEL_REVISION="v9.9")
    assert revision.returncode == 2
    assert "revision v9.9 not found" in revision.stderr


def test_incomplete_model_is_refused(tmp_path, tiny_model):
    files = Repo.from_folder(Path(tiny_model)).revisions["master"]
    files.pop("model.safetensors")
    with FakeModelScope(repos={MODEL: Repo({"master": files})}) as hub:
        done = run_download(tmp_path, hub.url, MODEL_ID=MODEL)
    assert done.returncode == 5
    assert "no weight file" in done.stderr
    assert not (tmp_path / "cache/manifest.json").exists()


def test_local_folder_and_a_changed_file_after_download(tmp_path, tiny_model):
    done = run_download(tmp_path, "http://127.0.0.1:9", MODEL_ID=str(tiny_model))
    assert done.returncode == 0, done.stderr
    model = manifest_of(tmp_path)["model"]
    assert model["source"] == "local" and Path(model["path"]) != Path(tiny_model)
    (Path(model["path"]) / "config.json").write_text("{}")
    with pytest.raises(ManifestError, match=r"config\.json is 2 bytes"):
        with_manifest_paths(Settings(model_manifest=str(tmp_path / "cache/manifest.json")))


def test_unreachable_mirror_is_retried_then_reported(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    done = run_download(
        tmp_path,
        closed,
        MODEL_ID="org/model",
        MODEL_SOURCE="hf",
        HF_ENDPOINT=closed,
        DOWNLOAD_RETRIES="1",
    )
    assert done.returncode == 4, done.stderr
    assert "attempt 1 failed" in done.stderr
    assert "network failure, retries exhausted" in done.stderr


def manifest_settings(tmp_path: Path, manifest: dict) -> Settings:
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return Settings(model_manifest=str(tmp_path / "manifest.json"))


def test_manifest_of_another_format_is_refused(tmp_path):
    settings = manifest_settings(tmp_path, {"format": 1, "model": {}})
    with pytest.raises(
        ManifestError, match=r"manifest\.json has format 1, this version reads format 2"
    ):
        with_manifest_paths(settings)


def test_malformed_manifest_is_a_manifest_error(tmp_path):
    entry = {"id": MODEL, "revision": "master", "source": "modelscope", "files": []}
    settings = manifest_settings(tmp_path, {"format": 2, "model": entry, "draft": None})
    with pytest.raises(
        ManifestError, match=r"manifest\.json is malformed: model\.path: Field required"
    ):
        with_manifest_paths(settings)
    # The download takes it for no manifest at all, and downloads again.
    wanted = (MODEL, "master", "modelscope")
    assert download.cached_entry(tmp_path / "manifest.json", wanted) is None
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match=r"manifest\.json cannot be read"):
        with_manifest_paths(settings)


def test_flags_beat_the_environment_and_empty_variables_mean_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MODEL_REVISION", "v1.0")
    monkeypatch.setenv("DRAFT_REQUIRED", "1")
    args = download.parse_args(["--retries", "7"])
    assert (args.revision, args.draft_required, args.retries) == ("v1.0", True, 7)
    assert args.manifest == tmp_path.resolve() / "manifest.json"
    assert download.parse_args(["--revision", "v2.0"]).revision == "v2.0"
    monkeypatch.setenv("MODEL_REVISION", "")
    monkeypatch.setenv("DRAFT_REQUIRED", "")
    args = download.parse_args([])
    assert (args.revision, args.draft_required) == ("master", False)
    assert download.parse_args(["--draft-required"]).draft_required
    with pytest.raises(SystemExit):
        download.parse_args(["--source", "nowhere"])
