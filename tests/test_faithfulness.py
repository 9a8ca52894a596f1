"""What a sentence claims and what a quote reports: the claim-strength reader, the strength rules
that hold every reader-facing sentence to its evidence, each finding read against its own quote,
and `claims eval strength|direction`. The sentences and passages are the project's own."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, ROOT, claims, replayed

from pipeline.core.models import Certainty, ClaimRecord, Direction, StudyDesign
from pipeline.stages.check import check_directions, check_strength, strongest_allowed
from pipeline.stages.claim_strength import Strength, read_strength, sentences
from pipeline.stages.effect_direction import MODEL_FILE, Reported, read_direction, significance_cue

STRENGTH_SET = FIXTURES / "eval" / "strength_sentences.csv"
DIRECTION_SET = FIXTURES / "eval" / "direction_passages.csv"


# --------------------------------------------------------------------------- one sentence's strength


@pytest.mark.parametrize(
    ("sentence", "label"), [(r["sentence"], int(r["label"])) for r in csv.DictReader(STRENGTH_SET.open())]
)
def test_each_class_of_claim_strength(sentence: str, label: int) -> None:
    assert read_strength(sentence).strength == Strength(label)


@pytest.mark.parametrize(
    ("sentence", "strength", "negated"),
    [
        ("Vitamin D did not reduce the number of falls.", Strength.direct_causal, True),
        ("The drug failed to lower blood pressure.", Strength.direct_causal, True),
        ("Vitamin D may reduce the number of falls.", Strength.conditional_causal, False),
        ("These results suggest that the drug might lower blood pressure.", Strength.conditional_causal, False),
        ("Vitamin D use is associated with fewer falls.", Strength.correlational, False),
        ("Night-shift work predicts weight gain.", Strength.correlational, False),
        ("People who slept longer had lower blood pressure.", Strength.correlational, False),
        ("Blood pressure was lower in the treated group than in controls.", Strength.correlational, False),
        ("Programmes to improve adherence are needed.", Strength.not_a_claim, False),
    ],
)
def test_negation_hedges_association_and_comparisons(sentence: str, strength: Strength, negated: bool) -> None:
    reading = read_strength(sentence)
    assert (reading.strength, reading.negated) == (strength, negated)


def test_sentences_do_not_break_at_abbreviations() -> None:
    assert sentences("The stomach germ H. pylori may matter (Smith et al. 2010). It is common, e.g. in Asia.") == [
        "The stomach germ H. pylori may matter (Smith et al. 2010).",
        "It is common, e.g. in Asia.",
    ]


# --------------------------------------------------------------------------- the evidence allows so much


def huang() -> ClaimRecord:
    return replayed("huang-2010-hpylori-iron")


def test_a_cohort_record_may_say_associated_but_not_raises() -> None:
    record = huang()
    record.certainty.design = StudyDesign.cohort
    record.studies[0].design = StudyDesign.cohort
    record.claim.text = "Eradicating H. pylori raises haemoglobin."
    [flag] = [f for f in check_strength(record).flags if f.where == "claim.text"]
    assert flag.code == "overstated"
    assert "'Eradicating H. pylori raises haemoglobin.' is direct causal ('raises')" in flag.message
    assert "allows at most correlational: the evidence is from a cohort study, not randomised" in flag.message
    assert "say 'is associated with higher …' instead of 'raises'" in flag.message
    record.claim.text = "Eradicating H. pylori is associated with higher haemoglobin."
    assert "claim.text" not in [f.where for f in check_strength(record).flags]


@pytest.mark.parametrize(
    ("design", "certainty", "studies", "allowed", "why"),
    [
        (StudyDesign.cross_sectional, Certainty.moderate, 1, Strength.correlational, "cross-sectional"),
        (StudyDesign.systematic_review_of_rcts, Certainty.low, 1, Strength.conditional_causal, "is low"),
        (StudyDesign.randomised_controlled_trial, Certainty.high, 1, Strength.conditional_causal, "single randomised"),
        (StudyDesign.systematic_review_of_rcts, Certainty.moderate, 1, Strength.direct_causal, "significant primary"),
    ],
)
def test_the_strongest_wording_follows_from_the_evidence(
    design: StudyDesign, certainty: Certainty, studies: int, allowed: Strength, why: str
) -> None:
    record = huang()
    record.certainty.design, record.certainty.certainty = design, certainty
    assert strongest_allowed(record)[0] is allowed and why in strongest_allowed(record)[1]
    record.claim.text = "Eradicating H. pylori raises haemoglobin and ferritin."
    flagged = bool(check_strength(record).flags)
    assert flagged is (allowed < Strength.direct_causal)


def test_no_effect_may_be_claimed_where_the_primary_finding_shows_none() -> None:
    record = huang()
    record.certainty.certainty = Certainty.moderate
    record.studies[0].findings[0].direction = Direction.no_significant_difference
    assert strongest_allowed(record)[1] == "the primary finding shows no significant effect"
    record.claim.text = "Adding H. pylori eradication to iron may raise haemoglobin."
    [flag] = check_strength(record).flags
    assert "effect_without_support" in flag.message
    record.claim.text = "Adding H. pylori eradication to iron did not raise haemoglobin in these trials."
    assert check_strength(record).flags == []


def test_a_trial_s_measured_result_in_the_past_tense_is_a_report() -> None:
    record = huang()  # low certainty: a general "raises" is too strong, what the trials measured is not
    record.mechanism.summary = "In these trials, eradication raised haemoglobin by 12.88 g/l more than iron alone."
    assert check_strength(record).flags == []
    record.mechanism.summary = "Eradication raises haemoglobin."
    assert check_strength(record).flags


def test_the_mechanism_is_held_to_the_evidence_only_where_it_states_the_finding() -> None:
    record = huang()
    record.mechanism.steps[1].text = "Stomach acid releases iron from food."  # how a mechanism works
    record.mechanism.plain_language = "Iron pills help people with too little iron."
    assert check_strength(record).flags == []
    record.mechanism.steps[1].text = "Eradicating H. pylori raises haemoglobin in everyone."
    record.mechanism.plain_language = "Killing the germ with eradication therapy raises haemoglobin."
    flagged = [f.where for f in check_strength(record).flags]
    assert flagged == ["mechanism.plain_language", "mechanism.steps[1].text"]
    record.studies[0].summary = "Iron pills help people with too little iron."  # a study's summary: every clause
    assert "studies[0].summary" in [f.where for f in check_strength(record).flags]


# --------------------------------------------------------------------------- a finding against its quote


def test_a_no_difference_finding_whose_quote_reports_p_under_00001_is_flagged() -> None:
    record = huang()
    finding = record.studies[0].findings[0]
    assert "p<0.00001" in finding.quote.text
    finding.direction, finding.effect = Direction.no_significant_difference, None
    [flag] = check_directions(record).flags
    assert (flag.where, flag.code) == ("studies[0].findings[0].direction", "direction_contradicts_quote")
    assert "says no significant difference, but its quote reports a significant result (p<0.00001)" in flag.message


def test_a_finding_of_an_effect_whose_quote_reports_none_is_flagged() -> None:
    record = huang()
    finding = record.studies[0].findings[0]
    finding.quote.text = "Haemoglobin did not differ between the groups (p=0.48)."
    [flag] = check_directions(record).flags
    assert "says increased, but its quote reports no significant difference (p=0.48)" in flag.message


def test_a_finding_whose_quote_reports_the_opposite_direction_is_flagged() -> None:
    record = huang()
    finding = record.studies[0].findings[0]
    finding.quote.text = "Haemoglobin was significantly lower with eradication therapy than with iron alone."
    reading = read_direction(finding.intervention, finding.comparator, finding.outcome, finding.quote.text)
    assert reading.reported is Reported.decreased
    [flag] = check_directions(record).flags
    assert "says increased, but its quote reads as decreased" in flag.message


def test_the_faithful_findings_agree_with_their_quotes() -> None:
    for name in ("huang-2010-hpylori-iron", "siervo-2016-nitrate", "datta-2010-dvt-prophylaxis"):
        assert check_directions(replayed(name)).flags == []


def test_significance_is_read_from_p_values_and_intervals() -> None:
    assert significance_cue("WMD 12.88 g/l (95% CI 6.03 to 19.74 g/l, p<0.00001)") == (True, "p<0.00001")
    assert significance_cue("OR 0.92 (95% CI 0.71 to 1.19)") == (False, "interval 0.71 to 1.19 includes 1")
    assert significance_cue("no numbers here") == (None, None)


def test_the_direction_model_is_small_and_names_its_data() -> None:
    model = ROOT / "pipeline" / "stages" / MODEL_FILE
    assert model.stat().st_size < 5 << 20
    data = json.loads(model.read_text())
    assert "Evidence Inference 2.0" in data["source"] and "MIT" in data["source"]
    assert "ev2_test" not in data["source"]


# --------------------------------------------------------------------------- claims eval strength | direction


def test_eval_strength_prints_per_class_figures_and_json(runner: CliRunner) -> None:
    result = runner.invoke(claims, ["eval", "strength", str(STRENGTH_SET)])
    assert result.exit_code == 0, result.output
    assert "3 direct causal" in result.output and "macro-F1" in result.output and "confusion" in result.output
    result = runner.invoke(claims, ["eval", "strength", str(STRENGTH_SET), "--json"])
    data = json.loads(result.output)
    assert data["n"] == 40 and set(data["per_class"]) == {"0", "1", "2", "3"}
    assert set(data["per_class"]["3"]) >= {"precision", "recall", "f1"} and 0 <= data["macro_f1"] <= 1
    assert data["accuracy"] == sum(data["confusion"][k][k] for k in "0123") / 40


def test_eval_direction_json(runner: CliRunner) -> None:
    result = runner.invoke(claims, ["eval", "direction", str(DIRECTION_SET), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["n"] == 24 and set(data["per_class"]) == {"increased", "decreased", "no_difference"}


def test_eval_refuses_a_bad_labelled_file_in_one_line(runner: CliRunner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("sentence,label\nCoffee is associated with less diabetes.,correlational\n")
    result = runner.invoke(claims, ["eval", "strength", str(wrong)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {wrong}, line 2: label 'correlational' is not one of 0, 1, 2, 3"
    result = runner.invoke(claims, ["eval", "direction", str(STRENGTH_SET)])
    assert result.exit_code == 2 and "needs the columns intervention,comparator,outcome,evidence" in result.output
    result = runner.invoke(claims, ["eval", "strength"])
    assert result.exit_code == 2 and "needs its labelled CSV" in result.output


# --------------------------------------------------------------------------- the second opinion


def test_a_second_opinion_flags_the_finding_it_doubts_and_replays_offline(
    runner: CliRunner, live_env, tmp_path, clean_environment
) -> None:  # type: ignore[no-untyped-def]
    from conftest import HPYLORI_PDF

    from pipeline.team.store import Store

    recording = tmp_path / "verified"
    result = runner.invoke(
        claims,
        [
            "run",
            str(HPYLORI_PDF),
            "--model",
            "scripted-endpoint",
            "--verify-with",
            "scripted-verifier",
            "--record",
            str(recording),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "[+] verify: scripted-verifier: 1 of 5 finding(s) not borne out by their quotes" in result.output
    [summary] = Store(clean_environment).summaries()
    record = Store(clean_environment).get(summary.record_id)
    [doubt] = [f for c in record.checks if c.name == "second_opinion" for f in c.flags]
    assert (doubt.where, doubt.code) == ("studies[0].findings[3]", "second_opinion")
    assert "(scripted-verifier) finds this finding partly borne out" in doubt.message and "comparator" in doubt.message
    models = [r["model"] for r in live_env.scripts.requests]
    assert models == ["scripted-endpoint"] * 3 + ["scripted-verifier"]
    assert "verify.md" in record.provenance.prompts and any(u.stage == "verify" for u in record.provenance.usage)
    replayed_run = runner.invoke(claims, ["replay", str(recording)])
    assert replayed_run.exit_code == 0 and "record identical" in replayed_run.output


def test_without_the_option_a_run_makes_the_same_calls_as_before(runner: CliRunner, live_env) -> None:  # type: ignore[no-untyped-def]
    from conftest import HPYLORI_PDF

    result = runner.invoke(claims, ["run", str(HPYLORI_PDF), "--model", "scripted-endpoint"])
    assert result.exit_code == 0, result.output
    assert [r["model"] for r in live_env.scripts.requests] == ["scripted-endpoint"] * 3
    assert "verify" not in result.output


def test_the_review_page_lists_the_second_opinion_s_doubts_first(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from starlette.testclient import TestClient

    from pipeline.core.models import Flag
    from pipeline.stages.check import second_opinion_result
    from pipeline.team.store import Store
    from pipeline.web import create_app

    record = replayed("misbehaving-fabricated-quote")  # an ungrounded quote, flagged
    doubt = Flag(where="studies[0].findings[3]", code="second_opinion", message="a second opinion doubts it")
    record.checks.append(second_opinion_result([doubt]))
    store = Store(tmp_path / "s.db")
    store.add(record)
    page = TestClient(create_app(store), base_url="http://127.0.0.1:8000").get(f"/records/{record.record_id}").text
    summary = page[page.index('id="flag-summary"') :]
    assert summary.index("second_opinion") < summary.index("ungrounded_quote")


def test_the_second_opinion_s_schema_asks_one_verdict_for_each_finding_given() -> None:
    from pipeline.core.models import SecondOpinionOutput
    from pipeline.llm.strict_schema import RequestFacts, request_schema
    from pipeline.stages.verify import _each_finding_once

    schema = request_schema(SecondOpinionOutput, RequestFacts(findings=5))
    verdicts = schema["properties"]["verdicts"]
    assert (verdicts["minItems"], verdicts["maxItems"]) == (5, 5)
    item = schema["$defs"]["FindingVerdict"]["properties"]["finding"]
    assert (item["minimum"], item["maximum"]) == (0, 4)
    answer = SecondOpinionOutput.model_validate(
        {"verdicts": [{"finding": 0, "verdict": "supported", "differs": [], "reason": "r"}] * 2}
    )
    assert _each_finding_once(answer, 2) == [
        "verdicts: no verdict for finding 1",
        "verdicts: finding 0 judged more than once",
    ]
