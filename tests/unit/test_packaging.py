"""The wheel carries what an installed sipguard needs outside the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_the_numbering_plan(tmp_path: Path) -> None:
    """Built and unpacked away from the repository, the package finds its plan (the
    repository's link becomes a copy of configs/numbering_plan.yaml)."""
    source = tmp_path / "src"  # a clean copy: no build/ left over from an earlier build
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    for name in ("proxy", "stir_shaken", "configs"):
        shutil.copytree(
            ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("sipguard-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    shipped = unpacked / "proxy" / "policy" / "numbering_plan.yaml"
    assert shipped.read_bytes() == (ROOT / "configs" / "numbering_plan.yaml").read_bytes()
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from proxy.policy.plan import SHIPPED_PLAN, NumberingPlan;"
            "print(SHIPPED_PLAN); NumberingPlan.load()",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert Path(found.stdout.strip()) == shipped
