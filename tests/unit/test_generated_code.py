"""The committed generated code is exactly what scripts/gen_protos.py makes from proto/ today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "client" / "streamstats" / "v1"


def test_committed_stubs_match_a_fresh_regeneration(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = tmp_path / "streamstats" / "v1"
    fresh_files = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed_files = sorted(p.name for p in COMMITTED.iterdir() if p.is_file())
    assert fresh_files == committed_files, "run `make proto` and commit the result"
    stale = [name for name in fresh_files if (fresh / name).read_bytes() != (COMMITTED / name).read_bytes()]
    assert stale == [], f"stale generated code {stale}: run `make proto` and commit the result"


def test_generated_modules_import_by_package_path() -> None:
    source = (COMMITTED / "streamstats_pb2_grpc.py").read_text()
    assert "from streamstats.v1 import streamstats_pb2" in source
    assert "\nimport streamstats_pb2" not in source
