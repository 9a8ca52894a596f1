"""GRADE certainty is computed from the design and the ratings, never taken from the model."""

from __future__ import annotations

import pytest

from pipeline.core.models import (
    Certainty,
    DomainAssessment,
    DomainRating,
    GoldStandardStudy,
    GradeDomain,
    StudyDesign,
    UpgradeAssessment,
    UpgradeFactor,
)
from pipeline.stages.grade import rate_certainty, starting_certainty, strongest_first


def domains(**ratings: str) -> list[DomainAssessment]:
    return [
        DomainAssessment(domain=d, rating=DomainRating(ratings.get(d.value, "not_serious")), explanation="x")
        for d in GradeDomain
    ]


def upgrade(levels: int) -> list[UpgradeAssessment]:
    return [UpgradeAssessment(factor=UpgradeFactor.large_effect, levels=levels, explanation="RR 0.3")]


@pytest.mark.parametrize(
    ("design", "start"),
    [
        (StudyDesign.randomised_controlled_trial, Certainty.high),
        (StudyDesign.systematic_review_of_rcts, Certainty.high),
        (StudyDesign.cohort, Certainty.low),
        (StudyDesign.systematic_review_of_observational, Certainty.low),
        (StudyDesign.case_series, Certainty.very_low),
        (StudyDesign.expert_opinion, Certainty.very_low),
    ],
)
def test_starting_certainty_follows_the_design(design: StudyDesign, start: Certainty) -> None:
    assert starting_certainty(design) == start


def test_rct_rated_down() -> None:
    rct = StudyDesign.randomised_controlled_trial
    assert rate_certainty(rct, domains(), []) == Certainty.high
    assert rate_certainty(rct, domains(imprecision="serious"), []) == Certainty.moderate
    assert rate_certainty(rct, domains(risk_of_bias="very_serious", imprecision="serious"), []) == Certainty.very_low
    assert rate_certainty(rct, domains(**{d.value: "very_serious" for d in GradeDomain}), []) == Certainty.very_low


def test_upgrades_count_only_for_non_randomised_evidence() -> None:
    assert rate_certainty(StudyDesign.cohort, domains(), upgrade(1)) == Certainty.moderate
    assert rate_certainty(StudyDesign.cohort, domains(), upgrade(2)) == Certainty.high
    assert (
        rate_certainty(StudyDesign.randomised_controlled_trial, domains(imprecision="serious"), upgrade(2))
        == Certainty.moderate
    )


def gold(design: StudyDesign) -> GoldStandardStudy:
    return GoldStandardStudy(
        design=design,
        population="p",
        intervention="i",
        comparator="c",
        outcome="o",
        outcome_measure="m",
        sample_size="n",
        duration="d",
        safeguards=[],
        why="w",
    )


def test_gold_standard_is_ordered_strongest_first() -> None:
    ordered = strongest_first(
        [
            gold(StudyDesign.cohort),
            gold(StudyDesign.systematic_review_of_rcts),
            gold(StudyDesign.randomised_controlled_trial),
        ]
    )
    assert [g.design for g in ordered] == [
        StudyDesign.systematic_review_of_rcts,
        StudyDesign.randomised_controlled_trial,
        StudyDesign.cohort,
    ]
