"""Finding quotes and numbers in text extracted from PDFs, which rarely reads as it printed.

Extraction leaves ligatures (ﬁ), curly quotes, several kinds of dash and minus, words split by a
line-break hyphen ("esti-\\nmates"), mathematical alphanumerics (𝑁𝑂3), and some fonts' private
glyph codes (BMJ's '¼' for '=' and '/C0' for a minus). `normalise` folds all of that, keeping a
map from each normalised character back to the original text, so a match can be reported as
character offsets in the page as extracted. Results are memoised: every quote of a record is
looked for in the same pages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache

from rapidfuzz import fuzz

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"), "-")
_QUOTES = {
    **dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032"), "'"),
    **dict.fromkeys(map(ord, "\u201c\u201d\u201e\u201f\u2033"), '"'),
}
_INVISIBLE = {ord("\u00ad"): None, ord("\u200b"): None, ord("\u200c"): None, ord("\u200d"): None, ord("\ufeff"): None}
# Glyph codes some publishers' fonts leave in extracted text, for the character they draw.
_FONT_GLYPHS = (("/C0", "-"), ("\u00bc", "="))
_HYPHEN_BREAK = re.compile(r"(?<=[^\W\d_])-[ \t]*\n[ \t]*(?=[^\W\d_])")


@cache
def _fold(char: str) -> str:
    folded = unicodedata.normalize("NFKC", char).translate(_DASHES).translate(_QUOTES).translate(_INVISIBLE)
    return folded.casefold()


@lru_cache(maxsize=512)
def normalise(text: str) -> tuple[str, tuple[int, ...]]:
    """Folded text (case, width, ligatures, dashes, quotes, hyphenation, white space) and, for each
    of its characters, the index of the original character it came from."""
    for glyph, meaning in _FONT_GLYPHS:
        text = text.replace(glyph, meaning + "\0" * (len(glyph) - len(meaning)))
    out: list[str] = []
    origin: list[int] = []
    skip_until = -1
    breaks = {match.start(): match.end() for match in _HYPHEN_BREAK.finditer(text)}
    for index, char in enumerate(text):
        if index < skip_until or char == "\0":
            continue
        if index in breaks:
            skip_until = breaks[index]
            continue
        folded = _fold(char)
        if folded.isspace() or not folded:
            if out and out[-1] != " " and folded:
                out.append(" ")
                origin.append(index)
            continue
        for piece in folded:
            out.append(" " if piece.isspace() else piece)
            origin.append(index)
    while out and out[-1] == " ":
        out.pop()
        origin.pop()
    return "".join(out), tuple(origin)


def normalised(text: str) -> str:
    return normalise(text)[0]


def _loose(text: str, origin: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Hyphens (and spaces around them) dropped too: 'NO3 - supplementation', 'NO3- supplementation',
    'cross-over' and 'crossover' read the same."""
    keep = [True] * len(text)
    for match in re.finditer(r"\s*-\s*", text):
        for index in range(match.start(), match.end()):
            keep[index] = False
    return "".join(c for c, k in zip(text, keep) if k), tuple(o for o, k in zip(origin, keep) if k)


@dataclass(frozen=True)
class Located:
    page: int | None
    start: int | None  # offsets in the page text as extracted
    end: int | None
    similarity: float  # 0-100; 100 for an exact match after normalisation
    near_match: str | None  # for a quote not found: the closest passage


def locate(quote: str, pages: list[str], claimed_page: int) -> Located:
    """Find `quote` on its claimed page first, then on any page; else the nearest passage."""
    wanted = normalised(quote)
    if not wanted:
        return Located(None, None, None, 0.0, None)
    order = [claimed_page] + [n for n in range(1, len(pages) + 1) if n != claimed_page]
    loose_wanted = _loose(wanted, tuple(range(len(wanted))))[0]
    for number in order:
        if not 1 <= number <= len(pages):
            continue
        text, origin = normalise(pages[number - 1])
        for candidate, mapping, needle in ((text, origin, wanted), (*_loose(text, origin), loose_wanted)):
            at = candidate.find(needle) if needle else -1
            if at >= 0:
                return Located(number, mapping[at], mapping[at + len(needle) - 1] + 1, 100.0, None)
    best = Located(None, None, None, 0.0, None)
    for number, page in enumerate(pages, start=1):
        text, origin = normalise(page)
        if not text:
            continue
        alignment = fuzz.partial_ratio_alignment(wanted, text)
        if alignment and alignment.score > best.similarity:
            start, end = origin[alignment.dest_start], origin[max(alignment.dest_end - 1, alignment.dest_start)] + 1
            best = Located(number, start, end, round(alignment.score, 1), page[start:end])
    return best


# --------------------------------------------------------------------------- numbers

_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])|(?<![\w.])-?\.\d+")


def canonical_number(text: str) -> str | None:
    """'0.050' -> '0.05', '.05' -> '0.05', '1,234' -> '1234', '−2.40' -> '-2.4'."""
    cleaned = text.strip().translate(_DASHES).replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def numbers_in(text: str) -> set[str]:
    """Every number the text states, canonical; a negative one also counts as its magnitude, so
    '60-75' yields 60 and 75 while a claimed -5.05 still needs a minus in the text."""
    found: set[str] = set()
    for token in _NUMBER.findall(normalised(text)):
        canonical = canonical_number(token)
        if canonical is not None:
            found.add(canonical)
            found.add(canonical.lstrip("-"))
    return found


def number_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """Every number the text states, as (start, end) in the text as given and its canonical form."""
    folded, origin = normalise(text)
    for match in _NUMBER.finditer(folded):
        canonical = canonical_number(match.group())
        if canonical is not None:
            yield origin[match.start()], origin[match.end() - 1] + 1, canonical


def numbers_of(value: str) -> list[str]:
    """The numbers in a reported value such as '<0.001' or 'p = .05'."""
    return [c for token in _NUMBER.findall(normalised(value)) if (c := canonical_number(token)) is not None]
