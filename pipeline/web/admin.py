"""The admin page (accounts, roles, passwords, tokens) and the audit view, for admins only, under
the rules `claims user ...` follows (`accounts.py` holds them for both)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from pipeline.core.errors import ClaimsError
from pipeline.team import accounts
from pipeline.team.accounts import may
from pipeline.team.store import ROLES, Account, display_time
from pipeline.web.site import Form, Refused, Site, verified


def admin_of(request: Request) -> Account:
    """The logged-in admin; anyone else is refused (on a store without accounts too: the first
    admin is added on the command line, never by an anonymous visitor)."""
    account: Account | None = request.scope.get("claims.user")
    if account is None:
        raise Refused(403, "this store has no accounts: add the first admin with claims user add NAME --role admin")
    if not may(account, "manage-users"):
        raise Refused(403, f"{account.name} is a {account.role}: only an admin manages accounts")
    return account


def admin_page(site: Site, request: Request, status: int = 200, messages: list | None = None) -> Response:
    return site.page(
        request,
        "admin.html",
        status,
        accounts=site.store.accounts(),
        tokens=site.store.tokens(),
        roles=list(ROLES),
        messages=messages or [],
        when=display_time,
    )


def admin(site: Site, request: Request, _form: Form) -> Response:
    try:
        admin_of(request)
    except Refused as exc:
        return PlainTextResponse(exc.message, status_code=exc.status)
    return admin_page(site, request)


def admin_change(site: Site, request: Request, form: Form) -> Response:
    """Every change the admin page makes, under the rules `claims user ...` follows."""
    store = site.store
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
            return admin_page(site, request, messages=[("ok", shown)])
        elif action == "revoke" and request.url.path.startswith("/admin/tokens/"):
            accounts.revoke_token(store, name, by)
            done = "token-revoked"
        else:
            return PlainTextResponse("unknown action", status_code=404)
    except Refused as exc:
        return PlainTextResponse(exc.message, status_code=exc.status)
    except ClaimsError as exc:
        return admin_page(site, request, 400, [("error", str(exc))])
    return RedirectResponse(f"/admin?done={done}", status_code=303)


def audit_page(site: Site, request: Request, _form: Form) -> Response:
    try:
        admin_of(request)
    except Refused as exc:
        return PlainTextResponse(exc.message, status_code=exc.status)
    return site.page(request, "audit.html", events=site.store.audit_log(), decisions=site.store.recent_decisions())
