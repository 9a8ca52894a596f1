"""How strongly one sentence states a relation: not a claim, correlational, conditional causal or
direct causal (the four classes of Yu, Li & Wang, EMNLP 2019).

Rules, not a learned model: the one public labelled set of this kind states no licence, so it is
used only to measure these rules (`bench/faithfulness.py`), and a model trained on it could not
ship. The rules read a sentence the way its annotators did:
- a causal verb or noun ("reduces", "led to", "effective in", "the effect of") makes a causal
  claim, direct unless a hedge governs it ("may reduce", "might play a role");
- association wording ("associated with", "linked to", "predicts", "a risk factor") and
  comparisons between groups ("people who ... had lower ...", "a twofold higher risk") make a
  correlational claim, hedged or not;
- a negated causal claim ("did not reduce") is still a causal claim, of no effect: `negated` says
  so, and the strength rules read it as claiming none;
- recommendations, descriptions and calls for more research are not claims.

Pure and fast (about 60 µs a sentence on this machine): the strength check runs it on every reader-facing sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum


class Strength(IntEnum):
    """Ordered: a stronger claim has a larger value."""

    not_a_claim = 0
    correlational = 1
    conditional_causal = 2
    direct_causal = 3

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


@dataclass(frozen=True)
class StrengthReading:
    strength: Strength
    cue: str | None = None  # the words that decided it
    negated: bool = False  # a causal claim of no effect ("did not reduce")


def _words(*alternatives: str) -> str:
    """One pattern for whole words: a hyphenated compound ("all-cause", "slow-wave") is no match."""
    return r"(?<![\w-])(?:" + "|".join(alternatives) + r")(?![\w-])"


# Causal verbs, in the forms a sentence uses them as verbs. Participles that mostly stand as
# adjectives ("increased risk", "improved survival") are handled by _ADJECTIVAL below.
_CAUSAL_VERB = _words(
    r"caus(?:e|es|ed|ing)",
    r"reduc(?:e|es|ed|ing)",
    r"increas(?:e|es|ed|ing)",
    r"decreas(?:e|es|ed|ing)",
    r"improv(?:e|es|ed|ing)",
    r"lower(?:s|ed|ing)?",
    r"rais(?:e|es|ed|ing)",
    r"prevent(?:s|ed|ing)?",
    r"induc(?:e|es|ed|ing)",
    r"enhanc(?:e|es|ed|ing)",
    r"promot(?:e|es|ed|ing)",
    r"protect(?:s|ed|ing)?",
    r"affect(?:s|ed|ing)?",
    r"influenc(?:e|es|ed|ing)",
    r"alter(?:s|ed|ing)?",
    r"attenuat(?:e|es|ed|ing)",
    r"ameliorat(?:e|es|ed|ing)",
    r"alleviat(?:e|es|ed|ing)",
    r"worsen(?:s|ed|ing)?",
    r"inhibit(?:s|ed|ing)?",
    r"suppress(?:es|ed|ing)?",
    r"stimulat(?:e|es|ed|ing)",
    r"trigger(?:s|ed|ing)?",
    r"mediat(?:e|es|ed|ing)",
    r"benefit(?:s|ed|ing)?",
    r"impair(?:s|ed|ing)?",
    r"facilitat(?:e|es|ed|ing)",
    r"accelerat(?:e|es|ed|ing)",
    r"delay(?:s|ed|ing)?",
    r"shorten(?:s|ed|ing)?",
    r"prolong(?:s|ed|ing)?",
    r"exacerbat(?:e|es|ed|ing)",
    r"aggravat(?:e|es|ed|ing)",
    r"relie(?:ve|ves|ved|ving)",
    r"restor(?:e|es|ed|ing)",
    r"eliminat(?:e|es|ed|ing)",
    r"eradicat(?:e|es|ed|ing)",
    r"boost(?:s|ed|ing)?",
    r"cur(?:e|es|ed)",
    r"help(?:s|ed)?",
    r"driv(?:e|es|en)",
    r"drove",
    r"modif(?:y|ies|ied)",
    r"disrupt(?:s|ed|ing)?",
    r"damag(?:e|es|ed|ing)",
    r"slow(?:s|ed)?",
    r"halt(?:s|ed)?",
    r"revers(?:e|es|ed)",
    r"minimi[sz](?:e|es|ed)",
    r"maximi[sz](?:e|es|ed)",
    r"strengthen(?:s|ed)?",
    r"weaken(?:s|ed)?",
    r"optimi[sz](?:e|es|ed)",
    r"enabl(?:e|es|ed)",
    r"result(?:s|ed)? in",
    r"lead(?:s)? to",
    r"led to",
    r"contribut(?:e|es|ed|ing) to",
    r"give(?:s)? rise to",
    r"gave rise to",
    r"(?:is|are|was|were) responsible for",
    r"(?:is|are|was|were) (?:not )?(?:an? )?(?:effective|efficacious|beneficial|superior|inferior|harmful|protective|detrimental)",
    r"(?:is|are|was|were) (?:not )?(?:safe and|well tolerated and|as) effective",
    r"(?:no|positive|negative|beneficial|protective|significant|causal|direct|adverse|detrimental|favou?rable|similar|greatest|strongest|profound|additional|clear|independent|substantial|important|key|major|long-term|short-term|central) (?:\w+ ){0,2}(?:effects?|impacts?|benefits?|influence|role|contributions?) (?:of|on|in|for|to)",
    r"effects? on",
    r"impacts? on",
    r"(?:more|less|equally|similarly|highly|very|not|as|most) (?:effective|efficient|efficacious)",
    r"effective(?:ly)? (?:in|at|for|to)",
    r"efficacy",
    r"effective(?:ness)?",
    r"efficacious",
    r"successful(?:ly)?",
    r"effects?",
    r"diminish(?:es|ed)?",
    r"interfer(?:e|es|ed)",
    r"precipitat(?:e|es|ed)",
    r"involved in",
    r"abolish(?:es|ed)?",
    r"counteract(?:s|ed)?",
    r"avoid(?:s|ed)?",
    r"causal(?:ly)?",
    r"impacts?",
    r"yield(?:s|ed)?",
    r"amplif(?:y|ies|ied)",
    r"translat(?:e|es|ed) into",
    r"due to",
    r"because of",
    r"as a result of",
    r"attributable to",
    r"play(?:s|ed)? (?:an? |no )?(?:\w+ )?roles?",
)

# Association and comparison between groups: a relation stated without its cause.
_ASSOCIATION = _words(
    r"associat(?:e|es|ed|ion|ions)",
    r"correlat(?:e|es|ed|ion|ions)",
    r"link(?:s|ed|ing)? (?:to|with|between)",
    r"linking",
    r"interactions? (?:with|between)",
    r"accompanied by",
    r"(?:at|a) (?:high |higher |increased |greater |low |lower )?risk (?:of|for)",
    r"(?:highest|lowest|greatest|least) (?:\w+ ){0,2}(?:in|among|for|with)",
    r"(?:longer|shorter|more frequently|less frequently|more often|less often) (?:\w+ ){0,4}(?:than|in|among)",
    r"(?:comparable|similar|equivalent) (?:between|among|across|to|with|in)",
    r"significant (?:\w+ )?differences?",
    r"links? between",
    r"relationship",
    r"relat(?:e|es|ed) to",
    r"relation (?:to|between|with)",
    r"predict(?:s|ed|ing|or|ors|ive)?",
    r"risk factors?",
    r"determinants?",
    r"(?:odds|hazard|risk) ratios?",
    r"(?:more|less) (?:likely|frequent|common|often)",
    r"(?:higher|lower|greater|smaller|increased|decreased|reduced|elevated) (?:\w+ )?(?:risk|odds|rates?|incidence|prevalence|levels?|likelihood|chance|mortality|scores?)",
    r"(?:two|three|four|five|\d+(?:\.\d+)?)[- ]?(?:fold|times)",
    r"(?:had|have|has|showed|show|exhibited|displayed) (?:a |an |the )?(?:significantly |slightly |markedly )?(?:higher|lower|greater|smaller|better|worse|more|less|fewer|increased|decreased|reduced|elevated)",
    r"(?:higher|lower|greater|smaller|better|worse|more|less|fewer) (?!than \d)(?:\w+ ){0,4}(?:than|compared|versus|vs)",
    r"(?:higher|lower|greater|smaller|better|worse) in",
    r"(?:is|are|was|were) (?:an? )?(?:independent |strong |significant )?(?:marker|indicator|predictor)s?",
    r"vary|varies|varied",
    r"differ(?:s|ed)?",
    r"differen(?:t|ce|ces) (?:between|in|by|among|across|from)",
    r"no (?:significant |statistically significant )?differences?",
    r"similar (?:in|between|among|across|to)",
    r"compared (?:with|to)",
    r"(?:more|less) (?:susceptible|prone)",
    r"prognostic",
    r"markers?",
    r"(?:higher|lower|greater|elevated|increased|decreased) among",
    r"(?:up|down)-?regulated",
)

# Modal hedges that turn a causal statement conditional when they govern its verb.
_HEDGE = _words(
    r"may",
    r"might",
    r"could",
    r"would",
    r"possibl[ey]",
    r"potential(?:ly)?",
    r"likely",
    r"unlikely",
    r"probabl[ey]",
    r"perhaps",
    r"presumabl[ey]",
    r"plausibl[ey]",
    r"appear(?:s|ed)? to",
    r"seem(?:s|ed)? to",
    r"tend(?:s|ed)? to",
    r"(?:is|are|was|were) (?:proposed|thought|believed|hypothesi[sz]ed|expected|assumed|presumed) to",
    r"hypothesi[sz]\w*",
    r"speculat\w*",
    r"suggestive",
    r"whether",
    r"if",
)

_NEGATION = _words(
    r"not",
    r"no",
    r"never",
    r"neither",
    r"nor",
    r"without",
    r"failed to",
    r"fail to",
    r"did not",
    r"does not",
    r"do not",
    r"cannot",
    r"lack of",
    r"n't",
)

# A participle after these words describes a state ("patients with reduced function",
# "an increased risk"), not an action.
_ADJECTIVAL = re.compile(
    r"\b(?:with|of|a|an|the|and|or|showed|show|exhibited|for|in|by|more|less)\s+$",
    re.I,
)
_PARTICIPLE = re.compile(r"(?:ed|ing)$", re.I)
# A verb form after a determiner is a noun ("the cause", "a reduction", "its influence").
_DETERMINER = re.compile(r"\b(?:the|a|an|this|these|that|its|their|common|most|main)\s+$", re.I)
# Nouns of effect name a topic when the sentence asks for more work ("the influence of X requires
# further study"), a claim otherwise.
_NOUN_OF_EFFECT = re.compile(r"^(?:effects?|impacts?|influences?|efficacy|effectiveness|benefits?)$", re.I)
# Sentences that recommend or call for work rather than state a finding.
_NOT_A_FINDING = re.compile(
    _words(
        r"should",
        r"must",
        r"need(?:s|ed)? to",
        r"needed",
        r"warrant(?:s|ed)?",
        r"further (?:\w+ )?(?:studies|study|research|investigation|trials)",
        r"future (?:\w+ )?(?:studies|study|research|trials)",
        r"recommend(?:s|ed)?",
        r"(?:is|are) required",
        r"requires? (?:further|more|confirmation|additional|larger)",
        r"deserves?",
        r"needs?",
        r"necessary",
        r"remains? (?:unclear|unknown|to be)",
        r"aim(?:s|ed)? (?:to|of)",
        r"we (?:propose|investigated|examined|assessed|evaluated|describe|report)",
    ),
    re.I,
)

_CAUSAL = re.compile(_CAUSAL_VERB, re.I)
_CORRELATIONAL = re.compile(_ASSOCIATION, re.I)
_HEDGES = re.compile(_HEDGE, re.I)
_NEGATIONS = re.compile(_NEGATION, re.I)
_CLAUSE_BREAK = re.compile(r"[;:,]\s+(?:but|whereas|while|although|however|and)\b|;", re.I)


# "to" before a verb states a purpose ("efforts to improve"), unless a verb of finding, a hedge or
# a failure comes first ("was shown to reduce", "appears to reduce", "failed to reduce").
_PURPOSE = re.compile(
    r"(?<!shown )(?<!found )(?<!able )(?<!likely )(?<!appears )(?<!appear )(?<!seems )(?<!seem )(?<!tend )(?<!tends )"
    r"(?<!failed )(?<!fails )(?<!fail )(?<!unable )\bto\s+$",
    re.I,
)
# A change verb with no object ("levels increased with age", "was lower than", "were reduced after
# treatment") reports a difference, not what made it.
_CHANGE = re.compile(r"^(?:increas|decreas|reduc|lower|rais|improv|declin|worsen|elevat|rose|fell|drop)", re.I)
_NO_OBJECT = re.compile(
    r"^\s*(?:[.,;:)]|$|(?:significantly |markedly |slightly |substantially |further |more |less |steadily )?(?:than|in|among|with|across|during|over|after|from|between|at|compared|versus|vs|over time|significantly|more|less|rapidly|steadily|slightly|markedly|substantially|only|both|and|or|but|whereas|while|following|throughout|until|within|when|as)\b)",
    re.I,
)
# Weaker causal wording that a hedge makes a conditional causal claim ("may have a role",
# "could be useful to", "may be protective"); alone it claims too little to be causal.
_SOFT_CAUSAL = re.compile(
    _words(
        r"roles?",
        r"useful",
        r"helpful",
        r"protective",
        r"harmful",
        r"beneficial",
        r"effects?",
        r"benefits?",
        r"confer(?:s|red)?",
        r"predispos(?:e|es|ed)",
        r"contribut\w*",
        r"explain(?:s|ed)?",
        r"account(?:s|ed)? for",
        r"advantage",
        r"impart",
        r"underl(?:ie|ies|ying)",
        r"mechanisms?",
    ),
    re.I,
)


def _causal_cue(sentence: str) -> tuple[re.Match[str] | None, re.Match[str] | None]:
    """(the first causal verb used as one, the first change verb used without an object).

    A participle standing as an adjective ("reduced function"), a gerund and a verb of purpose
    are neither."""
    change = None
    for match in _CAUSAL.finditer(sentence):
        word = match.group(0)
        before = sentence[: match.start()]
        if " " not in word:
            if word.lower().endswith("ing") or (_DETERMINER.search(before) and not _NOUN_OF_EFFECT.match(word)):
                continue
            if _PARTICIPLE.search(word) and _ADJECTIVAL.search(before):
                continue
            if _PURPOSE.search(before):
                continue
            if _CHANGE.search(word) and _NO_OBJECT.search(sentence[match.end() :]):
                change = change or match
                continue
        return match, change
    return None, change


def _governs(pattern: re.Pattern[str], sentence: str, cue: re.Match[str], reach: int = 60) -> re.Match[str] | None:
    """A hedge or negation in the same clause shortly before the cue (or inside it)."""
    start = max(0, cue.start() - reach)
    before = sentence[start : cue.end()]
    breaks = list(_CLAUSE_BREAK.finditer(before))
    if breaks:
        before = before[breaks[-1].end() :]
    found = list(pattern.finditer(before))
    return found[-1] if found else None


def read_strength(sentence: str) -> StrengthReading:
    """The strength of one sentence's claim, with the words that decided it."""
    text = " ".join(sentence.split())
    recommendation = _NOT_A_FINDING.search(text)
    causal, change = _causal_cue(text)
    association = _CORRELATIONAL.search(text) or change
    first_relation = min((m.start() for m in (causal, association) if m), default=len(text))
    if recommendation and (
        first_relation > recommendation.start() or (causal and _NOUN_OF_EFFECT.match(causal.group(0)))
    ):
        return StrengthReading(Strength.not_a_claim, recommendation.group(0))
    # The same word can open both ("increased vaccination rates"): with a subject before it, a verb.
    if association and (causal is None or association.start() < causal.start()):
        return StrengthReading(Strength.correlational, association.group(0))
    if causal:
        negated = _governs(_NEGATIONS, text, causal, reach=40) is not None
        hedge = _governs(_HEDGES, text, causal)
        if hedge:
            return StrengthReading(Strength.conditional_causal, f"{hedge.group(0)} … {causal.group(0)}", negated)
        return StrengthReading(Strength.direct_causal, causal.group(0), negated)
    hedge = _HEDGES.search(text)
    soft = _SOFT_CAUSAL.search(text, hedge.end()) if hedge else None
    if hedge and soft:
        return StrengthReading(Strength.conditional_causal, f"{hedge.group(0)} … {soft.group(0)}")
    return StrengthReading(Strength.not_a_claim)


# A full stop ends a sentence unless it closes an initial or a common abbreviation ("H. pylori",
# "e.g.", "et al.", "vs.", "Fig."), and the next sentence starts with a capital, digit or quote.
_SENTENCE_END = re.compile(
    r"(?<![\s.][A-Za-z]\.)(?<!^[A-Za-z]\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bal\.)(?<!\bvs\.)(?<!\bFig\.)(?<!\bapprox\.)(?<!\bNo\.)"
    r"(?<=[.!?;])\s+(?=[A-Z0-9\"'(])"
)
_CLAUSE = re.compile(r",?\s+\b(?:but|whereas|while|although|though|yet)\b\s+|;\s+|:\s+")


def sentences(text: str) -> list[str]:
    return [part for part in _SENTENCE_END.split(" ".join(text.split())) if part]


def clauses(sentence: str) -> list[str]:
    """A sentence's clauses at contrasts: "juice raised nitrate, but did not change exercise"."""
    return [part for part in _CLAUSE.split(sentence) if part.strip()]
