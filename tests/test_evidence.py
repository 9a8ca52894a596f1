"""Multi-study claims: add-evidence (stance, re-synthesis, checks), idempotence, a refused
stance, history, the Pro / Against scores, and matching a paper to claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DVT_PDF, HPYLORI_PDF, NITRATE_PDF, RUNS, claims, load_scripts
from scripted_endpoint import ScriptedEndpoint
from test_review import stored

from pipeline.core.errors import ReviewRefusedError
from pipeline.core.models import ClaimRecord, Stance, StudyDesign
from pipeline.review import decisions
from pipeline.team.store import Store
from pipeline.workflow.evidence import DESIGN_WEIGHT, evidence_scores, study_weight


@pytest.fixture
def evidence_env(monkeypatch: pytest.MonkeyPatch):
    with ScriptedEndpoint(load_scripts()) as endpoint:
        monkeypatch.setenv("OPENAI_BASE_URL", endpoint.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-evidence")
        yield endpoint


def test_add_evidence_classifies_resynthesises_and_rechecks(
    runner: CliRunner, evidence_env, clean_environment: Path
) -> None:
    [claim_id] = stored(clean_environment, "huang-2010-hpylori-iron")
    result = runner.invoke(
        claims, ["add-evidence", claim_id, str(DVT_PDF), "--model", "scripted-add-evidence", "--reviewer", "ana"]
    )
    assert result.exit_code == 0, result.output
    assert "10.1186/1752-2897-4-1: no clear bearing" in result.output and "synthesis from 2 studies" in result.output
    store = Store(clean_environment)
    record = store.get(claim_id)
    assert record.status.value == "draft" and store.version_of(claim_id) == 2
    assert [s.stance for s in record.studies] == [Stance.supporting, Stance.no_clear_bearing]
    assert record.scores.pro == pytest.approx(study_weight(record.studies[0]), abs=0.1) and record.scores.against == 0
    quotes = next(c for c in record.checks if c.name == "quotes").quotes
    assert {q.study_id for q in quotes} == {"10.1136/pgmj.2009.089987", "10.1186/1752-2897-4-1"}
    assert all(q.status.value == "grounded" for q in quotes)  # each found in its own study's text
    assert [c.name for c in record.checks] == [
        "quotes",
        "citations",
        "numbers",
        "causal_chain",
        "strength",
        "directions",
        "free_text",
        "topic",
        "grade",
        "plain_language",
        "schema",
    ]
    last = store.history(claim_id)[-1]
    assert (last.action, last.actor) == ("evidence added", "ana") and "no_clear_bearing" in last.note
    assert [r["response_format"]["json_schema"]["name"] for r in evidence_env.scripts.requests] == [
        "extract",
        "stance",
        "synthesis",
    ]


def test_adding_the_same_study_twice_changes_nothing(runner: CliRunner, evidence_env, clean_environment: Path) -> None:
    [claim_id] = stored(clean_environment, "huang-2010-hpylori-iron")
    again = runner.invoke(claims, ["add-evidence", claim_id, str(HPYLORI_PDF), "--model", "scripted-add-evidence"])
    assert again.exit_code == 0 and "is already a study of record" in again.output and "nothing changed" in again.output
    assert Store(clean_environment).version_of(claim_id) == 1 and evidence_env.scripts.requests == []
    first = runner.invoke(claims, ["add-evidence", claim_id, str(DVT_PDF), "--model", "scripted-add-evidence"])
    assert first.exit_code == 0
    second = runner.invoke(claims, ["add-evidence", claim_id, str(DVT_PDF), "--model", "scripted-add-evidence"])
    assert "nothing changed" in second.output and Store(clean_environment).version_of(claim_id) == 2


def test_a_stance_under_another_study_id_is_taken_as_the_new_study_s_with_a_note(
    runner: CliRunner, evidence_env, clean_environment: Path
) -> None:
    """The scripted model names the claim's first study in the stance of the one being added, even
    after the repair: only one study was given, so the stance is that study's, and the record says so."""
    [claim_id] = stored(clean_environment, "huang-2010-hpylori-iron")
    result = runner.invoke(claims, ["add-evidence", claim_id, str(DVT_PDF), "--model", "scripted-foreign-stance"])
    assert result.exit_code == 0, result.output
    store = Store(clean_environment)
    assert store.version_of(claim_id) == 2
    record = store.get(claim_id)
    [note] = [n for c in record.checks if c.name == "model_output" for n in c.notes]
    assert (note.where, note.code) == ("studies[1].stance", "stance_id_mapped")
    assert "10.1136/pgmj.2009.089987" in note.message
    assert record.studies[1].reference.study_id == "10.1186/1752-2897-4-1"


