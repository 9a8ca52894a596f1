"""What a passage reports of an outcome in the intervention arm against the comparator:
increased, decreased or no significant difference (the labels of Evidence Inference 2.0).

A linear model over two kinds of features, so that it runs offline in well under a millisecond:
- cues read by rule: p-values and confidence intervals against no effect, "no significant
  difference" and its variants, and which arm a comparative speaks of ("was lower in the placebo
  group" is an increase for the intervention);
- the passage's words and word pairs, with the intervention's, the comparator's and the outcome's
  own words replaced by INTV, COMP and OUTC so that the model learns the shape of a report, not
  its topics.

Its weights (`direction_model.json` beside this file) were learnt by `tools/train_direction.py`
from Evidence Inference 2.0's training split (Lehman, DeYoung, Barzilay & Wallace; MIT licence,
`jayded/evidence-inference`); `bench/faithfulness.py` reports its figures on the test split.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from enum import Enum
from functools import cache
from importlib import resources

MODEL_FILE = "direction_model.json"


class Reported(str, Enum):
    increased = "increased"
    decreased = "decreased"
    no_difference = "no_difference"


@dataclass(frozen=True)
class DirectionReading:
    reported: Reported
    probability: float  # the model's probability of `reported`
    significance: bool | None  # what the p-values and intervals alone say, when they say anything
    cue: str | None  # the words or numbers that weighed most


# Words that name no arm, outcome or direction (the arms' own names are read without them).
_STOP_WORDS = """
    the a an of and or in on at to for with by from group groups arm arms patients subjects
    participants treatment therapy alone plus vs versus than that this those these who were was
    is are
"""
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[<>≤≥=%]")
_CONTROL_WORDS = frozenset(
    ["placebo", "control", "controls", "usual", "sham", "standard", "conventional", "baseline", "cg", "pla"]
)

_UP = re.compile(
    r"^(?:increas\w*|higher|greater|more|elevat\w*|rais\w*|rise|rose|longer|larger|improv\w*|better|gain\w*|boost\w*|enhanc\w*|exceed\w*|superior|up)$"
)
_DOWN = re.compile(
    r"^(?:decreas\w*|lower\w*|less|fewer|reduc\w*|declin\w*|drop\w*|fell|fall\w*|shorter|smaller|diminish\w*|attenuat\w*|inferior|worse|worsen\w*|down|suppress\w*|decline)$"
)
_NOT_SIGNIFICANT = re.compile(
    r"\b(?:no(?:t)? (?:statistically )?significant(?:ly)?|non-?significant(?:ly)?|did not (?:significantly )?(?:differ|change|improve|reduce|increase|decrease|affect|alter|influence|show|lead)|"
    r"no (?:\w+ )?differences?|not (?:\w+ )?differ\w*|similar|comparable|did not reach|failed to|no (?:significant )?(?:change|effect|improvement|reduction|increase|benefit)|"
    r"neither|not (?:statistically )?different|equivalent|unchanged|n\.?s\.?(?=\W|$))",
    re.I,
)
_SIGNIFICANT = re.compile(r"\bsignificant(?:ly)?\b", re.I)
_P_VALUE = re.compile(
    r"\bp\s*(?:-?value)?\s*(<|≤|<=|=|>|≥|>=)\s*(0?\.\d+|\d(?:\.\d+)?(?:\s*[x×]\s*10\s*-\s*\d+)?)", re.I
)
_INTERVAL = re.compile(
    r"(-?\d+(?:\.\d+)?)\s*(?:[a-zμ/%]+\s*)?[(\[]\s*(?:95\s*%\s*(?:CI|confidence interval)?[,:]?\s*)?(-?\d+(?:\.\d+)?)\s*(?:[a-zμ/%]+\s*)?(?:-|–|—|to|,)\s*(-?\d+(?:\.\d+)?)",
    re.I,
)
_RATIO = re.compile(r"\b(?:odds|hazard|risk|rate) ratio|\b(?:OR|HR|RR|IRR)\b")


def _content(text: str) -> set[str]:
    """An arm's own words, with its abbreviations: "(TDF)" and the initials "mbb" of
    "Mind-Body Bridging", since passages name arms by them."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOP]
    names = {w for w in words if len(w) > 2}
    names |= {a.lower() for a in re.findall(r"\(([A-Za-z][A-Za-z0-9+/-]{1,9})\)", text)}
    names |= {f"group-{g.lower()}" for g in re.findall(r"\bgroup\s+([A-Z0-9]{1,3})\b", text, re.I)}
    letters = [w[0] for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 2]
    if 2 <= len(letters) <= 5:
        names.add("".join(letters))
    if len(letters) >= 2:
        names.add("".join(letters[:2]))
        names.add("".join(letters[:3]))
    return names


