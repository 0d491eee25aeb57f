"""The requirements an installed distribution declares for this interpreter (markers
evaluated, extras left out), one per line, minus the names given: what
scripts/setup_judge_venv.sh installs beside a wheel it installed with --no-deps.

    python declared_requirements.py DIST [EXCLUDED_NAME ...]
"""

from __future__ import annotations

import sys
from importlib.metadata import requires

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def declared(dist: str, excluded: set[str]) -> list[str]:
    chosen = []
    for line in requires(dist) or []:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) in excluded:
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            requirement.marker = None
            chosen.append(str(requirement))
    return chosen


if __name__ == "__main__":
    print("\n".join(declared(sys.argv[1], {canonicalize_name(n) for n in sys.argv[2:]})))
