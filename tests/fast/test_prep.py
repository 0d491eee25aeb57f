"""The model tools' pieces that the server shares: the prompt settings read as served."""

import pytest

from prep.quantize import PromptSettings
from qaserve.settings import Settings


@pytest.mark.parametrize(
    "env",
    [{}, {"SYSTEM_PROMPT": ""}, {"system_prompt": "你是助教。", "ENABLE_THINKING": "true"}],
)
def test_the_quantizer_reads_the_prompt_settings_as_the_server_does(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    served = Settings()
    prompt = PromptSettings()
    assert (prompt.system_prompt, prompt.enable_thinking) == (
        served.system_prompt,
        served.enable_thinking,
    )
