"""Faithfulness checks: the faithful recordings pass with no flag; each misbehaving one is caught;
normalisation works on real extracted text."""

from __future__ import annotations

import hashlib
import json
import resource
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import HPYLORI_PDF, NITRATE_PDF, RUNS, claims, replayed
from pdfmaker import make_bomb_pdf

from pipeline.core.models import ClaimRecord, StepBasis, StudyDesign
from pipeline.review.render import render
from pipeline.sources.pdf import PypdfExtractor, read_pdf
from pipeline.stages.check import (
    check_citations,
    check_strength,
    check_topic,
    crosses_no_effect,
    number_sanity,
    run_checks,
    strength_rules,
    supports,
)
from pipeline.stages.readability import score
from pipeline.stages.textmatch import canonical_number, locate, normalise, numbers_in

FAITHFUL = ["huang-2010-hpylori-iron", "siervo-2016-nitrate", "datta-2010-dvt-prophylaxis"]


def record_of(name: str) -> ClaimRecord:
    """The bundled run replayed: the checks run again here, not read from the stored record."""
    return replayed(name)


def flags_of(record: ClaimRecord) -> list[tuple[str, str, str]]:
    return [(c.name, f.code, f.where) for c in record.checks for f in c.flags]


def notes_of(record: ClaimRecord) -> list[tuple[str, str]]:
    return [(n.code, n.where) for c in record.checks for n in c.notes]


# --------------------------------------------------------------------------- normalisation


def pypdf_pages(path: Path) -> list[str]:
    """pypdf's text keeps ligatures (ﬁ) that PDFium decomposes: the harder case for matching."""
    return read_pdf(path, PypdfExtractor()).pages


def test_ligature_and_line_break_hyphenation_in_real_text() -> None:
    pages = pypdf_pages(HPYLORI_PDF)
    assert "deﬁciency" in pages[4] and "esti-\nmates" in pages[3]
    found = locate("an association between H pylori and iron deficiency", pages, 5)
    assert (found.page, found.similarity) == (5, 100.0)
    assert pages[4][found.start : found.end].endswith("deﬁciency")
    hyphenated = locate("lower than the pooled estimates for adult individuals", pages, 4)
    assert pages[3][hyphenated.start : hyphenated.end] == "lower than the pooled esti-\nmates for adult individuals"


def test_mathematical_letters_minus_and_spacing_in_real_text() -> None:
    pages = pypdf_pages(NITRATE_PDF)
    assert "𝑁𝑂3 −" in pages[13]
    pdfium = read_pdf(NITRATE_PDF).pages
    assert "𝑁𝑂3\n− supplementation" in pdfium[13]
    assert locate("no significant effects of dietary NO3− supplementation", pdfium, 14).similarity == 100.0
    found = locate(
        "no significant effects of dietary NO3− supplementation on measures of physical capability", pages, 14
    )
    assert found.page == 14 and found.similarity == 100.0


def test_publisher_glyph_codes() -> None:
    text, origin = normalise("95% CI /C00.40 to 18.66 g/l, p¼0.02 \u2013 \u201cquoted\u201d")
    assert text == '95% ci -0.40 to 18.66 g/l, p=0.02 - "quoted"'
    assert len(origin) == len(text)


@pytest.mark.parametrize(
    ("raw", "canonical"), [("0.050", "0.05"), (".05", "0.05"), ("1,234", "1234"), ("\u22122.40", "-2.4"), ("19", "19")]
)
def test_number_canonical_forms(raw: str, canonical: str) -> None:
    assert canonical_number(raw) == canonical


def test_numbers_in_text_accept_equivalent_forms() -> None:
    found = numbers_in("n = 1,234; p < .05; 95 % CI \u22120.40 to 18.66; aged 60-75")
    assert {"1234", "0.05", "-0.4", "0.4", "18.66", "60", "75"} <= found
    assert "-75" not in found and "-18.66" not in found  # a range is not a negative number


def test_readability_scores_and_strips_citations() -> None:
    seed = (
        "When you do leg presses first and then leg extensions, the leg press fatigues the outer thigh muscle more, so if "
        "you push to failure on the leg press, that outer muscle grows more but leaves the front thigh muscle too tired "
        "to work hard on the leg extension. But if you stop one or two reps before failure on the leg press, the front "
        "thigh muscle stays fresher and works harder during the leg extension, making it grow a bit more \u2014 this "
        "pattern is seen in the study with DOI 10.1080/02640414.2024.2321021."
    )
    hard = score(seed)
    assert hard.grade > 15 and hard.words_per_sentence > 40 and not hard.meets_target
    assert score("Iron pills help. They raise iron (see 10.1136/pgmj.2009.089987).").words == 6
    assert score("The germ lives in the stomach. Killing it helps iron pills work.").meets_target


