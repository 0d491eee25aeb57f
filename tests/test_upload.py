"""python -m prep upload with the real ModelScope client against the local fake hub: the
folder arrives whole and downloads back through python -m prep download; a bad token fails
clearly, and no token is ever printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devtools.launcher import ROOT
from tests.fake_modelscope import FakeModelScope
from tests.test_download_model import manifest_of, run_download

TOKEN = "upload-token-0042"
REPO = "qaserve-test/tiny-merged"


def run_upload(
    tmp_path: Path, hub_url: str, folder: Path, token: str
) -> subprocess.CompletedProcess:
    secret = tmp_path / "token"
    secret.write_text(f"{token}\n")
    env = {**os.environ, "HOME": str(tmp_path), "MODELSCOPE_DOMAIN": hub_url}
    argv = ["--folder", str(folder), "--repo", REPO, "--token-file", str(secret)]
    return subprocess.run(
        [sys.executable, "-m", "prep", "upload", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_upload_then_download_gives_the_same_files(tiny_model, tmp_path):
    with FakeModelScope(token=TOKEN) as hub:
        refused = run_upload(tmp_path, hub.url, tiny_model, "wrong-token-1234")
        assert refused.returncode == 1
        assert "upload of" in refused.stderr and "401" in refused.stderr
        assert "wrong-token-1234" not in refused.stdout + refused.stderr

        done = run_upload(tmp_path, hub.url, tiny_model, TOKEN)
        assert done.returncode == 0, done.stderr
        assert TOKEN not in done.stdout + done.stderr
        assert f"uploaded to {REPO}@master" in done.stderr
        assert [m.startswith("Upload a model prepared with qaserve") for m in hub.commits] == [True]

        back = run_download(
            tmp_path / "back", hub.url, MODEL_ID=REPO, MODEL_TOKEN_FILE=str(tmp_path / "token")
        )
        assert back.returncode == 0, back.stderr
    folder = Path(manifest_of(tmp_path / "back")["model"]["path"])
    sent = {p.name: p.read_bytes() for p in Path(tiny_model).iterdir() if p.is_file()}
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == sent


def test_upload_refuses_a_folder_without_a_model_and_a_missing_token(tmp_path):
    (tmp_path / "empty").mkdir()
    missing = run_upload(tmp_path, "http://127.0.0.1:9", tmp_path / "empty", TOKEN)
    assert missing.returncode == 1 and "holds no model (no config.json)" in missing.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prep",
            "upload",
            "--folder",
            str(tmp_path),
            "--repo",
            REPO,
            "--token-file",
            str(tmp_path / "none"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "token file" in done.stderr and "does not exist" in done.stderr
