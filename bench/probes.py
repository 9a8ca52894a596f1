"""Replay every hardening probe of issue 11 and print tried / held / lost.

    python bench/probes.py [--quick]      (--quick: the first five probes)

Each probe (in tests/probes.py) tries one thing an attacker or a clumsy user would: a page on a
foreign host name, raw HTML in an export, a stale edit, /dev/zero as a PDF, a tampered record id,
a full disk, and so on; it holds when the command refuses in one line and loses nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from probes import main  # noqa: E402

if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
