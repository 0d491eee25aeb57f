"""The tuner's --engine-arg: VLLM_ENGINE_ARGS entries swept as JSON values, each trial's
server started with the environment's VLLM_ENGINE_ARGS and its entries merged in."""

import json

import pytest

from eval.errors import EvalError
from eval.trials import Knobs, grid, json_values, parse_engine_arg_knob, setting_value
from eval.tune import check_arguments, parser


def test_values_are_json_split_only_between_complete_values():
    assert json_values("true,false") == [True, False]
    assert json_values('{"level": 3, "cudagraph_capture_sizes": [1, 2]},{"level":0}') == [
        {"level": 3, "cudagraph_capture_sizes": [1, 2]},
        {"level": 0},
    ]
    assert json_values('[1,2,4], 8, "a,b", FLASH_ATTN, null') == [
        [1, 2, 4],
        8,
        "a,b",
        "FLASH_ATTN",
        None,
    ]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ('compilation_config={"level":3', "Expecting"),
        ('compilation_config={"level":3}{"level":0}', "expected a comma"),
        ("async_scheduling=true,,false", "an empty value"),
        ("async_scheduling", "expected NAME=V1,V2"),
        ("max_num_seqs=64,128", "max_num_seqs comes from VLLM_MAX_NUM_SEQS"),
    ],
)
def test_bad_specs_are_refused_with_why(spec, says):
    with pytest.raises(EvalError, match=says):
        parse_engine_arg_knob(spec)


def test_each_trial_server_gets_the_merged_engine_args():
    args = parser().parse_args(
        [
            "--engine",
            "VLLM_MAX_NUM_SEQS=64,128",
            "--engine-arg",
            "async_scheduling=true,false",
            "--engine-arg",
            'compilation_config={"level":3},{"level":0}',
        ]
    )
    check_arguments(args)
    knobs = Knobs(
        budgets=[64],
        rule_budgets={},
        sentences=[0],
        trim_examples=[False],
        system_prompts=["server"],
        start=args.engine,
        engine_args=args.engine_arg,
        base_engine_args={"cuda_graph_sizes": [1024], "async_scheduling": False},
    )
    starts = [dict(trial.start) for trial in grid(knobs)]
    assert len(starts) == 8  # 2 x 2 x 2 servers
    merged = [json.loads(start["VLLM_ENGINE_ARGS"]) for start in starts]
    assert merged[0] == {
        "cuda_graph_sizes": [1024],
        "async_scheduling": True,
        "compilation_config": {"level": 3},
    }
    assert {m["async_scheduling"] for m in merged} == {True, False}
    # As the server reads it.
    assert setting_value("VLLM_ENGINE_ARGS", starts[0]["VLLM_ENGINE_ARGS"]) == merged[0]
    assert all(start["VLLM_MAX_NUM_SEQS"] in ("64", "128") for start in starts)


def test_an_entry_given_twice_and_the_whole_variable_are_refused():
    twice = parser().parse_args(["--engine-arg", "a=1", "--engine-arg", "a=2"])
    with pytest.raises(EvalError, match="--engine-arg: a given more than once"):
        check_arguments(twice)
    with pytest.raises(SystemExit):
        parser().parse_args(["--engine", 'VLLM_ENGINE_ARGS={"a":1}'])
