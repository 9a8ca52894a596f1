"""DOI input: metadata from Crossref, OpenAlex and Unpaywall, and the open-access PDF.

Crossref gives the bibliographic record; OpenAlex completes it (abstract, retraction, open-access
locations) and stands in when Crossref is down; Unpaywall, which requires a contact address
(`CLAIMS_MAILTO`), gives the best open-access PDF. The parsers are pure functions from each
service's JSON; only `resolve_metadata`, `download_pdf` and `fetch` touch the network, through
the httpx client they are given.

Downloads follow redirects, stop at a size cap and must be a PDF by both content type and the
`%PDF` magic: a publisher's landing page or a captcha is reported as such, never handed to pypdf.
Results are cached on disk by normalised DOI; a failed response is never cached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from pipeline.core.errors import DoiNotFoundError, NoOpenAccessPdfError, SourcesUnavailableError
from pipeline.core.files import write_bytes_atomic, write_json_atomic
from pipeline.core.models import StudyMetadata
from pipeline.core.retry import RetryError, RetryPolicy, call_with_retries

CROSSREF_URL = "https://api.crossref.org/works/{doi}"
OPENALEX_URL = "https://api.openalex.org/works/doi:{doi}"
UNPAYWALL_URL = "https://api.unpaywall.org/v2/{doi}"
DEFAULT_MAX_PDF_MB = 50.0


class DownloadError(Exception):
    """One PDF location failed; the next one is tried."""


# --------------------------------------------------------------------------- pure parsers

_TAG = re.compile(r"<[^>]+>")


def strip_jats(text: str) -> str:
    """Crossref abstracts are JATS XML: keep the words."""
    return re.sub(r"\s+", " ", _TAG.sub(" ", text)).strip()


def rebuild_abstract(inverted_index: dict[str, list[int]] | None) -> str | None:
    """OpenAlex ships abstracts as word -> positions; put the words back in order."""
    if not inverted_index:
        return None
    positions = {pos: word for word, places in inverted_index.items() for pos in places}
    return " ".join(positions[pos] for pos in sorted(positions))


def _first(values: Any) -> str | None:
    return values[0] if isinstance(values, list) and values else None


def from_crossref(message: dict[str, Any]) -> dict[str, Any]:
    authors = []
    for author in message.get("author", []):
        name = " ".join(part for part in (author.get("given"), author.get("family")) if part) or author.get("name")
        if name:
            authors.append(name)
    date = message.get("published") or message.get("issued") or {}
    year = (date.get("date-parts") or [[None]])[0][0]
    licences = message.get("license", [])
    vor = [lic for lic in licences if lic.get("content-version") == "vor"] or licences
    retracted = any(update.get("type") == "retraction" for update in message.get("updated-by", []))
    return {
        "title": _first(message.get("title")),
        "authors": authors,
        "journal": _first(message.get("container-title")),
        "year": year,
        "licence": vor[0].get("URL") if vor else None,
        "publication_type": message.get("type"),
        "abstract": strip_jats(message["abstract"]) if message.get("abstract") else None,
        "retracted": True if retracted else None,
        "pdf_urls": [
            link["URL"]
            for link in message.get("link", [])
            if link.get("content-type") == "application/pdf" and link.get("URL")
        ],
    }


def from_openalex(work: dict[str, Any]) -> dict[str, Any]:
    best = work.get("best_oa_location") or {}
    primary = work.get("primary_location") or {}
    locations = [best, *work.get("locations", [])]
    return {
        "title": work.get("title") or work.get("display_name"),
        "authors": [
            a["author"]["display_name"] for a in work.get("authorships", []) if a.get("author", {}).get("display_name")
        ],
        "journal": (primary.get("source") or {}).get("display_name"),
        "year": work.get("publication_year"),
        "licence": best.get("license"),
        "publication_type": work.get("type"),
        "abstract": rebuild_abstract(work.get("abstract_inverted_index")),
        "retracted": work.get("is_retracted"),
        "pdf_urls": list(
            dict.fromkeys(loc["pdf_url"] for loc in locations if loc.get("pdf_url") and loc.get("is_oa", True))
        ),
    }


def from_unpaywall(data: dict[str, Any]) -> dict[str, Any]:
    best = data.get("best_oa_location") or {}
    locations = [best, *data.get("oa_locations", [])]
    return {
        "title": data.get("title"),
        "authors": [" ".join(p for p in (a.get("given"), a.get("family")) if p) for a in data.get("z_authors") or []],
        "journal": data.get("journal_name"),
        "year": data.get("year"),
        "licence": best.get("license"),
        "publication_type": data.get("genre"),
        "abstract": None,
        "retracted": None,
        "pdf_urls": [loc["url_for_pdf"] for loc in locations if loc.get("url_for_pdf")],
    }


def merge(doi: str, answers: dict[str, dict[str, Any]]) -> StudyMetadata:
    """Crossref first for bibliographic fields, then OpenAlex, then Unpaywall; PDFs best first."""
    order = [name for name in ("crossref", "openalex", "unpaywall") if name in answers]

    def pick(key: str) -> Any:
        return next((answers[name][key] for name in order if answers[name].get(key)), None)

    pdf_order = [name for name in ("unpaywall", "openalex", "crossref") if name in answers]
    pdf_urls = list(dict.fromkeys(url for name in pdf_order for url in answers[name]["pdf_urls"]))
    retraction_flags = [answers[name].get("retracted") for name in order]
    return StudyMetadata(
        doi=doi,
        title=pick("title"),
        authors=pick("authors") or [],
        journal=pick("journal"),
        year=pick("year"),
        licence=pick("licence"),
        publication_type=pick("publication_type"),
        abstract=pick("abstract"),
        retracted=True if True in retraction_flags else (False if False in retraction_flags else None),
        pdf_urls=pdf_urls,
        sources=list(order),
    )


# --------------------------------------------------------------------------- network


@dataclass
class DoiSettings:
    mailto: str | None = None
    max_pdf_bytes: int = int(DEFAULT_MAX_PDF_MB * 1024 * 1024)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] | None = None


_SERVICE_NAMES = {"crossref": "Crossref", "openalex": "OpenAlex", "unpaywall": "Unpaywall"}


class _Unavailable(Exception):
    pass


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


def _get_json(client: httpx.Client, url: str, params: dict[str, str], settings: DoiSettings) -> dict[str, Any] | None:
    """The JSON body; None for 404; `_Unavailable` when the service keeps failing."""

    def attempt() -> httpx.Response:
        response = client.get(url, params=params)
        if response.status_code == 429 or response.status_code >= 500:
            response.raise_for_status()
        return response

    def headers_of(exc: BaseException) -> Any:
        return exc.response.headers if isinstance(exc, httpx.HTTPStatusError) else None

    try:
        kwargs = {"sleep": settings.sleep} if settings.sleep else {}
        response = call_with_retries(attempt, _is_transient, headers_of, settings.retry, **kwargs)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        status = last.response.status_code if isinstance(last, httpx.HTTPStatusError) else type(last).__name__
        raise _Unavailable(f"{status} after {settings.retry.attempts} attempts") from last
    except httpx.HTTPError as exc:
        raise _Unavailable(type(exc).__name__) from exc
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise _Unavailable(f"HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise _Unavailable("the answer was not JSON") from exc


def resolve_metadata(doi: str, client: httpx.Client, settings: DoiSettings, notes: list[str]) -> StudyMetadata:
    path = quote(doi, safe="/:;()")
    contact = {"mailto": settings.mailto} if settings.mailto else {}
    answers: dict[str, dict[str, Any]] = {}
    missing, down = [], []
    for name, url, parse, unwrap in (
        ("crossref", CROSSREF_URL, from_crossref, lambda body: body.get("message", body)),
        ("openalex", OPENALEX_URL, from_openalex, lambda body: body),
    ):
        try:
            body = _get_json(client, url.format(doi=path), contact, settings)
        except _Unavailable as exc:
            down.append(f"{_SERVICE_NAMES[name]} unavailable ({exc})")
            continue
        if body is None:
            missing.append(name)
        else:
            answers[name] = parse(unwrap(body))
    if not answers:
        if len(missing) == 2:
            raise DoiNotFoundError(f"DOI {doi} not found: Crossref and OpenAlex do not know it; check it for typos")
        raise SourcesUnavailableError(f"cannot look up {doi}: " + "; ".join(down) + "; try again later")
    if down:
        notes.append("; ".join(down) + f"; carried on with {', '.join(_SERVICE_NAMES[a] for a in answers)}")
    if settings.mailto:
        try:
            body = _get_json(client, UNPAYWALL_URL.format(doi=path), {"email": settings.mailto}, settings)
            if body is not None:
                answers["unpaywall"] = from_unpaywall(body)
        except _Unavailable as exc:
            notes.append(f"Unpaywall unavailable ({exc})")
    else:
        notes.append("Unpaywall skipped: set CLAIMS_MAILTO to a contact e-mail address to use it")
    return merge(doi, answers)


# --------------------------------------------------------------------------- notices after publication

# Crossref update types (the "Update" object of its API format) a reader of a claim must know of.
NOTICE_KINDS = {
    "retraction": "retraction",
    "withdrawal": "retraction",
    "removal": "retraction",
    "partial_retraction": "retraction",
    "expression_of_concern": "expression_of_concern",
    "correction": "correction",
    "erratum": "correction",
    "corrigendum": "correction",
}


@dataclass(frozen=True)
class Notice:
    """A retraction, correction or expression of concern about a study, and where it was found."""

    kind: str  # retraction, correction or expression_of_concern
    notice_doi: str | None
    date: str | None  # YYYY-MM-DD, as precise as the source
    source: str  # crossref (updated-by, with its own source: publisher or retraction-watch) or openalex


def notices_from_crossref(message: dict[str, Any]) -> list[Notice]:
    """The `updated-by` updates of a work: each one a notice published about it."""
    found = []
    for update in message.get("updated-by", []) or []:
        kind = NOTICE_KINDS.get(str(update.get("type", "")).lower().replace("-", "_").replace(" ", "_"))
        if kind is None:
            continue
        parts = ((update.get("updated") or {}).get("date-parts") or [[]])[0]
        date = "-".join(f"{part:02d}" if i else str(part) for i, part in enumerate(parts)) if parts else None
        origin = update.get("source")
        found.append(Notice(kind, update.get("DOI"), date, f"crossref ({origin})" if origin else "crossref"))
    return found


def publication_notices(doi: str, client: httpx.Client, settings: DoiSettings) -> list[Notice]:
    """What Crossref (`updated-by`) and OpenAlex (`is_retracted`) say has happened to a study since
    it was published, asked afresh (never from the cache). Raises `SourcesUnavailableError` when
    neither answers, so an outage never reads as 'nothing happened'."""
    path = quote(doi, safe="/:;()")
    contact = {"mailto": settings.mailto} if settings.mailto else {}
    found: list[Notice] = []
    answered = 0
    try:
        body = _get_json(client, CROSSREF_URL.format(doi=path), contact, settings)
        if body is not None:
            answered += 1
            found += notices_from_crossref(body.get("message", body))
    except _Unavailable:
        pass
    try:
        work = _get_json(client, OPENALEX_URL.format(doi=path), contact, settings)
        if work is not None:
            answered += 1
            if work.get("is_retracted") and not any(n.kind == "retraction" for n in found):
                found.append(Notice("retraction", None, None, "openalex (is_retracted)"))
    except _Unavailable:
        pass
    if not answered:
        raise SourcesUnavailableError(f"cannot recheck {doi}: neither Crossref nor OpenAlex answered; try again later")
    return found


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.3g} MB"


def download_pdf(client: httpx.Client, url: str, max_bytes: int) -> bytes:
    try:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise DownloadError(f"{url} answered HTTP {response.status_code}")
            declared = int(response.headers.get("content-length") or 0)
            if declared > max_bytes:
                raise DownloadError(f"{url} is {_megabytes(declared)}, over the {_megabytes(max_bytes)} cap")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise DownloadError(f"{url} is over the {_megabytes(max_bytes)} cap")
    except httpx.HTTPError as exc:
        raise DownloadError(f"{url} could not be downloaded ({type(exc).__name__})") from exc
    if b"%PDF" not in bytes(data[:1024]):
        what = (
            "an HTML page (a landing page or a captcha)"
            if "html" in content_type or data.lstrip()[:1] == b"<"
            else f"'{content_type or 'unknown'}' content"
        )
        raise DownloadError(f"{url} served {what}, not a PDF")
    return bytes(data)


# --------------------------------------------------------------------------- cache and fetch


def file_stem(doi: str) -> str:
    """A file name for a DOI: '10.1136/pgmj.2009.089987' -> '10.1136_pgmj.2009.089987'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", doi)