# --------------------------------------------------------------------------- recordings


@pytest.mark.parametrize("name", FAITHFUL)
def test_faithful_recordings_pass_with_no_flag(name: str) -> None:
    record = record_of(name)
    assert flags_of(record) == []
    quotes = next(c for c in record.checks if c.name == "quotes")
    assert quotes.quotes and all(q.status.value == "grounded" and q.start is not None for q in quotes.quotes)
    assert all(r.meets_target for c in record.checks for r in c.readability)


MISBEHAVING = {
    "misbehaving-fabricated-quote": [("quotes", "ungrounded_quote", "studies[0].findings[1].quote")],
    "misbehaving-paraphrased-quote": [("quotes", "ungrounded_quote", "claim.original_statement")],
    # removed from the step when the model's answer was salvaged (it broke the request's enum of ids)
    "misbehaving-invented-doi": [("model_output", "foreign_citation", "mechanism.steps[1].citations")],
    "misbehaving-wrong-numbers": [
        ("numbers", "number_not_found", "studies[0].findings[0].sample_size"),
        ("numbers", "number_not_found", "studies[0].findings[1].effect.value"),
    ],
    "misbehaving-overstated": [("strength", "overstated", "claim.text")],
    "misbehaving-effect-without-support": [("strength", "overstated", "claim.text")],
    "misbehaving-grade16-paragraph": [("plain_language", "plain_language", "mechanism.plain_language")],
}


@pytest.mark.parametrize(("name", "expected"), sorted(MISBEHAVING.items()))
def test_each_misbehaviour_is_caught(name: str, expected: list[tuple[str, str, str]]) -> None:
    assert flags_of(record_of(name)) == expected


def test_misbehaving_recordings_say_how_they_misbehave() -> None:
    for name in [*MISBEHAVING, "misbehaving-wrong-page", "misbehaving-prompt-injection"]:
        recording = json.loads((RUNS / name / "recording.json").read_text())
        assert recording["settings"]["model"] == f"scripted-{name.removeprefix('misbehaving-')}"
        assert "not a real model" in recording["made_against"]


def test_paraphrase_reports_its_nearest_passage() -> None:
    [flag] = [f for c in record_of("misbehaving-paraphrased-quote").checks for f in c.flags]
    assert "nearest passage" in flag.message and "% similar" in flag.message


def test_wrong_page_is_corrected_and_noted_not_flagged() -> None:
    record = record_of("misbehaving-wrong-page")
    assert flags_of(record) == []
    assert ("page_corrected", "studies[0].findings[0].quote") in notes_of(record)
    assert record.studies[0].findings[0].quote.page == 1


def test_overstatement_names_the_rule() -> None:
    [flag] = [f for c in record_of("misbehaving-overstated").checks for f in c.flags]
    assert "is direct causal ('cures'), but the evidence allows at most conditional causal" in flag.message
    assert "the certainty of the evidence is low; say 'may cure' instead of 'cures'" in flag.message
    [flag] = [f for c in record_of("misbehaving-effect-without-support").checks for f in c.flags]
    assert "effect_without_support" in flag.message and "'may … improve'" in flag.message


def test_grade16_text_is_rewritten_once_then_flagged_if_still_hard() -> None:
    record = record_of("misbehaving-grade16-paragraph")
    assert ("rewritten", "mechanism.summary") in notes_of(record)
    assert record.mechanism.summary.startswith("Blood thinners slow clotting")
    [usage] = [u for u in record.provenance.usage if u.stage == "rewrite"]
    assert usage.calls == 2
    plain = next(c for c in record.checks if c.name == "plain_language")
    by_where = {r.where: r for r in plain.readability}
    assert not by_where["mechanism.plain_language"].meets_target and by_where["mechanism.summary"].rewritten


def test_prompt_injection_is_caught_and_removed_from_the_page() -> None:
    record = record_of("misbehaving-prompt-injection")
    assert record.studies[0].reference.doi == "10.1186/1752-2897-4-1"  # the planted DOI did not become the study's
    codes = {code for _, code, _ in flags_of(record)}
    assert codes == {"foreign_citation"}
    assert len(flags_of(record)) == 6  # five steps and the plain-language text
    for fmt in ("md", "html"):
        page = render(record, fmt)
        body = page[: page.index("Checks")]
        assert "10.9999/fake" not in body
        assert "citation(s) removed" in body and "[citation removed]" in body


