"""Container health check: exit 0 when ``GET /`` answers on the configured port.

``python -m qaserve.healthcheck`` (the Dockerfile's exec-form HEALTHCHECK): the port
comes from the settings, so a changed PORT needs no change to the Dockerfile.
"""

from __future__ import annotations

import sys
import urllib.request

from qaserve.settings import get_settings


def main() -> int:
    url = f"http://127.0.0.1:{get_settings().server.port}/"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
