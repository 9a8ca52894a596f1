"""Quotes on the pages they stand on: where each located quote belongs on the record page, one
quote highlighted on its rendered page, and the page images themselves (rendered once, cached)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from pipeline.core.errors import ClaimsError
from pipeline.review import decisions, pages
from pipeline.web.site import FLAG, MAX_PAGE, Form, Site

_SHA256 = re.compile(r"[0-9a-f]{64}")


def highlights_of(site: Site, record: Any) -> tuple[list[pages.Highlight], pages.Sources]:
    sources = decisions.stored_sources(site.store, record)
    return pages.highlights(record, {study: document.pages for study, document in sources.items()}), sources


def quote_page(site: Site, request: Request, _form: Form) -> Response:
    """One quote (or nearest passage, or nearest number) on its page, highlighted."""
    record = site.store.get(request.path_params["record_id"])
    marks, sources = highlights_of(site, record)
    number = request.path_params["number"]
    if not 0 <= number < len(marks):
        return PlainTextResponse("no such quote on this record: go back to the record", status_code=404)
    mark = marks[number]
    document = pages.document_of(record, sources, mark.study_id)
    sha256 = document.sha256 if document else ""
    paper = site.page_cache.paper(sha256, lambda: site.store.pdf(sha256))
    boxes: list[pages.Box] = []
    if paper is not None and document is not None:
        boxes = paper.boxes(mark.page, document.pages[mark.page - 1], mark.start, mark.end)
    return site.page(
        request,
        "quote.html",
        record=record,
        mark=mark,
        boxes=boxes,
        sha256=sha256,
        has_pdf=paper is not None,
        previous=number - 1 if number > 0 else None,
        next=number + 1 if number + 1 < len(marks) else None,
    )


def page_image(site: Site, request: Request, _form: Form) -> Response:
    """A page of a stored paper as a PNG, rendered once and cached."""
    sha256, number = request.path_params["sha256"], request.path_params["page"]
    if not _SHA256.fullmatch(sha256) or not 0 < number <= MAX_PAGE:
        return PlainTextResponse("no such paper in the store", status_code=404)
    try:
        paper = site.page_cache.paper(sha256, lambda: site.store.pdf(sha256))
        if paper is None:
            return PlainTextResponse("no such paper in the store", status_code=404)
        image = site.page_cache.image(sha256, paper, number)
    except ClaimsError as exc:
        return PlainTextResponse(str(exc), status_code=404)
    return Response(image, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


def _places(blocks: list[Any]) -> Iterator[tuple[str, str]]:
    """Every place on the page that holds text, in page order, keyed 'block', 'block.item' or
    'block.row.cell', with its text."""
    for b, block in enumerate(blocks):
        if block.kind == "table":
            for r, row in enumerate(block.rows):
                for c, cell in enumerate(row):
                    yield f"{b}.{r}.{c}", cell
        elif block.items:
            for i, item in enumerate(block.items):
                yield f"{b}.{i}", item
        else:
            yield str(b), block.text


def flag_anchors(blocks: list[Any]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Each flagged place on the page, in page order: (anchor, its [FLAG ...] text) for the summary
    at the top, and the anchor of each place."""
    summary: list[tuple[str, str]] = []
    anchors: dict[str, str] = {}
    for key, text in _places(blocks):
        found = [part for part in FLAG.split(text) if FLAG.fullmatch(part)]
        if found:
            anchors[key] = f"flag-{len(summary) + 1}"
            summary.append((anchors[key], " ".join(found)))
    return summary, anchors


def quote_places(blocks: list[Any], marks: list[pages.Highlight], record: Any) -> dict[str, list[pages.Highlight]]:
    """Where on the page each located quote belongs, so that its "show on page" link stands
    beside it: a causal step's at the step (the page shows the step, not its quote), any other
    at the first place that shows the quote's opening."""
    places = [(key, " ".join(text.split())) for key, text in _places(blocks)]
    found: dict[str, list[pages.Highlight]] = {}
    for mark in marks:
        if mark.kind == "nearest number":
            continue  # a number stands in many places; the list at the top links it
        step = re.fullmatch(r"mechanism\.steps\[(\d+)\]\.quote", mark.where)
        shown = record.mechanism.steps[int(step.group(1))].text if step else mark.text
        opening = " ".join(shown.split())[:60]
        key = next((key for key, text in places if len(opening) >= 12 and opening in text), None)
        if key is not None:
            found.setdefault(key, []).append(mark)
    return found
