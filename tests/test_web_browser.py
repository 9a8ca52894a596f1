"""The review page in a real headless Chromium (Debian's, driven by Playwright): a reviewer opens
the queue, opens a record and approves it; another submits a stale edit and sees the conflict.

Skipped, with how to install them, when Playwright or a Chromium is missing (.ci/run installs both;
the `browser` fixture is conftest's).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_review import stored
from webserver import ReviewServer

from pipeline.review import decisions
from pipeline.team.store import Store


def test_reviewer_approves_a_record_from_the_queue(browser, clean_environment: Path, tmp_path: Path) -> None:
    [record_id] = stored(clean_environment, "huang-2010-hpylori-iron")
    store = Store(clean_environment)
    with ReviewServer(store) as server:
        page = browser.new_page()
        page.goto(server.url)
        page.click(f"text={record_id}")
        assert "Mechanism" in page.inner_text("article")
        approve = page.locator("#approve-form")
        approve.locator("input[name=reviewer]").fill("maria")
        approve.locator("input[name=note]").fill("quotes and numbers checked")
        approve.locator("button").click()
        page.wait_for_selector("text=Record approved.")
        assert page.text_content("#status") == "approved"
        page.screenshot(path=str(tmp_path / "approved.png"), full_page=True)
    record = store.get(record_id)
    last = store.history(record_id)[-1]
    assert record.status.value == "approved"
    assert (last.action, last.actor, last.note, last.version) == ("approved", "maria", "quotes and numbers checked", 2)


def test_stale_edit_shows_the_conflict(browser, clean_environment: Path) -> None:
    [record_id] = stored(clean_environment, "datta-2010-dvt-prophylaxis")
    store = Store(clean_environment)
    with ReviewServer(store) as server:
        page = browser.new_page()
        page.goto(f"{server.url}/records/{record_id}/edit")
        page.fill("textarea[name='claim.text']", "Every way of preventing clots after trauma has some risk.")
        page.fill("#edit-form input[name=reviewer]", "joe")
        decisions.reject(store, record_id, 1, "maria", "overstated")  # meanwhile, another reviewer acts
        page.click("#edit-form button")
        alert = page.wait_for_selector("[role=alert]")
        text = alert.inner_text()
        assert f"record {record_id} was changed by maria" in text and "(version 2); reload and try again" in text
    assert store.get(record_id).claim.text.startswith("Every common way")  # the stale edit saved nothing
    assert [e.action for e in store.history(record_id)] == ["created", "rejected"]


def test_a_reviewer_fixes_a_flagged_quote_on_the_page_and_approves(browser, clean_environment: Path) -> None:
    """The flag summary links to the flag; the edit form carries the finding's quote; once the
    real sentence is in, the re-check clears the flag and the record is approved without override."""
    [record_id] = stored(clean_environment, "misbehaving-fabricated-quote")
    store = Store(clean_environment)
    with ReviewServer(store) as server:
        page = browser.new_page()
        page.goto(f"{server.url}/records/{record_id}")
        summary = page.locator("#flag-summary")
        assert "ungrounded_quote" in summary.inner_text()
        anchor = summary.locator("a").first.get_attribute("href")
        assert page.locator(anchor).is_visible() and "[FLAG ungrounded_quote" in page.locator(anchor).inner_text()
        page.click("text=Fix a flagged field in the edit form")
        quote = page.locator("textarea[name='studies.0.findings.1.quote.text']")
        assert quote.input_value() == "Eradication therapy cured anaemia in all patients within four weeks."
        quote.fill("the WMD of SF was 10.05 mg/l (95% CI 5.48 to 14.63 mg/l, p<0.00001)")
        page.fill("#edit-form input[name=reviewer]", "maria")
        page.click("#edit-form button")
        page.wait_for_selector("text=Edit saved and re-checked.")
        assert page.locator("#flag-summary").count() == 0 and "0 flag(s)" in page.inner_text("#review")
        page.locator("#approve-form button").click()  # the name is remembered; no override needed
        page.wait_for_selector("text=Record approved.")
        assert page.locator("#reject-form").count() == 0 and page.locator("#reopen-form").count() == 1
    assert store.get(record_id).status.value == "approved"
    assert [e.actor for e in store.history(record_id)[1:]] == ["maria", "maria"]


def test_the_queue_search_finds_a_record_by_its_title(browser, clean_environment: Path) -> None:
    ids = stored(clean_environment, "huang-2010-hpylori-iron", "datta-2010-dvt-prophylaxis")
    with ReviewServer(Store(clean_environment)) as server:
        page = browser.new_page()
        page.goto(server.url)
        page.fill("input[name=q]", "thrombosis prophylaxis")
        page.click("#queue-form button")
        page.wait_for_selector("#queue-count")
        assert page.inner_text("#queue-count").startswith("1 record(s)")
        assert ids[1] in page.inner_text("table") and ids[0] not in page.inner_text("table")


def test_a_team_member_logs_in_approves_and_logs_out(browser, db: str, tmp_path: Path) -> None:
    """Issue 15 in a real browser: the login's SameSite=Strict session survives the redirect, the
    decision carries the account, and logging out ends it (SQLite and PostgreSQL stores)."""
    from pipeline.team.accounts import hash_password

    [record_id] = stored(db, "huang-2010-hpylori-iron")
    store = Store(db)
    store.add_account("maria", "reviewer", hash_password("correct horse battery"))
    with ReviewServer(store) as server:
        page = browser.new_page()
        page.goto(f"{server.url}/records/{record_id}")
        assert page.url.startswith(f"{server.url}/login")  # sent to log in first
        page.fill("input[name=name]", "maria")
        page.fill("input[name=password]", "wrong password here")
        page.click("#login-form button")
        assert "wrong account name or password" in page.inner_text("[role=alert]")
        page.fill("input[name=password]", "correct horse battery")
        page.click("#login-form button")
        page.wait_for_selector("#approve-form")
        assert page.url == f"{server.url}/records/{record_id}"  # back where the reviewer was going
        assert "maria (reviewer)" in page.inner_text("#account")
        assert page.locator("#approve-form input[name=reviewer]").count() == 0  # no name to type
        page.locator("#approve-form input[name=note]").fill("checked")
        page.locator("#approve-form button").click()
        page.wait_for_selector("text=Record approved.")
        [session] = [c for c in page.context.cookies() if c["name"] == "claims_session"]
        page.click("#account button")  # log out
        page.wait_for_selector("#login-form")
        page.goto(server.url)
        assert page.url.startswith(f"{server.url}/login")
        # the cookie kept from before the logout, put back: it is worth nothing now
        page.context.add_cookies([{k: session[k] for k in ("name", "value", "domain", "path")}])
        page.goto(f"{server.url}/records/{record_id}")
        assert page.url.startswith(f"{server.url}/login")
    assert (store.history(record_id)[-1].action, store.history(record_id)[-1].actor) == ("approved", "maria")


def test_an_admin_manages_accounts_on_the_admin_page(browser, clean_environment: Path) -> None:
    """In the browser on SQLite: the same admin page on PostgreSQL is the team tests' (in-process)."""
    from pipeline.team.accounts import hash_password

    db = str(clean_environment)
    stored(db, "huang-2010-hpylori-iron")
    store = Store(db)
    store.add_account("root", "admin", hash_password("correct horse battery"))
    store.add_account("maria", "reviewer", hash_password("correct horse battery"))
    with ReviewServer(store) as server:
        page = browser.new_page()
        page.goto(f"{server.url}/login")
        page.fill("input[name=name]", "root")
        page.fill("input[name=password]", "correct horse battery")
        page.click("#login-form button")
        page.click("header >> text=Admin")
        page.wait_for_selector("#accounts")
        add = page.locator("form[action='/admin/users/add']")
        add.locator("input[name=name]").fill("carol")
        add.locator("select[name=role]").select_option("curator")
        add.locator("input[name=password]").fill("a long enough password")
        add.locator("button").click()
        page.wait_for_selector("text=Account added.")
        maria = page.locator("tr[data-name=maria]")
        maria.locator("form[action$='/token'] input[name=label]").fill("laptop")
        maria.locator("form[action$='/token'] button").click()
        shown = page.wait_for_selector("text=shown this once").inner_text()
        assert "claims_" in shown
        page.locator("tr[data-name=maria] form[action$='/disable'] button").click()
        page.wait_for_selector("text=Account disabled; its sessions have ended.")
        page.locator("tr[data-name=root] form[action$='/disable'] button").click()
        assert "root is the last enabled admin" in page.inner_text("[role=alert]")
        page.click("header >> text=Audit")
        page.wait_for_selector("#events")
        events = page.inner_text("#events")
        assert "account added" in events and "token issued" in events and "account disabled" in events
    assert store.account("carol").role == "curator" and store.account("maria").disabled  # type: ignore[union-attr]
    assert [t.label for t in store.tokens("maria")] == ["laptop"]


