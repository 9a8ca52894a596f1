"""`claims site DIR`: the approved claims as a static website. Only what `claims export` publishes
is on it; every internal link resolves; an unchanged claim is not rewritten and a claim that left
the export leaves the site; each claim page carries ClaimReview markup; a quote is shown on its
page where the study's licence allows. The browser test reads the site as a visitor would."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import RUNS, claims

from pipeline.llm.recording import load_recording, recorded_pdf
from pipeline.review import decisions
from pipeline.review.publish import build_site
from pipeline.sources.pdf import read_pdf
from pipeline.team.store import Store

BASE = "https://claims.example.org"
CC_BY = "https://creativecommons.org/licenses/by/2.0/"


def store_with(db: Path, *names: str, licence: str | None = None) -> tuple[Store, list[str]]:
    store, ids = Store(db), []
    for name in names:
        recording, record = load_recording(RUNS / name)
        assert record is not None
        if licence:
            record.studies[0].reference.licence = licence
        pdf = recorded_pdf(RUNS / name, recording)
        ids.append(store.add(record, source_pages=read_pdf(pdf).pages, pdf=pdf.read_bytes()))
    return store, ids


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value and not value.startswith(("http:", "https:", "#", "mailto:")):
                self.found.append(value)


def broken_links(site: Path) -> list[str]:
    broken = []
    for page in site.rglob("*.html"):
        parser = _Links()
        parser.feed(page.read_text())
        for link in parser.found:
            if not (page.parent / link.split("#")[0]).resolve().is_file():
                broken.append(f"{page.relative_to(site)} -> {link}")
    return broken


def test_the_site_holds_only_approved_claims_and_every_link_resolves(tmp_path: Path) -> None:
    store, (approved, draft, rejected) = store_with(
        tmp_path / "s.db", "huang-2010-hpylori-iron", "siervo-2016-nitrate", "datta-2010-dvt-prophylaxis"
    )
    decisions.approve(store, approved, 1, "maria", "quotes checked")
    decisions.reject(store, rejected, 1, "maria", "overstated")
    report = build_site(store, tmp_path / "site", BASE, "Claims we checked")
    site = tmp_path / "site"
    assert report.claims == 1 and (site / "claims" / f"{approved}.html").is_file()
    assert not list(site.rglob(f"{draft}*")) and not list(site.rglob(f"{rejected}*"))
    assert broken_links(site) == []
    page = (site / "claims" / f"{approved}.html").read_text()
    [markup] = re.findall(r'<script type="application/ld\+json">(.*?)</script>', page, re.S)
    review_markup = json.loads(markup)
    assert review_markup["@type"] == "ClaimReview" and review_markup["claimReviewed"].startswith("In people with")
    assert review_markup["reviewRating"]["ratingValue"] == 2  # low certainty
    assert review_markup["itemReviewed"]["appearance"][0]["sameAs"] == "https://doi.org/10.1136/pgmj.2009.089987"
    assert f'<link rel="canonical" href="{BASE}/claims/{approved}.html">' in page
    assert "Reviewed and approved by maria" in page and "Gold Standard Evidence Needed" in page
    assert json.loads((site / "claims" / f"{approved}.json").read_text())["record_id"] == approved
    assert f"{BASE}/claims/{approved}.html" in (site / "sitemap.xml").read_text()
    assert "<feed" in (site / "feed.xml").read_text() and approved in (site / "feed.xml").read_text()
    [entry] = json.loads((site / "search.json").read_text())
    assert entry["verdict"] == "supported" and entry["certainty"] == "low"
    study = (site / "studies" / "10-1136-pgmj-2009-089987.html").read_text()
    assert approved in study


def test_a_build_rewrites_only_what_changed_and_removes_what_left(tmp_path: Path) -> None:
    store, (first, second) = store_with(tmp_path / "s.db", "huang-2010-hpylori-iron", "siervo-2016-nitrate")
    for record_id in (first, second):
        decisions.approve(store, record_id, 1, "maria", "checked")
    site = tmp_path / "site"
    build_site(store, site, BASE)
    page = site / "claims" / f"{first}.html"
    os.utime(page, (1_000_000, 1_000_000))
    again = build_site(store, site, BASE)
    assert again.written == 0 and again.removed == 0 and again.unchanged > 0
    assert page.stat().st_mtime == 1_000_000
    decisions.reopen(store, second, 2, "maria", "a second look")
    decisions.reject(store, second, 3, "maria", "the trial was too small for this wording")
    later = build_site(store, site, BASE)
    assert later.removed > 0 and not list(site.rglob(f"{second}*"))
    assert second not in (site / "index.html").read_text() and broken_links(site) == []


def test_a_quote_is_shown_on_its_page_only_where_the_licence_allows(tmp_path: Path) -> None:
    store, (open_record,) = store_with(tmp_path / "open.db", "datta-2010-dvt-prophylaxis", licence=CC_BY)
    decisions.approve(store, open_record, 1, "maria", "checked")
    report = build_site(store, tmp_path / "open", BASE)
    quote = (tmp_path / "open" / "claims" / open_record / "quote-1.html").read_text()
    assert report.images > 0 and '<img class="page"' in quote and 'alt="Page ' in quote
    image = re.search(r'src="([^"]+\.png)"', quote).group(1)  # type: ignore[union-attr]
    assert (tmp_path / "open" / "claims" / open_record / image).read_bytes().startswith(b"\x89PNG")
    store, (closed,) = store_with(tmp_path / "closed.db", "siervo-2016-nitrate")  # Elsevier's user licence
    decisions.approve(store, closed, 1, "maria", "checked")
    shut = build_site(store, tmp_path / "closed", BASE)
    page = (tmp_path / "closed" / "claims" / closed / "quote-1.html").read_text()
    assert shut.images == 0 and "<img" not in page and "does not allow its pages to be shown" in page
    assert "https://doi.org/10.1016/j.nutres.2016.11.004" in page


def test_the_command_builds_and_says_what_it_did(tmp_path: Path, clean_environment: Path, runner: CliRunner) -> None:
    store, (record_id,) = store_with(clean_environment, "huang-2010-hpylori-iron")
    decisions.approve(store, record_id, 1, "maria", "checked")
    built = runner.invoke(claims, ["site", str(tmp_path / "site")])
    assert built.exit_code == 0, built.output
    assert "1 claim(s) and 1 study page(s)" in built.output and "no --base-url" in built.output
    bad = runner.invoke(claims, ["site", str(tmp_path / "site"), "--base-url", "claims.example.org"])
    assert bad.exit_code == 2 and bad.output.startswith("error: --base-url claims.example.org")


@pytest.fixture(scope="module")
def two_claims_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A site of two approved claims whose papers' licence allows their pages to be shown."""
    folder = tmp_path_factory.mktemp("two-claims")
    store, ids = store_with(folder / "s.db", "datta-2010-dvt-prophylaxis", "huang-2010-hpylori-iron", licence=CC_BY)
    for record_id in ids:
        decisions.approve(store, record_id, 1, "maria", "checked")
    build_site(store, folder / "site", BASE)
    return folder / "site", ids


