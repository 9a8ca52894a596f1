"""Readability of plain-language text: Flesch–Kincaid grade and words per sentence.

Syllables are counted as textstat 0.7.x did, from pyphen's hyphenation points (its dictionaries
ship in the wheel, so scoring works offline; textstat 0.7.10+ downloads cmudict at run time).
DOIs and parenthetical asides are stripped first: citations are not prose a reader has to read.
Targets (health-communication guidance, see README): grade <= 8 and <= 20 words a sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import pyphen

MAX_GRADE = 8.0
MAX_WORDS_PER_SENTENCE = 20.0

_PARENTHESES = re.compile(r"\([^()]*\)")
_DOI = re.compile(r"\b10\.\d{4,9}/\S*[^\s.,;:)]")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_WORD = re.compile(r"[^\W_][\w'\u2019-]*")


@cache
def _dictionary() -> pyphen.Pyphen:
    return pyphen.Pyphen(lang="en_US")


def syllables(word: str) -> int:
    return max(1, len(_dictionary().positions(word)) + 1)


@dataclass(frozen=True)
class Readability:
    grade: float
    words_per_sentence: float
    words: int
    sentences: int

    @property
    def meets_target(self) -> bool:
        return self.grade <= MAX_GRADE and self.words_per_sentence <= MAX_WORDS_PER_SENTENCE


def score(text: str) -> Readability:
    prose = _DOI.sub("", _PARENTHESES.sub("", text))
    sentences = [s for s in _SENTENCE_END.split(prose.strip()) if _WORD.search(s)]
    words = _WORD.findall(prose)
    if not words:
        return Readability(0.0, 0.0, 0, 0)
    per_sentence = len(words) / max(1, len(sentences))
    per_word = sum(syllables(word) for word in words) / len(words)
    grade = 0.39 * per_sentence + 11.8 * per_word - 15.59
    return Readability(round(grade, 1), round(per_sentence, 1), len(words), len(sentences))
