"""Make docs/record-page.png: the review page of a bundled record with a flagged quote, and
docs/quote-on-page.png: a quote of it highlighted on the paper's page, in headless Chromium. Run from the repository: .venv/bin/python docs/make_screenshot.py"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from playwright.sync_api import sync_playwright  # noqa: E402
from test_review import stored  # noqa: E402
from test_web_browser import CHROMIUM_ARGS  # noqa: E402
from webserver import ReviewServer  # noqa: E402

from pipeline.team.store import Store  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        db = Path(scratch) / "claims.db"
        [record_id] = stored(db, "misbehaving-fabricated-quote")
        with ReviewServer(Store(db)) as server, sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{server.url}/records/{record_id}")
            page.screenshot(path=str(ROOT / "docs" / "record-page.png"), full_page=False)
            page.locator("text=Findings:").scroll_into_view_if_needed()
            page.screenshot(path=str(ROOT / "docs" / "record-page-findings.png"), full_page=False)
            # a quote across a hyphenated line break (page 4, which shows no one's e-mail address)
            page.goto(f"{server.url}/records/{record_id}/quotes/4")
            page.wait_for_load_state("load")
            mark = page.locator(".hl").last.bounding_box()
            assert mark is not None
            clip = {"x": 0, "y": mark["y"] - 330, "width": 1200, "height": 420}
            page.screenshot(path=str(ROOT / "docs" / "quote-on-page.png"), full_page=True, clip=clip)
            browser.close()
    print("wrote docs/record-page.png, docs/record-page-findings.png and docs/quote-on-page.png")


if __name__ == "__main__":
    main()
