"""Read what tests/netaudit recorded and pick out calls that left loopback."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def stays_local(record: dict) -> bool:
    target = record["target"]
    if isinstance(target, dict):  # a Unix socket
        return True
    if record["event"] == "socket.getaddrinfo":
        return target in LOOPBACK_NAMES
    host = target[0] if isinstance(target, list) else target
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in LOOPBACK_NAMES


def recorded_calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def calls_beyond_loopback(records: list[dict]) -> list[dict]:
    calls = (record for record in records if record["event"].startswith("socket."))
    return [record for record in calls if not stays_local(record)]


def audited_commands(records: list[dict]) -> list[str]:
    """The command line of every process the audit hook was loaded into."""
    return [" ".join(r["target"]) for r in records if r["event"] == "audit.start"]
