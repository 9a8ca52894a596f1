"""Review: decisions and their rules, optimistic concurrency, history, export, edit, migrations."""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import RUNS, claims

from pipeline.core.errors import ReviewRefusedError, StaleVersionError
from pipeline.core.models import ClaimRecord
from pipeline.llm.recording import load_recording, recorded_pdf
from pipeline.review import decisions
from pipeline.sources.pdf import read_pdf
from pipeline.team.store import STORE_VERSION, Store


@functools.cache
def _pages(pdf: Path) -> tuple[str, ...]:
    """A bundled paper's text, read once a test process (about a hundred tests store one)."""
    return tuple(read_pdf(pdf).pages)


def stored(db: str | Path, *names: str) -> list[str]:
    """Bundled records put in the store with their papers' text, as `claims run` leaves them."""
    store = Store(db)
    ids = []
    for name in names:
        recording, record = load_recording(RUNS / name)
        pdf = recorded_pdf(RUNS / name, recording)
        ids.append(store.add(record, source_pages=list(_pages(pdf)), pdf=pdf.read_bytes()))
    return ids


def test_list_filters_and_show(runner: CliRunner, db: str) -> None:
    faithful, flagged = stored(db, "huang-2010-hpylori-iron", "misbehaving-fabricated-quote")
    listing = runner.invoke(claims, ["review", "list"])
    assert listing.exit_code == 0 and faithful in listing.output and flagged in listing.output
    only_flagged = runner.invoke(claims, ["review", "list", "--flagged"]).output
    assert flagged in only_flagged and faithful not in only_flagged
    assert "0 record(s)" in runner.invoke(claims, ["review", "list", "--status", "approved"]).output
    assert runner.invoke(claims, ["review", "list", "--status", "nope"]).exit_code == 2
    shown = runner.invoke(claims, ["review", "show", faithful[:6]])
    assert "Mechanism — from one study" in shown.output and "created" in shown.output


def test_approve_is_refused_while_flagged_unless_overridden(runner: CliRunner, db: str) -> None:
    [flagged] = stored(db, "misbehaving-fabricated-quote")
    refused = runner.invoke(claims, ["review", "approve", flagged, "--reviewer", "maria"])
    assert refused.exit_code == 1
    assert f"record {flagged} has flags (1 ungrounded quote)" in refused.output and "--override" in refused.output
    ok = runner.invoke(
        claims, ["review", "approve", flagged, "--reviewer", "maria", "--override", "quote checked by hand"]
    )
    assert ok.exit_code == 0, ok.output
    [_created, approved] = Store(db).history(flagged)
    assert (approved.action, approved.actor, approved.version) == ("approved", "maria", 2)
    assert "override: quote checked by hand" in approved.note and '"status": "approved"' in approved.diff


def test_reject_reopen_and_history(runner: CliRunner, db: str) -> None:
    [record_id] = stored(db, "siervo-2016-nitrate")
    assert runner.invoke(claims, ["review", "reject", record_id, "--reviewer", "ana", "--reason", ""]).exit_code == 2
    assert (
        runner.invoke(
            claims, ["review", "reject", record_id, "--reviewer", "ana", "--reason", "wrong outcome"]
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(claims, ["review", "reject", record_id, "--reviewer", "ana", "--reason", "again"]).exit_code == 1
    )
    assert runner.invoke(claims, ["review", "reopen", record_id, "--reviewer", "ana"]).exit_code == 0
    history = runner.invoke(claims, ["review", "history", record_id])
    assert history.exit_code == 0
    for word in ("created", "rejected", "reopened", "wrong outcome"):
        assert word in history.output
    assert Store(db).get(record_id).status.value == "draft"


def test_stale_decision_is_refused_with_who_and_when(db: str) -> None:
    [record_id] = stored(db, "huang-2010-hpylori-iron")
    store = Store(db)
    decisions.reject(store, record_id, 1, "maria", "not convinced")
    with pytest.raises(StaleVersionError) as caught:
        decisions.approve(store, record_id, 1, "joe")
    message = str(caught.value)
    assert message.startswith(f"record {record_id} was changed by maria at ") and message.endswith(
        "(version 2); reload and try again"
    )
    assert [e.action for e in store.history(record_id)] == ["created", "rejected"]


def test_two_concurrent_approvals_one_wins_one_is_refused(db: str) -> None:
    [record_id] = stored(db, "datta-2010-dvt-prophylaxis")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def approve(name: str) -> None:
        store = Store(db)  # each reviewer has a connection of their own
        version = store.version_of(record_id)
        barrier.wait()
        try:
            decisions.approve(store, record_id, version, name)
            outcomes.append("approved")
        except StaleVersionError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=approve, args=(name,)) for name in ("maria", "joe")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o == "approved" for o in outcomes) == [False, True]
    assert "reload and try again" in next(o for o in outcomes if o != "approved")
    assert [e.action for e in Store(db).history(record_id)] == ["created", "approved"]