def _arm_of(word: str, intervention: set[str], comparator: set[str]) -> str | None:
    """INTV or COMP when the word names one arm (a word both share names neither)."""

    def names(words: set[str]) -> bool:
        return word in words or (len(word) > 4 and any(w.startswith(word[:5]) for w in words if len(w) > 4))

    in_intervention, in_comparator = names(intervention), names(comparator)
    if word in _CONTROL_WORDS and not in_intervention:
        return "COMP"
    if in_intervention and not in_comparator:
        return "INTV"
    if in_comparator and not in_intervention:
        return "COMP"
    return None


def _p_values(text: str) -> list[tuple[str, float, str]]:
    """(sign, value, as written) for each p-value: 'p<0.00001', 'P = .03', 'p < 1 x 10-6'."""
    found = []
    for sign, number in _P_VALUE.findall(text):
        shown = " ".join(number.split())
        if "10" in number and ("x" in number or "×" in number):
            found.append((sign, 1e-6, shown))
            continue
        try:
            found.append((sign, float(number), shown))
        except ValueError:
            continue
    return found


@dataclass(frozen=True)
class _Interval:
    estimate: float
    low: float
    high: float
    null: float  # no effect: 1 for a ratio, else 0
    shown: str  # the bounds as written

    @property
    def excludes_null(self) -> bool:
        return not self.low <= self.null <= self.high


def _intervals(text: str) -> list[_Interval]:
    """Each estimate with a well-formed interval around it. No effect is 1 when the passage names
    a ratio, or when the interval is all positive and small (a ratio's shape); else 0."""
    found = []
    ratio = bool(_RATIO.search(text))
    for estimate, low, high in _INTERVAL.findall(text):
        lo, hi, est = float(low), float(high), float(estimate)
        if lo > hi or not lo <= est <= hi:
            continue
        null = 1.0 if ratio or (lo > 0 and est > 0 and hi < 20) else 0.0
        found.append(_Interval(est, lo, hi, null, f"{low} to {high}"))
    return found


def _estimates(text: str) -> list[str]:
    """Each estimate with its interval, read against no effect: above or below it."""
    found = []
    for interval in _intervals(text):
        est, null = interval.estimate, interval.null
        side = "above" if est > null else "below" if est < null else "at"
        kind = "ratio" if null else "difference"
        found.append(f"est:{side}_{kind}_{'excludes' if interval.excludes_null else 'includes'}")
    return found


def _numbers_by_arm(tokens: list[str], values: list[float | None]) -> list[str]:
    """The first number said of each arm, compared: INTV's against COMP's. A number belongs to
    the arm it is "of" or "in" ("4.1% of the aspirin group"), else to the nearest arm named in the
    four words before it."""
    first: dict[str, float] = {}
    for i, value in enumerate(values):
        if value is None:
            continue
        after = tokens[i + 1 : i + 5]
        bound = re.match(r"(?:% )?(?:of|in|for|with|among) (?:the )?(INTV|COMP)\b", " ".join(after))
        arm = bound.group(1) if bound else None
        arm = arm or next((tokens[j] for j in range(i - 1, max(-1, i - 5), -1) if tokens[j] in ("INTV", "COMP")), None)
        if arm and arm not in first:
            first[arm] = value
    if len(first) == 2 and first["INTV"] != first["COMP"]:
        return [f"arm_num:intv_{'higher' if first['INTV'] > first['COMP'] else 'lower'}"]
    return []


