"""Every free-text field the model writes is real text about this paper.

A weak model's answers can pass every other check while saying nothing: a plain-language text of
"en", a study title of "PAPER TEXT" (the prompt's own marker), eight causal steps that are one
sentence eight times, a gold-standard population that is a timestamp. A field is flagged
`degenerate_text` where it stands when it:
- is too short for its kind (a claim of fewer than 6 words, a summary of fewer than 8, ...);
- is mostly not words: under half its tokens are words of the paper's language (words of the
  paper itself, of the record's other texts, or common English words);
- repeats itself (one phrase three times or more), or repeats another field of its kind word for
  word (a second causal step, a second GRADE explanation);
- echoes the prompt's own markers or instructions ("PAPER TEXT", "=== system ===");
- shares no content word with the paper and the claim.

The bibliography is held to the paper too: the title must be found on the paper's first pages
(or come from a registry, on a DOI run), and the authors' surnames likewise
(`bibliography_mismatch`).

Calibrated so that the faithful bundled records keep no flag.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator

from rapidfuzz import fuzz

from pipeline.core.models import ClaimRecord, Flag
from pipeline.core.terms import COMMON_WORDS, content_words
from pipeline.sources.pdf import Document

# Each kind of field: what a reviewer calls it (in a flag's message), and the fewest words it may have.
KINDS = {
    "claim": ("claim", 6),
    "plain_language": ("plain-language text", 8),
    "summary": ("mechanism summary", 8),
    "step": ("causal step", 4),
    "study_summary": ("study summary", 5),
    "rationale": ("stance rationale", 4),
    "explanation": ("GRADE domain's explanation", 4),
    "design_rationale": ("design rationale", 4),
    "why": ("gold-standard study's reason", 4),
    "gold": ("gold-standard study's field", 1),
}
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_TOKEN = re.compile(r"\S+")
# The prompts' own markers and scaffolding: none belongs in an answer.
_PROMPT_ECHO = re.compile(
    r"PAPER TEXT|<<<|>>>|===\s*(?:system|user)\s*===|\$(?:study_id|findings|paper_text)\b|"
    r"Findings extracted from the paper|Study identifier:|output_schema|\"\w+\"\s*:|[{}]\s*[\]}]",
    re.I,
)
# Words that hold a sentence together: real sentences have them, a heap of words has few.
_FUNCTION_WORDS = """
    a an the of in on at to for with by from as and or but not no nor is are was were be been
    being has have had do does did this that these those it its itself their them they we he she
    which who whom whose what whether when where how if than then there so such only also both
    each all any other more less most into onto over under beyond about after before between
    through during without may might can could will would should must
"""
# Everyday words (and those of any study) a text may use without the paper using them.
_EVERYDAY_WORDS = """
    above again against because doing down few further having her here hers him his i just now
    off once our out own per same some too until up upon very while why you your one two three
    four five six seven eight nine ten first second third year years month months week weeks day
    days people person adult adults child children patient patients group groups study studies
    trial trials review reviews treatment treatments effect effects risk higher lower increase
    increased decrease decreased reduce reduced improve improved body blood level levels help
    helps make makes take takes use used using like likely often usually well known show shows
    showed found find finds compared against control placebo randomised randomized blinded
    controlled cohort evidence result results outcome outcomes measure measured dose doses daily
    small large long short time times work works cause causes linked associated association germ
    germs medicine medicines pill pills doctor doctors health healthy disease diseases
"""
_FUNCTION = frozenset(_FUNCTION_WORDS.split())
_DOUBLES = frozenset({"that", "had"})  # English allows these twice in a row
_ENGLISH = _FUNCTION | frozenset(_EVERYDAY_WORDS.split())


def free_text_fields(record: ClaimRecord) -> Iterator[tuple[str, str, str]]:
    """(where, kind, text) for every free-text field the model writes."""
    yield "claim.text", "claim", record.claim.text
    yield "mechanism.plain_language", "plain_language", record.mechanism.plain_language
    yield "mechanism.summary", "summary", record.mechanism.summary
    for k, step in enumerate(record.mechanism.steps):
        yield f"mechanism.steps[{k}].text", "step", step.text
    for i, study in enumerate(record.studies):
        yield f"studies[{i}].summary", "study_summary", study.summary
        if study.stance_rationale is not None:
            yield f"studies[{i}].stance_rationale", "rationale", study.stance_rationale
    yield "certainty.design_rationale", "design_rationale", record.certainty.design_rationale
    for d, domain in enumerate(record.certainty.domains):
        yield f"certainty.domains[{d}].explanation", "explanation", domain.explanation
    for g, gold in enumerate(record.gold_standard):
        for name in ("population", "intervention", "comparator", "outcome", "outcome_measure", "duration"):
            yield f"gold_standard[{g}].{name}", "gold", getattr(gold, name)
        yield f"gold_standard[{g}].why", "why", gold.why


def _vocabulary(record: ClaimRecord, sources: dict[str, Document]) -> set[str]:
    """The words of the paper's language as far as this record knows them: the papers' words and
    the findings' (which the quotes tie to the paper), and common English."""
    text = " ".join(" ".join(document.pages) for document in sources.values())
    text += " ".join(
        f"{f.population} {f.intervention} {f.comparator or ''} {f.outcome} {f.quote.text}"
        for study in record.studies
        for f in study.findings
    )
    return {w.lower() for w in _WORD.findall(text)} | _ENGLISH | COMMON_WORDS


