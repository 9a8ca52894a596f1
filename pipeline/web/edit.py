"""The edit form over a record's fields: applied to the stored record, validated and re-checked
by `decisions.edit`, saved only at the version the form was loaded at."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pipeline.core.errors import ClaimsError, InvalidEditError, StaleVersionError
from pipeline.core.models import ClaimType, DomainRating, StepBasis
from pipeline.review import decisions
from pipeline.web.site import Form, Refused, Site, actor, remember, verified, version_of


def edit_page(
    site: Site,
    request: Request,
    record_id: str,
    version: int | None = None,
    status: int = 200,
    problems: list[str] | None = None,
    messages: list | None = None,
) -> Response:
    record, current = site.store.get_versioned(record_id)
    return site.page(
        request,
        "edit.html",
        status,
        record=record,
        version=version or current,
        problems=problems or [],
        messages=messages or [],
        claim_types=[t.value for t in ClaimType],
        bases=[b.value for b in StepBasis],
        ratings=[r.value for r in DomainRating],
    )


def edit_form(site: Site, request: Request, _form: Form) -> Response:
    return edit_page(site, request, request.path_params["record_id"])


def edit_save(site: Site, request: Request, form: Form) -> Response:
    record_id = request.path_params["record_id"]
    try:
        verified(request, form)
        version = version_of(form)
        editor = actor(request, form, "edit")
    except Refused as exc:
        return edit_page(site, request, record_id, status=exc.status, messages=[("error", exc.message)])
    # Applied to the stored record; saved only if that is still the version the form was loaded
    # at (the store refuses anything else as stale, with who changed it and when).
    edited = apply_form(site.store.get(record_id).model_dump(mode="json"), form)
    try:
        decisions.edit(site.store, record_id, version, edited, editor, form.get("note", ""))
    except InvalidEditError as exc:
        return edit_page(site, request, record_id, version, 400, problems=exc.problems)
    except StaleVersionError as exc:
        return edit_page(site, request, record_id, status=409, messages=[("error", str(exc))])
    except ClaimsError as exc:
        return edit_page(site, request, record_id, version, 400, messages=[("error", str(exc))])
    return remember(RedirectResponse(f"/records/{record_id}?done=edited", status_code=303), form)


def apply_form(data: dict[str, Any], form: Form) -> str:
    """The record's JSON with the form's fields (named by their path, 'mechanism.steps.0.text')
    written in; validation is decisions.edit's job, so a bad value is reported, not guessed at."""
    for name, value in form.items():
        if name in ("csrf", "version", "reviewer", "note"):
            continue
        *path, last = name.split(".")
        node: Any = data
        try:
            for key in path:
                node = node[int(key)] if isinstance(node, list) else node[key]
            current = node[int(last)] if isinstance(node, list) else node.get(last)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError):
            continue  # not a field of this record: ignored
        typed = _typed(current, value)
        if isinstance(node, list):
            node[int(last)] = typed
        else:
            node[last] = typed
    return json.dumps(data)


def _typed(current: Any, value: str) -> Any:
    """The form's text as the kind of value the field holds: a number, a list of ids, or nothing
    (an empty box for an optional number). Text that will not convert is kept, and validation
    names the field."""
    text = value.strip()
    if isinstance(current, list):
        return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(current, str):
        return value
    if not text and not isinstance(current, bool):
        return None
    for kind in (int, float) if not isinstance(current, float) else (float,):
        try:
            return kind(text)
        except ValueError:
            continue
    return value
