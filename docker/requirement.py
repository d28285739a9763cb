"""Print the requirement for one package as pyproject.toml's optional dependencies pin it.

    python requirement.py pyproject.toml locust      # -> locust==2.47.0

docker/locust.Dockerfile installs locust with it, so the image runs the same locust as `pip install -e
'.[dev]'` and the version lives in one place. Exits 1 if no extra names the package.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def find_requirement(pyproject: Path, package: str) -> str | None:
    """The first requirement for ``package`` in [project.optional-dependencies], or None."""
    with pyproject.open("rb") as f:
        extras: dict[str, list[str]] = tomllib.load(f)["project"].get("optional-dependencies", {})
    for requirements in extras.values():
        for requirement in requirements:
            match = _NAME.match(requirement)
            if match and _normalize(match.group(1)) == _normalize(package):
                return requirement
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 2:
        print("usage: requirement.py PYPROJECT PACKAGE", file=sys.stderr)
        return 2
    requirement = find_requirement(Path(args[0]), args[1])
    if requirement is None:
        print(f"{args[0]}: no optional dependency names {args[1]}", file=sys.stderr)
        return 1
    print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
