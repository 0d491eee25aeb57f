"""Run inside a fresh network namespace: start the server, call it, print what it said.

``unshare -n sh -c 'ip link set lo up && exec python -m tests.offline_run LOG'``: the
namespace has only loopback, so the server cannot reach anything else. The server's
settings come from the environment; the answers go to stdout as one JSON object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from devtools.launcher import Server


def main(log_path: str) -> None:
    with Server({}, Path(log_path)) as server, httpx.Client(base_url=server.url) as http:
        health = http.get("/", timeout=30)
        answer = http.post("/predict", json={"prompt": "什么是warp？"}, timeout=300)
        info = http.get("/info", timeout=30).json()
        print(
            json.dumps(
                {
                    "health": [health.status_code, health.json()],
                    "predict": [answer.status_code, answer.json()],
                    "backend": info["backend"],
                    "model": info["model"],
                }
            )
        )


if __name__ == "__main__":
    main(sys.argv[1])
