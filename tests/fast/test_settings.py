import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from qaserve.engine.parallel import cpu_threads_binding, tensor_parallel_size
from qaserve.engine.vllm_backend import SETTING_OF_KEYWORD, engine_kwargs, speculative_config
from qaserve.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_section(title: str) -> str:
    """The README's text from the heading "## title" to the next heading of that level."""
    text = README.read_text(encoding="utf-8")
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def readme_settings() -> dict[str, str]:
    """Setting name -> default, from the README's settings table."""
    return dict(re.findall(r"^\| `([A-Z0-9_]+)` \| (.*?) \|", readme_section("Settings"), re.M))


def test_every_setting_is_documented_with_its_default():
    documented = readme_settings()
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented.keys() == set(), "settings missing from the README table"
    assert documented.keys() - fields == set(), "README documents settings that do not exist"
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, (bool, int, float, str)) and default != "":
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            assert shown in documented[name.upper()], f"{name.upper()} default {shown!r}"


def test_reference_names_and_list_formats_are_read(monkeypatch):
    monkeypatch.setenv("BATCH_MODE", "1")
    monkeypatch.setenv("VLLM_MAX_NUM_SEQS", "64")
    monkeypatch.setenv("STOP_STRINGS", '["\\n\\n", "参考"]')
    monkeypatch.setenv("EXAMPLE_MARKERS", "例如,比如,譬如")
    monkeypatch.setenv("USE_VLLM", "0")
    s = Settings()
    assert s.batch_mode is True and s.vllm_max_num_seqs == 64
    assert s.stop_strings == ["\n\n", "参考"]
    assert s.example_markers == ["例如", "比如", "譬如"]
    assert s.use_vllm is False


def test_bad_values_fail_loudly(monkeypatch):
    monkeypatch.setenv("MAX_NEW_TOKENS", "0")
    with pytest.raises(ValidationError, match="max_new_tokens"):
        Settings()


def test_speculative_config_per_method_and_version(tmp_path):
    ngram = Settings(enable_speculative_decoding=True, spec_num_speculative_tokens=3)
    config, note = speculative_config(ngram, None, "0.10.0")
    assert config["method"] == "ngram" and config["num_speculative_tokens"] == 3 and note is None

    (tmp_path / "config.json").write_text("{}")
    draft = Settings(
        enable_speculative_decoding=True, spec_method="draft", draft_model_dir=str(tmp_path)
    )
    assert speculative_config(draft, str(tmp_path), "0.32.0")[0]["model"] == str(tmp_path)
    for before_draft_models in ("0.10.0", "0.14.1"):
        config, note = speculative_config(draft, str(tmp_path), before_draft_models)
        assert config is None and "ngram" in note
    missing = Settings(
        enable_speculative_decoding=True, spec_method="draft", draft_model_dir="/nope"
    )
    config, note = speculative_config(missing, "/nope", "0.32.0")
    assert config is None and "/nope" in note


def test_engine_kwargs_fit_the_installed_vllm():
    import dataclasses

    vllm = pytest.importorskip("vllm", reason="the Python 3.10 run has no vLLM")
    AsyncEngineArgs = vllm.AsyncEngineArgs

    accepted = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    settings = Settings(model_dir="m", vllm_max_num_seqs=7)
    kwargs = engine_kwargs(settings.model, settings.engine, accepted, None, vllm.__version__)
    assert kwargs["max_num_seqs"] == 7 and kwargs["model"] == "m"
    AsyncEngineArgs(**kwargs)  # every keyword is one this vLLM takes
    # vLLM 0.10 spells the request-log switch differently: both map, only one is passed.
    assert ("enable_log_requests" in kwargs) != ("disable_log_requests" in kwargs)


def test_parallel_settings_reach_the_engine_arguments():
    settings = Settings(
        model_dir="m",
        tensor_parallel_size=2,
        pipeline_parallel_size=2,
        data_parallel_size=2,
        distributed_executor_backend="ray",
    )
    kwargs = engine_kwargs(settings.model, settings.engine, set(SETTING_OF_KEYWORD), None, "0")
    assert (
        kwargs.items()
        >= {
            "tensor_parallel_size": 2,
            "pipeline_parallel_size": 2,
            "data_parallel_size": 2,
            "distributed_executor_backend": "ray",
        }.items()
    )
    assert Settings(tensor_parallel_size="auto").tensor_parallel_size == "auto"
    for wrong in ({"tensor_parallel_size": 0}, {"distributed_executor_backend": "slurm"}):
        with pytest.raises(ValidationError):
            Settings(**wrong)


def test_ray_mode_engine_arguments_are_ones_this_vllm_takes():
    import dataclasses

    vllm = pytest.importorskip("vllm", reason="the Python 3.10 run has no vLLM")
    settings = Settings(model_dir="m", pipeline_parallel_size=2, distributed_executor_backend="ray")
    accepted = {f.name for f in dataclasses.fields(vllm.AsyncEngineArgs)}
    kwargs = engine_kwargs(settings.model, settings.engine, accepted, None, vllm.__version__)
    args = vllm.AsyncEngineArgs(**kwargs)
    assert (args.pipeline_parallel_size, args.distributed_executor_backend) == (2, "ray")


def test_cpu_workers_each_get_their_own_cores():
    assert cpu_threads_binding(2, [0, 1]) == "0|1"
    assert cpu_threads_binding(2, [0, 1, 2, 3, 4]) == "0,1|2,3"
    with pytest.raises(ValueError, match="need a core each"):
        cpu_threads_binding(4, [0, 1])


def test_auto_tensor_parallel_is_one_on_a_host_without_gpus():
    pytest.importorskip("torch", reason="the Python 3.10 run has no torch")
    assert tensor_parallel_size(Settings(tensor_parallel_size="auto")) == 1
    assert tensor_parallel_size(Settings(tensor_parallel_size=3)) == 3


def test_the_groups_split_the_settings_without_overlap():
    from qaserve.settings import GROUPS

    fields = [name for group in GROUPS for name in group.model_fields]
    assert len(fields) == len(set(fields)), "a setting is in two groups"
    assert set(fields) | {"profile"} == set(Settings.model_fields)
    settings = Settings(vllm_max_num_seqs=7, max_new_tokens=9, warmup_repeat=3)
    assert settings.engine.vllm_max_num_seqs == 7 and not hasattr(settings.engine, "max_new_tokens")
    assert settings.generation.max_new_tokens == 9 and settings.warmup.warmup_repeat == 3
