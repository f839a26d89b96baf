"""The dashboard pages (/training, /admin/training) and the useFineTuning hook's source.

The dashboard is a single-page app built from ``web/`` by ``scripts/build_dashboard.sh`` into
``services/gateway/static/dashboard/`` (committed, so a machine without Node.js serves it too):

- ``/training`` and ``/admin/training``, and any sub-path of either without a file extension (the tabs:
  ``/training/jobs``, ``/training/new``, ...), answer the app's ``index.html``;
- ``/training/assets/*`` are the bundle's hashed assets (cached for a year: a new build has new names);
- ``/training/hooks/useFineTuning.ts`` is the hook's TypeScript source, ``/training/hooks/*.ts`` the small hooks it
  composes and ``/training/api/{client,events,types,schema.gen}.ts`` the modules they import (same relative layout
  as in ``web/src``), for frontends that embed the same features;
- ``/training/build-info.json`` names the source hash the bundle was built from.

When the bundle is missing, the pages answer 503 with the command that builds it, never a blank page.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter(tags=["dashboard"])

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "dashboard"
"""Where the built bundle lives."""

MOUNTS = ("/training", "/admin/training")
SOURCE_TYPES = {".ts": "text/plain; charset=utf-8", ".tsx": "text/plain; charset=utf-8"}
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fine-tuning dashboard not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 640px; margin: 48px auto; line-height: 1.5">
<h1>The fine-tuning dashboard is not built</h1>
<p>The gateway serves the dashboard from <code>services/gateway/static/dashboard/</code>, which is missing here.
Build it with <code>scripts/build_dashboard.sh</code> (needs Node.js 20), or check out the repository again: the
built bundle is part of it.</p>
<p>The REST API works without it: see <a href="/docs">/docs</a>.</p>
</body></html>
"""


def _inside(root: Path, rel: str) -> Path | None:
    """The file ``rel`` under ``root``, or None when it is missing or outside ``root`` (``..``, symlinks)."""
    try:
        path = (root / rel).resolve()
        path.relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return path if path.is_file() else None


def _index() -> Response:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return HTMLResponse(NOT_BUILT, status_code=503, headers={"Cache-Control": NO_CACHE, "Retry-After": "60"})
    return FileResponse(index, media_type="text/html; charset=utf-8", headers={"Cache-Control": NO_CACHE})


def _serve(rel: str) -> Response:
    rel = rel.strip("/")
    if not rel:
        return _index()
    last = rel.rsplit("/", 1)[-1]
    if "." not in last:
        # A page of the app (a tab's path): the app routes it in the browser.
        return _index()
    path = _inside(STATIC_DIR, rel)
    if path is None:
        raise HTTPException(status_code=404, detail=f"no dashboard file {rel!r}")
    suffix = path.suffix.lower()
    media = SOURCE_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    cache = IMMUTABLE if rel.startswith("assets/") else NO_CACHE
    return FileResponse(path, media_type=media, headers={"Cache-Control": cache})


def _page(request: Request) -> Response:
    path = request.url.path
    for mount in MOUNTS:
        if path == mount or path.startswith(mount + "/"):
            return _serve(path[len(mount):])
    raise HTTPException(status_code=404)


@router.api_route("/training", methods=["GET", "HEAD"], include_in_schema=False)
async def read_dashboard(request: Request) -> Response:
    """The dashboard."""
    return _page(request)


@router.api_route("/training/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def read_dashboard_path(path: str, request: Request) -> Response:
    """A tab of the dashboard, one of its assets, or the hook's source."""
    return _page(request)


@router.api_route("/admin/training", methods=["GET", "HEAD"], include_in_schema=False)
async def read_admin_dashboard(request: Request) -> Response:
    """The dashboard, as the admin panel links it."""
    return _page(request)


@router.api_route("/admin/training/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def read_admin_dashboard_path(path: str, request: Request) -> Response:
    """A tab of the dashboard under the admin panel's path."""
    return _page(request)
