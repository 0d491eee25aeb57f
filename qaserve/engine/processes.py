"""Engine processes die with the server: the kernel's parent-death signal.

vLLM reaps its engine processes only on a clean exit; a server killed by SIGKILL or the
OOM killer would leave them holding the GPU. ``die_with_parent`` arms the signal in a
child: at fork (``engine_processes_die_with_this_process``) or, in a spawned process,
when it imports serve.py as ``__mp_main__``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_armed_for: int | None = None


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process as soon as its parent ends."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)


def engine_processes_die_with_this_process() -> None:
    """Arm the parent-death signal in every child this process forks from now on.

    Forked children only: a spawned child (vLLM spawns on CPU, and wherever CUDA is already
    initialized) is a new interpreter; serve.py arms it when the child imports it.
    """
    global _armed_for
    if _armed_for == os.getpid():
        return
    _armed_for = server_pid = os.getpid()

    def in_child() -> None:
        # Only the server's own children: an engine process's children follow it anyway.
        if os.getppid() == server_pid:
            die_with_parent()

    os.register_at_fork(after_in_child=in_child)


def kill_child_processes() -> None:
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=5)
