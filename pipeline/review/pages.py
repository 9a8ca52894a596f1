"""A paper's pages as images, with a quote's place on them: what a reviewer checks a quote against.

The checks locate each quote by character offsets in the page text as stored (PDFium's text,
cleaned: line ends, hyphens at line breaks, margin line numbers, masked e-mail addresses). To
draw it, those offsets are mapped back to PDFium's own characters by aligning the stored text
with PDFium's text of the page (in one pass: the clean-up only drops or swaps a few characters),
and each character's box is asked of PDFium (by character index: PDFium's text of a page leaves
some characters out, so it is not the text the boxes are indexed by). A ligature ("fi" as
one glyph) gives its letters one shared box, so it is highlighted whole; the boxes of one line
are merged into one rectangle, a quote that crosses a line break gets one per line.

PDFium is not thread-safe: every call into it here holds one lock. Rendered pages are cached
(by paper, page and width), so a page is rendered once however often it is shown.
"""

from __future__ import annotations

import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from pipeline.core.errors import InputError
from pipeline.core.models import ClaimRecord, GroundingStatus
from pipeline.sources.pdf import Document
from pipeline.stages.check import Sources
from pipeline.stages.textmatch import number_spans, numbers_of

PAGE_WIDTH = 1000  # pixels: a page image fills a review page's column, and its text stays readable
_PDFIUM = threading.Lock()


@dataclass(frozen=True)
class Box:
    """A rectangle on a page, as fractions of the page's width and height from its top left
    corner, so that it fits the page image at any size."""

    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Highlight:
    """One thing a reviewer may want to see on its page: a quote (grounded, or the nearest
    passage to an ungrounded one) or a number the checks could not find (its nearest number)."""

    index: int
    where: str
    kind: str  # "quote", "nearest passage" or "nearest number"
    text: str  # what the record says
    page: int
    start: int
    end: int
    found: str  # the page's text at start:end
    similarity: float | None = None
    study_id: str | None = None


def _field(data: Any, where: str) -> Any:
    """The value at a record path such as 'studies[0].findings[2].quote', in the record's JSON."""
    node = data
    for name, index in re.findall(r"([A-Za-z_]+)|\[(\d+)\]", where):
        try:
            node = node[int(index)] if index else node[name]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def quote_highlights(record: ClaimRecord) -> list[Highlight]:
    """Every quote the checks located, in the record's order: where it is on its page, or for a
    quote that is not in the paper, where its nearest passage is."""
    data = record.model_dump(mode="json")
    found: list[Highlight] = []
    for check in record.checks:
        for location in check.quotes:
            if location.page is None or location.start is None or location.end is None:
                continue
            value = _field(data, location.where)
            found.append(
                Highlight(
                    index=len(found),
                    where=location.where,
                    kind="quote" if location.status is not GroundingStatus.ungrounded else "nearest passage",
                    text=value.get("text", "") if isinstance(value, dict) else str(value or ""),
                    page=location.page,
                    start=location.start,
                    end=location.end,
                    found=location.near_match or "",
                    similarity=location.similarity,
                    study_id=location.study_id,
                )
            )
    return found


def number_highlights(record: ClaimRecord, pages_of: dict[str, list[str]], first_index: int) -> list[Highlight]:
    """For each number flagged `number_not_found`: the number nearest to it in its study's text
    (by relative difference), and where it stands, so a reviewer sees what the paper does say."""
    data = record.model_dump(mode="json")
    found: list[Highlight] = []
    for check in record.checks:
        for flag in check.flags:
            if flag.code != "number_not_found":
                continue
            stated = _field(data, flag.where)
            wanted = numbers_of(str(stated)) if stated is not None else []
            study = re.match(r"studies\[(\d+)\]", flag.where)
            if not wanted or study is None or int(study.group(1)) >= len(record.studies):
                continue
            study_id = record.studies[int(study.group(1))].reference.study_id
            nearest = _nearest_number(wanted[0], pages_of.get(study_id, []))
            if nearest is None:
                continue
            page, start, end, similarity = nearest
            found.append(
                Highlight(
                    index=first_index + len(found),
                    where=flag.where,
                    kind="nearest number",
                    text=str(stated),
                    page=page,
                    start=start,
                    end=end,
                    found=pages_of[study_id][page - 1][start:end],
                    similarity=similarity,
                    study_id=study_id,
                )
            )
    return found