class DoiCache:
    """`<root>/<quoted doi>/metadata.json`, `<doi stem>.pdf` and `pdf.json` (where it came from)."""

    def __init__(self, root: Path):
        self.root = root

    def folder(self, doi: str) -> Path:
        return self.root / quote(doi, safe="")

    def _pdf_path(self, doi: str) -> Path:
        return self.folder(doi) / f"{file_stem(doi)}.pdf"

    def metadata(self, doi: str) -> StudyMetadata | None:
        path = self.folder(doi) / "metadata.json"
        return StudyMetadata.model_validate_json(path.read_text()) if path.is_file() else None

    def pdf(self, doi: str) -> tuple[Path, str] | None:
        source = self.folder(doi) / "pdf.json"
        if self._pdf_path(doi).is_file() and source.is_file():
            return self._pdf_path(doi), json.loads(source.read_text())["url"]
        return None

    def save_metadata(self, metadata: StudyMetadata) -> None:
        write_json_atomic(self.folder(metadata.doi) / "metadata.json", metadata.model_dump(mode="json"))

    def save_pdf(self, doi: str, data: bytes, url: str) -> Path:
        path = self._pdf_path(doi)
        write_bytes_atomic(path, data)
        write_json_atomic(self.folder(doi) / "pdf.json", {"url": url})
        return path


