"""The dashboard bundle the gateway serves is built from the current web/ sources (no Node.js needed).

scripts/build_dashboard.sh writes the hash of web/'s sources into services/gateway/static/dashboard/build-info.json;
a change to any source without a rebuild (or a rebuild without committing the bundle) fails here.
"""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "services" / "gateway" / "static" / "dashboard"
source_hash = runpy.run_path(str(REPO / "web" / "scripts" / "source_hash.py"))["source_hash"]

SERVED_API = ("client.ts", "events.ts", "types.ts", "schema.gen.ts")
REBUILD = ("the dashboard bundle is stale: run scripts/build_dashboard.sh and commit web/ and "
           "services/gateway/static/dashboard/")


def test_bundle_is_built_from_the_current_sources():
    info = json.loads((BUNDLE / "build-info.json").read_text())
    assert info["source_hash"] == source_hash(), REBUILD


def test_bundle_has_the_page_its_assets_and_the_hook_source():
    index = (BUNDLE / "index.html").read_text()
    assets = [p for p in (BUNDLE / "assets").iterdir()]
    assert any(p.suffix == ".js" for p in assets) and any(p.suffix == ".css" for p in assets)
    for asset in assets:
        # Every asset the page loads is there, under the /training/ base the gateway serves it from.
        if asset.suffix in (".js", ".css"):
            assert f"/training/assets/{asset.name}" in index, asset.name
    # The served copies of the hook, the small hooks it composes and the modules they import are the sources.
    hooks = sorted(p.name for p in (REPO / "web" / "src" / "hooks").glob("*.ts"))
    assert "useFineTuning.ts" in hooks
    assert sorted(p.name for p in (BUNDLE / "hooks").glob("*.ts")) == hooks, REBUILD
    rels = [f"hooks/{name}" for name in hooks] + [f"api/{name}" for name in SERVED_API]
    for rel in rels:
        assert (BUNDLE / rel).read_bytes() == (REPO / "web" / "src" / rel).read_bytes(), REBUILD
    # Everything they import (relative imports) is served too, so a copy of these files compiles elsewhere.
    for rel in rels:
        for target in re.findall(r"from '(\.\.?/[\w/.]+)'", (BUNDLE / rel).read_text()):
            resolved = ((BUNDLE / rel).parent / f"{target}.ts").resolve()
            assert resolved.is_file(), f"{rel} imports {target}, which is not served"


def test_the_hash_sees_a_source_change(tmp_path):
    """The guard can fail: copying web/ and changing one byte of a component changes the hash."""
    import shutil

    copy = tmp_path / "web"
    shutil.copytree(REPO / "web", copy, ignore=shutil.ignore_patterns("node_modules", "dist"))
    assert source_hash(copy) == source_hash()
    card = copy / "src" / "components" / "JobCard.tsx"
    card.write_text(card.read_text() + "\n")
    assert source_hash(copy) != source_hash()
    # Unit tests are not part of the bundle: changing one does not make it stale.
    test = next((copy / "src" / "__tests__").glob("*.test.ts*"))
    before = source_hash(copy)
    test.write_text(test.read_text() + "\n")
    assert source_hash(copy) == before