def _nearest_number(wanted: str, pages: list[str]) -> tuple[int, int, int, float] | None:
    target = Decimal(wanted)
    best: tuple[Decimal, int, int, int] | None = None
    for number, text in enumerate(pages, start=1):
        for start, end, canonical in number_spans(text):
            distance = abs(Decimal(canonical) - target) / max(abs(target), Decimal("0.001"))
            if best is None or distance < best[0]:
                best = (distance, number, start, end)
    if best is None:
        return None
    distance, page, start, end = best
    return page, start, end, round(max(0.0, 100.0 * (1 - float(distance))), 1)


def document_of(record: ClaimRecord, sources: Sources, study_id: str | None) -> Document | None:
    """The stored text (and sha256) of the study a highlight belongs to; the record's first study
    when the checks did not say which."""
    first = record.studies[0].reference.study_id if record.studies else ""
    return sources.get(study_id or first)


def highlights(record: ClaimRecord, pages_of: dict[str, list[str]]) -> list[Highlight]:
    """Every quote's place, then every unfound number's nearest number, numbered in that order."""
    quotes = quote_highlights(record)
    return quotes + number_highlights(record, pages_of, len(quotes))


# --------------------------------------------------------------------------- PDFium


def align(pdfium_text: str, stored_text: str) -> list[int | None]:
    """For each character of the stored page text, the index of the PDFium character it came
    from (None for one the clean-up made, such as '[e-mail]' for an address).

    One pass. PDFium's text is first put as the clean-up puts it (its CR LF as LF, its soft
    hyphen as '-'), remembering where each character came from; the clean-up also drops or
    replaces a few runs (margin line numbers, e-mail addresses), and past such a run the two
    texts are brought back in step where the stored text's next characters stand."""
    kept = [i for i, char in enumerate(pdfium_text) if not (char == "\r" and pdfium_text[i + 1 : i + 2] == "\n")]
    raw = "".join(pdfium_text[i] for i in kept).replace("\ufffe", "-")
    mapping: list[int | None] = [None] * len(stored_text)
    i = j = 0
    in_step = True
    while i < len(raw) and j < len(stored_text):
        if in_step and raw[i] == stored_text[j]:
            mapping[j] = kept[i]
            i, j = i + 1, j + 1
            continue
        found = -1
        for size, window in _ANCHORS:  # a long anchor far ahead, else a short one close by
            anchor = stored_text[j : j + size]
            found = raw.find(anchor, i, i + window + len(anchor))
            if found >= 0:
                break
        if found >= 0:
            i, in_step = found, True
        else:
            j, in_step = j + 1, False  # a character the clean-up wrote: it has no box of its own
    return mapping


# (characters, how far ahead): margin line numbers every line leave short runs in step, where
# only a short anchor close by finds the way back
_ANCHORS = ((12, 400), (5, 12))


def _characters(textpage: Any) -> tuple[str, list[int]]:
    """PDFium's characters of a page, and for each the character index its box goes by. Its
    text (get_text_range) is not that: it leaves out some characters (marks PDFium gives the
    code 2), so past one of them its positions and the boxes' indices part. Code 2 at a line
    end is the soft hyphen the text writes as U+FFFE, and is written so here; a character
    beyond the first 65,536 (a mathematical 𝑁) comes as two halves, joined here into one."""
    codes = [pdfium_c.FPDFText_GetUnicode(textpage, i) for i in range(textpage.count_chars())]
    text: list[str] = []
    indices: list[int] = []
    i = 0
    while i < len(codes):
        code = codes[i]
        low = codes[i + 1] if i + 1 < len(codes) else 0
        pair = 0xD800 <= code < 0xDC00 and 0xDC00 <= low < 0xE000
        if pair:
            text.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
        else:
            text.append("\ufffe" if code == 2 else chr(code) if code < 0x110000 else "\ufffd")
        indices.append(i)
        i += 2 if pair else 1
    return "".join(text), indices


