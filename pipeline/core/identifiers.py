"""Identifiers: DOIs as people and models write them, and the studies a record may cite.

Pure functions over strings and records, used by ingest (a paper's own DOI), the metadata client
(a DOI the user typed), the stages (a citation the model wrote) and the checks and the page
(citations of studies the record was not built from).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.core.errors import InputError
from pipeline.core.files import path_exists
from pipeline.core.models import ClaimRecord

DOI_PATTERN = re.compile(r"\b10\.\d{4,9}/[^\s\"<>]+", re.IGNORECASE)


def clean_doi(raw: str) -> str:
    return raw.rstrip(".,;:)]}'").lower()


MAX_DOI_LENGTH = 300  # real DOIs stay far below; a longer "DOI" would only make file names too long
_DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/", "doi.org/", "doi:")


def normalise_doi(text: str) -> str:
    """'https://doi.org/10.1/X', 'DOI: 10.1/x', ' 10.1/X ' -> '10.1/x'; anything else is refused."""
    candidate = text.strip()
    for prefix in _DOI_PREFIXES:
        if candidate.lower().startswith(prefix):
            candidate = candidate[len(prefix) :].strip()
            break
    shown = text.strip() if len(text.strip()) <= 80 else text.strip()[:77] + "..."
    if len(candidate) > MAX_DOI_LENGTH:
        raise InputError(
            f"'{shown}' is not a DOI: {len(candidate)} characters, more than any DOI has ({MAX_DOI_LENGTH})"
        )
    if not DOI_PATTERN.fullmatch(candidate) or any(ord(char) < 32 for char in candidate):
        raise InputError(f"'{shown}' is not a DOI (expected 10.NNNN/suffix, optionally as https://doi.org/...)")
    # A suffix segment of '.' or '..' would walk to another path of the metadata APIs.
    if any(segment in (".", "..") for segment in unquote(candidate).split("/")[1:]) or "\\" in candidate:
        raise InputError(f"'{shown}' is not a DOI: a '.' or '..' path segment or a backslash has no place in one")
    return clean_doi(candidate)


def canonical_citation(cited: str, study_ids: list[str]) -> str:
    """A citation as the model wrote it ('doi:10.1136/PGMJ...', 'https://doi.org/...') mapped to the
    study id it names, so the same study in another spelling is not taken for a foreign one."""
    text = cited.strip()
    for prefix in _DOI_PREFIXES:
        if text.lower().startswith(prefix):
            text = text[len(prefix) :].strip()
            break
    by_lower = {study_id.lower(): study_id for study_id in study_ids}
    return by_lower.get(clean_doi(text), by_lower.get(text.lower(), cited.strip()))


def looks_like_doi(text: str) -> bool:
    lowered = text.strip().lower()
    return lowered.startswith("10.") or lowered.startswith(_DOI_PREFIXES) or "doi.org/" in lowered


def paper_source(text: str) -> tuple[Path | None, str | None]:
    """What the user named as a paper (`claims run`, a batch's line): a file that exists, or a
    DOI, normalised. Anything else is an input error that says what is accepted."""
    path = Path(text)
    if path_exists(path):
        return path, None
    if looks_like_doi(text):
        return None, normalise_doi(text)
    if urlsplit(text).scheme in ("http", "https"):
        raise InputError(
            f"{text}: a web address is not read; give the paper's DOI, or download the PDF and give the file"
        )
    if text.lower().endswith(".pdf"):
        raise InputError(f"{text}: no such file")
    raise InputError(f"'{text}' is neither a PDF file nor a DOI (expected 10.NNNN/suffix)")


def reader_texts(record: ClaimRecord) -> list[tuple[str, str]]:
    """Prose a reader sees, where a DOI could be named: everything but references, provenance, checks."""
    fields = [
        ("claim.text", record.claim.text),
        ("mechanism.plain_language", record.mechanism.plain_language),
        ("mechanism.summary", record.mechanism.summary),
    ]
    fields += [(f"mechanism.steps[{k}].text", step.text) for k, step in enumerate(record.mechanism.steps)]
    fields += [(f"studies[{i}].summary", study.summary) for i, study in enumerate(record.studies)]
    for i, gold in enumerate(record.gold_standard):
        fields += [
            (f"gold_standard[{i}].{name}", value) for name, value in gold.model_dump().items() if isinstance(value, str)
        ]
    return fields


def foreign_citations(record: ClaimRecord) -> list[tuple[str, str]]:
    """(path, cited id) for every citation of a study the record was not built from."""
    ids = {study.reference.study_id for study in record.studies}
    dois = {study.reference.doi for study in record.studies if study.reference.doi}
    foreign = [
        (f"mechanism.steps[{k}].citations", cited)
        for k, step in enumerate(record.mechanism.steps)
        for cited in step.citations
        if cited not in ids and clean_doi(cited) not in dois
    ]
    for where, text in reader_texts(record):
        foreign += [(where, m) for m in map(clean_doi, DOI_PATTERN.findall(text)) if m not in dois]
    return foreign
