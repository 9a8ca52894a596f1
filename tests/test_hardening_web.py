"""The review page against a hostile page: DNS rebinding, missing or foreign Origin and Referer,
framing and script injection (issue 11, point 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pipeline.store import SQLiteStore
from pipeline.web import create_app
from test_review import stored
from test_web import SITE, csrf


@pytest.fixture
def app_and_record(clean_environment: Path):
    [flagged] = stored(clean_environment, "misbehaving-fabricated-quote")
    return create_app(SQLiteStore(clean_environment)), flagged, SQLiteStore(clean_environment)


def test_a_foreign_host_name_reads_nothing(app_and_record) -> None:  # type: ignore[no-untyped-def]
    """A page on evil.test:8000 whose name resolves to 127.0.0.1 sends Host: evil.test:8000."""
    app, record_id, _ = app_and_record
    rebinding = TestClient(app, base_url="http://evil.test:8000")
    for path in ("/", f"/records/{record_id}", f"/records/{record_id}/edit", f"/records/{record_id}/history"):
        response = rebinding.get(path)
        assert response.status_code == 400 and record_id not in response.text and "csrf" not in response.text


def test_a_foreign_host_cannot_approve_even_with_a_token(app_and_record) -> None:  # type: ignore[no-untyped-def]
    app, record_id, store = app_and_record
    token = csrf(TestClient(app, base_url=SITE).get(f"/records/{record_id}").text)
    rebinding = TestClient(app, base_url="http://evil.test:8000", cookies={"claims_csrf": token})
    answer = rebinding.post(f"/records/{record_id}/approve", data={"csrf": token, "version": "1", "reviewer": "x",
                                                                   "override": "because"},
                            headers={"Origin": "http://evil.test:8000"})
    assert answer.status_code == 400
    assert store.get(record_id).status.value == "draft"


@pytest.mark.parametrize(("headers", "allowed"), [
    ({"Origin": SITE}, True),
    ({"Referer": f"{SITE}/records/x"}, True),  # no Origin: a same-site Referer will do
    ({"Referer": "https://evil.example/page"}, False),
    ({}, False),  # neither: refused
    ({"Origin": "https://evil.example", "Referer": f"{SITE}/"}, False),
])
def test_a_post_needs_an_origin_or_referer_of_this_site(app_and_record, headers, allowed) -> None:  # type: ignore[no-untyped-def]
    app, record_id, store = app_and_record
    client = TestClient(app, base_url=SITE)
    token = csrf(client.get(f"/records/{record_id}").text)
    answer = client.post(f"/records/{record_id}/approve", headers=headers,
                         data={"csrf": token, "version": "1", "reviewer": "ana", "override": "checked by hand"})
    approved = store.get(record_id).status.value == "approved"
    assert approved is allowed, answer.text[:300]
    if not allowed:
        assert answer.status_code == 403


def test_every_response_forbids_scripts_and_framing(app_and_record) -> None:  # type: ignore[no-untyped-def]
    app, record_id, _ = app_and_record
    client = TestClient(app, base_url=SITE)
    for response in (client.get("/"), client.get(f"/records/{record_id}"), client.get("/records/nothing-here"),
                     TestClient(app, base_url="http://evil.test").get("/")):
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_the_not_found_page_does_not_show_the_store_path(app_and_record, clean_environment: Path) -> None:  # type: ignore[no-untyped-def]
    app, _, _ = app_and_record
    response = TestClient(app, base_url=SITE).get("/records/0123456789ab")
    assert response.status_code == 404 and str(clean_environment) not in response.text
