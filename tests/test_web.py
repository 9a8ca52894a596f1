"""The review web page without a browser: forms, CSRF, escaping, conflicts (Starlette TestClient)."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient
from test_review import stored

from pipeline.review import decisions
from pipeline.team.store import Store
from pipeline.web import create_app

SITE = "http://127.0.0.1:8000"


def csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


@pytest.fixture
def site(db: str):
    ids = stored(db, "huang-2010-hpylori-iron", "misbehaving-fabricated-quote")
    store = Store(db)
    # as a browser sends a form: to the loopback address, with the page's origin
    client = TestClient(create_app(store), base_url=SITE, headers={"Origin": SITE})
    return client, store, ids


def test_queue_filters(site) -> None:  # type: ignore[no-untyped-def]
    client, _, (faithful, flagged) = site
    everything = client.get("/").text
    assert faithful in everything and flagged in everything
    only_flagged = client.get("/?flagged=1").text
    assert flagged in only_flagged and faithful not in only_flagged
    assert "No record matches" in client.get("/?status=approved").text


def test_record_page_shows_quotes_pages_and_highlights_flags(site) -> None:  # type: ignore[no-untyped-def]
    client, _, (_faithful, flagged) = site
    page = client.get(f"/records/{flagged}").text
    assert '<mark class="flag">[FLAG ungrounded_quote' in page and 'class="flagged"' in page
    assert "(p. 1)" in page and "Override reason (required" in page
    assert client.get("/records/zzzz").status_code == 404


def test_approve_needs_a_matching_csrf_token_and_origin(site) -> None:  # type: ignore[no-untyped-def]
    client, store, (faithful, _) = site
    token = csrf(client.get(f"/records/{faithful}").text)
    forged = client.post(f"/records/{faithful}/approve", data={"csrf": "guess", "version": "1", "reviewer": "eve"})
    assert forged.status_code == 403 and "cross-site request refused" in forged.text
    other_site = client.post(
        f"/records/{faithful}/approve",
        data={"csrf": token, "version": "1", "reviewer": "eve"},
        headers={"Origin": "https://evil.example"},
    )
    assert other_site.status_code == 403
    assert store.version_of(faithful) == 1
    ok = client.post(
        f"/records/{faithful}/approve", data={"csrf": token, "version": "1", "reviewer": "maria", "note": "fine"}
    )
    assert ok.status_code == 200 and "Record approved." in ok.text
    assert store.get(faithful).status.value == "approved" and store.history(faithful)[-1].actor == "maria"


def test_flagged_record_needs_an_override(site) -> None:  # type: ignore[no-untyped-def]
    client, store, (_, flagged) = site
    token = csrf(client.get(f"/records/{flagged}").text)
    refused = client.post(f"/records/{flagged}/approve", data={"csrf": token, "version": "1", "reviewer": "maria"})
    assert refused.status_code == 400 and "has flags (1 ungrounded quote)" in refused.text
    ok = client.post(
        f"/records/{flagged}/approve",
        data={"csrf": token, "version": "1", "reviewer": "maria", "override": "checked the table by hand"},
    )
    assert ok.status_code == 200 and store.get(flagged).status.value == "approved"


def test_everything_from_a_paper_is_escaped(site, db: str) -> None:  # type: ignore[no-untyped-def]
    client, store, (faithful, _) = site
    record = store.get(faithful)
    record.claim.text = '<script>alert("x")</script>'
    record.studies[0].findings[0].outcome = "<img src=x onerror=alert(1)>"
    store.update(record, 1, "edited", "test", "")
    for path in ("/", f"/records/{faithful}", f"/records/{faithful}/edit", f"/records/{faithful}/history"):
        html = client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in client.get(f"/records/{faithful}").text


def test_edit_form_validates_rechecks_and_detects_conflicts(site) -> None:  # type: ignore[no-untyped-def]
    client, store, (faithful, _) = site
    form_page = client.get(f"/records/{faithful}/edit").text
    token = csrf(form_page)
    bad = client.post(
        f"/records/{faithful}/edit",
        data={"csrf": token, "version": "1", "reviewer": "ana", "claim.original_statement.page": "one"},
    )
    assert bad.status_code == 400 and "nothing was saved" in bad.text and "claim/original_statement/page" in bad.text
    assert store.version_of(faithful) == 1
    decisions.reject(store, faithful, 1, "maria", "wrong outcome")
    stale = client.post(
        f"/records/{faithful}/edit",
        data={"csrf": token, "version": "1", "reviewer": "ana", "claim.text": "A better sentence."},
    )
    assert (
        stale.status_code == 409
        and "was changed by maria" in stale.text
        and "(version 2); reload and try again" in stale.text
    )
    saved = client.post(
        f"/records/{faithful}/edit",
        data={"csrf": token, "version": "2", "reviewer": "ana", "claim.text": "A better sentence."},
    )
    assert saved.status_code == 200 and "Edit saved and re-checked." in saved.text
    record = store.get(faithful)
    assert record.claim.text == "A better sentence." and record.status.value == "draft"
    assert [e.action for e in store.history(faithful)] == ["created", "rejected", "edited"]


def test_the_flags_are_summarised_at_the_top_and_link_to_where_they_stand(site) -> None:  # type: ignore[no-untyped-def]
    client, _, (_, flagged) = site
    page = client.get(f"/records/{flagged}").text
    summary = page[page.index('id="flag-summary"') : page.index("</details>")]
    [anchor] = re.findall(r'href="#(flag-\d+)"', summary)
    assert "ungrounded_quote" in summary
    assert re.search(rf'<td id="{anchor}" class="flagged">[^<]*<mark class="flag">\[FLAG ungrounded_quote', page)


def test_only_the_allowed_actions_are_offered_and_the_reviewer_is_remembered(site) -> None:  # type: ignore[no-untyped-def]
    client, _, (faithful, _) = site
    page = client.get(f"/records/{faithful}").text
    assert 'id="approve-form"' in page and 'id="reject-form"' in page and 'id="reopen-form"' not in page
    client.post(f"/records/{faithful}/approve", data={"csrf": csrf(page), "version": "1", "reviewer": "maria"})
    page = client.get(f"/records/{faithful}").text
    assert 'id="reopen-form"' in page and 'id="approve-form"' not in page and 'id="reject-form"' not in page
    assert 'name="reviewer" value="maria"' in page


def test_the_queue_shows_titles_and_searches_sorts_and_pages(site, db: str) -> None:  # type: ignore[no-untyped-def]
    client, store, (faithful, flagged) = site
    [dvt] = stored(db, "datta-2010-dvt-prophylaxis")
    page = client.get("/").text
    assert "Complications related to deep venous thrombosis prophylaxis in trauma" in page  # a title, not only a DOI
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", page) and "+00:00" not in page
    found = client.get("/?q=thrombosis").text
    assert dvt in found and faithful not in found and flagged not in found
    assert dvt in client.get("/?q=1752-2897").text  # by DOI
    by_flags = client.get("/?sort=flags").text
    assert by_flags.index(flagged) < by_flags.index(faithful)
    rows, total = store.queue(limit=1, offset=1, sort="claim")
    assert total == 3 and len(rows) == 1
    assert "1 record(s)" in client.get("/?q=thrombosis").text