@dataclass
class Fetched:
    metadata: StudyMetadata
    pdf: Path | None
    pdf_url: str | None
    notes: list[str]
    from_cache: bool


def fetch(
    doi: str,
    client: httpx.Client,
    cache: DoiCache,
    settings: DoiSettings,
    *,
    want_pdf: bool = True,
    refresh: bool = False,
) -> Fetched:
    notes: list[str] = []
    metadata = None if refresh else cache.metadata(doi)
    from_cache = metadata is not None
    if metadata is None:
        metadata = resolve_metadata(doi, client, settings, notes)
        cache.save_metadata(metadata)
    if not want_pdf:
        return Fetched(metadata, None, None, notes, from_cache)
    cached = None if refresh else cache.pdf(doi)
    if cached:
        return Fetched(metadata, cached[0], cached[1], notes, from_cache)
    failures = []
    for url in metadata.pdf_urls:
        try:
            data = download_pdf(client, url, settings.max_pdf_bytes)
        except DownloadError as exc:
            failures.append(str(exc))
            continue
        return Fetched(metadata, cache.save_pdf(doi, data, url), url, notes, False)
    checked = ", ".join((["Unpaywall"] if settings.mailto else []) + ["OpenAlex", "Crossref links"])
    why = f": {'; '.join(failures)}" if failures else ""
    raise NoOpenAccessPdfError(f"no open-access PDF found for {doi} (checked {checked}){why}; pass it with --pdf FILE")


def metadata_mismatches(metadata: StudyMetadata, pdf_doi: str | None, opening_text: str) -> list[str]:
    """Ways the PDF seems not to be the paper the DOI names: another DOI, or not its title."""
    problems = []
    if pdf_doi and pdf_doi != metadata.doi:
        problems.append(f"the PDF names DOI {pdf_doi}, not {metadata.doi}")
    if metadata.title:
        title_words = re.findall(r"[a-z0-9]+", metadata.title.lower())
        present = set(re.findall(r"[a-z0-9]+", opening_text.lower()))
        if title_words and sum(word in present for word in title_words) / len(title_words) < 0.6:
            problems.append(f"the PDF's first pages do not carry the title \u201c{metadata.title}\u201d")
    return problems