def significance_cue(text: str) -> tuple[bool | None, str | None]:
    """What a passage's p-values and intervals say of significance at 5 %, with the one that
    says it ("p<0.00001", "95% CI 0.8 to 1.3 includes no effect"); (None, None) when they say
    nothing or disagree evenly."""
    votes: list[tuple[bool, str]] = []
    for sign, value, shown in _p_values(text):
        if sign in ("<", "≤", "<=") and value <= 0.05:
            votes.append((True, f"p{sign}{shown}"))
        elif sign in (">", "≥", ">=") and value >= 0.05:
            votes.append((False, f"p{sign}{shown}"))
        elif sign == "=":
            votes.append((value < 0.05, f"p={shown}"))
    for interval in _intervals(text):
        excludes = interval.excludes_null
        votes.append(
            (excludes, f"interval {interval.shown} {'excludes' if excludes else 'includes'} {interval.null:g}")
        )
    yes = [cue for vote, cue in votes if vote]
    no = [cue for vote, cue in votes if not vote]
    if len(yes) == len(no):
        return None, None
    return (True, yes[0]) if len(yes) > len(no) else (False, no[0])


def significance(text: str) -> bool | None:
    return significance_cue(text)[0]


def features(intervention: str, comparator: str, outcome: str, evidence: str) -> list[str]:
    """The rule cues and masked word n-grams the model weighs."""
    arms_i, arms_c = _content(intervention), _content(comparator)
    arms_o = _content(outcome) - arms_i - arms_c
    tokens: list[str] = []
    values: list[float | None] = []
    evidence_words = _WORD.findall(re.sub(r"\bgroup\s+([A-Z0-9]{1,3})\b", r"group-\1", evidence, flags=re.I).lower())
    for word in evidence_words:
        if re.fullmatch(r"\d+(?:\.\d+)?", word):
            tokens.append("NUM")
            values.append(float(word))
            continue
        arm = _arm_of(word, arms_i, arms_c) if len(word) > 2 and word not in _STOP else None
        tokens.append(arm or ("OUTC" if word in arms_o else word))
        values.append(None)
    found_numbers = _numbers_by_arm(tokens, values)
    squeezed = [t for i, t in enumerate(tokens) if i == 0 or t != tokens[i - 1] or t not in ("INTV", "COMP", "OUTC")]
    found = ["BIAS"]
    found += [f"w:{t}" for t in squeezed]
    found += [f"b:{a}_{b}" for a, b in itertools.pairwise(squeezed)]
    sig = significance(evidence)
    found.append(f"sig:{sig}")
    if _NOT_SIGNIFICANT.search(evidence):
        found.append("cue:not_significant")
    if _SIGNIFICANT.search(evidence) and not _NOT_SIGNIFICANT.search(evidence):
        found.append("cue:significant")
    found += _arm_directions(squeezed)
    found += _valence(outcome, squeezed)
    found += found_numbers + _estimates(evidence)
    found += _number_order(evidence, squeezed)
    return found


# Outcomes where less is better: an "improvement" in them is a decrease.
_LESS_IS_BETTER = re.compile(
    r"\b(?:pain|severity|symptoms?|relapse|recurrence|mortality|death|deaths|failure|time|duration|error|complications?|"
    r"incidence|risk|adverse|nausea|vomiting|anxiety|depression|fatigue|consumption|requirement|score|scores|length|"
    r"loss|infection|bleeding|blood loss|stay|rate of|hba1c|glucose|pressure|weight|bmi|cholesterol|ldl|swelling|"
    r"edema|oedema|inflammation|disability|hospitali[sz]ation|readmission|dose|use|latency)\b",
    re.I,
)
_BETTER = re.compile(r"^(?:improv\w*|better|benefit\w*|favou?r\w*|superior)$")
_WORSE = re.compile(r"^(?:worse\w*|inferior|deteriorat\w*|impair\w*)$")


