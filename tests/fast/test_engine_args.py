"""VLLM_ENGINE_ARGS and the engine arguments the settings build: parsed and checked before
any engine starts, each setting either reaching vLLM or refused aloud."""

import dataclasses
import logging

import pytest
from pydantic import ValidationError

from qaserve.engine import factory, start_ladder
from qaserve.engine.types import EngineConfigError, EngineStart
from qaserve.engine.vllm_backend import (
    HELD_STEPS_SCHEDULER,
    SETTING_OF_KEYWORD,
    VllmEngine,
    engine_kwargs,
    hold_refusal,
)
from qaserve.settings import Settings

# Every keyword the settings build, the request-log switches and one argument beyond them.
ALL_NAMED = set(SETTING_OF_KEYWORD) | {"disable_log_requests", "enable_log_requests"}
FAKE_ACCEPTED = ALL_NAMED | {"async_scheduling", "compilation_config", "scheduler_cls"}


def kwargs_for(settings: Settings, accepted: set[str], version: str = "9.9.0") -> dict:
    return engine_kwargs(settings.model, settings.engine, accepted, None, version)


def test_the_variable_is_a_json_object(monkeypatch):
    monkeypatch.setenv(
        "VLLM_ENGINE_ARGS", '{"async_scheduling": true, "compilation_config": {"level": 3}}'
    )
    assert Settings().vllm_engine_args == {
        "async_scheduling": True,
        "compilation_config": {"level": 3},
    }
    monkeypatch.setenv("VLLM_ENGINE_ARGS", "")
    assert Settings().vllm_engine_args == {}
    for wrong in ('{"async_scheduling": tru}', '["async_scheduling"]', "3"):
        monkeypatch.setenv("VLLM_ENGINE_ARGS", wrong)
        with pytest.raises(ValidationError, match="VLLM_ENGINE_ARGS"):
            Settings()


def test_entries_reach_the_engine_over_the_server_defaults():
    extra = {"async_scheduling": True, "compilation_config": {"level": 0}}
    kwargs = kwargs_for(Settings(model_dir="m", vllm_engine_args=extra), FAKE_ACCEPTED)
    assert kwargs["async_scheduling"] is True and kwargs["compilation_config"] == {"level": 0}
    assert kwargs["model"] == "m"
    # The request logs stay off unless the variable turns them on.
    assert kwargs["enable_log_requests"] is False
    loud = Settings(vllm_engine_args={"enable_log_requests": True})
    assert kwargs_for(loud, FAKE_ACCEPTED)["enable_log_requests"] is True


@pytest.mark.parametrize(
    ("key", "setting"),
    [
        ("max_model_len", "MAX_MODEL_LEN"),
        ("max_num_seqs", "VLLM_MAX_NUM_SEQS"),
        ("dtype", "DTYPE"),
        ("scheduling_policy", "SCHEDULING_POLICY"),
    ],
)
def test_a_key_a_setting_builds_is_refused_with_both_names(key, setting):
    settings = Settings(vllm_engine_args={key: 1, "async_scheduling": True})
    with pytest.raises(EngineConfigError, match=f"{key} comes from the setting {setting}"):
        kwargs_for(settings, FAKE_ACCEPTED)


def test_the_scheduling_policy_reaches_the_engine():
    assert kwargs_for(Settings(), FAKE_ACCEPTED)["scheduling_policy"] == "priority"
    fcfs = Settings(scheduling_policy="fcfs")
    assert kwargs_for(fcfs, FAKE_ACCEPTED)["scheduling_policy"] == "fcfs"
    with pytest.raises(ValidationError, match="scheduling_policy"):
        Settings(scheduling_policy="lifo")


def test_a_name_this_vllm_lacks_is_refused_with_the_version():
    settings = Settings(vllm_engine_args={"async_schedulin": True, "no_such_arg": 1})
    with pytest.raises(EngineConfigError) as refused:
        kwargs_for(settings, FAKE_ACCEPTED, version="0.10.0")
    message = str(refused.value)
    assert "vLLM 0.10.0" in message and "no_such_arg" in message
    assert "async_schedulin (did you mean async_scheduling?)" in message


