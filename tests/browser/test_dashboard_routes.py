"""The gateway serves the dashboard, its assets and the hook's source (no browser, no backends needed)."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import pytest

from services.gateway.routers import dashboard
from tests.conftest import gateway_client
from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def client():
    dead = f"127.0.0.1:{free_port()}"
    async with gateway_client(dead, dead, rpc_timeout_seconds=1) as c:
        yield c


@pytest.mark.parametrize("path", ["/training", "/training/", "/training/jobs", "/training/new", "/training/models",
                                  "/training/exports", "/admin/training", "/admin/training/", "/admin/training/new"])
async def test_every_page_path_is_the_app(client, path):
    r = await client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<div id="root">' in r.text and "/training/assets/" in r.text
    assert r.headers["cache-control"] == "no-cache"


async def test_assets_are_served_and_cached(client):
    index = (await client.get("/training")).text
    for src in re.findall(r'(?:src|href)="(/training/assets/[^"]+)"', index):
        r = await client.get(src)
        assert r.status_code == 200, src
        assert "immutable" in r.headers["cache-control"]
        assert r.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript", "text/css")
        # The admin path serves the same files.
        assert (await client.get("/admin" + src)).content == r.content


async def test_the_hook_source_and_its_modules(client):
    r = await client.get("/training/hooks/useFineTuning.ts")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "export function useFineTuning" in r.text
    assert r.text == (REPO / "web/src/hooks/useFineTuning.ts").read_text()
    # What it imports (the small hooks it composes, the API modules), and what those import, is served beside
    # it at the same relative paths.
    seen, todo = set(), ["hooks/useFineTuning.ts"]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        m = await client.get(f"/training/{rel}")
        assert m.status_code == 200 and m.text == (REPO / "web/src" / rel).read_text(), rel
        for target in re.findall(r"from '(\.\.?/[\w/.]+)'", m.text):
            todo.append(posixpath.normpath(posixpath.join(posixpath.dirname(rel), target)) + ".ts")
    assert {"hooks/useJobs.ts", "api/client.ts", "api/types.ts", "api/schema.gen.ts"} <= seen


@pytest.mark.parametrize("path", ["/training/assets/nope.js", "/training/../services/gateway/app.py",
                                  "/training/%2e%2e/%2e%2e/pyproject.toml", "/training/hooks/nope.ts"])
async def test_missing_files_and_escapes_are_404(client, path):
    r = await client.get(path)
    assert r.status_code == 404


async def test_the_api_is_not_shadowed(client):
    # /api/training/... is the REST API, not the dashboard (here 503: no backends).
    r = await client.get("/api/training/jobs")
    assert r.status_code == 503 and r.json()["code"] == "UNAVAILABLE"


async def test_without_a_bundle_the_page_says_how_to_build_it(client, monkeypatch, tmp_path):
    monkeypatch.setattr(dashboard, "STATIC_DIR", tmp_path / "missing")
    r = await client.get("/training")
    assert r.status_code == 503
    assert "scripts/build_dashboard.sh" in r.text
