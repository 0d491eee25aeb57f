"""Every module the serving image carries imports on this interpreter (the test command
also runs this folder under Python 3.10, the evaluation image's Python)."""

import importlib
import pkgutil

import pytest

import qaserve

# Left out of the image (.dockerignore); they need the client packages.
NOT_SERVED = ("qaserve.clients", "qaserve.devtools")
SERVED = sorted(
    m.name
    for m in pkgutil.walk_packages(qaserve.__path__, prefix="qaserve.")
    if not m.name.startswith(NOT_SERVED)
)


def test_the_serving_package_is_found_whole():
    assert {"qaserve.app", "qaserve.api.openai.serving", "qaserve.engine.vllm_backend"} <= set(
        SERVED
    )


@pytest.mark.parametrize("module", SERVED)
def test_serving_module_imports(module):
    importlib.import_module(module)
