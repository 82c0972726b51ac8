"""The console's router (`/ui/`): its pages, actions, live events and static files, for
`build_app(gateway, routers=[build_ui_router(gateway)])`. None of it is part of the OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import Response

from services.gateway.adapters import Gateway
from services.gateway.problems import not_found
from services.gateway.ui.actions import add_actions
from services.gateway.ui.console import Console, ConsoleRoute
from services.gateway.ui.live import add_live
from services.gateway.ui.pages import add_pages

STATIC_DIR = Path(__file__).resolve().parent / "static"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def static_files() -> dict[str, tuple[bytes, str]]:
    """The console's static files by URL name (`vendor/htmx-2.0.11.min.js`, ...), read once: only
    these names are served, so no request path ever reaches the file system."""
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file() and path.suffix in _TYPES:
            files[path.relative_to(STATIC_DIR).as_posix()] = (path.read_bytes(), _TYPES[path.suffix])
    return files


def build_ui_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ConsoleRoute)
    console = Console(gateway)
    add_pages(router, console)
    add_actions(router, console)
    add_live(router, console)
    files = static_files()

    @router.get("/static/{name:path}")
    async def static(name: str) -> Response:
        found = files.get(name)
        if found is None:
            raise not_found("file")
        content, media_type = found
        return Response(content, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})

    return router
