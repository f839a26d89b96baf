"""The upstream frontend pages that call the training API (an0mium/aragora): the training explorer
(aragora/live/src/app/(app)/training/explorer/page.tsx), the models page (.../training/models/page.tsx) and the
admin export panel (aragora/live/src/components/admin/TrainingExportPanel.tsx), with a browser fetch's headers."""

from __future__ import annotations

import json

import pytest

from tests.compat.conftest import BROWSER_FETCH
from tests.trainer.conftest import TINY

pytestmark = pytest.mark.asyncio


async def test_explorer_fetch_preview_of_every_format(aragora):
    """explorer/page.tsx fetchPreview: GET /api/training/export/{format}?preview=true&limit=10&min_confidence=
    for whichever format is selected; reads ``data.records || data.examples``."""
    for fmt, n in (("sft", 10), ("dpo", 10), ("gauntlet", 3)):
        r = await aragora.get(f"/api/training/export/{fmt}?preview=true&limit=10&min_confidence=0.5",
                              headers=BROWSER_FETCH)
        assert r.status_code == 200, (fmt, r.text)
        data = r.json()
        assert len(data.get("records") or data.get("examples") or []) == n
        if fmt != "sft":  # min_confidence is an SFT filter: Aragora's server ignores it elsewhere, so do we
            assert data["parameters"]["ignored"] == ["min_confidence"]


async def test_explorer_handle_export_downloads(aragora):
    """explorer/page.tsx handleExport: GET /api/training/export/{format}?min_confidence=; response.blob()."""
    r = await aragora.get("/api/training/export/sft?min_confidence=0.5", headers=BROWSER_FETCH)
    assert r.status_code == 200 and len(json.loads(r.content)["records"]) == 12


async def test_explorer_fetch_stats_and_formats(aragora):
    """explorer/page.tsx fetchStats / fetchFormats: GET /api/training/stats, /formats (``data.formats``)."""
    assert (await aragora.get("/api/training/stats", headers=BROWSER_FETCH)).status_code == 200
    formats = (await aragora.get("/api/training/formats", headers=BROWSER_FETCH)).json()["formats"]
    assert {"sft", "dpo", "gauntlet"} <= set(formats)


async def test_panel_handle_export_sft_jsonl(aragora):
    """TrainingExportPanel.tsx handleExport, SFT with output format JSONL: format, min_confidence,
    min_success_rate, limit, include_critiques/patterns/debates; reads ExportResult (``data`` for jsonl)."""
    params = {"format": "jsonl", "min_confidence": "0.5", "min_success_rate": "0.6", "limit": "1000",
              "include_critiques": "true", "include_patterns": "true", "include_debates": "true"}
    r = await aragora.get("/api/training/export/sft", params=params, headers=BROWSER_FETCH)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["export_type"] == "sft" and result["format"] == "jsonl" and "records" not in result
    lines = result["data"].split("\n")  # Aragora joins with "\n", none after the last
    assert len(lines) == result["total_records"] == 12
    assert [json.loads(x)["metadata"]["debate_id"] for x in lines] == [f"d-{i:02d}" for i in range(12)]
    assert result["parameters"]["include_critiques"] is True and result["parameters"]["min_success_rate"] == 0.6
    # include_debates=false: every record here is a debate's, so none is left
    r = await aragora.get("/api/training/export/sft", params={**params, "include_debates": "false"},
                          headers=BROWSER_FETCH)
    assert r.json()["total_records"] == 0 and r.json()["data"] == ""


async def test_panel_handle_export_dpo_json(aragora):
    """TrainingExportPanel.tsx handleExport, DPO: format=json, min_confidence_diff, limit; ExportResult.records."""
    r = await aragora.get("/api/training/export/dpo?format=json&min_confidence_diff=0.1&limit=1000",
                          headers=BROWSER_FETCH)
    result = r.json()
    assert r.status_code == 200 and result["format"] == "json"
    assert result["total_records"] == len(result["records"]) == 24


async def test_panel_handle_export_gauntlet_persona(aragora):
    """TrainingExportPanel.tsx handleExport, gauntlet: persona (default 'all'), min_severity, limit."""
    r = await aragora.get("/api/training/export/gauntlet?format=json&persona=all&min_severity=0.5&limit=1000",
                          headers=BROWSER_FETCH)
    assert r.status_code == 200 and r.json()["total_records"] == 3
    r = await aragora.get("/api/training/export/gauntlet?format=json&persona=gdpr&min_severity=0.5&limit=1000",
                          headers=BROWSER_FETCH)
    assert [x["prompt"] for x in r.json()["records"]] == ["attack g-3"]


async def test_panel_handle_export_error_shows_the_reason(aragora):
    """TrainingExportPanel.tsx handleExport: ``throw new Error(errorData.error || ...)`` on !ok."""
    r = await aragora.get("/api/training/export/sft?format=json&limit=0", headers=BROWSER_FETCH)
    assert r.status_code == 422 and "limit" in r.json()["error"]
    r = await aragora.get("/api/training/export/sft?format=json&min_confidence=1.5", headers=BROWSER_FETCH)
    assert r.status_code == 422 and "min_confidence" in r.json()["error"]


async def test_models_page_fetch_jobs_and_details(aragora):
    """models/page.tsx fetchJobs (GET /api/training/jobs?...; data.jobs, data.total, data.error on !ok),
    fetchJobDetails (metrics and artifacts together), handleStartTraining and handleCancelJob (data.error)."""
    ids = []
    for i in range(3):
        r = await aragora.post("/api/training/jobs", json={"name": f"m{i}", "vertical": "legal", "base_model": TINY},
                               headers=BROWSER_FETCH)
        ids.append(r.json()["id"])
    r = await aragora.get("/api/training/jobs?limit=100", headers=BROWSER_FETCH)
    data = r.json()
    assert data["total"] == 3 and [j["id"] for j in data["jobs"]] == ids[::-1]  # newest first
    assert {j["status"] for j in data["jobs"]} == {"pending"}  # the page offers Start for 'pending' jobs
    r = await aragora.get("/api/training/jobs?limit=100&status=pending", headers=BROWSER_FETCH)
    assert r.json()["total"] == 3
    r = await aragora.get("/api/training/jobs?status=deprecated", headers=BROWSER_FETCH)
    assert r.status_code == 422 and "status" in r.json()["error"]
    metrics, artifacts = [await aragora.get(f"/api/training/jobs/{ids[0]}/{x}", headers=BROWSER_FETCH)
                          for x in ("metrics", "artifacts")]
    assert metrics.status_code == artifacts.status_code == 200
    assert (await aragora.delete(f"/api/training/jobs/{ids[0]}", headers=BROWSER_FETCH)).status_code == 200
    r = await aragora.post(f"/api/training/jobs/{ids[0]}/start", headers=BROWSER_FETCH)
    assert r.status_code == 409 and "cancelled" in r.json()["error"]
