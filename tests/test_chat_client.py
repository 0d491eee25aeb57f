"""The terminal chat client, driven through a pseudo-terminal as a person would use it."""

import sys

import pexpect

from devtools.launcher import ROOT
from tests.constants import API_KEYS


def test_terminal_chat_streams_answers_and_switches_mode(server):
    chat = pexpect.spawn(
        sys.executable,
        ["-m", "clients.chat", "--max-tokens", "8"],
        cwd=str(ROOT),
        env={"QASERVE_URL": server.url, "QASERVE_API_KEY": API_KEYS[0], "PATH": ""},
        encoding="utf-8",
        timeout=120,
    )
    try:
        chat.expect("mode fast")
        chat.expect("you> ")
        chat.sendline("什么是warp？")
        chat.expect("bot> (.+)\r\n")
        assert chat.match.group(1).strip()
        chat.expect("you> ")
        chat.sendline("/mode slow")
        chat.expect("mode: slow")
        chat.sendline("再说一遍")
        chat.expect(r"\[thinking\] ")
        chat.expect("you> ")
        chat.sendline("/exit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close(force=True)
    assert chat.exitstatus == 0
