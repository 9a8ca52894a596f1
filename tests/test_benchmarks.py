"""Every benchmark under bench/ runs, in its quick mode (a few inputs, a few seconds), so none can
rot unnoticed: each prints its figures and ends well. The figures themselves are the README's,
measured with the full runs; no test asserts a timing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

QUICK = {
    # script: (arguments, a line its output must hold)
    "batch.py": (["--quick"], "unchanged re-run:"),
    "degenerate.py": (["--quick"], "faithful records (3): 0 free-text fields flagged"),
    "extractors.py": (["--quick"], "TOTAL pdfium"),
    "faithfulness.py": (["--quick"], "direction on the project's own passages: macro-F1"),
    "login_flood.py": (["--quick", "--flooders", "4"], "p50 under the flood / alone"),
    "models.py": ([], "quotes grounded:"),
    "pages.py": (["--quick"], "first render of a page"),
    "probes.py": (["--quick"], "tried 5, held 5, lost 0"),
    "review_queue.py": (["--quick"], "p95"),
    "site.py": (["--quick"], "one claim changed:"),
    "workers.py": (["--quick"], "2 batches at once on SQLite"),
}


def test_every_benchmark_has_a_quick_run() -> None:
    assert sorted(QUICK) == sorted(path.name for path in (ROOT / "bench").glob("*.py"))


@pytest.mark.parametrize("script", sorted(QUICK))
def test_the_benchmark_runs_in_its_quick_mode(script: str) -> None:
    arguments, expected = QUICK[script]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *arguments], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert expected in done.stdout, done.stdout[-2000:]
