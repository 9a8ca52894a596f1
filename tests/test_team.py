"""Issue 15: a review team on one store. Accounts and roles, the login on the review page, the
four-eyes rule, where `claims serve` may bind, and moving a store from SQLite to PostgreSQL.
Every test that uses the `db` fixture runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import postgres_store
from starlette.testclient import TestClient
from test_review import stored
from test_web import SITE, csrf
from typer.testing import CliRunner

from pipeline import review
from pipeline.accounts import LoginLimiter, hash_password
from pipeline.cli.app import app
from pipeline.store import Store
from pipeline.web import SESSION_COOKIE, create_app

PASSWORD = "correct horse battery"


def add_user(runner: CliRunner, name: str, role: str, password: str = PASSWORD) -> None:
    result = runner.invoke(app, ["user", "add", name, "--role", role, "--password-stdin"], input=password + "\n")
    assert result.exit_code == 0, result.output


def log_in(client: TestClient, name: str, password: str = PASSWORD) -> object:
    token = csrf(client.get("/login").text)
    return client.post("/login", data={"csrf": token, "name": name, "password": password, "next": "/"})


@pytest.fixture
def team(db: str, runner: CliRunner):  # type: ignore[no-untyped-def]
    ids = stored(db, "huang-2010-hpylori-iron", "misbehaving-fabricated-quote")
    add_user(runner, "alice", "reviewer")
    add_user(runner, "bob", "curator")
    store = Store(db)
    client = TestClient(create_app(store), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False)
    return client, store, ids


def test_accounts_are_added_listed_and_checked(runner: CliRunner, db: str) -> None:
    add_user(runner, "alice", "reviewer")
    listing = runner.invoke(app, ["user", "list"])
    assert "alice" in listing.output and "reviewer" in listing.output and "enabled" in listing.output
    assert PASSWORD not in listing.output and "argon2" not in listing.output  # never shown
    account = Store(db).account("alice")
    assert (
        account is not None and account.password_hash.startswith("$argon2id$") and PASSWORD not in account.password_hash
    )
    for arguments, message in (
        (["user", "add", "alice", "--role", "reviewer"], "exists already"),
        (["user", "add", "carol", "--role", "boss"], "unknown role 'boss'"),
        (["user", "add", "dave", "--role", "admin"], "too short"),
        (["user", "disable", "nobody"], "no account named 'nobody'"),
    ):
        result = runner.invoke(
            app, [*arguments, "--password-stdin"] if "add" in arguments else arguments, input="short\n"
        )
        if "exists" in message:
            result = runner.invoke(app, [*arguments, "--password-stdin"], input=PASSWORD + "\n")
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output


def test_the_page_needs_a_login_once_the_store_has_accounts(team) -> None:  # type: ignore[no-untyped-def]
    client, store, (faithful, _) = team
    visit = client.get(f"/records/{faithful}")
    assert visit.status_code == 303 and visit.headers["location"] == f"/login?next=%2Frecords%2F{faithful}"
    token = csrf(client.get("/login").text)
    blind = client.post(f"/records/{faithful}/approve", data={"csrf": token, "version": "1", "reviewer": "eve"})
    assert blind.status_code == 401 and store.version_of(faithful) == 1
    wrong = log_in(client, "alice", "not the password")
    assert wrong.status_code == 401 and "wrong account name or password" in wrong.text  # type: ignore[attr-defined]
    right = log_in(client, "alice")
    assert right.status_code == 303  # type: ignore[attr-defined]
    cookie = right.headers["set-cookie"]  # type: ignore[attr-defined]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain http on loopback; over TLS it is Secure (below)
    page = client.get(f"/records/{faithful}")
    assert page.status_code == 200 and "alice (reviewer)" in page.text and 'name="reviewer"' not in page.text
    token = csrf(page.text)
    # the name typed in a forged form field counts for nothing: the decision is the account's
    done = client.post(f"/records/{faithful}/approve", data={"csrf": token, "version": "1", "reviewer": "mallory"})
    assert done.status_code == 303
    assert store.history(faithful)[-1].actor == "alice"
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    assert client.get("/").status_code == 303  # logged out


def test_a_session_cookie_is_secure_over_tls(team) -> None:  # type: ignore[no-untyped-def]
    _, store, _ = team
    secure = TestClient(create_app(store), base_url="https://127.0.0.1", headers={"Origin": "https://127.0.0.1"})
    response = secure.post(
        "/login",
        data={"csrf": csrf(secure.get("/login").text), "name": "bob", "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


def test_failed_logins_are_limited_and_a_reset_or_disable_ends_sessions(team, runner: CliRunner) -> None:  # type: ignore[no-untyped-def]
    client, store, _ = team
    for _ in range(5):
        assert log_in(client, "bob", "guess guess guess").status_code == 401  # type: ignore[attr-defined]
    blocked = log_in(client, "bob")  # even the right password waits now
    assert blocked.status_code == 429 and "too many failed logins" in blocked.text  # type: ignore[attr-defined]
    fresh = TestClient(
        create_app(store, login_limiter=LoginLimiter()), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False
    )
    assert log_in(fresh, "alice").status_code == 303  # type: ignore[attr-defined]
    assert fresh.get("/").status_code == 200
    reset = runner.invoke(app, ["user", "reset-password", "alice", "--password-stdin"], input="a new long password\n")
    assert reset.exit_code == 0, reset.output
    assert fresh.get("/").status_code == 303  # the old session no longer counts
    assert log_in(fresh, "alice", "a new long password").status_code == 303  # type: ignore[attr-defined]
    assert runner.invoke(app, ["user", "disable", "alice"]).exit_code == 0
    assert fresh.get("/").status_code == 303
    assert log_in(fresh, "alice", "a new long password").status_code == 401  # type: ignore[attr-defined]


def test_the_second_reviewer_rule(team) -> None:  # type: ignore[no-untyped-def]
    _, store, (faithful, _) = team
    client = TestClient(
        create_app(store, require_second_reviewer=True), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False
    )
    log_in(client, "alice")
    record = store.get(faithful)
    record.claim.text = record.claim.text.rstrip(".") + " in adults."
    review.edit(store, faithful, 1, record.model_dump_json(), "alice", "wording")
    token = csrf(client.get(f"/records/{faithful}").text)
    own = client.post(f"/records/{faithful}/approve", data={"csrf": token, "version": "2"})
    assert own.status_code == 400 and "another reviewer must approve it" in own.text
    assert store.get(faithful).status.value == "draft"
    other = TestClient(
        create_app(store, require_second_reviewer=True), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False
    )
    log_in(other, "bob")
    token = csrf(other.get(f"/records/{faithful}").text)
    assert other.post(f"/records/{faithful}/approve", data={"csrf": token, "version": "2"}).status_code == 303
    assert [(e.action, e.actor) for e in store.history(faithful)][-2:] == [("edited", "alice"), ("approved", "bob")]


def test_a_proxy_header_names_the_account_only_when_asked(team) -> None:  # type: ignore[no-untyped-def]
    _, store, (faithful, _) = team
    plain = TestClient(create_app(store), base_url=SITE, headers={"Origin": SITE, "X-Remote-User": "bob"})
    assert plain.get("/", follow_redirects=False).status_code == 303  # not trusted unless configured
    proxied = TestClient(
        create_app(store, proxy_user_header="X-Remote-User"),
        base_url=SITE,
        headers={"Origin": SITE},
        follow_redirects=False,
    )
    assert proxied.get("/").status_code == 401
    assert proxied.get("/", headers={"X-Remote-User": "nobody"}).status_code == 401
    page = proxied.get(f"/records/{faithful}", headers={"X-Remote-User": "bob"})
    assert page.status_code == 200 and "bob (curator)" in page.text
    done = proxied.post(
        f"/records/{faithful}/approve", data={"csrf": csrf(page.text), "version": "1"}, headers={"X-Remote-User": "bob"}
    )
    assert done.status_code == 303 and store.history(faithful)[-1].actor == "bob"


def test_the_command_line_records_decisions_under_accounts(team, runner: CliRunner) -> None:  # type: ignore[no-untyped-def]
    _, store, (faithful, _) = team
    stranger = runner.invoke(app, ["review", "approve", faithful, "--reviewer", "mallory"])
    assert stranger.exit_code != 0 and "'mallory' is not an enabled account" in stranger.output
    assert runner.invoke(app, ["review", "approve", faithful, "--reviewer", "alice"]).exit_code == 0
    assert store.history(faithful)[-1].actor == "alice"
    assert runner.invoke(app, ["user", "disable", "bob"]).exit_code == 0
    disabled = runner.invoke(app, ["review", "reopen", faithful, "--reviewer", "bob"])
    assert disabled.exit_code != 0 and "not an enabled account" in disabled.output


def test_serve_binds_elsewhere_only_with_accounts(runner: CliRunner, db: str) -> None:
    exposed = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert exposed.exit_code == 2 and "has no accounts" in exposed.output and "claims user add" in exposed.output
    add_user(runner, "root", "admin")
    trusted = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--trust-proxy-user-header", "X-User"])
    assert trusted.exit_code == 2 and "bind 127.0.0.1" in trusted.output


def test_a_sqlite_store_is_copied_into_postgresql_whole(runner: CliRunner, tmp_path: Path) -> None:
    alone = str(tmp_path / "alone.db")
    [faithful, flagged] = stored(alone, "huang-2010-hpylori-iron", "misbehaving-fabricated-quote")
    review.approve(Store(alone), faithful, 1, "maria", "checked")
    Store(alone).add_account("maria", "admin", hash_password(PASSWORD))
    with postgres_store() as target:
        copied = runner.invoke(app, ["db", "copy", alone, target])
        assert copied.exit_code == 0, copied.output
        assert re.search(
            r"copied 2 record\(s\), 3 history entries, 1 paper text\(s\), 1 PDF\(s\) and 1 account\(s\)", copied.output
        )
        assert "postgresql" in copied.output
        shared = Store(target)
        assert shared.get(faithful) == Store(alone).get(faithful)
        assert shared.history(faithful) == Store(alone).history(faithful)
        assert shared.published(faithful) is not None and shared.account("maria") is not None
        sha256 = shared.get(faithful).provenance.source.sha256
        assert shared.pdf(sha256) == Store(alone).pdf(sha256) is not None
        review.reject(shared, flagged, 1, "maria", "a quote is not in the paper")  # new history after the copied rows
        assert [e.action for e in shared.history(flagged)] == ["created", "rejected"]
        missing = runner.invoke(app, ["db", "copy", str(tmp_path / "typo.db"), target])
        assert missing.exit_code == 2 and "no such store file" in missing.output
        assert not (tmp_path / "typo.db").exists()  # not made empty by the attempt
        again = runner.invoke(app, ["db", "copy", alone, target])
        assert again.exit_code == 2 and "copy into an empty store" in again.output
        migrated = runner.invoke(app, ["db", "migrate", "--db", target])
        assert migrated.exit_code == 0 and "schema version" in migrated.output


def test_only_a_curator_starts_runs_on_a_store_with_accounts(  # type: ignore[no-untyped-def]
    runner: CliRunner, db: str, live_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import HPYLORI_PDF

    add_user(runner, "alice", "reviewer")
    add_user(runner, "bob", "curator")
    monkeypatch.setenv("CLAIMS_REVIEWER", "alice")
    refused = runner.invoke(app, ["run", str(HPYLORI_PDF)])
    assert refused.exit_code != 0 and "alice is a reviewer: a reviewer may not run" in refused.output
    assert live_env.scripts.requests == []  # refused before any model call
    assert Store(db).summaries() == []
    monkeypatch.setenv("CLAIMS_REVIEWER", "bob")
    result = runner.invoke(app, ["run", str(HPYLORI_PDF)])
    assert result.exit_code == 0, result.output
    [summary] = Store(db).summaries()
    [created] = Store(db).history(summary.record_id)
    assert created.note == "drafted by the pipeline, run started by bob"
