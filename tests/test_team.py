"""Issue 15: a review team on one store. Accounts and roles, the login on the review page, the
four-eyes rule, where `claims serve` may bind, and moving a store from SQLite to PostgreSQL.
Every test that uses the `db` fixture runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import claims, postgres_store
from starlette.testclient import TestClient
from test_review import stored
from test_web import SITE, csrf

from pipeline.review import decisions
from pipeline.team.accounts import hash_password
from pipeline.team.store import Store
from pipeline.web import SESSION_COOKIE, create_app

PASSWORD = "correct horse battery"


def add_user(runner: CliRunner, name: str, role: str, password: str = PASSWORD) -> None:
    result = runner.invoke(claims, ["user", "add", name, "--role", role, "--password-stdin"], input=password + "\n")
    assert result.exit_code == 0, result.output


def as_root(runner: CliRunner, *args: str):  # type: ignore[no-untyped-def]
    """`claims ARGS` as the admin root, proved by the password."""
    return runner.invoke(claims, [*args, "--admin", "root", "--password-stdin"], input=PASSWORD + "\n")


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
    listing = runner.invoke(claims, ["user", "list"])
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
            claims, [*arguments, "--password-stdin"] if "add" in arguments else arguments, input="short\n"
        )
        if "exists" in message:
            result = runner.invoke(claims, [*arguments, "--password-stdin"], input=PASSWORD + "\n")
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


def test_failed_logins_are_limited_in_the_store_and_a_reset_or_disable_ends_sessions(team, runner: CliRunner) -> None:  # type: ignore[no-untyped-def]
    client, store, _ = team
    for _ in range(5):
        assert log_in(client, "bob", "guess guess guess").status_code == 401  # type: ignore[attr-defined]
    blocked = log_in(client, "bob")  # even the right password waits now
    assert blocked.status_code == 429 and "too many failed logins" in blocked.text  # type: ignore[attr-defined]
    restarted = TestClient(
        create_app(Store(store.path)), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False
    )
    assert log_in(restarted, "bob").status_code == 429  # type: ignore[attr-defined]  # kept over a restart
    elsewhere = TestClient(
        create_app(store), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False, client=("10.1.2.3", 4000)
    )
    assert log_in(elsewhere, "alice").status_code == 303  # type: ignore[attr-defined]
    assert elsewhere.get("/").status_code == 200
    reset = runner.invoke(
        claims, ["user", "reset-password", "alice", "--password-stdin"], input="a new long password\n"
    )
    assert reset.exit_code == 0, reset.output
    assert elsewhere.get("/").status_code == 303  # the old session no longer counts
    assert log_in(elsewhere, "alice", "a new long password").status_code == 303  # type: ignore[attr-defined]
    old_cookie = elsewhere.cookies.get(SESSION_COOKIE)
    assert runner.invoke(claims, ["user", "disable", "alice"]).exit_code == 0
    assert elsewhere.get("/").status_code == 303
    assert log_in(elsewhere, "alice", "a new long password").status_code == 401  # type: ignore[attr-defined]
    assert runner.invoke(claims, ["user", "enable", "alice"]).exit_code == 0
    revived = TestClient(create_app(store), base_url=SITE, follow_redirects=False, cookies={SESSION_COOKIE: old_cookie})
    assert revived.get("/").status_code == 303  # re-enabling does not bring old sessions back


def test_logging_out_ends_the_session_for_good(team) -> None:  # type: ignore[no-untyped-def]
    client, store, _ = team
    log_in(client, "alice")
    cookie = client.cookies.get(SESSION_COOKIE)
    token = csrf(client.get("/").text)
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    replayed = TestClient(create_app(store), base_url=SITE, follow_redirects=False, cookies={SESSION_COOKIE: cookie})
    assert replayed.get("/").status_code == 303  # the old cookie is worth nothing


def test_sessions_end_when_idle_or_old(team) -> None:  # type: ignore[no-untyped-def]
    _, store, _ = team
    brief = TestClient(
        create_app(store, session_idle=3600, session_longest=1.5),
        base_url=SITE,
        headers={"Origin": SITE},
        follow_redirects=False,
    )
    log_in(brief, "alice")
    assert brief.get("/").status_code == 200
    import time

    time.sleep(1.6)
    assert brief.get("/").status_code == 303


def test_a_store_that_had_accounts_never_turns_open(team, runner: CliRunner) -> None:  # type: ignore[no-untyped-def]
    _, store, (faithful, _) = team
    add_user(runner, "root", "admin")
    last = as_root(runner, "user", "disable", "root")
    assert last.exit_code == 2 and "root is the last enabled admin" in last.output and "--force" in last.output
    for name in ("alice", "bob"):
        assert as_root(runner, "user", "disable", name).exit_code == 0
    assert as_root(runner, "user", "disable", "root", "--force").exit_code == 0
    anonymous = TestClient(create_app(store), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False)
    assert anonymous.get("/").status_code == 303  # still asks for a login: nobody can give one
    token = csrf(anonymous.get("/login").text)
    post = anonymous.post(f"/records/{faithful}/approve", data={"csrf": token, "version": "1", "reviewer": "root"})
    assert post.status_code == 401 and store.version_of(faithful) == 1
    cli = runner.invoke(claims, ["review", "approve", faithful, "--reviewer", "anybody-at-all"])
    assert cli.exit_code != 0 and store.version_of(faithful) == 1
    refused = runner.invoke(claims, ["user", "remove-all"])
    assert refused.exit_code == 2 and "pass --yes" in refused.output
    removed = runner.invoke(claims, ["user", "remove-all", "--yes"])
    assert removed.exit_code == 0 and "3 account(s) removed" in removed.output and "no login now" in removed.output
    assert anonymous.get("/").status_code == 200


def test_the_second_reviewer_rule(team) -> None:  # type: ignore[no-untyped-def]
    _, store, (faithful, _) = team
    client = TestClient(
        create_app(store, require_second_reviewer=True), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False
    )
    log_in(client, "alice")
    record = store.get(faithful)
    record.claim.text = record.claim.text.rstrip(".") + " in adults."
    decisions.edit(store, faithful, 1, record.model_dump_json(), "alice", "wording")
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


def test_the_command_line_needs_an_account_s_credentials(
    team, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    _, store, (faithful, flagged) = team
    bare = runner.invoke(claims, ["review", "approve", faithful, "--reviewer", "alice"])
    assert bare.exit_code == 1 and "a decision needs alice's credentials: set CLAIMS_TOKEN" in bare.output
    assert "claims user token alice" in bare.output and "--password-stdin" in bare.output
    wrong = runner.invoke(
        claims, ["review", "approve", faithful, "--reviewer", "alice", "--password-stdin"], input="nope nope nope\n"
    )
    assert wrong.exit_code == 1 and "wrong account name or password" in wrong.output
    stranger = runner.invoke(
        claims, ["review", "approve", faithful, "--reviewer", "mallory", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert stranger.exit_code == 1 and store.version_of(faithful) == 1
    done = runner.invoke(
        claims, ["review", "approve", faithful, "--reviewer", "alice", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert done.exit_code == 0, done.output
    assert store.history(faithful)[-1].actor == "alice"
    issued = runner.invoke(claims, ["user", "token", "bob", "--label", "laptop"])
    assert issued.exit_code == 0 and "shown this once" in issued.output
    secret = issued.stdout.strip().splitlines()[-1]
    assert secret.startswith("claims_") and secret not in Store(store.path).tokens()[0].label
    monkeypatch.setenv("CLAIMS_TOKEN", secret)
    impostor = runner.invoke(claims, ["review", "reopen", faithful, "--reviewer", "alice"])
    assert impostor.exit_code == 1 and "CLAIMS_TOKEN is bob's token, not alice's" in impostor.output
    reopened = runner.invoke(claims, ["review", "reopen", faithful])
    assert reopened.exit_code == 0 and store.history(faithful)[-1].actor == "bob"
    listing = runner.invoke(claims, ["user", "tokens"])
    assert (
        "laptop" in listing.output
        and "bob" in listing.output
        and "live" in listing.output
        and secret not in listing.output
    )
    [token] = store.tokens("bob")
    assert runner.invoke(claims, ["user", "revoke-token", token.token_id]).exit_code == 0
    revoked = runner.invoke(claims, ["review", "reject", flagged, "--reason", "quote not found"])
    assert revoked.exit_code == 1 and "not a live token" in revoked.output


def test_four_eyes_is_a_store_setting_the_command_line_obeys_too(team, runner: CliRunner) -> None:  # type: ignore[no-untyped-def]
    client, store, (faithful, _) = team
    shown = runner.invoke(claims, ["db", "settings"])
    assert "require-second-reviewer: off" in shown.output
    assert runner.invoke(claims, ["db", "settings", "--require-second-reviewer", "on"]).exit_code == 0
    record = store.get(faithful)
    record.claim.text = record.claim.text.rstrip(".") + " in adults."
    decisions.edit(store, faithful, 1, record.model_dump_json(), "alice", "wording")
    own = runner.invoke(
        claims,
        ["review", "approve", faithful, "--reviewer", "alice", "--password-stdin", "--override", "fine"],
        input=PASSWORD + "\n",
    )
    assert own.exit_code == 1 and "another reviewer must approve it" in own.output  # an override does not lift it
    log_in(client, "alice")
    token = csrf(client.get(f"/records/{faithful}").text)
    web = client.post(f"/records/{faithful}/approve", data={"csrf": token, "version": "2", "override": "fine"})
    assert web.status_code == 400 and "another reviewer must approve it" in web.text  # every server obeys it


def test_the_curator_who_ran_a_draft_may_not_approve_it_under_four_eyes(db: str, runner: CliRunner) -> None:
    [faithful] = stored(db, "huang-2010-hpylori-iron")
    store = Store(db)
    with store._write() as conn:  # the draft's history as a run started by bob leaves it
        from pipeline.team.store import history

        conn.execute(
            history.update()
            .where(history.c.record_id == faithful)
            .values(note="drafted by the pipeline, run started by bob")
        )
    store.set_setting(decisions.SECOND_REVIEWER, "on")
    with pytest.raises(Exception, match="bob ran or edited record"):
        decisions.approve(store, faithful, 1, "bob", override="fine")
    assert decisions.approve(store, faithful, 1, "carol") == 2


def test_serve_binds_elsewhere_only_with_accounts(runner: CliRunner, db: str) -> None:
    exposed = runner.invoke(claims, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert exposed.exit_code == 2 and "has no accounts" in exposed.output and "claims user add" in exposed.output
    add_user(runner, "root", "admin")
    trusted = runner.invoke(claims, ["serve", "--host", "0.0.0.0", "--trust-proxy-user-header", "X-User"])
    assert trusted.exit_code == 2 and "bind 127.0.0.1" in trusted.output


def test_a_sqlite_store_is_copied_into_postgresql_whole(runner: CliRunner, tmp_path: Path) -> None:
    alone = str(tmp_path / "alone.db")
    [faithful, flagged] = stored(alone, "huang-2010-hpylori-iron", "misbehaving-fabricated-quote")
    decisions.approve(Store(alone), faithful, 1, "maria", "checked")
    Store(alone).add_account("maria", "admin", hash_password(PASSWORD))
    with postgres_store() as target:
        copied = runner.invoke(claims, ["db", "copy", alone, target])
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
        decisions.reject(
            shared, flagged, 1, "maria", "a quote is not in the paper"
        )  # new history after the copied rows
        assert [e.action for e in shared.history(flagged)] == ["created", "rejected"]
        missing = runner.invoke(claims, ["db", "copy", str(tmp_path / "typo.db"), target])
        assert missing.exit_code == 2 and "no such store file" in missing.output
        assert not (tmp_path / "typo.db").exists()  # not made empty by the attempt
        again = runner.invoke(claims, ["db", "copy", alone, target])
        assert again.exit_code == 2 and "copy into an empty store" in again.output
        migrated = runner.invoke(claims, ["db", "migrate", "--db", target])
        assert migrated.exit_code == 0 and "schema version" in migrated.output


def test_only_a_curator_starts_runs_on_a_store_with_accounts(  # type: ignore[no-untyped-def]
    runner: CliRunner, db: str, live_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import HPYLORI_PDF

    add_user(runner, "alice", "reviewer")
    add_user(runner, "bob", "curator")
    monkeypatch.setenv("CLAIMS_REVIEWER", "alice")
    unproven = runner.invoke(claims, ["run", str(HPYLORI_PDF)])
    assert unproven.exit_code != 0 and "needs alice's credentials" in unproven.output
    refused = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--password-stdin"], input=PASSWORD + "\n")
    assert refused.exit_code != 0 and "alice is a reviewer: a reviewer may not run" in refused.output
    assert live_env.scripts.requests == []  # refused before any model call
    assert Store(db).summaries() == []
    monkeypatch.setenv("CLAIMS_REVIEWER", "bob")
    result = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    [summary] = Store(db).summaries()
    [created] = Store(db).history(summary.record_id)
    assert created.note == "drafted by the pipeline, run started by bob"


# --------------------------------------------------------------------------- the team server, second pass


def test_bad_input_is_a_plain_400_on_every_store(team) -> None:  # type: ignore[no-untyped-def]
    client, store, (faithful, _) = team
    log_in(client, "alice")
    for address in ("/?q=%00", f"/records/{faithful}%00", "/papers/%00/pages/1.png", "/?page=" + "9" * 5000):
        response = client.get(address)
        assert response.status_code == 400, (address, response.status_code)
        assert "NUL byte or is too long" in response.text and "psycopg" not in response.text.lower()
    assert client.get("/?page=99999999999999999999").status_code == 200
    assert client.get(f"/papers/{'0' * 64}/pages/99999999999999999999.png").status_code == 404
    token = csrf(client.get(f"/records/{faithful}").text)
    nul = client.post(f"/records/{faithful}/approve", data={"csrf": token, "version": "1", "note": "ok\x00"})
    assert nul.status_code == 400 and "NUL byte" in nul.text
    huge = client.post(f"/records/{faithful}/approve", data={"csrf": token, "version": "99999999999999999999"})
    assert huge.status_code == 400 and "out of range" in huge.text
    assert store.version_of(faithful) == 1
    fresh = TestClient(create_app(store), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False)
    login = fresh.post("/login", data={"csrf": csrf(fresh.get("/login").text), "name": "ali\x00ce", "password": "x"})
    assert login.status_code == 400


def test_a_page_shows_only_its_own_messages(team) -> None:  # type: ignore[no-untyped-def]
    client, _, (faithful, _) = team
    log_in(client, "alice")
    assert "Record approved." in client.get(f"/records/{faithful}?done=approved").text
    forged = client.get(f"/records/{faithful}?done=Your+account+is+locked:+call+555-0100")
    assert forged.status_code == 200 and "555-0100" not in forged.text


def test_user_text_that_looks_like_markup_is_printed_as_it_is(team, runner: CliRunner) -> None:  # type: ignore[no-untyped-def]
    _, _, (_, flagged) = team
    add_user(runner, "[/bold]", "reviewer")
    listing = runner.invoke(claims, ["user", "list"])
    assert listing.exit_code == 0 and "[/bold]" in listing.output
    rejected = runner.invoke(
        claims,
        ["review", "reject", flagged, "--reviewer", "[/bold]", "--reason", "a [/red] quote", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert rejected.exit_code == 0, rejected.output
    for command in (["review", "history", flagged], ["review", "list"], ["review", "show", flagged]):
        result = runner.invoke(claims, command)
        assert result.exit_code == 0, (command, result.output)
    assert "a [/red] quote" in runner.invoke(claims, ["review", "history", flagged]).output


def test_a_new_sqlite_store_is_private_and_an_exposed_one_is_warned_about(runner: CliRunner, tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "team.db")
        store.add_account("root", "admin", hash_password(PASSWORD))
    finally:
        os.umask(old)
    for name in ("team.db", "team.db-wal", "team.db-shm"):
        if (tmp_path / name).exists():
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    (tmp_path / "team.db").chmod(0o644)
    warned = runner.invoke(claims, ["user", "list", "--db", str(tmp_path / "team.db")])
    assert warned.exit_code == 0 and "is readable by other users of this machine" in warned.output
    assert "chmod 600" in warned.output


def test_a_store_made_by_the_last_release_is_upgraded_on_sqlite_and_postgresql(
    db: str, runner: CliRunner, tmp_path: Path
) -> None:
    """A store that release 7 made (a dump checked in under fixtures/stores/) opens with this
    code, is upgraded in place, and keeps every record, history entry, account and PDF."""
    import sqlite3

    from conftest import FIXTURES

    if db.startswith("postgresql"):
        import psycopg

        server, _, options = db.partition("?options=-csearch_path%3D")
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f"SET search_path TO {options}")
            connection.execute((FIXTURES / "stores" / "release7_postgresql.sql").read_text())
    else:
        with sqlite3.connect(db) as connection:
            connection.executescript((FIXTURES / "stores" / "release7_sqlite.sql").read_text())
    migrated = runner.invoke(claims, ["db", "migrate", "--db", db])
    assert migrated.exit_code == 0 and "upgraded from schema version 7 to 8" in migrated.output, migrated.output
    again = runner.invoke(claims, ["db", "migrate", "--db", db])
    assert "nothing to upgrade" in again.output
    store = Store(db)
    approved, injected = "c1cf826b337e", "fdc4a44d978e"
    assert store.get(approved).status.value == "approved" and store.get(injected).status.value == "draft"
    assert [e.action for e in store.history(approved)] == ["created", "approved"]
    assert store.published(approved) is not None
    assert store.account("maria") is not None and store.account("maria").role == "admin"  # type: ignore[union-attr]
    sha256 = store.get(injected).provenance.source.sha256
    assert store.pdf(sha256) == (FIXTURES / "papers" / "injected_dvt_review.pdf").read_bytes()
    assert store.source_pages(sha256) is not None
    assert store.has_accounts()  # it had an account: still a login store
    secret = store.start_session("maria")
    assert store.session_account(secret, 60, 60) is not None and store.add_token("maria")[1].startswith("claims_")
    decisions.reopen(store, approved, 2, "maria", "checking again")  # new history after the old rows


def test_the_admin_page_manages_accounts_under_the_command_line_s_rules(team, runner: CliRunner) -> None:  # type: ignore[no-untyped-def]
    client, store, _ = team
    log_in(client, "alice")
    assert client.get("/admin").status_code == 403  # a reviewer
    add_user(runner, "root", "admin")
    admin = TestClient(create_app(store), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False)
    log_in(admin, "root")
    page = admin.get("/admin")
    assert page.status_code == 200 and 'id="accounts"' in page.text and "never" in page.text
    token = csrf(page.text)

    def post(path: str, **data: str):  # type: ignore[no-untyped-def]
        return admin.post(path, data={"csrf": token, **data})

    assert post("/admin/users/add", name="carol", role="curator", password=PASSWORD).status_code == 303
    short = post("/admin/users/add", name="dave", role="reviewer", password="short")
    assert short.status_code == 400 and "too short" in short.text
    assert post("/admin/users/alice/role", role="curator").status_code == 303
    assert store.account("alice").role == "curator"  # type: ignore[union-attr]
    assert client.get("/").status_code == 303  # a role change ended alice's session
    last = post("/admin/users/root/disable")
    assert last.status_code == 400 and "last enabled admin" in last.text
    assert post("/admin/users/bob/disable").status_code == 303 and store.account("bob").disabled  # type: ignore[union-attr]
    assert post("/admin/users/bob/enable").status_code == 303
    assert post("/admin/users/bob/password", password="another long password").status_code == 303
    issued = post("/admin/users/bob/token", label="ci")
    assert issued.status_code == 200 and "shown this once" in issued.text
    [live] = store.tokens("bob")
    assert post(f"/admin/tokens/{live.token_id}/revoke").status_code == 303 and store.tokens("bob")[0].revoked_at
    forged = admin.post("/admin/users/bob/disable", data={"csrf": "not the token"})
    assert forged.status_code == 403 and not store.account("bob").disabled  # type: ignore[union-attr]
    audit = admin.get("/admin/audit")
    assert audit.status_code == 200
    for seen in ("account added", "role changed", "token issued", "token revoked", "password reset"):
        assert seen in audit.text, seen
    assert "root" in audit.text and "login" in audit.text


def test_the_audit_page_lists_failed_logins_and_decisions(team, runner: CliRunner) -> None:  # type: ignore[no-untyped-def]
    client, store, (faithful, _) = team
    log_in(client, "bob", "a wrong guess!")
    log_in(client, "alice")
    token = csrf(client.get(f"/records/{faithful}").text)
    client.post(f"/records/{faithful}/approve", data={"csrf": token, "version": "1"})
    add_user(runner, "root", "admin")
    admin = TestClient(create_app(store), base_url=SITE, headers={"Origin": SITE}, follow_redirects=False)
    log_in(admin, "root")
    audit = admin.get("/admin/audit").text
    assert "login failed" in audit and "bob" in audit and "approved" in audit and faithful in audit


def test_the_command_line_manages_accounts_as_an_admin_as_the_admin_page_does(
    team, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    _, store, _ = team
    assert runner.invoke(claims, ["user", "disable", "bob"]).exit_code == 0  # no admin yet: the store's holder acts
    assert runner.invoke(claims, ["user", "enable", "bob"]).exit_code == 0
    add_user(runner, "root", "admin")
    unproven = runner.invoke(claims, ["user", "disable", "bob", "--admin", "root"])
    assert unproven.exit_code == 1 and "needs root's credentials" in unproven.output
    reviewer = runner.invoke(
        claims, ["user", "role", "alice", "admin", "--admin", "alice", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert reviewer.exit_code == 1 and "alice is a reviewer: a reviewer may not manage users" in reviewer.output
    settings = runner.invoke(
        claims,
        ["db", "settings", "--require-second-reviewer", "on", "--admin", "bob", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert (
        settings.exit_code == 1
        and "bob is a curator" in settings.output
        and not decisions.second_reviewer_required(store)
    )
    assert store.account("alice").role == "reviewer"  # type: ignore[union-attr]
    assert as_root(runner, "user", "disable", "bob").exit_code == 0
    assert as_root(runner, "db", "settings", "--require-second-reviewer", "on").exit_code == 0
    [secret] = [
        line for line in as_root(runner, "user", "token", "root").stdout.splitlines() if line.startswith("claims_")
    ]
    monkeypatch.setenv("CLAIMS_TOKEN", secret)
    assert runner.invoke(claims, ["user", "enable", "bob"]).exit_code == 0  # the admin's token proves the admin too
    actors = {(e.kind, e.actor) for e in store.audit_log()}
    assert ("account disabled", "root") in actors and ("setting changed", "root") in actors
    assert ("account enabled", "root") in actors


def test_the_hashing_profile_sets_new_hashes_and_any_stored_hash_still_verifies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.core.errors import ConfigError
    from pipeline.team.accounts import check_password
    from pipeline.team.store import Account

    monkeypatch.setenv("CLAIMS_PASSWORD_HASHING", "owasp-minimum")
    cheap = hash_password(PASSWORD)
    monkeypatch.delenv("CLAIMS_PASSWORD_HASHING")
    strong = hash_password(PASSWORD)
    assert "$m=19456,t=2,p=1$" in cheap and "$m=65536,t=3,p=4$" in strong
    for kept in (cheap, strong):  # whatever the profile now, a stored hash keeps its parameters
        account = Account("maria", "curator", kept, disabled=False, created_at="2026-12-07T00:00:00+00:00")
        assert check_password(account, PASSWORD) and not check_password(account, PASSWORD + "x")
    monkeypatch.setenv("CLAIMS_PASSWORD_HASHING", "md5")
    with pytest.raises(ConfigError, match="choose one of rfc9106, owasp-minimum"):
        hash_password(PASSWORD)
