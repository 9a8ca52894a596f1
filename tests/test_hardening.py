"""Issue 11's probes, each a test: a hostile page, a hostile file, a second writer, a clumsy
user. The probes themselves live in `probes.py`, which `bench/probes.py` also runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from probes import PROBES, Scratch


@pytest.mark.parametrize("name", list(PROBES))
def test_probe_holds(name: str, tmp_path: Path) -> None:
    outcome = PROBES[name](Scratch(tmp_path))
    assert outcome.held, outcome.detail