_WORD_SHAPE = re.compile(r"[(\[\"'“‘]*([A-Za-z]+(?:[-'’][A-Za-z]+)*)[)\]\"'”’.,;:!?]*")
_NUMBER_SHAPE = re.compile(r"[(\[≥≤<>~±]*[\d][\d.,–-]*(?:%|[a-z]{0,3})?[)\].,;:]*")


def _is_word(token: str, vocabulary: set[str]) -> bool:
    """A word of the language: one the paper or the record uses, or one shaped like a word (letters
    with a vowel, not a long run of capitals); a number; never a code or a timestamp."""
    if _NUMBER_SHAPE.fullmatch(token):
        return True
    shaped = _WORD_SHAPE.fullmatch(token)
    if not shaped:
        return False
    word = shaped.group(1)
    if word.lower() in vocabulary:
        return True
    return bool(re.search(r"[aeiouy]", word, re.I)) and not (word.isupper() and len(word) > 5)


def _repeats_itself(text: str) -> str | None:
    """A phrase three times, one word over a quarter of the text, a word twice in a row ("the the",
    "may may": what a generator stuck in a loop writes), or, in a short text, two content words
    each written twice (a heap of a few words drawn again and again)."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    gram, times = grams.most_common(1)[0] if grams else ((), 0)
    if times >= 3:
        return f"'{' '.join(gram)}' {times} times"
    content = Counter(w for w in words if w not in _FUNCTION)
    if content and len(words) >= 6:
        word, count = content.most_common(1)[0]
        if count >= 3 and count * 4 > len(words):
            return f"'{word}' {count} times in {len(words)} words"
    tokens = text.lower().split()
    # tokens, not words: "0% and 4%), and crude" has no doubled word
    doubled = next(
        (a for a, b in itertools.pairwise(tokens) if a.isalpha() and a == b.rstrip(".,;:") and a not in _DOUBLES), None
    )
    if doubled:
        return f"'{doubled} {doubled}'"
    twice = [w for w, n in content.items() if n >= 2]
    if len(words) <= 15 and len(twice) >= 2:
        return f"'{twice[0]}' and '{twice[1]}' each twice in {len(words)} words"
    return None


def _heap_of_words(kind: str, words: list[str]) -> bool:
    """A sentence-type field of 8 words or more in which hardly a word holds a sentence together."""
    if kind == "gold" or len(words) < 8:
        return False
    return sum(1 for w in words if w.lower() in _FUNCTION) * 10 < len(words)


def _cut_from_the_paper(kind: str, text: str, paper: str) -> bool:
    """A sentence-type field that is the paper's own text copied and cut mid-sentence (it starts
    mid-sentence, or ten words or more stop where the paper's sentence goes on): a slice of the
    paper, not something written about it."""
    words = text.split()
    if kind == "gold" or len(words) < 6:  # a gold-standard field may name a phrase of the paper
        return False
    if text[:1].islower() and " ".join(words[:8]).lower() in paper:
        return True
    if len(words) < 10:  # a sentence may borrow a short clause of the paper
        return False
    copied = " ".join(words).lower()
    at = paper.find(copied)
    return at >= 0 and re.match(r"\s*$|\s*[.!?;:]", paper[at + len(copied) : at + len(copied) + 3]) is None


# Words no English text ends on, and pairs no English sentence has ("the may", "may the"): what a
# heap of words drawn at random, or a text cut off, shows. Only lower-case words are read, so a
# month ("the May issue") or a name ("vitamin A and zinc") is no pair; "can", "will" and "must"
# are left out, being nouns too ("a can of juice").
_NO_END = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "for",
        "with",
        "by",
        "from",
        "and",
        "or",
        "nor",
        "may",
        "might",
        "could",
        "would",
        "should",
        "than",
    ]
)
_DETERMINERS = frozenset({"a", "an", "the"})
_MODALS = frozenset({"may", "might", "could", "would", "should"})
_JOINERS = frozenset(["of", "to", "and", "or", "nor", "is", "are", "was", "were", "than"])
_NOT_AFTER = {
    **dict.fromkeys(_DETERMINERS, _DETERMINERS | _MODALS | _JOINERS | {"be"}),
    **dict.fromkeys(_MODALS, _DETERMINERS | _MODALS | _JOINERS | frozenset(["for", "with", "by", "from"])),
}


def _broken_grammar(text: str) -> str | None:
    """Two words no English puts side by side, or a text that ends where a phrase cannot."""
    tokens = text.split()
    for first, second in itertools.pairwise(tokens):
        word = second.strip('.,;:()"')
        if first in _NOT_AFTER and word in _NOT_AFTER[first]:
            return f"'{first} {word}' is no English"
    if tokens and tokens[-1] in _NO_END:
        return f"it stops on '{tokens[-1]}', mid-phrase"
    return None


def degenerate(where: str, kind: str, text: str, vocabulary: set[str], topic: set[str], paper: str = "") -> str | None:
    """Why the text is not real text about the paper, or None."""
    stripped = " ".join(text.split())
    words = _WORD.findall(stripped)
    if echo := _PROMPT_ECHO.search(stripped):
        return f"it echoes the prompt ('{echo.group(0)}')"
    if not stripped:
        return "it is empty"
    name, fewest = KINDS[kind]
    if len(words) < fewest:
        return f"{len(words)} word(s) ({stripped[:40]!r}): too short for a {name}"
    tokens = _TOKEN.findall(stripped)
    known = sum(1 for token in tokens if _is_word(token, vocabulary))
    if tokens and known * 2 < len(tokens):
        return f"only {known} of its {len(tokens)} tokens are words of the paper's language ({stripped[:40]!r})"
    if repeated := _repeats_itself(stripped):
        return f"it repeats itself ({repeated})"
    if _heap_of_words(kind, words):
        return "a heap of words, not sentences (hardly a word like 'the', 'of', 'is' holds them together)"
    if _cut_from_the_paper(kind, stripped, paper):
        return "a slice of the paper's own text, cut mid-sentence, not text written about it"
    if broken := _broken_grammar(stripped):
        return broken
    own = content_words(stripped)
    if kind not in ("gold", "why") and len(own) >= 3 and not own & topic:
        return "it shares no content word with the paper and the claim"
    return None


def check_free_text(record: ClaimRecord, sources: dict[str, Document]) -> list[Flag]:
    """`degenerate_text` flags for every free-text field, and `bibliography_mismatch` flags."""
    vocabulary = _vocabulary(record, sources)
    paper = " ".join(" ".join(" ".join(document.pages).split()) for document in sources.values()).lower()
    topic = content_words(" ".join(w for w in vocabulary if len(w) > 3)) | content_words(record.claim.text)
    flags = []
    seen: dict[tuple[str, str], str] = {}
    for where, kind, text in free_text_fields(record):
        problem = degenerate(where, kind, text, vocabulary, topic, paper)
        key = (kind, " ".join(text.lower().split()))
        if problem is None and kind in ("step", "explanation") and key in seen:
            problem = f"it repeats {seen[key]} word for word"
        seen.setdefault(key, where)
        if problem:
            flags.append(
                Flag(where=where, code="degenerate_text", message=f"not real text about this paper: {problem}")
            )
    return flags + bibliography_flags(record, sources)


def _clean(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def bibliography_flags(record: ClaimRecord, sources: dict[str, Document]) -> list[Flag]:
    """Each study's title and authors against the paper's own first pages (a DOI run's title and
    authors come from a registry and are not held to the PDF)."""
    flags = []
    for i, study in enumerate(record.studies):
        reference = study.reference
        document = sources.get(reference.study_id)
        if document is None or reference.metadata_sources:
            continue
        front = _clean(" ".join(document.pages[:2]))
        title = _clean(reference.title)
        if not title or fuzz.partial_ratio(title, front) < 90:
            if document.title:
                own = f"the paper's own: {document.title!r}"
            else:  # no title found: what the page starts with, often a journal's running head
                own = f"its first page begins {(document.pages[0].strip().splitlines() or [''])[0][:120]!r}"
            flags.append(
                Flag(
                    where=f"studies[{i}].reference.title",
                    code="bibliography_mismatch",
                    message=f"the title {reference.title!r} is not on the paper's first pages; {own}",
                )
            )
        named = set(front.split())
        missing = [a for a in reference.authors if not {w for w in _clean(a).split() if len(w) > 2} & named]
        if missing and len(missing) * 2 > len(reference.authors):
            flags.append(
                Flag(
                    where=f"studies[{i}].reference.authors",
                    code="bibliography_mismatch",
                    message=f"author(s) not named on the paper's first pages: {', '.join(missing[:5])}",
                )
            )
    return flags