def test_a_setting_this_vllm_lacks_warns_at_its_default_and_fails_when_set(caplog):
    lacking = FAKE_ACCEPTED - {"kv_cache_dtype", "disable_log_requests"}
    with caplog.at_level(logging.WARNING, logger="qaserve.engine.vllm_backend"):
        kwargs = kwargs_for(Settings(), lacking, version="0.0.1")
    assert "kv_cache_dtype" not in kwargs
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "vLLM 0.0.1 has no engine argument kv_cache_dtype: left out "
        "(KV_CACHE_DTYPE is at its default)"
    ]  # the log switch: expected, silent
    # Set to its default value: running without it is what was asked.
    assert "kv_cache_dtype" not in kwargs_for(Settings(kv_cache_dtype="auto"), lacking)
    with pytest.raises(EngineConfigError, match=r"vLLM 0.0.1 .* KV_CACHE_DTYPE='fp8'"):
        kwargs_for(Settings(kv_cache_dtype="fp8"), lacking, version="0.0.1")


def test_a_setting_the_environment_sets_counts_as_set(monkeypatch):
    monkeypatch.setenv("QUANTIZATION", "fp8")
    with pytest.raises(EngineConfigError, match="QUANTIZATION='fp8'"):
        kwargs_for(Settings(), FAKE_ACCEPTED - {"quantization"})


def test_a_configuration_error_neither_retries_nor_falls_back(monkeypatch, tmp_path):
    calls = []

    def refuse(start):
        calls.append(start)
        raise EngineConfigError("VLLM_ENGINE_ARGS: no_such_arg")

    monkeypatch.setattr(VllmEngine, "start", refuse)
    start = EngineStart.of(Settings(model_dir=str(tmp_path)))
    with pytest.raises(EngineConfigError):
        start_ladder.start_vllm(start)
    assert len(calls) == 1
    monkeypatch.setattr(start_ladder, "start_vllm", refuse)
    with pytest.raises(EngineConfigError, match="no_such_arg"):
        factory.start_engine(start)  # USE_VLLM=auto, which falls back from a failed start


@pytest.mark.judge_stack
def test_the_installed_vllm_takes_its_own_arguments_and_refuses_others():
    vllm = pytest.importorskip("vllm")
    accepted = {f.name for f in dataclasses.fields(vllm.AsyncEngineArgs)}
    settings = Settings(model_dir="m", vllm_engine_args={"max_logprobs": 7})
    kwargs = kwargs_for(settings, accepted, vllm.__version__)
    assert vllm.AsyncEngineArgs(**kwargs).max_logprobs == 7
    # vLLM 0.10 spells the request-log switch differently: one of the two is passed.
    assert ("enable_log_requests" in kwargs) != ("disable_log_requests" in kwargs)
    wrong = Settings(vllm_engine_args={"no_such_arg": 1})
    with pytest.raises(EngineConfigError) as refused:
        kwargs_for(wrong, accepted, vllm.__version__)
    assert "no_such_arg" in str(refused.value)
    assert f"vLLM {vllm.__version__}'s AsyncEngineArgs" in str(refused.value)


def test_steps_are_held_unless_stats_or_an_engine_argument_may_add_to_them(monkeypatch):
    """Holding answers' steps in the engine (held_steps.py, through vLLM's scheduler_cls) is
    on by default and with the GPU arguments docs/competition.md names; stats logging, an
    argument that may add to every step's output, or a scheduler of one's own keeps each
    step going out, and /info says which."""
    assert hold_refusal(Settings().engine) is None
    assert kwargs_for(Settings(), FAKE_ACCEPTED)["scheduler_cls"] == HELD_STEPS_SCHEDULER
    gpu = '{"async_scheduling": true, "compilation_config": {"level": 3}, "cuda_graph_sizes": [8]}'
    monkeypatch.setenv("VLLM_ENGINE_ARGS", gpu)
    assert hold_refusal(Settings().engine) is None
    monkeypatch.setenv("VLLM_ENGINE_ARGS", '{"enable_return_routed_experts": true}')
    assert "VLLM_ENGINE_ARGS names enable_return_routed_experts" in hold_refusal(Settings().engine)
    own = "my.Scheduler"
    monkeypatch.setenv("VLLM_ENGINE_ARGS", f'{{"scheduler_cls": "{own}"}}')
    assert "names scheduler_cls" in hold_refusal(Settings().engine)
    assert kwargs_for(Settings(), FAKE_ACCEPTED)["scheduler_cls"] == own
    monkeypatch.setenv("VLLM_ENGINE_ARGS", "{}")
    monkeypatch.setenv("LOG_ENGINE_STATS", "1")
    assert hold_refusal(Settings().engine).startswith("LOG_ENGINE_STATS=1")
    assert "scheduler_cls" not in kwargs_for(Settings(), FAKE_ACCEPTED)
