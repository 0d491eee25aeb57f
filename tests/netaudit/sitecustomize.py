"""Record every network call a Python process makes (tests only, loaded via PYTHONPATH).

Each ``socket.connect``, ``socket.getaddrinfo``, ``socket.sendto`` and ``socket.sendmsg``
audit event becomes one JSON line in the file ``NETAUDIT_LOG`` names, with the process id,
so a test can show that a server (and every process it spawns) never tried to reach out.
A first line per process (event ``audit.start``, with its command line) shows which
processes were watched.
"""

import json
import os
import socket
import sys

_LOG = os.environ.get("NETAUDIT_LOG")
_EVENTS = {"socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg"}


def _target(event: str, args: tuple) -> object:
    if event == "socket.getaddrinfo":
        return args[0]  # the host name being resolved
    address = args[1]
    if isinstance(args[0], socket.socket) and args[0].family == socket.AF_UNIX:
        return {"unix": os.fsdecode(address) if address else ""}
    return list(address) if isinstance(address, tuple) else address


def _write(event: str, target: object) -> None:
    line = json.dumps({"pid": os.getpid(), "event": event, "target": target})
    with open(_LOG, "a", encoding="utf-8") as log:
        log.write(line + "\n")


def _record(event: str, args: tuple) -> None:
    if event in _EVENTS:
        _write(event, _target(event, args))


if _LOG:
    _write("audit.start", sys.orig_argv)
    sys.addaudithook(_record)