def test_flagged_items_are_marked_on_the_page() -> None:
    page = render(record_of("misbehaving-fabricated-quote"), "md")
    assert (
        "Eradication therapy cured anaemia in all patients within four weeks.\u201d (p. 1) [FLAG ungrounded_quote"
        in page
    )
    page = render(record_of("misbehaving-wrong-numbers"), "md")
    assert "190 [FLAG number_not_found" in page


# --------------------------------------------------------------------------- rules on edited records


def test_reported_step_without_a_grounded_quote_is_shown_as_inferred() -> None:
    record = record_of("huang-2010-hpylori-iron")
    record.mechanism.steps[0].quote = None
    record.mechanism.steps[2].quote.text = "Eradication doubled ferritin in every child."  # type: ignore[union-attr]
    record.checks = run_checks(record, {record.studies[0].reference.study_id: read_pdf(HPYLORI_PDF)})
    assert record.mechanism.steps[0].basis is StepBasis.inferred
    assert record.mechanism.steps[2].basis is StepBasis.inferred
    assert ("retagged_inferred", "mechanism.steps[0]") in notes_of(record)
    assert render(record, "md").count("[inferred]") >= 3


def test_grade_must_follow_from_design() -> None:
    record = record_of("siervo-2016-nitrate")
    record.certainty.design = StudyDesign.cohort
    record.checks = run_checks(record, {record.studies[0].reference.study_id: read_pdf(NITRATE_PDF)})
    codes = [(code, where) for _, code, where in flags_of(record)]
    assert ("grade_inconsistent", "certainty.starting_certainty") in codes
    assert ("grade_inconsistent", "studies[0].design") in codes


def test_causal_wording_from_observational_evidence_is_held_to_association() -> None:
    record = record_of("datta-2010-dvt-prophylaxis")
    rules = strength_rules(record, "Heparin prophylaxis causes bleeding in trauma patients.", "claim.text")
    assert rules and "is direct causal ('causes'), but the evidence allows at most correlational" in rules[0]
    assert "a systematic review of observational studies, not randomised" in rules[0]
    assert strength_rules(record, "Heparin prophylaxis is linked to bleeding in trauma patients.", "claim.text") == []
    assert crosses_no_effect("odds ratio", 0.8, 1.3) and not crosses_no_effect("odds ratio", 1.1, 1.3)
    assert crosses_no_effect("mean difference", -0.113, 0.047) and not crosses_no_effect(
        "weighted mean difference", 6.03, 19.74
    )


def test_support_needs_substance_in_common() -> None:
    assert supports("raised haemoglobin by 12.88 g/l", "The WMD of Hb was 12.88 g/l")
    assert supports(
        "heparins are the recommended first-line prophylaxis", "LMWHs is the recommended primary thromboprophylaxis"
    )
    assert not supports("exercise capacity fell", "plasma nitrate rose after juice")


# --------------------------------------------------------------------------- the command


def test_check_command(runner: CliRunner, tmp_path: Path) -> None:
    ok = runner.invoke(claims, ["check", str(RUNS / "huang-2010-hpylori-iron" / "record.json")])
    assert ok.exit_code == 0, ok.output
    assert "9 quotes: 9 grounded, 0 ungrounded; 0 foreign citations; 0 numbers not found; 0 overstated" in ok.output
    bad = runner.invoke(
        claims, ["check", str(RUNS / "misbehaving-wrong-numbers" / "record.json"), "-o", str(tmp_path / "c.json")]
    )
    assert bad.exit_code == 1
    assert "FLAG number_not_found at studies[0].findings[0].sample_size: 190 does not appear" in bad.output
    assert json.loads((tmp_path / "c.json").read_text())["record_id"]
    wrong = runner.invoke(
        claims, ["check", str(RUNS / "huang-2010-hpylori-iron" / "record.json"), "--pdf", str(NITRATE_PDF)]
    )
    assert wrong.exit_code == 2 and "is not a PDF this record was made from" in wrong.output
    loose = tmp_path / "record.json"
    loose.write_text((RUNS / "huang-2010-hpylori-iron" / "record.json").read_text())
    alone = runner.invoke(claims, ["check", str(loose)])
    assert alone.exit_code == 2 and "pass its source PDF with --pdf" in alone.output
    assert runner.invoke(claims, ["check", str(loose), "--pdf", str(HPYLORI_PDF)]).exit_code == 0