def _char_centres(pdf: Path, page: int, phrase: str, image: dict[str, float]) -> list[tuple[float, float]]:
    """Where PDFium's own boxes for a phrase's characters (found by PDFium's search) fall on the
    page image as the browser laid it out, in CSS pixels."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(pdf))
    textpage = document[page - 1].get_textpage()
    found = textpage.search(phrase, match_case=True).get_next()
    assert found is not None, phrase
    left, bottom, right, top = document[page - 1].get_cropbox()
    centres = []
    for index in range(found[0], found[0] + found[1]):
        x0, y0, x1, y1 = textpage.get_charbox(index)
        if x1 > x0 and y1 > y0:
            centres.append(
                (
                    image["x"] + ((x0 + x1) / 2 - left) / (right - left) * image["width"],
                    image["y"] + (top - (y0 + y1) / 2) / (top - bottom) * image["height"],
                )
            )
    return centres


@pytest.mark.parametrize(
    ("quote", "lines"),
    [
        # crosses a line break, and a hyphenated one ("esti-" / "mates")
        (4, ["lower than the pooled esti", "mates for adult individuals of 15.11 g/l"]),
        # "deficiency" is set with an "fi" ligature: one glyph, one box for two letters
        (6, ["It suggests an association between H", "pylori and iron deficiency"]),
    ],
)
def test_the_highlight_covers_the_quote_on_the_rendered_page(
    browser, clean_environment: Path, quote: int, lines: list[str]
) -> None:
    """The boxes the page lays over the rendered page cover the quote's words where PDFium itself
    says they stand, line by line, and nothing else (the store's kind plays no part here)."""
    from conftest import RUNS

    db = str(clean_environment)
    from pipeline.llm.recording import load_recording, recorded_pdf

    [record_id] = stored(db, "huang-2010-hpylori-iron")
    recording, _ = load_recording(RUNS / "huang-2010-hpylori-iron")
    pdf = recorded_pdf(RUNS / "huang-2010-hpylori-iron", recording)
    with ReviewServer(Store(db)) as server:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{server.url}/records/{record_id}")
        page.click("#quotes-on-pages summary")
        page.click(f"a[href='/records/{record_id}/quotes/{quote}']")
        page.wait_for_load_state("load")  # the page image included (the page's CSP allows no script to ask)
        image = page.locator("#page-image").bounding_box()
        boxes = [page.locator(".hl.quote").nth(n).bounding_box() for n in range(page.locator(".hl.quote").count())]
        page_number = int(page.text_content("h1").split("page")[-1])
    assert image is not None and image["width"] > 600 and len(boxes) == len(lines)
    for line, box in zip(lines, boxes, strict=True):
        centres = _char_centres(pdf, page_number, line, image)
        assert centres
        inside = [
            box["x"] <= x <= box["x"] + box["width"] and box["y"] <= y <= box["y"] + box["height"] for x, y in centres
        ]
        assert all(inside), f"{line!r}: {inside.count(False)} of {len(inside)} characters outside the highlight"
        # and the box is the line's height, not a block of the page
        assert box["height"] < 3 * (max(y for _, y in centres) - min(y for _, y in centres) + 12)
