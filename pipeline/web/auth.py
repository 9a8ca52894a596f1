"""Logging in and out: a session row per login, failed logins counted in the store."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from pipeline.team.accounts import check_password
from pipeline.web.site import SESSION_COOKIE, Form, Refused, Site, address, local, tls, verified


def login_form(site: Site, request: Request, _form: Form) -> Response:
    if not site.store.has_accounts() or site.proxy_user_header:
        return RedirectResponse("/", status_code=303)
    return site.page(request, "login.html", next=local(request.query_params.get("next", "/")), account_name="")


def login(site: Site, request: Request, form: Form) -> Response:
    store = site.store
    if not store.has_accounts() or site.proxy_user_header:
        return RedirectResponse("/", status_code=303)
    try:
        verified(request, form)
    except Refused as exc:
        return site.page(
            request, "login.html", exc.status, messages=[("error", exc.message)], next="/", account_name=""
        )
    name, target = form.get("name", "").strip()[:100], local(form.get("next", "/"))
    keys = (f"name:{name.lower()}", f"address:{address(request)}")
    if wait := site.limiter.wait_seconds(*keys):
        message = f"too many failed logins: try again in {math.ceil(wait / 60)} minute(s)"
        return site.page(request, "login.html", 429, messages=[("error", message)], next=target, account_name=name)
    account = store.account(name)
    # the password is checked (a hash computed) even for an unknown name: the answer's timing
    # must not tell which names exist
    if not check_password(account, form.get("password", "")) or account is None:
        site.limiter.failed(*keys)
        store.note_event("login failed", name, name, address(request))
        message = "wrong account name or password"
        return site.page(request, "login.html", 401, messages=[("error", message)], next=target, account_name=name)
    site.limiter.succeeded(keys[0])
    store.note_event("login", account.name, account.name, address(request))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        store.start_session(account.name),
        max_age=math.ceil(site.session_longest),
        httponly=True,
        samesite="strict",
        secure=tls(request),
    )
    return response


def logout(site: Site, request: Request, form: Form) -> Response:
    try:
        verified(request, form)
    except Refused as exc:
        return PlainTextResponse(exc.message, status_code=exc.status)
    secret = request.cookies.get(SESSION_COOKIE, "")[:100]
    if account := site.store.session_account(secret, site.session_idle, site.session_longest):
        site.store.note_event("logout", account.name, account.name, address(request))
    site.store.end_session(secret)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=tls(request))
    return response
