"""Every module the serving image carries imports on this interpreter (the test command
also runs this folder under Python 3.10, the evaluation image's Python): the whole of
qaserve/ and prep/ (the Dockerfile copies both; the chat clients and dev tools, which need
the client packages, are top-level packages of their own and stay out)."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import prep
import qaserve
from devtools.launcher import ROOT

SERVED = sorted(
    m.name
    for package in (qaserve, prep)
    for m in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
)
PREP = [name for name in SERVED if name.startswith("prep.")]
# Imported only inside the functions that use them: none of them is in the serving image.
HEAVY = ("modelscope", "peft", "transformers", "llmcompressor", "torch", "datasets")


def test_the_serving_package_is_found_whole():
    assert {"qaserve.app", "qaserve.api.openai.serving", "qaserve.engine.vllm_backend"} <= set(
        SERVED
    )
    assert {"prep.manifest", "prep.adapters", "prep.datafile", "prep.chat", "prep.download"} <= set(
        PREP
    )


@pytest.mark.parametrize("module", SERVED)
def test_serving_module_imports(module):
    importlib.import_module(module)


def test_prep_imports_neither_qaserve_nor_a_heavy_library():
    """The direction is qaserve -> prep; and importing prep needs only pydantic."""
    probe = f"import sys; import {', '.join(PREP)}; print(*sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    top = {name.split(".")[0] for name in loaded}
    assert "qaserve" not in top
    assert top.isdisjoint(HEAVY)
