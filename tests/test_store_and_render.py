"""The store keeps whole, valid records with their history; the page is laid out like the seed
claim page and escapes everything that came from a PDF."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from conftest import RUNS

from pipeline.core.errors import RecordNotFoundError, RecordSchemaError, StoreError
from pipeline.core.models import ClaimRecord
from pipeline.review.render import render
from pipeline.team.store import STORE_VERSION, Store


def bundled(name: str = "huang-2010-hpylori-iron") -> ClaimRecord:
    return ClaimRecord.model_validate_json((RUNS / name / "record.json").read_text())


def test_add_get_by_prefix_and_history(db: str) -> None:
    store = Store(db)
    record = bundled()
    store.add(record)
    assert store.get(record.record_id[:5]) == record
    [summary] = store.summaries()
    assert summary.status == "draft" and summary.study == "10.1136/pgmj.2009.089987"
    [entry] = store.history(record.record_id)
    assert (entry.version, entry.action, entry.actor) == (1, "created", "pipeline")


def test_duplicate_id_is_refused(db: str) -> None:
    store = Store(db)
    store.add(bundled())
    with pytest.raises(StoreError, match="already stored"):
        store.add(bundled())
    assert len(store.summaries()) == 1


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_invalid_record_is_never_written(db: str) -> None:
    store = Store(db)
    record = bundled()
    record.studies[0].findings[0].quote.page = "seven"  # type: ignore[assignment]
    with pytest.raises(RecordSchemaError):
        store.add(record)
    assert store.summaries() == []


def test_ambiguous_and_unknown_ids(db: str) -> None:
    store = Store(db)
    for name, record_id in (("huang-2010-hpylori-iron", "abc111111111"), ("siervo-2016-nitrate", "abc222222222")):
        record = bundled(name)
        record.record_id = record_id
        store.add(record)
    with pytest.raises(RecordNotFoundError, match="no record"):
        store.get("zz")
    with pytest.raises(RecordNotFoundError, match="no record"):
        store.get("%")  # a LIKE wildcard is a character, not a pattern
    with pytest.raises(RecordNotFoundError, match="several"):
        store.get("abc")
    assert store.get("abc2").record_id == "abc222222222"


def test_newer_database_is_refused(db: str) -> None:
    store = Store(db)
    with store._write() as connection:  # as a later release of claims would leave it
        store._set_version(connection, STORE_VERSION + 1)
    with pytest.raises(StoreError, match="newer than this claims"):
        Store(db)


def test_page_has_every_part_of_the_seed_page() -> None:
    page = render(bundled("siervo-2016-nitrate"), "md")
    order = [
        "# In healthy adults aged 60 to 75",
        "Original statement:",
        "## Mechanism — from one study",
        "### How it works",
        "### Most probable mechanism",
        "In simple terms:",
        "1. Dietary nitrate",
        "## Evidence from studies",
        "### Supporting (1)",
        "### Contradicting (0)",
        "Community contributions welcome",
        "## Evidence quality (GRADE)",
        "## Gold Standard Evidence Needed",
        "## Checks",
    ]
    positions = [page.index(part) for part in order]
    assert positions == sorted(positions)
    assert "[inferred]" in page and "[reported by the study]" in page
    assert "(10.1016/j.nutres.2016.11.004)" in page


def test_gold_standard_on_the_page_is_strongest_first() -> None:
    page = render(bundled(), "md")
    gold = page[page.index("## Gold Standard Evidence Needed") :]
    assert gold.index("A systematic review of RCTs.") < gold.index("A randomised controlled trial.")
    assert "Who: " in gold and "What it would settle: " in gold  # sentences, not fields run together


def test_the_page_explains_grade_and_names_the_licence() -> None:
    page = render(bundled("siervo-2016-nitrate"), "md")
    assert "Imprecision: are the results too uncertain (few people, wide ranges)?" in page
    assert "further research" in page  # what the certainty level means
    from pipeline.review.render import licence_name

    assert licence_name("https://creativecommons.org/licenses/by-nc-nd/4.0/") == "CC BY-NC-ND 4.0"
    assert (
        licence_name("http://www.elsevier.com/open-access/userlicense/1.0/")
        == "http://www.elsevier.com/open-access/userlicense/1.0/"
    )


def test_html_escapes_text_from_the_paper() -> None:
    record = bundled()
    record.claim.text = "<script>alert(1)</script> & more"
    record.studies[0].findings[0].quote.text = '"><img src=x onerror=alert(1)>'
    page = render(record, "html")
    assert "<script>alert" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page


def test_markdown_tables_survive_pipes() -> None:
    record = bundled()
    record.studies[0].findings[0].outcome = "a | b"
    assert "a \\| b" in render(record, "md")


def test_retracted_study_is_flagged_on_the_page() -> None:
    record = bundled("siervo-2016-nitrate")
    record.studies[0].reference.retracted = True
    page = render(record, "md")
    banner = page.index("RETRACTED: \u201cDietary nitrate does not have an effect")
    assert banner < page.index("Original statement")
    assert "\u00b7 RETRACTED" in page


def test_study_reference_details_are_shown() -> None:
    page = render(bundled("siervo-2016-nitrate"), "md")
    assert (
        "Mario Siervo, Clio Oggioni, Djordje G Jakovljevic et al.. Nutrition Research, 2016. doi:10.1016/j.nutres.2016.11.004"
        not in page
    )
    assert (
        "Mario Siervo, Clio Oggioni, Djordje G Jakovljevic et al. Nutrition Research, 2016. doi:10.1016/j.nutres.2016.11.004"
        in page
    )
    assert "Type: journal-article" in page and "Metadata: crossref, openalex, unpaywall" in page


def _open_stores_at_once(folder: Path, rounds: int, start: Any, errors: Any) -> None:
    """One of the openers: in each round, the same new store as the others, at the same moment."""
    for round_ in range(rounds):
        start.wait(timeout=60)
        try:
            Store(str(folder / f"{round_}.db"))
        except Exception as exc:  # reported to the test, which names it
            errors.put(f"round {round_}: {type(exc).__name__}: {exc}")


def test_workers_opening_a_new_store_at_once_all_get_it(tmp_path: Path) -> None:
    """Two batches started together on a new SQLite store: neither ends on "database is locked"
    (turning the new file to WAL made the loser fail at once; about one round in ten did)."""
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    start = context.Barrier(4)
    openers = [context.Process(target=_open_stores_at_once, args=(tmp_path, 40, start, errors)) for _ in range(4)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join()
    assert errors.empty(), errors.get()
    assert [opener.exitcode for opener in openers] == [0] * 4
