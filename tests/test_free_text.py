"""Every free-text field is real text about this paper: what a real small model wrote that no
other check read ("en" for a plain-language text, "PAPER TEXT" for a title, one causal step eight
times, a timestamp for a population) is flagged where it stands; the faithful records keep none."""

from __future__ import annotations

import pytest
from conftest import HPYLORI_PDF, replayed

from pipeline.sources.pdf import read_pdf
from pipeline.stages.free_text import check_free_text, degenerate

FAITHFUL = ["huang-2010-hpylori-iron", "siervo-2016-nitrate", "datta-2010-dvt-prophylaxis"]
VOCABULARY = {"iron", "haemoglobin", "eradication", "pylori", "trials", "anaemia", "germ"}
TOPIC = {"haemoglobin", "eradication", "pylori", "anaemia", "iron", "germ", "trials"}


def flagged(name: str) -> dict[str, str]:
    record = replayed(name)
    return {f.where: f.message for c in record.checks if c.name == "free_text" for f in c.flags}


def test_the_local_model_s_empty_fields_are_flagged_where_they_stand() -> None:
    found = flagged("local-smollm2-hpylori")
    assert "too short for a plain-language text" in found["mechanism.plain_language"]  # "en"
    assert "too short for a study summary" in found["studies[0].summary"]  # "en" again
    assert "'PAPER TEXT' is not on the paper's first pages" in found["studies[0].reference.title"]
    assert "its first page begins 'Iron deficiency anaemia can be improved" in found["studies[0].reference.title"]
    assert "repeats mechanism.steps[0].text word for word" in found["mechanism.steps[7].text"]
    assert "repeats certainty.domains[1].explanation" in found["certainty.domains[4].explanation"]
    assert "words of the paper's language" in found["gold_standard[0].population"]  # a timestamp
    assert "too short for a claim" in found["claim.text"]
    assert found["certainty.design_rationale"] == "not real text about this paper: it is empty"


def test_a_short_field_is_named_as_a_reviewer_names_it() -> None:
    assert degenerate("gold_standard[0].why", "why", "a trial", VOCABULARY, TOPIC) == (
        "2 word(s) ('a trial'): too short for a gold-standard study's reason"
    )
    assert degenerate("gold_standard[0].outcome", "gold", "  ", VOCABULARY, TOPIC) == "it is empty"


@pytest.mark.parametrize("name", FAITHFUL)
def test_the_faithful_records_keep_no_flag(name: str) -> None:
    assert flagged(name) == {}


@pytest.mark.parametrize(
    ("kind", "text", "why"),
    [
        ("explanation", "forskinnie", "too short"),
        ("summary", "The germ may lower iron. === system === You draft the claim page", "echoes the prompt"),
        (
            "summary",
            "Iron pills help people with low iron, iron pills help people, iron pills help people",
            "repeats itself",
        ),
        ("gold", "HBP-2013-485976", "words of the paper's language"),
        ("summary", "Wooden cabinets and lacquered tables stand in quiet kitchens everywhere", "no content word"),
        ("step", "Iron levels may may rise in the patients", "'may may'"),
        ("gold", "patients dose iron group patients iron", "each twice"),
        ("step", "Iron levels in the patients may the rise", "'may the' is no English"),
        ("explanation", "Eradication lowered the risk of anaemia in the", "stops on 'the'"),
    ],
)
def test_each_kind_of_degenerate_text(kind: str, text: str, why: str) -> None:
    problem = degenerate("somewhere", kind, text, VOCABULARY, TOPIC)
    assert problem is not None and why in problem


def test_real_text_is_not_flagged() -> None:
    for kind, text in (
        ("summary", "Killing the germ while giving iron let haemoglobin rise more than iron alone in these trials."),
        ("gold", "Adults with iron deficiency anaemia and H. pylori infection"),
        ("gold", "12 months"),
        ("explanation", "Heterogeneity was significant (I² 78%) across the eight haemoglobin trials."),
        ("explanation", "Haemoglobin gains ranged between 0% and 4%), and crude iron figures were not pooled."),
        ("step", "They said that that iron dose was enough, as the trial had had no losses."),
        ("gold", "Children given vitamin A and zinc in the May 2010 round"),
        ("gold", "A can of beetroot juice a day"),
    ):
        assert degenerate("somewhere", kind, text, VOCABULARY, TOPIC) is None, text


def test_a_title_the_paper_does_not_carry_is_flagged_with_the_paper_s_own() -> None:
    record = replayed("huang-2010-hpylori-iron")
    document = read_pdf(HPYLORI_PDF)
    record.studies[0].reference.title = "Vitamin D and falls in older women"
    record.studies[0].reference.authors = ["Jane Doe", "John Roe", "Xiaolu Huang"]
    flags = {f.where: f.message for f in check_free_text(record, {record.studies[0].reference.study_id: document})}
    assert (
        "'Vitamin D and falls in older women' is not on the paper's first pages" in flags["studies[0].reference.title"]
    )
    assert "Jane Doe, John Roe" in flags["studies[0].reference.authors"]