def test_check_reads_the_pdf_in_a_capped_process(runner: CliRunner, tmp_path: Path) -> None:
    """A record file can name any hash: one naming a decompression bomb's gets the one line a
    run gets (at the cap CLAIMS_PDF_MEMORY_MB sets), and the command keeps its own memory."""
    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(make_bomb_pdf(50 << 20))  # 50 MB of drawing instructions: about 700 MB to read
    record = json.loads((RUNS / "huang-2010-hpylori-iron" / "record.json").read_text())
    record["provenance"]["source"]["sha256"] = hashlib.sha256(bomb.read_bytes()).hexdigest()
    forged = tmp_path / "record.json"
    forged.write_text(json.dumps(record))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = runner.invoke(claims, ["check", str(forged), "--pdf", str(bomb)], env={"CLAIMS_PDF_MEMORY_MB": "256"})
    assert result.exit_code == 2, result.output
    assert "bomb.pdf: reading it crashed the PDF reader or took more than 256 MB of memory" in result.output
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 << 10  # KB: read here, 700 MB


def test_a_pdf_memory_cap_too_small_for_a_paper_is_refused(runner: CliRunner) -> None:
    record = str(RUNS / "huang-2010-hpylori-iron" / "record.json")
    result = runner.invoke(claims, ["check", record, "--pdf", str(HPYLORI_PDF)], env={"CLAIMS_PDF_MEMORY_MB": "100"})
    assert result.exit_code == 2
    assert result.output == "error: CLAIMS_PDF_MEMORY_MB=100 is too little to read a paper: give it 256 or more\n"


# --------------------------------------------------------------------------- issue 16: every sentence, numbers that agree


OVERSTATED = "Eradicating H. pylori proves to cure anaemia and always raises haemoglobin in everyone."


@pytest.mark.parametrize(
    "where",
    ["claim.text", "mechanism.plain_language", "mechanism.summary", "mechanism.steps[0].text", "studies[0].summary"],
)
def test_overstated_wording_is_flagged_in_every_field_a_reader_sees(where: str) -> None:
    record = record_of("huang-2010-hpylori-iron")
    if where == "claim.text":
        record.claim.text = OVERSTATED
    elif where.startswith("mechanism.steps"):
        record.mechanism.steps[0].text = OVERSTATED
    elif where.startswith("studies"):
        record.studies[0].summary = OVERSTATED
    else:
        setattr(record.mechanism, where.split(".")[1], OVERSTATED)
    flags = [(f.where, f.code) for f in check_strength(record).flags]
    assert flags == [(where, "overstated")]


def test_hedged_wording_is_not_overstated() -> None:
    record = record_of("huang-2010-hpylori-iron")
    record.mechanism.summary = "Killing the germ may raise haemoglobin. It is associated with higher ferritin."
    assert check_strength(record).flags == []


def test_numbers_that_cannot_all_be_right_are_flagged() -> None:
    record = record_of("huang-2010-hpylori-iron")
    effect = record.studies[0].findings[0].effect
    assert effect is not None
    effect.ci_lower, effect.ci_upper = 0.548, 0.408
    effect.p_value = "1.7"
    results = run_checks(record, {record.studies[0].reference.study_id: read_pdf(HPYLORI_PDF)})
    [flag] = [f for c in results for f in c.flags if f.code == "number_inconsistent"]
    assert flag.where == "studies[0].findings[0].effect"
    assert (
        "lower bound 0.548 is above its upper bound 0.408" in flag.message
        and "p = 1.7 is not a probability" in flag.message
    )


def test_a_direction_that_contradicts_its_interval_is_flagged() -> None:
    from pipeline.core.models import Direction

    finding = record_of("huang-2010-hpylori-iron").studies[0].findings[0]
    finding.direction = Direction.no_significant_difference  # yet 12.88 g/l (6.03 to 19.74) excludes 0
    assert finding.effect is not None and finding.effect.ci_lower is not None and finding.effect.ci_lower > 0
    flags = [f.message for f in number_sanity(finding, "x")]
    assert flags == ["the interval excludes no effect, yet the finding says no significant difference"]


def test_the_same_problem_at_the_same_place_is_one_flag() -> None:
    record = record_of("huang-2010-hpylori-iron")
    record.mechanism.steps[1].citations = ["10.9999/fake", "10.9999/fake", "10.8888/other"]
    [flag] = check_citations(record).flags
    assert flag.where == "mechanism.steps[1].citations" and "(found 3 times)" in flag.message


def test_a_claim_about_another_topic_is_flagged_and_a_faithful_one_is_not() -> None:
    record = record_of("datta-2010-dvt-prophylaxis")
    assert check_topic(record).flags == []
    record.claim.text = "Training to failure may be associated with greater muscle growth in adults"
    [flag] = check_topic(record).flags
    assert (flag.where, flag.code) == ("claim.text", "claim_off_topic") and "only 0%" in flag.message
    record.claim.text = "Heparin given to prevent clots after major trauma may cause bleeding in a few patients."
    assert check_topic(record).flags == []
