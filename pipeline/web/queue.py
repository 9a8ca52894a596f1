"""The review queue: search, filter by status and flags, sort, 50 a page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from pipeline.team.store import QUEUE_SORTS, display_time
from pipeline.web.site import MAX_PAGE, Form, Site

QUEUE_PAGE = 50
STATUSES = ("draft", "approved", "rejected")


def queue(site: Site, request: Request, _form: Form) -> Response:
    query = request.query_params
    status = query.get("status") if query.get("status") in STATUSES else None
    flagged = query.get("flagged") == "1"
    search = query.get("q", "")[:200]
    sort = str(query.get("sort")) if query.get("sort") in QUEUE_SORTS else "updated"
    try:
        page_number = min(MAX_PAGE, max(1, int(query.get("page", "1")[:12])))
    except ValueError:
        page_number = 1
    rows, total = site.store.queue(status, flagged, search, sort, QUEUE_PAGE, (page_number - 1) * QUEUE_PAGE)
    page_count = max(1, -(-total // QUEUE_PAGE))

    def link(**change: Any) -> str:
        kept = {
            "status": status or "",
            "flagged": "1" if flagged else "",
            "q": search,
            "sort": sort,
            "page": page_number,
        } | change
        return "/?" + urlencode({k: v for k, v in kept.items() if v not in ("", None)})

    return site.page(
        request,
        "queue.html",
        rows=rows,
        status=status,
        flagged=flagged,
        statuses=list(STATUSES),
        search=search,
        sort=sort,
        sorts=list(QUEUE_SORTS),
        total=total,
        page_number=page_number,
        pages=page_count,
        link=link,
        when=display_time,
    )
