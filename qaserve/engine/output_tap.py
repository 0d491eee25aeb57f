"""A tee on stdout and stderr (file descriptors 1 and 2), so that vLLM's start-up errors
can be read back.

vLLM's engine core runs in a child process; when it fails to start, the parent gets only
"Engine core initialization failed. See root cause above", and the root cause (which
names the memory that was free, or the longest context that fits) is a line that the
child logged (vLLM logs to stdout). The tap puts a pipe on each descriptor before the
engine starts, so the children inherit them; a thread per pipe copies every byte to the
original descriptor, unchanged and at once, and keeps the recent lines for the ladder.
Once the engine is up, this process writes to its files directly again.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

KEPT_LINES = 2000
TAPPED = (1, 2)


class OutputTap:
    """``with OutputTap() as tap``: this process's stdout and stderr go through the tap
    inside the block and straight to their files again after it. The processes started
    inside keep writing into the pipes, whose threads go on copying for as long as they do.
    """

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=KEPT_LINES)
        self._count = 0  # lines seen so far, kept or not
        self._lock = threading.Lock()
        self._originals: dict[int, int] = {}

    def __enter__(self) -> OutputTap:
        for fd in TAPPED:
            read_end, write_end = os.pipe()
            self._originals[fd] = original = os.dup(fd)
            os.dup2(write_end, fd)
            os.close(write_end)
            threading.Thread(target=self._copy, args=(read_end, original), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        # This process's own last words (at exit, perhaps by a signal) must not wait in a
        # pipe whose thread dies with it.
        for fd, original in self._originals.items():
            os.dup2(original, fd)

    def _copy(self, read_end: int, original: int) -> None:
        partial = b""
        while chunk := os.read(read_end, 65536):
            written = 0
            while written < len(chunk):
                written += os.write(original, chunk[written:])
            *whole, partial = (partial + chunk).split(b"\n")
            with self._lock:
                for line in whole:
                    self._lines.append(line.decode("utf-8", "replace"))
                    self._count += 1

    def mark(self) -> int:
        """A position in the output, for ``since``."""
        with self._lock:
            return self._count

    def since(self, mark: int, quiet_seconds: float = 0.3, limit_seconds: float = 3.0) -> str:
        """The lines written after ``mark`` (the last KEPT_LINES at most), once the output
        has been quiet for ``quiet_seconds``: a failing child's last words may still be
        on their way through the pipe when its parent already has the exception."""
        deadline = time.monotonic() + limit_seconds
        seen = -1
        while seen != self.mark() and time.monotonic() < deadline:
            seen = self.mark()
            time.sleep(quiet_seconds)
        with self._lock:
            fresh = min(self._count - mark, len(self._lines))
            return "\n".join(list(self._lines)[len(self._lines) - fresh :])
