"""Stage 1, ingest: a PDF file in, a `Document` out (text per page, sections, DOI, title).

Text extraction sits behind `TextExtractor`, one method from bytes to per-page text, so another
extractor can replace pypdf without touching the rest. Everything after extraction is pure.

A PDF can "parse successfully" and still be useless: a scanned page has no text layer, and some
fonts give glyph names ("/two.tnum") or control characters instead of words. Both are refused
here with a message that says what to do, so nothing downstream drafts a claim from noise.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pipeline.core import settings
from pipeline.core.errors import EncryptedPdfError, InputError, NoTextLayerError
from pipeline.core.files import read_regular_file
from pipeline.core.identifiers import DOI_PATTERN, clean_doi
from pipeline.core.models import PageProblem

EMAIL_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")

# Below these, a PDF is not something a claim can be drafted from.
MIN_CHARS_PER_PAGE = 200
MIN_TOTAL_CHARS = 1500
MAX_GARBLED_SHARE = 0.2

logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass(frozen=True)
class ExtractedPages:
    texts: list[str | None]  # None where the page could not be read
    problems: list[PageProblem]
    metadata: dict[str, str]


class TextExtractor(Protocol):
    name: str

    def extract(self, data: bytes, file_name: str) -> ExtractedPages: ...


class PypdfExtractor:
    """pypdf, page by page: a page that fails is reported and skipped, the paper goes on."""

    name = "pypdf"

    def extract(self, data: bytes, file_name: str) -> ExtractedPages:
        import pypdf
        from pypdf.errors import PdfReadError, PyPdfError

        try:
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise _encrypted(file_name)
            pages = list(reader.pages)
            metadata = {k: str(v) for k, v in (reader.metadata or {}).items()}
        except InputError:
            raise
        except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
            raise _corrupt(file_name, exc) from exc
        texts: list[str | None] = []
        problems = []
        for number, page in enumerate(pages, start=1):
            try:
                texts.append(page.extract_text() or "")
            except Exception as exc:
                texts.append(None)
                problems.append(PageProblem(page=number, problem=f"{type(exc).__name__}: {exc}"[:200]))
        return ExtractedPages(texts, problems, metadata)


class PdfiumExtractor:
    """PDFium (Chrome's PDF engine) through pypdfium2: 15-30 times faster than pypdf on the
    corpus, and it reads digits where pypdf returns some fonts' glyph names ("/two.tnum")."""

    name = "pdfium"

    def extract(self, data: bytes, file_name: str) -> ExtractedPages:
        import pypdfium2 as pdfium

        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if "password" in str(exc).lower():
                raise _encrypted(file_name) from exc
            raise _corrupt(file_name, exc) from exc
        try:
            metadata = {f"/{key}": str(value) for key, value in document.get_metadata_dict(skip_empty=True).items()}
            texts: list[str | None] = []
            problems = []
            for index in range(len(document)):
                try:
                    page = document[index]
                    textpage = page.get_textpage()
                    texts.append(_clean_pdfium(textpage.get_text_range()))
                    textpage.close()
                    page.close()
                except Exception as exc:
                    texts.append(None)
                    problems.append(PageProblem(page=index + 1, problem=f"{type(exc).__name__}: {exc}"[:200]))
        finally:
            document.close()
        return ExtractedPages(texts, problems, metadata)


def _clean_pdfium(text: str) -> str:
    """PDFium ends lines with CR LF and marks a line-break hyphen with U+FFFE."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe\n", "-\n").replace("\ufffe", "-")


class FallbackExtractor:
    """The first extractor; for each page it fails on or reads as glyph names, the second."""

    def __init__(self, first: TextExtractor, second: TextExtractor):
        self.first, self.second = first, second
        self.name = f"{first.name}+{second.name}"

    def extract(self, data: bytes, file_name: str) -> ExtractedPages:
        try:
            primary = self.first.extract(data, file_name)
        except EncryptedPdfError:
            raise
        except InputError as first_failure:
            # A file one parser cannot open, the other sometimes can (they repair damage differently).
            try:
                return self.second.extract(data, file_name)
            except InputError:
                raise first_failure from None
        bad_pages = {p.page for p in primary.problems} | {
            n for n, text in enumerate(primary.texts, start=1) if text and garbled_share(text) > MAX_GARBLED_SHARE
        }
        if not bad_pages:
            return primary
        secondary = self.second.extract(data, file_name)
        texts = list(primary.texts)
        problems = [p for p in primary.problems if p.page not in bad_pages]
        for number in sorted(bad_pages):
            replacement = secondary.texts[number - 1] if number <= len(secondary.texts) else None
            if replacement is None:
                problems.append(
                    next(
                        (p for p in secondary.problems if p.page == number),
                        PageProblem(page=number, problem="unreadable"),
                    )
                )
            texts[number - 1] = replacement
        return ExtractedPages(texts, sorted(problems, key=lambda p: p.page), primary.metadata or secondary.metadata)


def default_extractor() -> TextExtractor:
    return FallbackExtractor(PdfiumExtractor(), PypdfExtractor())


def _encrypted(file_name: str) -> InputError:
    return EncryptedPdfError(
        f"{file_name}: the PDF is encrypted and needs a password; save an unencrypted copy (e.g. qpdf --decrypt) and pass that"
    )


def _corrupt(file_name: str, exc: BaseException) -> InputError:
    detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return InputError(
        f"{file_name}: the PDF is damaged or incomplete and cannot be read ({detail}); download it again or re-save it"
    )


# --------------------------------------------------------------------------- document model


@dataclass(frozen=True)
class Span:
    """A run of one section's text on one page."""

    section: str
    page: int
    text: str


_CUT_NOTE = "\n[... cut to fit the stage's text budget]"
MIN_STUDY_SIGNALS = 2
MAX_STUDY_PAGES_WITHOUT_ABSTRACT = 80


@dataclass
class Document:
    file_name: str
    sha256: str
    pages: list[str]  # text per page, 1-based page n is pages[n-1]; "" for a skipped page
    spans: list[Span]
    doi: str | None
    title: str | None
    problems: list[PageProblem] = field(default_factory=list)

    @property
    def study_id(self) -> str:
        return self.doi or f"sha256:{self.sha256[:16]}"

    def sections_found(self) -> list[str]:
        return sorted({span.section for span in self.spans})

    def not_a_study(self) -> str | None:
        """Why the document does not look like a research paper (lecture notes, slides, a thesis,
        a book), or None. A paper shows at least two of: an abstract, a methods section, results
        (or a discussion or conclusions), a reference list, a DOI; and one without an abstract
        is short. Measured on the shared corpus: every one of its 8 papers shows two or more (a
        review without headings: references and a DOI), 117 pages of lecture notes none."""
        found = set(self.sections_found())
        signals = {
            "abstract": "abstract" in found,
            "methods": "methods" in found,
            "results": bool(found & {"results", "discussion", "conclusions"}),
            "references": "references" in found,
            "DOI": self.doi is not None,
        }
        present = [name for name, shown in signals.items() if shown]
        too_long = len(self.pages) > MAX_STUDY_PAGES_WITHOUT_ABSTRACT and not signals["abstract"]
        if len(present) >= MIN_STUDY_SIGNALS and not too_long:
            return None
        return f"found {', '.join(present) or 'none'} of: abstract, methods, results, references, DOI" + (
            f"; {len(self.pages)} pages and no abstract" if too_long else ""
        )

    def text_of(self, sections: tuple[str, ...], max_chars: int) -> str:
        """The named sections' text with page markers, in reading order, cut at `max_chars`.

        A missing Results section is stood in for by the Discussion and Conclusions (reviews put
        their results there). When what is found is under a quarter of the paper's body, the
        whole text (references aside) is sent: headings vary, and a paper is better sent whole
        than cut to its title page and abstract.
        """
        found = {span.section for span in self.spans}
        wanted = set(sections)
        for section, stand_ins in _STAND_INS.items():
            if section in wanted and section not in found:
                wanted |= set(stand_ins)
        chosen = _cap_front([span for span in self.spans if span.section in wanted])
        body = [span for span in self.spans if span.section not in ("front", "references")]
        chosen_body = sum(len(span.text) for span in chosen if span.section != "front")
        if chosen_body == 0 or chosen_body < 0.25 * sum(len(span.text) for span in body):
            # The headings did not let us find what the stage needs: send the paper whole.
            chosen = [span for span in self.spans if span.section != "references"] or self.spans
        parts: list[str] = []
        last_page = None
        for span in chosen:
            if span.page != last_page:
                parts.append(f"[page {span.page}]")
                last_page = span.page
            parts.append(span.text)
        text = "\n".join(parts)
        if len(text) > max_chars:  # the note counts against the budget too
            text = text[: max(0, max_chars - len(_CUT_NOTE))] + _CUT_NOTE
        return text


_STAND_INS = {"results": ("discussion", "conclusions")}
FRONT_MATTER_CHARS = 3000  # enough for title, authors, journal; a manuscript's cover pages are not


def _cap_front(spans: list[Span]) -> list[Span]:
    """The front matter (before the first heading) is sent for the bibliography only: its start."""
    kept, left = [], FRONT_MATTER_CHARS
    for span in spans:
        if span.section != "front":
            kept.append(span)
        elif left > 0:
            kept.append(Span(span.section, span.page, span.text[:left]))
            left -= len(span.text)
    return kept


# --------------------------------------------------------------------------- entry point


def read_pdf(path: Path, extractor: TextExtractor | None = None, max_bytes: int | None = None) -> Document:
    """`max_bytes`: the size cap (default: `--max-pdf-mb` / CLAIMS_MAX_PDF_MB, as for downloads)."""
    data = read_pdf_bytes(path, max_bytes)
    pages = (extractor or default_extractor()).extract(data, path.name)
    return build_document(path.name, data, pages)


def read_pdf_bytes(path: Path, max_bytes: int | None = None) -> bytes:
    """A local PDF's bytes, refused before reading when it is no regular file or over the cap:
    /dev/zero, a FIFO or a 2 GB file end in one line at once, not in memory exhaustion or a hang."""
    cap = max_bytes if max_bytes is not None else int(settings.current().max_pdf_megabytes * 1024 * 1024)
    data = read_regular_file(path, cap, "PDF", "--max-pdf-mb (or CLAIMS_MAX_PDF_MB)")
    if not data:
        raise InputError(f"{path.name}: the file is empty (0 bytes)")
    if b"%PDF" not in data[:1024]:
        raise InputError(f"{path.name}: not a PDF (no %PDF header); pass the paper's PDF file")
    return data


def build_document(file_name: str, data: bytes, extracted: ExtractedPages) -> Document:
    raw_pages = [text or "" for text in extracted.texts]
    _require_words(file_name, raw_pages, extracted.problems)
    # E-mail addresses are masked: no stage needs them, and neither the store nor a recording may keep them.
    pages = [EMAIL_ADDRESS.sub("[e-mail]", page) for page in strip_line_numbers(raw_pages)]
    spans = split_sections(pages)
    return Document(
        file_name=file_name,
        sha256=hashlib.sha256(data).hexdigest(),
        pages=pages,
        spans=spans,
        doi=find_doi(spans, extracted.metadata),
        title=find_title(extracted.metadata, pages),
        problems=extracted.problems,
    )


def document_from_pages(file_name: str, sha256: str, pages: list[str], doi: str | None) -> Document:
    """A document rebuilt from stored page text (already cleaned), to re-check an edited record."""
    return Document(file_name=file_name, sha256=sha256, pages=pages, spans=split_sections(pages), doi=doi, title=None)


# --------------------------------------------------------------------------- text quality

_GLYPH_NAME = re.compile(r"/[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)+|/(?:uni|g)[0-9A-Fa-f]{2,}|\(cid:\d+\)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]")
_WORD = re.compile(r"[^\W\d_]{2,}")


def garbled_share(text: str) -> float:
    """Share of the text's tokens that are glyph names or control characters, not words."""
    tokens = text.split()
    if not tokens:
        return 0.0
    bad = sum(1 for token in tokens if _GLYPH_NAME.search(token) or _CONTROL.search(token))
    return bad / len(tokens)


def _require_words(file_name: str, pages: list[str], problems: list[PageProblem]) -> None:
    readable = [text for text in pages if text.strip()]
    total = sum(len(text.strip()) for text in pages)
    page_count = len(pages)
    if page_count == 0:
        raise InputError(f"{file_name}: the PDF has no pages")
    if len(problems) == page_count:
        raise InputError(f"{file_name}: no page could be read ({problems[0].problem})")
    if total / page_count < MIN_CHARS_PER_PAGE:
        raise NoTextLayerError(
            f"{file_name}: no text layer ({total} characters on {page_count} page(s)); "
            "the PDF is probably scanned: run OCR first (e.g. ocrmypdf) and pass the result"
        )
    joined = "\n".join(readable)
    share = garbled_share(joined)
    words = len(_WORD.findall(joined))
    if share > MAX_GARBLED_SHARE or words < len(joined.split()) / 3:
        why = (
            f"{share:.0%} of tokens are glyph names or control characters"
            if share > MAX_GARBLED_SHARE
            else f"only {words} of {len(joined.split())} tokens are words"
        )
        raise NoTextLayerError(
            f"{file_name}: unreadable text layer ({why}); re-export the PDF or run OCR on it (e.g. ocrmypdf --force-ocr)"
        )
    if total < MIN_TOTAL_CHARS:
        raise InputError(
            f"{file_name}: only {total} characters of text; too little to be a study "
            "(pass the full paper, not a fragment)"
        )


# --------------------------------------------------------------------------- line numbers

_TRAILING_NUMBER = re.compile(r"^(.*?)\s*\b(\d{1,5})\s*$")
_LEADING_NUMBER = re.compile(r"^\s*(\d{1,5})\b\s?(.*)$")


def strip_line_numbers(pages: list[str]) -> list[str]:
    """Remove the margin line numbers of author manuscripts ("... in older people 56", or at the
    start of the line, as some extractors place them).

    Only when most lines of the document carry a number, at the same end, that counts up;
    tables that end lines with figures do not count up that way, so they are left alone.
    """
    lines = [line for text in pages for line in text.splitlines() if line.strip()]
    if len(lines) < 20:
        return pages
    for pattern, number_group, text_group in ((_TRAILING_NUMBER, 2, 1), (_LEADING_NUMBER, 1, 2)):
        numbers = [int(match.group(number_group)) for line in lines if (match := pattern.match(line))]
        rising = sum(1 for a, b in itertools.pairwise(numbers) if 0 < b - a <= 2)
        if len(numbers) >= 0.6 * len(lines) and rising >= 0.5 * len(numbers):
            return _without_numbers(pages, pattern, number_group, text_group)
    return pages


def _without_numbers(pages: list[str], pattern: re.Pattern[str], number_group: int, text_group: int) -> list[str]:
    """Strip each line's number; a line whose number the extractor displaced into the middle
    ("(NO3\n- 56 ) ingestion") loses the number that continues the count."""
    last = 0
    cleaned_pages = []
    for text in pages:
        cleaned = []
        for line in text.splitlines():
            match = pattern.match(line)
            if match and (last == 0 or 0 < int(match.group(number_group)) - last <= 3):
                last = int(match.group(number_group))
                cleaned.append(match.group(text_group).strip())
                continue
            for step in (1, 2):
                displaced = re.search(rf"(?<!\S){last + step}(?!\S)\s?", line)
                if displaced and last:
                    line = line[: displaced.start()] + line[displaced.end() :]
                    last += step
                    break
            cleaned.append(line.rstrip())
        cleaned_pages.append("\n".join(cleaned))
    return cleaned_pages


# --------------------------------------------------------------------------- sections

_SECTION_NAMES = {
    "abstract": "abstract",
    "summary": "abstract",
    "background": "introduction",
    "introduction": "introduction",
    "methods": "methods",
    "method": "methods",
    "methodology": "methods",
    "materials and methods": "methods",
    "methods and materials": "methods",
    "patients and methods": "methods",
    "subjects and methods": "methods",
    "results": "results",
    "findings": "results",
    "results and discussion": "results",
    "discussion": "discussion",
    "conclusion": "conclusions",
    "conclusions": "conclusions",
    "references": "references",
    "bibliography": "references",
    "literature cited": "references",
}
_HEADING = re.compile(r"^\s*(?:(?:\d{1,2}|[IVX]{1,4})(?:\.\d{1,2})*\.?\s+)?([A-Za-z][A-Za-z ]{2,30}?)\s*[:.]?\s*$")


def heading_of(line: str) -> str | None:
    match = _HEADING.match(line)
    if not match:
        return None
    return _SECTION_NAMES.get(re.sub(r"\s+", " ", match.group(1)).strip().lower())


def split_sections(pages: list[str]) -> list[Span]:
    """Cut the text at recognised headings. Text before the first heading is 'front'."""
    spans: list[Span] = []
    section = "front"
    for number, text in enumerate(pages, start=1):
        buffer: list[str] = []
        for line in text.splitlines():
            heading = heading_of(line)
            # "Abstract"/"Summary" only opens the paper: later, such a line is a table label.
            if heading == "abstract" and section != "front":
                heading = None
            if heading and heading != section:
                if buffer:
                    spans.append(Span(section, number, "\n".join(buffer)))
                buffer = []
                section = heading
            buffer.append(line)
        if buffer:
            spans.append(Span(section, number, "\n".join(buffer)))
    return spans


# --------------------------------------------------------------------------- DOI and title

_DOI_LABEL = re.compile(r"(doi\s*:?\s*|doi\.org/)$", re.IGNORECASE)


def find_doi(spans: list[Span], metadata: dict[str, str]) -> str | None:
    """The paper's own DOI: labelled ("doi:", "doi.org/") before bare, most named, earliest.

    References are skipped, but a "Cite this article as: ... doi:" box after them (BioMed
    Central, Springer) counts. A bare DOI counts only on the title page: in the body it is a
    citation of another work, or a planted instruction to cite one.
    """
    scores: dict[str, tuple[int, int, int]] = {}

    def note(doi: str, labelled: bool, page: int) -> None:
        label, seen, first = scores.get(doi, (0, 0, -page))
        scores[doi] = (label + labelled, seen + 1, max(first, -page))

    for span in spans:
        for match in DOI_PATTERN.finditer(span.text):
            before = span.text[max(0, match.start() - 300) : match.start()]
            if span.section == "references" and "cite this article" not in before.lower():
                continue
            labelled = bool(_DOI_LABEL.search(before[-12:]))
            if labelled or span.section == "front":
                note(clean_doi(match.group()), labelled, span.page)
    for value in metadata.values():
        for raw in DOI_PATTERN.findall(value):
            note(clean_doi(raw), True, 0)
    return max(scores, key=lambda doi: scores[doi]) if scores else None


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def find_title(metadata: dict[str, str], pages: list[str]) -> str | None:
    """The metadata title, but only when the first pages really carry it.

    Publishers' metadata is often wrong (another paper's title, "doi:", a file number), so a
    title is trusted only if nearly all its words appear on the first two pages.
    """
    title = metadata.get("/Title", "").strip()
    words = _words(title)
    if len(words) < 4:
        return None
    opening = set(_words(" ".join(pages[:2])))
    if sum(word in opening for word in words) / len(words) < 0.9:
        return None
    return title
