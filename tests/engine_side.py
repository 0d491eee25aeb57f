"""What a test reads about the vLLM behind a server: its release (from /info) and its
processes, found by their place in the tree (current releases name them EngineCore_DP0 and
Worker_TP0; 0.10 leaves every title "python")."""

from __future__ import annotations

import psutil

from devtools.launcher import Server


def release(info: dict) -> tuple[int, int]:
    """(major, minor) of the server's vLLM, from its /info."""
    major, minor = info["vllm_version"].split(".")[:2]
    return int(major), int(minor)


def _engine_children(process: psutil.Process) -> list[psutil.Process]:
    """The children vLLM started, without multiprocessing's resource tracker."""
    return [
        child
        for child in process.children()
        if "multiprocessing.resource_tracker" not in " ".join(child.cmdline())
    ]


def engine_core(server: Server) -> psutil.Process:
    (core,) = _engine_children(psutil.Process(server.proc.pid))
    return core


def engine_workers(server: Server) -> list[psutil.Process]:
    """The engine core's workers (one per tensor-parallel rank with the mp executor)."""
    return _engine_children(engine_core(server))