def _valence(outcome: str, tokens: list[str]) -> list[str]:
    """Words of betterment read with the outcome's valence: an improvement in pain is a decrease."""
    valence = "less_better" if _LESS_IS_BETTER.search(outcome) else "more_better"
    found = [f"val:{valence}"]
    for token in tokens:
        if _BETTER.match(token):
            found.append(f"val:better_{valence}")
        elif _WORSE.match(token):
            found.append(f"val:worse_{valence}")
    return found


_VERSUS = re.compile(
    r"(-?\d+(?:\.\d+)?)\s*(?:%|[a-zμ/.²0-9]*)\s*(?:\([^()]{0,40}\)\s*)?(?:vs\.?|versus|compared (?:with|to)|and)\s*(-?\d+(?:\.\d+)?)",
    re.I,
)
_FROM_TO = re.compile(r"\bfrom\s+(-?\d+(?:\.\d+)?)[^0-9]{0,30}?\bto\s+(-?\d+(?:\.\d+)?)", re.I)


def _number_order(evidence: str, tokens: list[str]) -> list[str]:
    """Two numbers set side by side ("7.6 vs. 21.6", "from 2,110 to 2,328"), read in the order the
    arms are named: the first number belongs to the first arm."""
    found = []
    first = next((t for t in tokens if t in ("INTV", "COMP")), "NONE")
    text = evidence.replace(",", "")
    for a, b in _VERSUS.findall(text):
        x, y = float(a), float(b)
        if x != y:
            found.append(f"num:{'first_higher' if x > y else 'first_lower'}_{first}")
    for a, b in _FROM_TO.findall(text):
        x, y = float(a), float(b)
        if x != y:
            found.append(f"num:{'rose' if y > x else 'fell'}")
    return found


def _arm_directions(tokens: list[str]) -> list[str]:
    """Each direction word with the nearest arm named in its stretch (UP_INTV, DOWN_COMP, ...),
    and the net direction they give the intervention."""
    found = []
    net = 0.0
    first = next((t for t in tokens if t in ("INTV", "COMP")), None)
    for i, token in enumerate(tokens):
        way = "UP" if _UP.match(token) else "DOWN" if _DOWN.match(token) else None
        if not way:
            continue
        nearest = None
        for distance in range(1, 9):
            for j in (i - distance, i + distance):
                if 0 <= j < len(tokens) and tokens[j] in ("INTV", "COMP"):
                    nearest = tokens[j]
                    break
            if nearest:
                break
        negated = any(t in ("not", "no", "without") for t in tokens[max(0, i - 3) : i])
        sign = (1 if way == "UP" else -1) * (-1 if nearest == "COMP" else 1) * (-1 if negated else 1)
        net += sign * (1.0 if nearest else 0.5)
        found.append(f"dir:{way}_{nearest or 'NONE'}_first{first}{'_neg' if negated else ''}")
        found.append(f"dir:{way}{'_neg' if negated else ''}")
        outcome_near = "OUTC" in tokens[max(0, i - 3) : i + 4]
        if outcome_near:
            found.append(f"dir:{way}_OUTC")
    if net:
        found.append(f"net:{'up' if net > 0 else 'down'}")
    return found


@cache
def _weights() -> tuple[list[str], dict[str, list[float]]]:
    data = json.loads(resources.files("pipeline.stages").joinpath(MODEL_FILE).read_text(encoding="utf-8"))
    return data["classes"], data["weights"]


def read_direction(intervention: str, comparator: str | None, outcome: str, evidence: str) -> DirectionReading:
    """What `evidence` reports for the intervention against the comparator."""
    classes, weights = _weights()
    present = [f for f in dict.fromkeys(features(intervention, comparator or "", outcome, evidence)) if f in weights]
    scores = [sum(weights[f][k] for f in present) for k in range(len(classes))]
    best = scores.index(max(scores))
    exps = [math.exp(s - scores[best]) for s in scores]
    named = [f for f in present if f != "BIAS"]
    cue = max(named, key=lambda f: weights[f][best] - sum(weights[f]) / len(classes), default=None)
    return DirectionReading(
        reported=Reported(classes[best]),
        probability=1 / sum(exps),
        significance=significance(evidence),
        cue=cue.split(":", 1)[1] if cue else None,
    )