def test_the_approved_version_stays_in_the_history(runner: CliRunner, evidence_env, clean_environment: Path) -> None:
    [claim_id] = stored(clean_environment, "huang-2010-hpylori-iron")
    store = Store(clean_environment)
    decisions.approve(store, claim_id, 1, "maria")
    assert (
        runner.invoke(claims, ["add-evidence", claim_id, str(DVT_PDF), "--model", "scripted-add-evidence"]).exit_code
        == 0
    )
    history = store.history(claim_id)
    assert [e.action for e in history] == ["created", "approved", "evidence added"]
    removed = [line for line in history[-1].diff.splitlines() if line.startswith("-")]
    assert any('"status": "approved"' in line for line in removed) and store.get(claim_id).status.value == "draft"


def test_page_shows_every_study_and_the_scores() -> None:
    from pipeline.review.render import render

    page = render(ClaimRecord.model_validate_json((RUNS / "evidence-datta-on-huang" / "record.json").read_text()), "md")
    for part in (
        "Synthesis from 2 studies",
        "Supporting (1)",
        "Contradicting (0)",
        "No clear bearing (1)",
        "Pro 40 / Against 0",
        "design weight x (1 + log10(1 + n/10))",
    ):
        assert part in page


def test_scores_are_monotone() -> None:
    record = ClaimRecord.model_validate_json((RUNS / "evidence-datta-on-huang" / "record.json").read_text())
    base = evidence_scores(record.studies)
    rct = record.studies[0].model_copy(
        deep=True, update={"design": StudyDesign.randomised_controlled_trial, "stance": Stance.supporting}
    )
    rct.findings[0].sample_size = 1200
    more = evidence_scores([*record.studies, rct])
    assert more.pro > base.pro and more.against == base.against
    against = evidence_scores([*record.studies, rct.model_copy(update={"stance": Stance.contradicting})])
    assert against.pro == base.pro and against.against > 0
    unrelated = evidence_scores([*record.studies, rct.model_copy(update={"stance": Stance.no_clear_bearing})])
    assert unrelated == base
    assert all(weight > 0 for weight in DESIGN_WEIGHT.values()) and set(DESIGN_WEIGHT) == set(StudyDesign)