def test_a_visitor_searches_the_index_and_follows_a_quote_to_its_page(
    browser: Any, two_claims_site: tuple[Path, list[str]]
) -> None:
    site, _ = two_claims_site
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto((site / "index.html").as_uri())
    page.fill("#q", "haemoglobin")
    assert page.inner_text("#count") == "1 of 2 claim(s)"
    page.click("#claims li:not([hidden]) a")
    assert "Mechanism" in page.inner_text("article")
    markup = json.loads(page.locator('script[type="application/ld+json"]').inner_text())
    assert markup["@type"] == "ClaimReview"
    page.click("ol.quotes a >> nth=0")
    image = page.locator("img.page")
    assert image.get_attribute("alt").startswith("Page ")  # type: ignore[union-attr]
    assert page.evaluate("document.querySelector('img.page').naturalWidth") > 500
    page.close()


def test_a_page_image_two_claims_share_stays_while_one_of_them_does(tmp_path: Path) -> None:
    store, (first,) = store_with(tmp_path / "s.db", "datta-2010-dvt-prophylaxis", licence=CC_BY)
    copy = store.get(first).model_copy(deep=True)
    copy.record_id, copy.claim.text = "0123456789ab", "Blood thinners after trauma are linked to bleeding."
    second = store.add(copy)
    for record_id in (first, second):
        decisions.approve(store, record_id, 1, "maria", "checked")
    site = tmp_path / "site"
    build_site(store, site, BASE)
    shared = sorted((site / "pages").glob("*.png"))
    assert shared and build_site(store, site, BASE).written == 0  # both claims reused, nothing drawn again
    decisions.reopen(store, first, 2, "maria", "again")
    decisions.reject(store, first, 3, "maria", "withdrawn")
    build_site(store, site, BASE)
    assert sorted((site / "pages").glob("*.png")) == shared and broken_links(site) == []


def _axe() -> Path | None:
    """axe-core's script: CLAIMS_AXE, or where .ci/run installs it (npm install axe-core)."""
    for candidate in (os.environ.get("CLAIMS_AXE"), Path.home() / ".cache/claims/axe/node_modules/axe-core/axe.min.js"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def test_every_kind_of_page_has_no_serious_accessibility_violation(
    browser: Any, two_claims_site: tuple[Path, list[str]]
) -> None:
    axe = _axe()
    if axe is None:
        reason = (
            "no axe-core: .ci/run installs it (npm install --prefix ~/.cache/claims/axe axe-core), or set CLAIMS_AXE"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the accessibility test to run: {reason}")
        pytest.skip(reason)
    site, ids = two_claims_site
    pages = ["index.html", f"claims/{ids[0]}.html", f"claims/{ids[0]}/quote-1.html", "about.html"]
    pages.append(next(p.relative_to(site).as_posix() for p in (site / "studies").glob("*.html")))
    found = {}
    for width in (375, 1280):
        page = browser.new_page(viewport={"width": width, "height": 900})
        for name in pages:
            page.goto((site / name).as_uri())
            page.add_script_tag(path=str(axe))
            result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            serious = [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")]
            if serious:
                found[f"{name} at {width}px"] = serious
        page.close()
    assert found == {}


def test_a_claim_whose_study_was_retracted_leaves_the_site_until_a_reviewer_acts(tmp_path: Path) -> None:
    from pipeline.review.notices import recheck_notices
    from pipeline.sources.metadata import Notice

    store, (record_id,) = store_with(tmp_path / "s.db", "huang-2010-hpylori-iron")
    decisions.approve(store, record_id, 1, "maria", "checked")
    site = tmp_path / "site"
    build_site(store, site, BASE)
    assert (site / "claims" / f"{record_id}.html").is_file()
    retraction = Notice("retraction", "10.1136/pgmj.2009.089987.retraction", "2026-12-01", "crossref")
    assert recheck_notices(store, record_id, lambda doi: [retraction])
    gone = build_site(store, site, BASE)
    assert gone.claims == 0 and not (site / "claims" / f"{record_id}.html").exists()
    assert record_id not in (site / "index.html").read_text() and broken_links(site) == []
