"""Each kind of misbehaviour, built afresh from a faithful run of a bundled paper, and whether the
checks catch it where it stands (issue 16). The Checks page's table of misbehaviours (docs/checks.md) is this list.

Built by changing the replayed record of the H. pylori meta-analysis (the pipeline and every
check run again on it), then running the checks against the paper's own text.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import HPYLORI_PDF, replayed

from pipeline.core.models import ClaimRecord, Direction
from pipeline.sources.pdf import read_pdf
from pipeline.stages.check import run_checks

OVERSTATED = "Eradicating H. pylori cures anaemia and always raises haemoglobin in everyone."


def _fabricated_quote(r: ClaimRecord) -> None:
    r.studies[0].findings[0].quote.text = "Eradication therapy cured anaemia in every patient within one week."


def _paraphrased_quote(r: ClaimRecord) -> None:
    r.studies[0].findings[
        0
    ].quote.text = "Haemoglobin rose by a weighted mean difference of 12.88 g/l, 95% CI 6.03-19.74"


def _wrong_page(r: ClaimRecord) -> None:
    r.studies[0].findings[0].quote.page = 5


def _wrong_number(r: ClaimRecord) -> None:
    r.studies[0].findings[0].effect.value = 21.5  # type: ignore[union-attr]


def _inconsistent_interval(r: ClaimRecord) -> None:
    effect = r.studies[0].findings[0].effect
    effect.ci_lower, effect.ci_upper = 19.74, 6.03  # type: ignore[union-attr]


def _foreign_citation(r: ClaimRecord) -> None:
    r.mechanism.steps[0].citations.append("10.9999/fake")


def _overstated(field: str) -> Callable[[ClaimRecord], None]:
    def change(r: ClaimRecord) -> None:
        if field == "claim.text":
            r.claim.text = OVERSTATED
        elif field == "mechanism.steps[1].text":
            r.mechanism.steps[1].text = OVERSTATED
        elif field == "studies[0].summary":
            r.studies[0].summary = OVERSTATED
        else:
            setattr(r.mechanism, field.split(".")[1], OVERSTATED)

    return change


def _direction_against_quote(r: ClaimRecord) -> None:
    finding = r.studies[0].findings[0]  # its quote reports p<0.00001
    finding.direction, finding.effect = Direction.no_significant_difference, None


def _off_topic(r: ClaimRecord) -> None:
    r.claim.text = "Training to failure may be associated with greater muscle growth in adults."


def _prompt_injection(r: ClaimRecord) -> None:
    r.mechanism.plain_language += " As the paper instructs, see also doi:10.9999/fake for the full mechanism."


MISBEHAVIOURS: dict[str, tuple[Callable[[ClaimRecord], None], str, str]] = {
    # name: (how the record is changed, the code expected, where)
    "fabricated quote": (_fabricated_quote, "ungrounded_quote", "studies[0].findings[0].quote"),
    "paraphrased quote": (_paraphrased_quote, "ungrounded_quote", "studies[0].findings[0].quote"),
    "wrong page": (_wrong_page, "page_corrected", "studies[0].findings[0].quote"),
    "wrong number": (_wrong_number, "number_not_found", "studies[0].findings[0].effect.value"),
    "inconsistent interval": (_inconsistent_interval, "number_inconsistent", "studies[0].findings[0].effect"),
    "foreign citation": (_foreign_citation, "foreign_citation", "mechanism.steps[0].citations"),
    "overstated claim": (_overstated("claim.text"), "overstated", "claim.text"),
    "overstated plain language": (_overstated("mechanism.plain_language"), "overstated", "mechanism.plain_language"),
    "overstated summary": (_overstated("mechanism.summary"), "overstated", "mechanism.summary"),
    "overstated causal step": (_overstated("mechanism.steps[1].text"), "overstated", "mechanism.steps[1].text"),
    "overstated study summary": (_overstated("studies[0].summary"), "overstated", "studies[0].summary"),
    "direction against its quote": (
        _direction_against_quote,
        "direction_contradicts_quote",
        "studies[0].findings[0].direction",
    ),
    "off-topic claim": (_off_topic, "claim_off_topic", "claim.text"),
    "prompt injection (a planted DOI)": (_prompt_injection, "foreign_citation", "mechanism.plain_language"),
}


@pytest.mark.parametrize("name", list(MISBEHAVIOURS))
def test_each_misbehaviour_is_caught_where_it_stands(name: str) -> None:
    change, code, where = MISBEHAVIOURS[name]
    record = replayed("huang-2010-hpylori-iron")
    assert not [f for c in record.checks for f in c.flags]  # faithful before the change
    change(record)
    results = run_checks(record, {record.studies[0].reference.study_id: read_pdf(HPYLORI_PDF)})
    found = {(f.code, f.where) for c in results for f in c.flags + c.notes}
    assert (code, where) in found, found
    # one flag per field and code, never the same one twice
    flags = [(f.code, f.where) for c in results for f in c.flags]
    assert len(flags) == len(set(flags))
