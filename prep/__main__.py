"""``python -m prep download|quantize|upload ...`` (``--help`` on each)."""

from __future__ import annotations

import logging
import sys

from prep import download, quantize, upload

COMMANDS = {"download": download.run, "quantize": quantize.run, "upload": upload.run}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m prep {{{','.join(COMMANDS)}}} [--help]", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