class Paper:
    """One paper's PDF, opened once: its pages' sizes, images and character boxes."""

    def __init__(self, data: bytes, name: str = "the paper"):
        with _PDFIUM:
            try:
                self._document = pdfium.PdfDocument(data)
            except pdfium.PdfiumError as exc:
                raise InputError(f"{name}: the stored PDF cannot be opened ({exc})") from None
            self.page_count = len(self._document)

    def _page(self, number: int) -> Any:
        if not 1 <= number <= self.page_count:
            raise InputError(f"page {number} is not in the paper (it has {self.page_count})")
        return self._document[number - 1]

    def boxes(self, number: int, stored_text: str, start: int, end: int) -> list[Box]:
        """The rectangles, one per line, that the stored text's start:end covers on the page."""
        with _PDFIUM:
            page = self._page(number)
            textpage = page.get_textpage()
            try:
                raw, char_index = _characters(textpage)
                mapping = align(raw, stored_text)
                left, bottom, right, top = page.get_cropbox()
                width, height = right - left, top - bottom
                lines: list[list[float]] = []  # [x0, y0, x1, y1] in PDF points, y upward
                for index in mapping[max(0, start) : max(0, end)]:
                    if index is None or raw[index].isspace():
                        continue
                    x0, y0, x1, y1 = textpage.get_charbox(char_index[index])
                    if x1 <= x0 or y1 <= y0:
                        continue
                    line = lines[-1] if lines else None
                    if line and min(line[3], y1) - max(line[1], y0) > 0.5 * min(line[3] - line[1], y1 - y0):
                        line[:] = [min(line[0], x0), min(line[1], y0), max(line[2], x1), max(line[3], y1)]
                    else:
                        lines.append([x0, y0, x1, y1])
            finally:
                textpage.close()
                page.close()
        return [
            Box((x0 - left) / width, (top - y1) / height, (x1 - x0) / width, (y1 - y0) / height)
            for x0, y0, x1, y1 in lines
        ]

    def render(self, number: int, width: int = PAGE_WIDTH) -> Any:
        """The page as a Pillow image `width` pixels wide."""
        with _PDFIUM:
            page = self._page(number)
            try:
                scale = width / page.get_width()
                return page.render(scale=scale).to_pil().convert("RGB")
            finally:
                page.close()

    def close(self) -> None:
        with _PDFIUM:
            self._document.close()


def png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)  # speed over size: a page is shown, not archived
    return buffer.getvalue()


def with_highlights(image: Any, boxes: list[Box], colour: tuple[int, int, int]) -> Any:
    """The image with the boxes drawn on it, translucent, for a PNG file (the web page lays its
    boxes over the image instead, where the browser can measure them)."""
    from PIL import Image, ImageDraw

    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    w, h = image.size
    for box in boxes:
        shape = (box.left * w - 2, box.top * h - 2, (box.left + box.width) * w + 2, (box.top + box.height) * h + 2)
        draw.rectangle(shape, fill=(*colour, 90), outline=(*colour, 255), width=2)
    return Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")


COLOURS = {"quote": (255, 200, 0), "nearest passage": (230, 90, 30), "nearest number": (60, 120, 230)}


class PageCache:
    """Opened papers and rendered page images, the least recently used dropped first."""

    def __init__(self, papers: int = 8, images: int = 64):
        self._papers: OrderedDict[str, Paper] = OrderedDict()
        self._images: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._limits = (papers, images)
        self._lock = threading.Lock()

    def paper(self, sha256: str, load: Callable[[], bytes | None]) -> Paper | None:
        """The paper, opened from `load()` only when it is not open already (None: no such PDF)."""
        with self._lock:
            if sha256 in self._papers:
                self._papers.move_to_end(sha256)
                return self._papers[sha256]
        data = load()
        if data is None:
            return None
        opened = Paper(data)
        with self._lock:
            self._papers[sha256] = opened
            while len(self._papers) > self._limits[0]:
                self._papers.popitem(last=False)  # closed when the last page being drawn from it is done
        return opened

    def close(self) -> None:
        with self._lock:
            while self._papers:
                self._papers.popitem()[1].close()
            self._images.clear()

    def image(self, sha256: str, paper: Paper, number: int, width: int = PAGE_WIDTH) -> bytes:
        key = (sha256, number, width)
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        made = png(paper.render(number, width))
        with self._lock:
            self._images[key] = made
            while len(self._images) > self._limits[1]:
                self._images.popitem(last=False)
        return made
