"""Regenerate the Python code for proto/ into client/ (or into another folder).

    python scripts/gen_protos.py            # rewrite client/streamstats/v1/
    python scripts/gen_protos.py --out DIR  # write DIR/streamstats/v1/ (the stale-stubs test)

The proto lives at proto/streamstats/v1/, so generated modules import each
other as ``from streamstats.v1 import ...``: the same path the SDK package
installs under, which keeps the generated imports working once installed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUT = ROOT / "client"
GENERATED_PACKAGE = Path("streamstats") / "v1"
_INIT = (
    '"""Generated protobuf and gRPC code for streamstats.v1 (do not edit; see scripts/gen_protos.py)."""\n'
)


def _plugin(name: str) -> str:
    """The path of a protoc plugin installed beside this interpreter."""
    found = Path(sys.executable).parent / name
    if not found.exists():
        found_on_path = shutil.which(name)
        if found_on_path is None:
            raise SystemExit(f"{name} not found: install the dev extras (pip install -e '.[dev]')")
        return found_on_path
    return str(found)


def generate(out: Path) -> list[Path]:
    """Generate code for every .proto under proto/ into ``out``; return the files written."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    target = out / GENERATED_PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    for stale in list(target.glob("*_pb2*.py")) + list(target.glob("*_pb2*.pyi")):
        stale.unlink()
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (target / "__init__.py").write_text(_INIT)
    return sorted(p for p in target.iterdir() if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write streamstats/v1/ into")
    ns = parser.parse_args()
    for path in generate(ns.out):
        print(path.relative_to(ns.out))


if __name__ == "__main__":
    main()
