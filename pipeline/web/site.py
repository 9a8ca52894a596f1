"""What every page of the review site shares: the `Site` (the store and the settings, kept on
`app.state.site`), rendering, the form and origin checks, who is logged in, and the two
wrappers every route goes through: `threaded` (the handler's work in the thread pool once the
form has been read) and `guarded` (a logged-in account on a login store)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from pipeline.review import pages
from pipeline.team.accounts import LoginLimiter, may
from pipeline.team.store import Account, Store

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
FLAG = re.compile(r"(\[FLAG [^\]]*\]|^FLAG .*$)")

Form = dict[str, str]
Handler = Callable[["Site", Request, Form], Response]


class Refused(Exception):
    """A request refused with an HTTP status and a message for the person who sent it."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


def _flags(text: str) -> Markup:
    """Escape the text, and mark its [FLAG ...] parts so a reviewer sees them at once."""
    parts = FLAG.split(str(text))
    return Markup("").join(
        Markup('<mark class="flag">') + escape(part) + Markup("</mark>") if FLAG.fullmatch(part) else escape(part)
        for part in parts
    )


def _templates() -> Environment:
    folder = resources.files("pipeline") / "templates"
    environment = Environment(loader=FileSystemLoader(str(folder)), autoescape=select_autoescape(default=True))
    environment.filters["flags"] = _flags
    return environment


@dataclass
class Site:
    """The store and the settings every handler reads (`app.state.site`)."""

    store: Store
    limiter: LoginLimiter
    require_second_reviewer: bool = False
    proxy_user_header: str | None = None
    session_idle: float = SESSION_IDLE
    session_longest: float = SESSION_LONGEST
    templates: Environment = field(default_factory=_templates)
    page_cache: pages.PageCache = field(default_factory=pages.PageCache)

    def signed_in(self, request: Request) -> Account | None:
        """The logged-in account of a live session (or named by the trusted proxy header), or None."""
        if self.proxy_user_header:
            account = self.store.account(request.headers.get(self.proxy_user_header, "").strip()[:100])
            return account if account is not None and not account.disabled else None
        secret = request.cookies.get(SESSION_COOKIE, "")[:100]
        return self.store.session_account(secret, self.session_idle, self.session_longest)

    def page(self, request: Request, name: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        messages = context.pop("messages", [])
        if request.query_params.get("done") in DONE:
            messages.append(("ok", DONE[request.query_params["done"]]))
        reviewer = request.cookies.get(REVIEWER_COOKIE, "")
        context.setdefault("user", request.scope.get("claims.user"))
        html = self.templates.get_template(name).render(csrf=token, messages=messages, reviewer=reviewer, **context)
        response = HTMLResponse(html, status_code=http_status)
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=tls(request))
        return response


def verified(request: Request, form: Form) -> Form:
    """The submitted form, once its CSRF token, origin and values have been checked."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    origin, referer = request.headers.get("origin"), request.headers.get("referer")
    if not cookie or not secrets.compare_digest(cookie, form.get("csrf", "")):
        raise Refused(403, "cross-site request refused: reload the page and submit again")
    if origin and origin != "null":
        if not _same_site(origin, request):
            raise Refused(403, f"request from another site ({origin}) refused")
    elif not referer or not _same_site(referer, request):
        raise Refused(403, "request refused: the browser sent neither an Origin nor a Referer of this site")
    for name, value in form.items():
        if "\x00" in name or "\x00" in value:
            raise Refused(400, "the form holds a NUL byte, which no field may contain")
        if len(value) > MAX_FIELD:
            raise Refused(400, f"a form field is longer than {MAX_FIELD:,} characters")
    return form


def actor(request: Request, form: Form, action: str) -> str:
    """Who a change is recorded under: the logged-in account (if its role allows the action),
    else, on a store without accounts, the name typed in the form."""
    account: Account | None = request.scope.get("claims.user")
    if account is None:
        return form.get("reviewer", "")
    if not may(account, action):
        raise Refused(403, f"{account.name} is a {account.role}, who may not {action}")
    return account.name


def remember(response: Response, form: Form) -> Response:
    """On a store without accounts, the name typed is filled in on the next form."""
    if form.get("reviewer", "").strip():
        response.set_cookie(REVIEWER_COOKIE, form["reviewer"].strip()[:100], httponly=True, samesite="strict")
    return response


def version_of(form: Form) -> int:
    try:
        version = int(form.get("version", ""))
    except ValueError:
        raise Refused(400, "the form has no valid record version; reload the page") from None
    if not 0 < version < 2**31:
        raise Refused(400, "the form's record version is out of range; reload the page")
    return version


def threaded(handler: Handler) -> Any:
    """The route's endpoint: the form is read here, on the event loop (empty for a GET), and the
    handler runs in the thread pool, so the store, password hashing and rendering never block it."""

    async def endpoint(request: Request) -> Response:
        form: Form = {}
        if request.method == "POST":
            form = {key: str(value) for key, value in (await request.form()).items()}
        response: Response = await run_in_threadpool(handler, request.app.state.site, request, form)
        return response

    return endpoint


def guarded(handler: Handler) -> Any:
    """On a login store, the handler runs for a logged-in account only (it is in the request's
    scope for the page and the decision); a visitor is sent to log in."""

    def checked(site: Site, request: Request, form: Form) -> Response:
        if site.store.has_accounts():
            account = site.signed_in(request)
            if account is None and site.proxy_user_header:
                return PlainTextResponse(
                    f"no enabled account is named by the {site.proxy_user_header} header: ask an admin",
                    status_code=401,
                )
            if account is None:
                if request.method != "GET":
                    return PlainTextResponse("log in first: your session has ended", status_code=401)
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/login?" + urlencode({"next": wanted}), status_code=303)
            request.scope["claims.user"] = account
        return handler(site, request, form)

    return threaded(checked)


def address(request: Request) -> str:
    """The client's address (a proxy's X-Forwarded-For counts only from `--forwarded-allow-ips`)."""
    return request.client.host if request.client else ""


def tls(request: Request) -> bool:
    """Served over TLS (directly, or behind a proxy uvicorn trusts to say so): cookies get Secure."""
    return request.url.scheme == "https"


def local(target: str) -> str:
    """Where to go after logging in: a path on this site only, never another site."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def _same_site(url: str, request: Request) -> bool:
    """True when an Origin or Referer names the scheme, host and port this request was sent to."""
    return url.rstrip("/") == f"{request.url.scheme}://{request.url.netloc}" or url.startswith(
        f"{request.url.scheme}://{request.url.netloc}/"
    )
