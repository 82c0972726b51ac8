"""RFC 9457 problem details: every error the gateway answers is `application/problem+json`.

`Problem` is raised by handlers; `problem_response` renders one. The `type` URIs are stable
identifiers documented in docs/gateway.md; `reason` carries the machine code (e.g.
`auto_sync_enabled`, `psa_owned_field`) where there is one.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://contract-sync.dev/problems/"


class ProblemDocument(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(description="URI identifying the problem type")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    reason: str | None = Field(default=None, description="Machine-readable reason code, where one applies")
    errors: list[dict[str, Any]] | None = Field(default=None, description="Per-field validation errors")
    fields: list[str] | None = Field(default=None, description="Fields the problem is about")


class Problem(Exception):
    """An HTTP error answered as problem+json."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.reason = reason
        self.headers = headers or {}
        self.extra = extra


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    body: dict[str, Any] = {
        "type": TYPE_BASE + problem.slug,
        "title": problem.title,
        "status": problem.status,
    }
    if problem.detail:
        body["detail"] = problem.detail
    if instance:
        body["instance"] = instance
    if problem.reason:
        body["reason"] = problem.reason
    body.update({k: v for k, v in problem.extra.items() if v is not None})
    return Response(
        orjson.dumps(body, default=str),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


def unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Unauthorized",
        detail,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def forbidden_scope(scope: str) -> Problem:
    return Problem(
        403,
        "insufficient-scope",
        "Insufficient scope",
        f"this operation needs the {scope!r} scope",
        headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        reason="insufficient_scope",
    )


def not_found(what: str) -> Problem:
    return Problem(404, "not-found", "Not found", f"no {what} with that id for your tenant")