def test_match_lists_the_claims_a_paper_bears_on(runner: CliRunner, clean_environment: Path) -> None:
    huang, siervo, datta = stored(
        clean_environment, "huang-2010-hpylori-iron", "siervo-2016-nitrate", "datta-2010-dvt-prophylaxis"
    )
    result = runner.invoke(claims, ["match", str(NITRATE_PDF)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if any(i in line for i in (huang, siervo, datta))]
    assert siervo in rows[0] and "population:" in result.output
    top = runner.invoke(claims, ["match", str(HPYLORI_PDF)]).output
    assert next(i for i in (huang, siervo, datta) if i in top.split("\n", 4)[-1]) == huang


# --------------------------------------------------------------------------- the evaluation harness

from conftest import FIXTURES  # noqa: E402

from pipeline.core.errors import InputError  # noqa: E402
from pipeline.workflow.evaluation import read_dataset  # noqa: E402

CLAIMS = FIXTURES / "claims"


def test_datasets_are_read_in_both_formats() -> None:
    healthver = read_dataset(CLAIMS / "healthver_dev_sample.csv")
    assert len(healthver) == 12 and [r.label for r in healthver[:1]] == [Stance.supporting]
    assert {r.label for r in healthver} == set(Stance)
    citint = read_dataset(CLAIMS / "citint_claims_sample.jsonl", CLAIMS / "citint_corpus_sample.jsonl")
    assert citint and all(r.evidence for r in citint)
    assert citint[0].label is Stance.supporting and citint[0].row_id == "0:31000"
    with pytest.raises(InputError, match="pass --corpus"):
        read_dataset(CLAIMS / "citint_claims_sample.jsonl")
    assert len(read_dataset(CLAIMS / "healthver_dev_sample.csv", limit=5)) == 5


def test_eval_prints_accuracy_and_the_confusion_matrix(runner: CliRunner, evidence_env, tmp_path: Path) -> None:
    result = runner.invoke(
        claims, ["eval", str(CLAIMS / "healthver_dev_sample.csv"), "--record", str(tmp_path / "eval")]
    )
    assert result.exit_code == 0, result.output
    assert "accuracy 0.8333 (10 of 12)" in result.output
    matrix = json.loads((tmp_path / "eval" / "recording.json").read_text())["evaluation"]["result"]["confusion"]
    assert matrix["supporting"] == {"supporting": 3, "contradicting": 0, "no_clear_bearing": 1, "error": 0}
    assert matrix["contradicting"]["supporting"] == 1 and matrix["no_clear_bearing"]["no_clear_bearing"] == 4
    replay = runner.invoke(claims, ["replay", str(tmp_path / "eval")])
    assert replay.exit_code == 0 and "accuracy 0.8333 as recorded" in replay.output


def test_batch_attach_adds_each_paper_to_the_claims_it_matches(
    runner: CliRunner, clean_environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [claim_id] = stored(clean_environment, "huang-2010-hpylori-iron")
    scripts = load_scripts()
    evidence = next(s for s in scripts.scripts if s["name"] == "evidence-datta-on-huang")
    datta = next(s for s in scripts.scripts if s["name"] == "datta-2010-dvt-prophylaxis")
    datta["answers"]["stance"] = evidence["answers"]["stance"]
    scripts.scripts.append(
        {
            "name": "synthesis",
            "match": "Studies (JSON: identifier",
            "answers": {"synthesis": evidence["answers"]["synthesis"]},
        }
    )
    listing = tmp_path / "papers.txt"
    listing.write_text(f"{DVT_PDF}\n")
    with ScriptedEndpoint(scripts) as endpoint:
        monkeypatch.setenv("OPENAI_BASE_URL", endpoint.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("CLAIMS_REVIEWER", "cora")
        monkeypatch.chdir(tmp_path)
        other_db = tmp_path / "other.db"
        stored(other_db, "huang-2010-hpylori-iron")
        high = runner.invoke(
            claims,
            [
                "batch",
                str(listing),
                "--attach",
                "--attach-threshold",
                "90",
                "--report",
                "high.json",
                "--db",
                str(other_db),
            ],
        )
        assert high.exit_code == 0 and json.loads((tmp_path / "high.json").read_text())["papers"][0]["attached"] == []
        low = runner.invoke(
            claims, ["batch", str(listing), "--attach", "--attach-threshold", "10", "--report", "low.json"]
        )
    assert low.exit_code == 0, low.output
    paper = json.loads((tmp_path / "low.json").read_text())["papers"][0]
    assert paper["attached"] == [claim_id] and paper["attach_errors"] == []
    store = Store(clean_environment)
    claim = store.get(claim_id)
    assert len(claim.studies) == 2 and claim.status.value == "draft"
    # the curator who ran the batch made the new version, as with claims add-evidence: under the
    # four-eyes rule another reviewer approves it
    assert store.history(claim_id)[-1].actor == "cora"
    with pytest.raises(ReviewRefusedError, match="another reviewer must approve it"):
        decisions.approve(store, claim_id, store.version_of(claim_id), "cora", override="ok", second_reviewer=True)


def test_the_stored_claims_a_batch_matches_against_are_read_again_only_when_changed(db: str) -> None:
    """`--attach` matches every paper of a batch against the store's claims: each paper sees every
    claim as it is now (one just added or edited by another worker too), and a claim that did not
    change is not read and parsed again."""
    from pipeline.workflow.paper import StoredClaims

    [first] = stored(db, "huang-2010-hpylori-iron")
    store = Store(db)
    keeper = StoredClaims(store)
    [before] = keeper.current()
    [second] = stored(db, "siervo-2016-nitrate")
    now = {claim.record_id: claim for claim in keeper.current()}
    assert set(now) == {first, second} and now[first] is before  # unchanged: the same object, not read again
    edited = store.get(first)
    edited.claim.text = "H. pylori eradication may raise haemoglobin in adults with iron deficiency anaemia."
    decisions.edit(store, first, 1, edited.model_dump_json(), "ana", "wording")
    again = {claim.record_id: claim for claim in keeper.current()}
    assert again[first] is not before and again[first].claim.text == edited.claim.text
    assert again[second] is now[second]
