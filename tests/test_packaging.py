"""`pip install .` must give a working `claims`: the wheel carries the prompts and the schema."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT, RUNS


def test_wheel_ships_prompts_and_schema_and_runs_from_them(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = tmp_path.glob("claims-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "pipeline/prompts/extract.md",
        "pipeline/prompts/draft.md",
        "pipeline/prompts/grade.md",
        "pipeline/prompts/repair.md",
        "pipeline/prompts/stance.md",
        "pipeline/prompts/synthesis.md",
        "pipeline/prompts/plain_language.md",
        "pipeline/schemas/claim_record.schema.json",
        "pipeline/prices.json",
        "pipeline/templates/record.html",
        "pipeline/templates/base.html",
    ):
        assert shipped in names
    assert any(name.endswith("entry_points.txt") for name in names)
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    # Run from the unpacked wheel, away from the source tree, as an installed copy would.
    env = {**os.environ, "PYTHONPATH": str(installed)}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    replay = subprocess.run(
        [sys.executable, "-m", "pipeline", "replay", str(RUNS / "siervo-2016-nitrate")],
        capture_output=True,
        text=True,
        cwd=outside,
        env=env,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import pipeline.core.resources as r; print(r.record_schema_path())"],
        capture_output=True,
        text=True,
        cwd=outside,
        env=env,
    )
    assert probe.stdout.strip().startswith(str(installed))
