"""The review web page: server-rendered HTML (Starlette + Jinja2), no front-end build.

Pages, a module each: the queue (`queue`), a record laid out like the claim page with its
flagged items highlighted, the review forms and the history (`records`), an edit form over the
record's fields (`edit`), quotes on their rendered pages (`quotes`), logging in and out
(`auth`), and the admin page with its audit view (`admin`). `site` holds what they share; this
module only wires them. Every decision goes through `review.py`, like the CLI's.

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
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pipeline.core.errors import RecordNotFoundError
from pipeline.team.accounts import LoginLimiter
from pipeline.team.store import Store
from pipeline.web import admin, auth, edit, queue, quotes, records
from pipeline.web.site import SESSION_COOKIE, SESSION_IDLE, SESSION_LONGEST, Site, guarded, threaded

__all__ = ["LOOPBACK_HOSTS", "SESSION_COOKIE", "create_app"]

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
    site = Site(
        store=store,
        limiter=login_limiter or LoginLimiter(store),
        require_second_reviewer=require_second_reviewer,
        proxy_user_header=proxy_user_header,
        session_idle=session_idle,
        session_longest=session_longest,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        site.page_cache.close()

    app = Starlette(
        routes=[
            Route("/login", threaded(auth.login_form), methods=["GET"]),
            Route("/login", threaded(auth.login), methods=["POST"]),
            Route("/logout", threaded(auth.logout), methods=["POST"]),
            Route("/", guarded(queue.queue)),
            Route("/records/{record_id}", guarded(records.show)),
            Route("/records/{record_id}/history", guarded(records.history)),
            Route("/records/{record_id}/quotes/{number:int}", guarded(quotes.quote_page)),
            Route("/papers/{sha256:str}/pages/{page:int}.png", guarded(quotes.page_image)),
            Route("/records/{record_id}/edit", guarded(edit.edit_form), methods=["GET"]),
            Route("/records/{record_id}/edit", guarded(edit.edit_save), methods=["POST"]),
            Route("/records/{record_id}/{action}", guarded(records.decide), methods=["POST"]),
            Route("/admin", guarded(admin.admin), methods=["GET"]),
            Route("/admin/audit", guarded(admin.audit_page), methods=["GET"]),
            Route("/admin/users/{action}", guarded(admin.admin_change), methods=["POST"]),
            Route("/admin/users/{name:path}/{action}", guarded(admin.admin_change), methods=["POST"]),
            Route("/admin/tokens/{name}/{action}", guarded(admin.admin_change), methods=["POST"]),
        ],
        exception_handlers={RecordNotFoundError: _not_found},
        lifespan=lifespan,
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(_SaneRequests),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
        ],
    )
    app.state.site = site
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    # the store's own message names its file; a web page has no business showing paths
    return PlainTextResponse("no such record: check the id, or go back to the queue at /", status_code=404)


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
