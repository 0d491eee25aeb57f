"""LoRA adapters served beside the model, on the fake engine: which adapter each request
gets, what /v1/models lists, and the settings and manifest that name them. The real engine
serving them is tests/test_adapters.py."""

import json

import pytest

from prep.manifest import Adapter, Entry, Manifest
from qaserve.api.models import ModelRegistry
from qaserve.model_files import with_manifest_paths
from qaserve.settings import Settings

pytestmark = pytest.mark.anyio

ADAPTERS = {"tutor": "/adapters/tutor", "grader": "/adapters/grader"}


async def test_a_request_picks_an_adapter_by_model_and_predict_uses_the_default(
    start_api, tokenizer_dir
):
    base = tokenizer_dir.name
    async with start_api(lora_adapters=ADAPTERS, default_adapter="grader") as api:
        models = (await api.http.get("/v1/models")).json()["data"]
        assert [(m["id"], m["parent"]) for m in models] == [
            (base, None),
            ("tutor", base),
            ("grader", base),
        ]
        chat = {"messages": [{"role": "user", "content": "什么是warp？"}]}
        for model in ("tutor", base, None):
            body = {**chat, "model": model} if model else chat
            reply = await api.http.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200, reply.text
        completion = {"model": "tutor", "prompt": "warp", "max_tokens": 4}
        assert (await api.http.post("/v1/completions", json=completion)).status_code == 200
        await api.http.post("/predict", json={"prompt": "什么是warp？"})
        used = [params.adapter for _, params in api.engine.calls]
        assert used == ["tutor", None, "grader", "tutor", "grader"]

        unknown = await api.http.post("/v1/chat/completions", json={**chat, "model": "nobody"})
        assert unknown.status_code == 400
        error = unknown.json()["error"]
        assert error["code"] == "model_not_found" and error["param"] == "model"
        assert f"serves {base!r}, 'tutor', 'grader'" in error["message"]


async def test_an_unknown_default_adapter_stops_the_start(start_api):
    with pytest.raises(LookupError, match=r"model 'nobody' is not served here"):
        async with start_api(lora_adapters=ADAPTERS, default_adapter="nobody"):
            pass


def test_lora_adapters_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("LORA_ADAPTERS", "tutor=/adapters/tutor, /adapters/grader/")
    assert Settings().lora_adapters == {"tutor": "/adapters/tutor", "grader": "/adapters/grader/"}
    monkeypatch.setenv("LORA_ADAPTERS", json.dumps(ADAPTERS))
    assert Settings().lora_adapters == ADAPTERS


def test_the_manifest_served_adapter_is_the_default_unless_one_is_set(tmp_path):
    folders = {}
    for name in ("base", "tutor"):
        folders[name] = tmp_path / name
        folders[name].mkdir()
    entry = {"revision": "master", "source": "local", "files": []}
    manifest = Manifest(
        model=Entry(id="base", path=str(folders["base"]), **entry),
        adapters=[
            Adapter(id="tutor", name="tutor", merged=False, path=str(folders["tutor"]), **entry),
            Adapter(id="old", name="old", merged=True, path=str(tmp_path / "gone"), **entry),
        ],
    )
    manifest.write(tmp_path / "manifest.json")
    settings = with_manifest_paths(Settings(model_manifest=str(tmp_path / "manifest.json")))
    assert settings.lora_adapters == {"tutor": str(folders["tutor"])}
    served = ModelRegistry(settings, context_len=4096, created=0)
    assert served.adapter_for(None) == "tutor" and served.adapter_for("base") is None
    chosen = Settings(model_manifest=str(tmp_path / "manifest.json"), default_adapter="base")
    served = ModelRegistry(with_manifest_paths(chosen), context_len=4096, created=0)
    assert served.adapter_for(None) is None