def test_edit_from_a_file_is_validated_and_rechecked(runner: CliRunner, db: str, tmp_path: Path) -> None:
    [record_id] = stored(db, "huang-2010-hpylori-iron")
    store = Store(db)
    data = store.get(record_id).model_dump(mode="json")
    data["claim"]["original_statement"]["text"] = "A sentence the paper never printed."
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    result = runner.invoke(
        claims,
        [
            "review",
            "edit",
            record_id,
            "--file",
            str(edited),
            "--version",
            "1",
            "--reviewer",
            "ana",
            "--note",
            "tightened",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "version 2" in result.output and "1 flag(s) after re-checking" in result.output
    record = store.get(record_id)
    assert record.status.value == "draft"
    assert any(f.code == "ungrounded_quote" for c in record.checks for f in c.flags)
    assert store.history(record_id)[-1].action == "edited"


def test_invalid_edit_shows_its_errors_and_saves_nothing(runner: CliRunner, db: str, tmp_path: Path) -> None:
    [record_id] = stored(db, "huang-2010-hpylori-iron")
    store = Store(db)
    data = store.get(record_id).model_dump(mode="json")
    data["certainty"]["certainty"] = "certain"
    data["claim"]["original_statement"]["page"] = "one"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    result = runner.invoke(
        claims, ["review", "edit", record_id, "--file", str(edited), "--version", "1", "--reviewer", "ana"]
    )
    assert result.exit_code == 2
    assert "nothing was saved (2 problem(s))" in result.output and "certainty/certainty" in result.output
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert (
        runner.invoke(
            claims, ["review", "edit", record_id, "--file", str(broken), "--version", "1", "--reviewer", "ana"]
        ).exit_code
        == 2
    )
    assert store.version_of(record_id) == 1 and len(store.history(record_id)) == 1


def test_edit_in_the_editor(runner: CliRunner, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [record_id] = stored(db, "datta-2010-dvt-prophylaxis")
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import json, sys\npath = sys.argv[1]\ndata = json.load(open(path))\n"
        "data['claim']['text'] = 'Each way of preventing clots after trauma carries some risk.'\n"
        "json.dump(data, open(path, 'w'))\n"
    )
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    result = runner.invoke(claims, ["review", "edit", record_id, "--reviewer", "ana"])
    assert result.exit_code == 0, result.output
    assert Store(db).get(record_id).claim.text.startswith("Each way of preventing clots")


def test_export_approved_records_with_stable_names(runner: CliRunner, db: str, tmp_path: Path) -> None:
    approved, _draft = stored(db, "huang-2010-hpylori-iron", "siervo-2016-nitrate")
    decisions.approve(Store(db), approved, 1, "maria")
    target = tmp_path / "public"
    result = runner.invoke(claims, ["export", str(target), "--markdown"])
    assert result.exit_code == 0 and "1 approved record(s)" in result.output
    assert sorted(p.name for p in target.iterdir()) == [f"{approved}.json", f"{approved}.md"]
    exported = ClaimRecord.model_validate_json((target / f"{approved}.json").read_text())
    assert exported.status.value == "approved"
    assert runner.invoke(claims, ["validate", str(target / f"{approved}.json")]).exit_code == 0


def test_older_database_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    from pipeline.team import store as store_module

    with sqlite3.connect(path) as db:  # a version-2 database, as the previous release left it
        for script in store_module._SQLITE_STEPS[:2]:
            for statement in filter(str.strip, script.split(";")):
                db.execute(statement)
        db.execute("PRAGMA user_version = 2")
    upgraded = Store(path)
    assert upgraded.schema_version() == STORE_VERSION
    assert upgraded.summaries() == []
    Store(tmp_path / "new.db")  # a new store is made whole from the table definitions

    def schema(db: Path) -> dict[str, object]:
        with sqlite3.connect(db) as connection:
            names = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            indexes = sorted(
                row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
            )
            # (name, type, not null, default, key); a key is never null whether it says so or not
            return {
                name: [(c[1], c[2], c[3] or c[5], c[4], c[5]) for c in connection.execute(f"PRAGMA table_info({name})")]
                for name in names
            } | {"indexes": indexes}

    assert schema(path) == schema(tmp_path / "new.db")  # upgraded step by step = made new


# --------------------------------------------------------------------------- issue 14: states and publishing


def test_only_a_draft_is_decided_and_reopen_changes_a_decision(db: str) -> None:
    [record_id] = stored(db, "huang-2010-hpylori-iron")
    store = Store(db)
    decisions.reject(store, record_id, 1, "maria", "not convinced")
    with pytest.raises(ReviewRefusedError, match="is rejected: only a draft can be approved; reopen it first"):
        decisions.approve(store, record_id, 2, "joe")
    decisions.reopen(store, record_id, 2, "joe", "second look")
    decisions.approve(store, record_id, 3, "joe")
    with pytest.raises(ReviewRefusedError, match="is approved: only a draft can be rejected; reopen it first"):
        decisions.reject(store, record_id, 4, "maria", "changed my mind")
    decisions.reopen(store, record_id, 4, "maria")
    with pytest.raises(ReviewRefusedError, match="is a draft already"):
        decisions.reopen(store, record_id, 5, "maria")
    assert decisions.allowed_actions(store.get(record_id)) == ["approve", "reject", "edit"]


def test_export_keeps_the_approved_version_while_a_newer_draft_waits(
    runner: CliRunner, db: str, tmp_path: Path
) -> None:
    [record_id] = stored(db, "misbehaving-fabricated-quote")
    store = Store(db)
    decisions.approve(store, record_id, 1, "maria", override="the quote is a fair paraphrase of page 1")
    record, version = store.get_versioned(record_id)
    approved_claim = record.claim.text
    record.claim.text = "A newer wording, waiting for review."
    store.update(record, version, "edited", "joe", "")  # the newer draft
    result = runner.invoke(claims, ["export", str(tmp_path / "public"), "--markdown"])
    assert result.exit_code == 0 and "1 approved record(s) written" in result.output
    published = json.loads((tmp_path / "public" / f"{record_id}.json").read_text())
    assert published["claim"]["text"] == approved_claim and published["status"] == "approved"
    page = (tmp_path / "public" / f"{record_id}.md").read_text()
    assert "[FLAG" not in page  # readers get the decision in plain words instead
    assert "Reviewed and approved by maria" in page and "the quote is a fair paraphrase of page 1" in page
    decisions.reopen(store, record_id, 3, "joe")
    decisions.reject(store, record_id, 4, "joe", "withdrawn")
    assert runner.invoke(claims, ["export", str(tmp_path / "later")]).exit_code == 0
    assert not (tmp_path / "later" / f"{record_id}.json").exists()  # a later rejection unpublishes it


def test_at_80_columns_the_list_shows_every_id_and_show_every_citation(
    runner: CliRunner, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.cli.app import out

    ids = stored(db, "huang-2010-hpylori-iron", "datta-2010-dvt-prophylaxis", "misbehaving-fabricated-quote")
    monkeypatch.setattr(out, "width", 80)  # as in an 80-column terminal
    listing = runner.invoke(claims, ["review", "list"]).output
    assert all(record_id in listing for record_id in ids)
    assert max(len(line) for line in listing.splitlines()) <= 80
    page = runner.invoke(claims, ["show", ids[0]]).output
    unwrapped = re.sub(r"[\s\x1b]+|\[\d+m", "", page)  # lines joined again: is everything still there?
    assert (
        unwrapped.count("(10.1136/pgmj.2009.089987)") == 4 and unwrapped.count("[reportedbythestudy]") == 3
    )  # all 4 steps


# --------------------------------------------------------------------------- issue 16: recheck after publication


def test_recheck_flags_a_retraction_and_a_correction_and_unpublishes_until_a_reviewer_acts(
    runner: CliRunner, db: str, tmp_path: Path, cassette
) -> None:
    corrected, retracted = stored(db, "huang-2010-hpylori-iron", "siervo-2016-nitrate")
    store = Store(db)
    record, version = store.get_versioned(retracted)
    record.studies[0].reference.doi = "10.1155/2022/8341966"  # a study later retracted (see the cassette)
    store.update(record, version, "edited", "setup", "")
    for record_id in (corrected, retracted):
        decisions.approve(store, record_id, store.version_of(record_id), "maria")
    cassette("recheck_notices", mailto=False)
    result = runner.invoke(claims, ["recheck", "--all"])
    assert result.exit_code == 0, result.output
    assert "study_retracted: 10.1155/2022/8341966 was retracted (from openalex (is_retracted))" in result.output
    assert (
        "study_corrected: 10.1136/pgmj.2009.089987 was corrected on 2011-02-01: notice "
        "10.1136/pgmj.2009.089987corr1 (from crossref (publisher))"
    ) in result.output
    assert "2 record(s) rechecked; 2 with news" in result.output
    now = store.get(retracted)
    assert now.status.value == "draft" and now.studies[0].reference.retracted is True
    assert store.history(retracted)[-1].action == "rechecked"
    assert runner.invoke(claims, ["export", str(tmp_path / "public")]).exit_code == 0
    assert not list((tmp_path / "public").glob("*.json"))  # both out of the export until a reviewer acts
    again = runner.invoke(claims, ["recheck", "--all"])
    assert "0 with news" in again.output  # a notice is reported once
    decisions.approve(
        store, corrected, store.version_of(corrected), "maria", override="the correction changes no finding"
    )
    runner.invoke(claims, ["export", str(tmp_path / "after")])
    assert [p.stem for p in (tmp_path / "after").glob("*.json")] == [corrected]
    flags = [f.code for c in store.get(corrected).checks for f in c.flags]
    assert "study_corrected" in flags  # the notice stays on the record, and on its public page
