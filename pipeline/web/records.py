"""A record's page, the decisions on it (approve, reject, reopen: through `review`, as on the
command line) and its history."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from pipeline.core.errors import ClaimsError, RecordNotFoundError, StaleVersionError
from pipeline.review import decisions
from pipeline.review.render import page_blocks
from pipeline.team.store import flag_count
from pipeline.web.quotes import flag_anchors, highlights_of, quote_places
from pipeline.web.site import Form, Refused, Site, actor, remember, verified, version_of


def record_page(
    site: Site, request: Request, record_id: str, status: int = 200, messages: list | None = None
) -> Response:
    record, version = site.store.get_versioned(record_id)
    blocks = page_blocks(record)
    summary, anchors = flag_anchors(blocks)
    # where a second model doubts a finding, a reviewer should look first
    summary.sort(key=lambda item: "second_opinion" not in item[1])
    marks, sources = highlights_of(site, record)
    missing_pdf = not all(site.store.has_pdf(document.sha256) for document in sources.values())
    return site.page(
        request,
        "record.html",
        status,
        record=record,
        version=version,
        blocks=blocks,
        flag_list=summary,
        anchors=anchors,
        allowed=decisions.allowed_actions(record),
        flags=flag_count(record),
        messages=messages or [],
        marks=marks,
        missing_pdf=missing_pdf,
        quote_links=quote_places(blocks, marks, record),
    )


def show(site: Site, request: Request, _form: Form) -> Response:
    return record_page(site, request, request.path_params["record_id"])


def decide(site: Site, request: Request, form: Form) -> Response:
    record_id, action = request.path_params["record_id"], request.path_params["action"]
    store = site.store
    try:
        verified(request, form)
        version = version_of(form)
        if action not in ("approve", "reject", "reopen"):
            return PlainTextResponse("unknown action", status_code=404)
        reviewer = actor(request, form, action)
        if action == "approve":
            decisions.approve(
                store,
                record_id,
                version,
                reviewer,
                form.get("note", ""),
                form.get("override", ""),
                second_reviewer=site.require_second_reviewer,
            )
        elif action == "reject":
            decisions.reject(store, record_id, version, reviewer, form.get("reason", ""))
        else:
            decisions.reopen(store, record_id, version, reviewer, form.get("note", ""))
    except Refused as exc:
        return record_page(site, request, record_id, exc.status, [("error", exc.message)])
    except StaleVersionError as exc:
        return record_page(site, request, record_id, 409, [("error", str(exc))])
    except RecordNotFoundError:
        raise
    except ClaimsError as exc:
        return record_page(site, request, record_id, 400, [("error", str(exc))])
    done = {"approve": "approved", "reject": "rejected", "reopen": "reopened"}[action]
    return remember(RedirectResponse(f"/records/{record_id}?done={done}", status_code=303), form)


def history(site: Site, request: Request, _form: Form) -> Response:
    record_id = site.store.resolve(request.path_params["record_id"])
    return site.page(request, "history.html", record_id=record_id, entries=site.store.history(record_id))
