"""Content words: what a text is about, without the words every paper uses.

`claims match` scores a paper against a claim by the content words they share, and the topic
check asks how many of a claim's content words its studies use at all.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z][a-z0-9-]{3,}")
# Words any paper uses, which say nothing about what it studies (a shared "authors" or "data"
# made unrelated papers look related), and the hedges a claim is worded with.
COMMON_WORDS = frozenset(
    [
        "accepted",
        "access",
        "after",
        "also",
        "among",
        "analysis",
        "article",
        "articles",
        "associated",
        "association",
        "author",
        "authors",
        "based",
        "been",
        "between",
        "compared",
        "comparison",
        "copyright",
        "correspondence",
        "data",
        "department",
        "effect",
        "effects",
        "figure",
        "figures",
        "from",
        "group",
        "groups",
        "have",
        "however",
        "include",
        "includes",
        "including",
        "into",
        "journal",
        "level",
        "levels",
        "licence",
        "license",
        "mean",
        "median",
        "method",
        "methods",
        "number",
        "open",
        "page",
        "pages",
        "participants",
        "patients",
        "published",
        "received",
        "report",
        "reported",
        "reports",
        "results",
        "review",
        "reviews",
        "significant",
        "significantly",
        "studies",
        "study",
        "table",
        "tables",
        "than",
        "that",
        "their",
        "these",
        "this",
        "those",
        "time",
        "times",
        "total",
        "trial",
        "trials",
        "university",
        "use",
        "used",
        "using",
        "value",
        "values",
        "were",
        "which",
        "with",
        "within",
        "without",
        "year",
        "years",
    ]
)
HEDGES = frozenset(
    ["may", "might", "could", "likely", "possibly", "probably", "suggest", "suggests", "appear", "appears"]
)


def content_words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in COMMON_WORDS and word not in HEDGES}


def stems(text: str) -> set[str]:
    """Content words by their first five letters: 'raised' and 'raise', 'trials' and 'trial' meet."""
    return {word[:5] for word in content_words(text)}
