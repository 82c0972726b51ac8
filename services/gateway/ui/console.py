"""The console's shared request handling: who is signed in, templates, and the route class that turns
"not signed in" into the sign-in page, refusals into error pages and adds the security headers.

Every console route is a `ConsoleRoute`: its answers carry a strict Content-Security-Policy (scripts,
styles and connections from the console's own origin only: no inline script, no CDN), deny framing and
are never cached.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from services.gateway.adapters import Gateway
from services.gateway.auth import Principal
from services.gateway.guard import authenticate
from services.gateway.problems import Problem, forbidden_scope
from services.gateway.ui.session import Forbidden, NotSignedIn, TooLarge, csrf_token, session_token

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def when(value: Any) -> str:
    """A timestamp as `YYYY-MM-DD HH:MM:SS UTC` (ISO strings and datetimes), '' for None (pure)."""
    if value is None or value == "":
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.utcoffset() is None:
        return str(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: Any) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def new_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.filters["when"] = when
    templates.env.filters["iso"] = iso
    templates.env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    return templates


TEMPLATES = new_templates()


@dataclass
class SignedIn:
    """The caller of a console request: the verified principal and its session's CSRF token."""

    principal: Principal
    csrf: str

    def require(self, scope: str) -> None:
        if scope not in self.principal.scopes:
            raise forbidden_scope(scope)

    def may(self, scope: str) -> bool:
        return scope in self.principal.scopes


class Console:
    """What every console page needs: the gateway's adapters and the templates. A signed-in request
    counts against its tenant's rate limit like an API request (429 with `Retry-After` above it)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.templates = TEMPLATES

    async def signed_in(self, request: Request) -> SignedIn:
        """The verified caller; raises `NotSignedIn` without a valid session cookie."""
        token = session_token(request)
        try:
            principal = await authenticate(self.gateway, f"Bearer {token}")
        except Problem:
            raise NotSignedIn("the session's token is no longer valid") from None
        retry_after = self.gateway.limiter.take(principal.tenant_id)
        if retry_after:
            raise Problem(
                429,
                "rate-limited",
                "Too many requests",
                f"your tenant's request rate is limited; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
        return SignedIn(principal, csrf_token(token))

    def page(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Render a template (the signed-in caller, if any, is in `context["me"]`)."""
        context.setdefault("me", None)
        return self.templates.TemplateResponse(
            request, name, context, status_code=status, headers=headers or None
        )


def _sign_in_redirect(request: Request) -> Response:
    target = "/ui/sign-in"
    if request.method == "GET" and request.url.path != "/ui/sign-in":
        target += "?next=" + quote(request.url.path, safe="")
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


class ConsoleRoute(APIRoute):
    """Console routes: sign-in redirect, error pages and the security headers (see the module)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except NotSignedIn:
                response = _sign_in_redirect(request)
            except Forbidden as refused:
                response = _error_page(request, 403, "Refused", str(refused))
            except TooLarge as refused:
                response = _error_page(request, 413, "Request too large", str(refused))
            except Problem as problem:
                response = _error_page(request, problem.status, problem.title, problem.detail or "")
                response.headers.update(problem.headers)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return guarded


def _error_page(request: Request, status: int, title: str, detail: str) -> Response:
    name = "_error.html" if request.headers.get("hx-request") else "error.html"
    return TEMPLATES.TemplateResponse(
        request, name, {"me": None, "status": status, "title": title, "detail": detail}, status_code=status
    )
