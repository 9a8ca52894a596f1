"""The review web page: server-rendered HTML (Starlette + Jinja2), no front-end build.

Pages: the queue (filter by status and flags), a record laid out like the claim page with its
flagged items highlighted and the review forms, an edit form over the record's fields, and the
history with each change's diff. Every decision goes through `review.py`, like the CLI's.

Accounts: on a store that has had any (`claims user add`), every page needs a login and every
decision is recorded under the logged-in account. A session is a row in the store, named by a
random secret in an HttpOnly, SameSite=Strict cookie (Secure over TLS): logging out deletes it,
and so does any change to the account (disabled, a new password, another role); it also ends
after `session_idle` seconds unused and `session_longest` seconds in all. Failed logins are
limited per account and per address, in the store (shared by every server, kept over a
restart). Behind a single-sign-on proxy the account may instead come from a header the proxy
sets (`proxy_user_header`, only when asked).

Nothing blocks the event loop: a handler's work (the store, a password hash, a page render)
runs in the thread pool once the form has been read.

Safety: Jinja2 escapes every value (a PDF can carry `<script>`); forms carry a per-browser
token that must match a SameSite=Strict cookie. The app answers only the host names it serves
(loopback names by default), so a page on a foreign name that resolves to 127.0.0.1 (DNS
rebinding) reads nothing; a POST needs an Origin of this site, or when there is none a Referer
of it. Every response carries a strict Content-Security-Policy (no script at all, no framing).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from pipeline import accounts, pages, review
from pipeline.accounts import LoginLimiter, check_password, may
from pipeline.errors import ClaimsError, InvalidEditError, RecordNotFoundError, StaleVersionError
from pipeline.models import ClaimType, DomainRating, StepBasis
from pipeline.render import page_blocks
from pipeline.store import QUEUE_SORTS, ROLES, Account, Store, display_time, flag_count

CSRF_COOKIE = "claims_csrf"
REVIEWER_COOKIE = "claims_reviewer"  # on a store without accounts: the name typed last, filled in on every form
SESSION_COOKIE = "claims_session"
SESSION_IDLE = 2 * 3600  # unused this long, a session ends
SESSION_LONGEST = 12 * 3600  # a working day; then log in again
# The messages a redirect may ask the next page to show (`?done=CODE`): codes, never free text.
DONE = {
    "approved": "Record approved.",
    "rejected": "Record rejected.",
    "reopened": "Record reopened.",
    "edited": "Edit saved and re-checked.",
    "user-added": "Account added.",
    "user-disabled": "Account disabled; its sessions have ended.",
    "user-enabled": "Account enabled.",
    "role-changed": "Role changed; the account's sessions have ended.",
    "password-reset": "Password reset; the account's sessions have ended.",
    "token-revoked": "Token revoked.",
}
MAX_FIELD = 100_000  # characters in one form field (an edited record's longest text is far less)
MAX_PAGE = 100_000  # queue pages, quote numbers and PDF page numbers beyond this do not exist
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
SECURITY_HEADERS = {
    # The pages run no script; styles are the inline sheet of base.html.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_FLAG = re.compile(r"(\[FLAG [^\]]*\]|^FLAG .*$)")


def _flags(text: str) -> Markup:
    """Escape the text, and mark its [FLAG ...] parts so a reviewer sees them at once."""
    parts = _FLAG.split(str(text))
    return Markup("").join(
        Markup('<mark class="flag">') + escape(part) + Markup("</mark>") if _FLAG.fullmatch(part) else escape(part)
        for part in parts
    )


def _templates() -> Environment:
    folder = resources.files("pipeline") / "templates"
    environment = Environment(loader=FileSystemLoader(str(folder)), autoescape=select_autoescape(default=True))
    environment.filters["flags"] = _flags
    return environment


class _SaneRequests:
    """A NUL byte in the path or query, or a path or query too long to be one of ours, is a 400
    with a plain message before any handler (or database: PostgreSQL refuses NUL) sees it."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path, query = scope.get("raw_path") or scope["path"].encode(), scope.get("query_string", b"")
            raw = path + b"?" + query
            if b"%00" in raw or b"\x00" in raw or "\x00" in scope["path"] or len(path) > 2048 or len(query) > 4096:
                response = PlainTextResponse("bad request: the address holds a NUL byte or is too long", 400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (pure ASGI: it works for errors and redirects too)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def _same_site(url: str, request: Request) -> bool:
    """True when an Origin or Referer names the scheme, host and port this request was sent to."""
    return url.rstrip("/") == f"{request.url.scheme}://{request.url.netloc}" or url.startswith(
        f"{request.url.scheme}://{request.url.netloc}/"
    )


def create_app(
    store: Store,
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS,
    require_second_reviewer: bool = False,
    proxy_user_header: str | None = None,
    login_limiter: LoginLimiter | None = None,
    session_idle: float = SESSION_IDLE,
    session_longest: float = SESSION_LONGEST,
) -> Starlette:
    """`allowed_hosts`: the Host names the app answers (others get 400), loopback by default.
    `require_second_reviewer`: no one who ran or edited a record may approve it (the store's
    setting turns it on for every server too).
    `proxy_user_header`: trust this header, set by an authenticating proxy, to name the account.
    `session_idle`, `session_longest`: seconds a session may stay unused, and last in all."""
    templates = _templates()
    limiter = login_limiter or LoginLimiter(store)

    def signed_in(request: Request) -> Account | None:
        """The logged-in account of a live session, or None."""
        if proxy_user_header:
            account = store.account(request.headers.get(proxy_user_header, "").strip()[:100])
            return account if account is not None and not account.disabled else None
        return store.session_account(request.cookies.get(SESSION_COOKIE, "")[:100], session_idle, session_longest)

    def page(request: Request, name: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        messages = context.pop("messages", [])
        if request.query_params.get("done") in DONE:
            messages.append(("ok", DONE[request.query_params["done"]]))
        reviewer = request.cookies.get(REVIEWER_COOKIE, "")
        context.setdefault("user", request.scope.get("claims.user"))
        html = templates.get_template(name).render(csrf=token, messages=messages, reviewer=reviewer, **context)
        response = HTMLResponse(html, status_code=http_status)
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_tls(request))
        return response

    def remember(response: Response, form: dict[str, str]) -> Response:
        if form.get("reviewer", "").strip():
            response.set_cookie(REVIEWER_COOKIE, form["reviewer"].strip()[:100], httponly=True, samesite="strict")
        return response

    def verified(request: Request, form: dict[str, str]) -> dict[str, str]:
        """The submitted form, once its CSRF token, origin and values have been checked."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        origin, referer = request.headers.get("origin"), request.headers.get("referer")
        if not cookie or not secrets.compare_digest(cookie, form.get("csrf", "")):
            raise _Refused(403, "cross-site request refused: reload the page and submit again")
        if origin and origin != "null":
            if not _same_site(origin, request):
                raise _Refused(403, f"request from another site ({origin}) refused")
        elif not referer or not _same_site(referer, request):
            raise _Refused(403, "request refused: the browser sent neither an Origin nor a Referer of this site")
        for name, value in form.items():
            if "\x00" in name or "\x00" in value:
                raise _Refused(400, "the form holds a NUL byte, which no field may contain")
            if len(value) > MAX_FIELD:
                raise _Refused(400, f"a form field is longer than {MAX_FIELD:,} characters")
        return form

    def threaded(handler: Any) -> Any:
        """The handler, run in the thread pool with the submitted form (read here, on the event
        loop; empty for a GET): the store, password hashing and rendering never block the loop."""

        async def endpoint(request: Request) -> Response:
            form: dict[str, str] = {}
            if request.method == "POST":
                form = {key: str(value) for key, value in (await request.form()).items()}
            response: Response = await run_in_threadpool(handler, request, form)
            return response

        return endpoint

    def guarded(handler: Any) -> Any:
        """On a login store, the handler runs for a logged-in account only (it is in the
        request's scope for the page and the decision); a visitor is sent to log in."""

        def checked(request: Request, form: dict[str, str]) -> Response:
            if store.has_accounts():
                account = signed_in(request)
                if account is None and proxy_user_header:
                    return PlainTextResponse(
                        f"no enabled account is named by the {proxy_user_header} header: ask an admin", status_code=401
                    )
                if account is None:
                    if request.method != "GET":
                        return PlainTextResponse("log in first: your session has ended", status_code=401)
                    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse("/login?" + urlencode({"next": wanted}), status_code=303)
                request.scope["claims.user"] = account
            response: Response = handler(request, form)
            return response

        return threaded(checked)

    def actor(request: Request, form: dict[str, str], action: str) -> str:
        """Who a change is recorded under: the logged-in account (if its role allows the action),
        else, on a store without accounts, the name typed in the form."""
        account: Account | None = request.scope.get("claims.user")
        if account is None:
            return form.get("reviewer", "")
        if not may(account, action):
            raise _Refused(403, f"{account.name} is a {account.role}, who may not {action}")
        return account.name

    def login_form(request: Request, _form: dict[str, str]) -> Response:
        if not store.has_accounts() or proxy_user_header:
            return RedirectResponse("/", status_code=303)
        return page(request, "login.html", next=_local(request.query_params.get("next", "/")), account_name="")

    def login(request: Request, form: dict[str, str]) -> Response:
        if not store.has_accounts() or proxy_user_header:
            return RedirectResponse("/", status_code=303)
        try:
            verified(request, form)
        except _Refused as exc:
            return page(request, "login.html", exc.status, messages=[("error", exc.message)], next="/", account_name="")
        name, target = form.get("name", "").strip()[:100], _local(form.get("next", "/"))
        keys = (f"name:{name.lower()}", f"address:{address(request)}")
        if wait := limiter.wait_seconds(*keys):
            message = f"too many failed logins: try again in {math.ceil(wait / 60)} minute(s)"
            return page(request, "login.html", 429, messages=[("error", message)], next=target, account_name=name)
        account = store.account(name)
        # the password is checked (a hash computed) even for an unknown name: the answer's timing
        # must not tell which names exist
        if not check_password(account, form.get("password", "")) or account is None:
            limiter.failed(*keys)
            store.note_event("login failed", name, name, address(request))
            message = "wrong account name or password"
            return page(request, "login.html", 401, messages=[("error", message)], next=target, account_name=name)
        limiter.succeeded(keys[0])
        store.note_event("login", account.name, account.name, address(request))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            store.start_session(account.name),
            max_age=math.ceil(session_longest),
            httponly=True,
            samesite="strict",
            secure=_tls(request),
        )
        return response

    def logout(request: Request, form: dict[str, str]) -> Response:
        try:
            verified(request, form)
        except _Refused as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
        secret = request.cookies.get(SESSION_COOKIE, "")[:100]
        if account := store.session_account(secret, session_idle, session_longest):
            store.note_event("logout", account.name, account.name, address(request))
        store.end_session(secret)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=_tls(request))
        return response

    def version_of(form: dict[str, str]) -> int:
        try:
            version = int(form.get("version", ""))
        except ValueError:
            raise _Refused(400, "the form has no valid record version; reload the page") from None
        if not 0 < version < 2**31:
            raise _Refused(400, "the form's record version is out of range; reload the page")
        return version

    def queue(request: Request, _form: dict[str, str]) -> Response:
        query = request.query_params
        status = query.get("status") if query.get("status") in STATUSES else None
        flagged = query.get("flagged") == "1"
        search = query.get("q", "")[:200]
        sort = str(query.get("sort")) if query.get("sort") in QUEUE_SORTS else "updated"
        try:
            page_number = min(MAX_PAGE, max(1, int(query.get("page", "1")[:12])))
        except ValueError:
            page_number = 1
        rows, total = store.queue(status, flagged, search, sort, QUEUE_PAGE, (page_number - 1) * QUEUE_PAGE)
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

        return page(
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

    page_cache = pages.PageCache()

    def highlights_of(record: Any) -> tuple[list[pages.Highlight], pages.Sources]:
        sources = review.stored_sources(store, record)
        return pages.highlights(record, {study: document.pages for study, document in sources.items()}), sources

    def record_page(request: Request, record_id: str, status: int = 200, messages: list | None = None) -> Response:
        record, version = store.get_versioned(record_id)
        blocks = page_blocks(record)
        summary, anchors = flag_anchors(blocks)
        marks, sources = highlights_of(record)
        missing_pdf = not all(store.has_pdf(document.sha256) for document in sources.values())
        return page(
            request,
            "record.html",
            status,
            record=record,
            version=version,
            blocks=blocks,
            flag_list=summary,
            anchors=anchors,
            allowed=review.allowed_actions(record),
            flags=flag_count(record),
            messages=messages or [],
            marks=marks,
            missing_pdf=missing_pdf,
            quote_links=quote_places(blocks, marks, record),
        )

    def quote_page(request: Request, _form: dict[str, str]) -> Response:
        """One quote (or nearest passage, or nearest number) on its page, highlighted."""
        record = store.get(request.path_params["record_id"])
        marks, sources = highlights_of(record)
        number = request.path_params["number"]
        if not 0 <= number < len(marks):
            return PlainTextResponse("no such quote on this record: go back to the record", status_code=404)
        mark = marks[number]
        document = pages.document_of(record, sources, mark.study_id)
        sha256 = document.sha256 if document else ""
        paper = page_cache.paper(sha256, lambda: store.pdf(sha256))
        boxes: list[pages.Box] = []
        if paper is not None and document is not None:
            boxes = paper.boxes(mark.page, document.pages[mark.page - 1], mark.start, mark.end)
        return page(
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

    def page_image(request: Request, _form: dict[str, str]) -> Response:
        """A page of a stored paper as a PNG, rendered once and cached."""
        sha256, number = request.path_params["sha256"], request.path_params["page"]
        if not _SHA256.fullmatch(sha256) or not 0 < number <= MAX_PAGE:
            return PlainTextResponse("no such paper in the store", status_code=404)
        try:
            paper = page_cache.paper(sha256, lambda: store.pdf(sha256))
            if paper is None:
                return PlainTextResponse("no such paper in the store", status_code=404)
            image = page_cache.image(sha256, paper, number)
        except ClaimsError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        return Response(image, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    def show(request: Request, _form: dict[str, str]) -> Response:
        return record_page(request, request.path_params["record_id"])

    def decide(request: Request, form: dict[str, str]) -> Response:
        record_id, action = request.path_params["record_id"], request.path_params["action"]
        try:
            verified(request, form)
            version = version_of(form)
            if action not in ("approve", "reject", "reopen"):
                return PlainTextResponse("unknown action", status_code=404)
            reviewer = actor(request, form, action)
            if action == "approve":
                review.approve(
                    store,
                    record_id,
                    version,
                    reviewer,
                    form.get("note", ""),
                    form.get("override", ""),
                    second_reviewer=require_second_reviewer,
                )
            elif action == "reject":
                review.reject(store, record_id, version, reviewer, form.get("reason", ""))
            else:
                review.reopen(store, record_id, version, reviewer, form.get("note", ""))
        except _Refused as exc:
            return record_page(request, record_id, exc.status, [("error", exc.message)])
        except StaleVersionError as exc:
            return record_page(request, record_id, 409, [("error", str(exc))])
        except RecordNotFoundError:
            raise
        except ClaimsError as exc:
            return record_page(request, record_id, 400, [("error", str(exc))])
        done = {"approve": "approved", "reject": "rejected", "reopen": "reopened"}[action]
        return remember(RedirectResponse(f"/records/{record_id}?done={done}", status_code=303), form)

    def edit_page(
        request: Request,
        record_id: str,
        version: int | None = None,
        status: int = 200,
        problems: list[str] | None = None,
        messages: list | None = None,
        record: Any = None,
    ) -> Response:
        if record is None:
            record, current = store.get_versioned(record_id)
            version = version or current
        return page(
            request,
            "edit.html",
            status,
            record=record,
            version=version,
            problems=problems or [],
            messages=messages or [],
            claim_types=[t.value for t in ClaimType],
            bases=[b.value for b in StepBasis],
            ratings=[r.value for r in DomainRating],
        )

    def edit_form(request: Request, _form: dict[str, str]) -> Response:
        return edit_page(request, request.path_params["record_id"])

    def edit_save(request: Request, form: dict[str, str]) -> Response:
        record_id = request.path_params["record_id"]
        try:
            verified(request, form)
            version = version_of(form)
            editor = actor(request, form, "edit")
        except _Refused as exc:
            return edit_page(request, record_id, status=exc.status, messages=[("error", exc.message)])
        # Applied to the stored record; saved only if that is still the version the form was loaded
        # at (the store refuses anything else as stale, with who changed it and when).
        edited = apply_form(store.get(record_id).model_dump(mode="json"), form)
        try:
            review.edit(store, record_id, version, edited, editor, form.get("note", ""))
        except InvalidEditError as exc:
            return edit_page(request, record_id, version, 400, problems=exc.problems)
        except StaleVersionError as exc:
            return edit_page(request, record_id, status=409, messages=[("error", str(exc))])
        except ClaimsError as exc:
            return edit_page(request, record_id, version, 400, messages=[("error", str(exc))])
        return remember(RedirectResponse(f"/records/{record_id}?done=edited", status_code=303), form)

    def history(request: Request, _form: dict[str, str]) -> Response:
        record_id = store.resolve(request.path_params["record_id"])
        return page(request, "history.html", record_id=record_id, entries=store.history(record_id))

    def admin_of(request: Request) -> Account:
        """The logged-in admin; anyone else is refused (on a store without accounts too: the first
        admin is added on the command line, never by an anonymous visitor)."""
        account: Account | None = request.scope.get("claims.user")
        if account is None:
            raise _Refused(
                403, "this store has no accounts: add the first admin with claims user add NAME --role admin"
            )
        if not may(account, "manage-users"):
            raise _Refused(403, f"{account.name} is a {account.role}: only an admin manages accounts")
        return account

    def admin_page(request: Request, status: int = 200, messages: list | None = None) -> Response:
        return page(
            request,
            "admin.html",
            status,
            accounts=store.accounts(),
            tokens=store.tokens(),
            roles=list(ROLES),
            messages=messages or [],
            when=display_time,
        )

    def admin(request: Request, _form: dict[str, str]) -> Response:
        try:
            admin_of(request)
        except _Refused as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
        return admin_page(request)

    def admin_change(request: Request, form: dict[str, str]) -> Response:
        """Every change the admin page makes, under the rules `claims user ...` follows."""
        try:
            verified(request, form)
            by = admin_of(request).name
            name, action = request.path_params.get("name", ""), request.path_params["action"]
            if action == "add":
                accounts.add_user(store, form.get("name", ""), form.get("role", ""), form.get("password", ""), by)
                done = "user-added"
            elif action == "disable":
                accounts.disable_user(store, name, by)
                done = "user-disabled"
            elif action == "enable":
                accounts.enable_user(store, name, by)
                done = "user-enabled"
            elif action == "role":
                accounts.change_role(store, name, form.get("role", ""), by)
                done = "role-changed"
            elif action == "password":
                accounts.reset_password(store, name, form.get("password", ""), by)
                done = "password-reset"
            elif action == "token":
                token_id, secret = accounts.issue_token(store, name, form.get("label", ""), by)
                shown = f"Token {token_id} for {name}: {secret} (shown this once; use it as CLAIMS_TOKEN)"
                return admin_page(request, messages=[("ok", shown)])
            elif action == "revoke" and request.url.path.startswith("/admin/tokens/"):
                accounts.revoke_token(store, name, by)
                done = "token-revoked"
            else:
                return PlainTextResponse("unknown action", status_code=404)
        except _Refused as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
        except ClaimsError as exc:
            return admin_page(request, 400, [("error", str(exc))])
        return RedirectResponse(f"/admin?done={done}", status_code=303)

    def audit_page(request: Request, _form: dict[str, str]) -> Response:
        try:
            admin_of(request)
        except _Refused as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
        return page(request, "audit.html", events=store.audit_log(), decisions=store.recent_decisions())

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        page_cache.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        # the store's own message names its file; a web page has no business showing paths
        return PlainTextResponse("no such record: check the id, or go back to the queue at /", status_code=404)

    return Starlette(
        routes=[
            Route("/login", threaded(login_form), methods=["GET"]),
            Route("/login", threaded(login), methods=["POST"]),
            Route("/logout", threaded(logout), methods=["POST"]),
            Route("/", guarded(queue)),
            Route("/records/{record_id}", guarded(show)),
            Route("/records/{record_id}/history", guarded(history)),
            Route("/records/{record_id}/quotes/{number:int}", guarded(quote_page)),
            Route("/papers/{sha256:str}/pages/{page:int}.png", guarded(page_image)),
            Route("/records/{record_id}/edit", guarded(edit_form), methods=["GET"]),
            Route("/records/{record_id}/edit", guarded(edit_save), methods=["POST"]),
            Route("/records/{record_id}/{action}", guarded(decide), methods=["POST"]),
            Route("/admin", guarded(admin), methods=["GET"]),
            Route("/admin/audit", guarded(audit_page), methods=["GET"]),
            Route("/admin/users/{action}", guarded(admin_change), methods=["POST"]),
            Route("/admin/users/{name:path}/{action}", guarded(admin_change), methods=["POST"]),
            Route("/admin/tokens/{name}/{action}", guarded(admin_change), methods=["POST"]),
        ],
        exception_handlers={RecordNotFoundError: not_found},
        lifespan=lifespan,
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(_SaneRequests),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
        ],
    )


_SHA256 = re.compile(r"[0-9a-f]{64}")


def address(request: Request) -> str:
    """The client's address (a proxy's X-Forwarded-For counts only from `--forwarded-allow-ips`)."""
    return request.client.host if request.client else ""


def _tls(request: Request) -> bool:
    """Served over TLS (directly, or behind a proxy uvicorn trusts to say so): cookies get Secure."""
    return request.url.scheme == "https"


def _local(target: str) -> str:
    """Where to go after logging in: a path on this site only, never another site."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


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
        found = [part for part in _FLAG.split(text) if _FLAG.fullmatch(part)]
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


QUEUE_PAGE = 50
STATUSES = ("draft", "approved", "rejected")


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


def apply_form(data: dict[str, Any], form: dict[str, str]) -> str:
    """The record's JSON with the form's fields (named by their path, 'mechanism.steps.0.text')
    written in; validation is review.edit's job, so a bad value is reported, not guessed at."""
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
