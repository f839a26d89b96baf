"""The import and the exports through the gateway (its ASGI app over real gRPC to a real exporter)."""

from __future__ import annotations

import json

import orjson
import pytest

from tests.exporter.conftest import debate, gauntlet

pytestmark = pytest.mark.asyncio


def _jsonl(records) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


async def _seed(gateway, n=12):
    records = [debate(f"d-{i:02d}", vertical=["legal", "code", "finance"][i % 3]) for i in range(n)]
    records += [gauntlet("g-1", "jailbreak", 8.0), gauntlet("g-2", "prompt_injection", 2.0)]
    r = await gateway.post("/api/debates/import", content=_jsonl(records),
                           headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    return r.json()


async def test_import_jsonl_and_json_array(gateway):
    body = await _seed(gateway)
    assert body == {"imported": 14, "updated": 0, "rejected": 0, "rejections": []}
    # a JSON array: element positions are the lines; re-import updates
    r = await gateway.post("/api/debates/import", json=[debate("d-00"), {"id": "x", "task": 5}, debate("new")])
    assert r.status_code == 200
    assert r.json() == {"imported": 1, "updated": 1, "rejected": 1,
                        "rejections": [{"line": 2, "field": "task", "reason": "Input should be a valid string"}]}


async def test_import_jsonl_line_numbers_count_blank_lines_and_crlf(gateway):
    body = (orjson.dumps(debate("d-1")) + b"\r\n\r\n" + b'{"id": "d-2", "vertical": "", "task": "q", "rounds": []}\n'
            + orjson.dumps(debate("d-3")))  # no final newline
    r = await gateway.post("/api/debates/import", content=body)
    assert r.status_code == 200
    assert r.json()["imported"] == 2
    assert [(x["line"], x["field"]) for x in r.json()["rejections"]] == [(3, "vertical")]


@pytest.mark.parametrize("body,reason", [
    (b"", "is empty"),
    (b"   \n  ", "is empty"),
    (b'[{"id": "d-1", "task": "trunc', "not valid JSON"),
    (b"[]", "empty array"),
    (b"hello world\nthis is not json", "neither a JSON array nor JSONL"),
    (b'{"id": "d-1", "task": "cut off', "neither a JSON array nor JSONL"),
])
async def test_a_body_that_is_not_json_is_a_422(api, body, reason):
    r = await api.post("/api/debates/import", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["code"] == "INVALID_ARGUMENT" and err["errors"][0]["field"] == "body"
    assert reason in err["errors"][0]["reason"]


async def test_import_a_line_that_is_not_utf8(api):
    r = await api.post("/api/debates/import", content=orjson.dumps(debate("utf-1")) + b"\n\xff\xfe{}\n")
    assert r.status_code == 200
    assert r.json()["imported"] == 1
    assert r.json()["rejections"] == [{"line": 2, "field": "", "reason": "not valid UTF-8 (byte 0)"}]


async def test_export_json_array_by_default_and_jsonl_on_request(gateway):
    await _seed(gateway)
    r = await gateway.get("/api/training/export/sft", params={"limit": 5})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    records = r.json()
    assert [x["metadata"]["debate_id"] for x in records] == [f"d-{i:02d}" for i in range(5)]
    assert set(records[0]) == {"instruction", "input", "output", "metadata"}
    assert set(records[0]["metadata"]) == {"debate_id", "consensus_confidence", "rounds", "vertical"}

    r = await gateway.get("/api/training/export/dpo", params={"format": "jsonl", "vertical": "legal"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert len(lines) == 4 * 2 and {x["metadata"]["vertical"] for x in lines} == {"legal"}
    assert set(lines[0]) == {"prompt", "chosen", "rejected", "metadata"}

    r = await gateway.get("/api/training/export/gauntlet", headers={"accept": "application/x-ndjson"},
                          params={"min_severity": 5})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(x)["attack_type"] for x in r.text.splitlines()] == ["jailbreak"]
    # explicit format=json wins over the Accept header
    r = await gateway.get("/api/training/export/gauntlet?format=json", headers={"accept": "application/x-ndjson"})
    assert len(r.json()) == 2


async def test_export_splits_partition_the_debates(gateway):
    await _seed(gateway, n=40)
    ids = {}
    for split in ("train", "heldout", "all"):
        r = await gateway.get("/api/training/export/sft", params={"split": split})
        ids[split] = [x["metadata"]["debate_id"] for x in r.json()]
    assert sorted(ids["train"] + ids["heldout"]) == ids["all"] and ids["heldout"]


async def test_an_empty_export_is_an_empty_array(gateway):
    r = await gateway.get("/api/training/export/sft")
    assert r.status_code == 200 and r.json() == []
    r = await gateway.get("/api/training/export/sft?format=jsonl")
    assert r.status_code == 200 and r.text == ""


@pytest.mark.parametrize("url,field", [
    ("/api/training/export/sft?min_confidnce=0.7", "min_confidnce"),
    ("/api/training/export/sft?min_confidence=0.7&foo=1", "foo"),
    ("/api/training/export/sft?min_confidence=1.7", "min_confidence"),
    ("/api/training/export/sft?min_confidence=high", "min_confidence"),
    ("/api/training/export/dpo?min_confidence=0.7", "min_confidence"),
    ("/api/training/export/sft?attack_type=jailbreak", "attack_type"),
    ("/api/training/export/gauntlet?split=train", "split"),
    ("/api/training/export/dpo?split=validation", "split"),
    ("/api/training/export/dpo?limit=0", "limit"),
    ("/api/training/export/dpo?format=csv", "format"),
    ("/api/training/export/rlhf", "format"),
])
async def test_bad_export_parameters_are_a_422_naming_the_parameter(api, url, field):
    r = await api.get(url)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "INVALID_ARGUMENT"
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_write_export_then_stats(gateway, exporter):
    await _seed(gateway)
    r = await gateway.post("/api/training/export/sft", json={"min_confidence": 0.5, "vertical": "code"})
    assert r.status_code == 200, r.text
    written = r.json()
    assert set(written) == {"name", "size_bytes", "created_at", "record_count"}
    assert written["record_count"] == 4 and written["name"].startswith("sft_export_")
    r = await gateway.post("/api/training/export/gauntlet?attack_type=jailbreak")
    assert r.json()["record_count"] == 1

    r = await gateway.get("/api/training/stats")
    assert r.status_code == 200
    stats = r.json()
    assert set(stats) == {"available_exporters", "export_directory", "exported_files", "sft_available",
                          "debates_per_vertical", "total_debates", "total_gauntlet_runs"}
    assert stats["available_exporters"] == ["sft", "dpo", "gauntlet"]
    assert stats["sft_available"] is True
    assert stats["debates_per_vertical"] == {"code": 4, "finance": 4, "legal": 4}
    assert (stats["total_debates"], stats["total_gauntlet_runs"]) == (12, 2)
    files = {f["name"]: f for f in stats["exported_files"]}
    assert written["name"] in files and files[written["name"]]["size_bytes"] == written["size_bytes"]
    assert set(files[written["name"]]) == {"name", "size_bytes", "created_at"}


@pytest.mark.parametrize("url,body,field", [
    ("/api/training/export/sft", {"min_confidence_diff": 0.3}, "min_confidence_diff"),
    ("/api/training/export/sft", {"limit": -1}, "limit"),
    ("/api/training/export/sft", {"nonsense": 1}, "nonsense"),
    ("/api/training/export/sft?limit=3", {"limit": 3}, "limit"),
    ("/api/training/export/sft?bogus=1", None, "bogus"),
    ("/api/training/export/csv", None, "format"),
])
async def test_bad_write_export_requests(api, url, body, field):
    r = await api.post(url, json=body) if body is not None else await api.post(url)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_formats_publish_the_import_schema(api):
    r = await api.get("/api/training/formats")
    formats = r.json()["formats"]
    assert set(formats) == {"sft", "dpo", "gauntlet", "import"}
    assert formats["import"]["endpoint"] == "/api/debates/import"
    assert "DebateImport" in formats["import"]["json_schema"]["$defs"]


async def test_an_unreachable_exporter_is_a_503_not_a_500():
    from tests.conftest import gateway_client
    from tests.support.net import free_port

    dead = f"127.0.0.1:{free_port()}"
    async with gateway_client(dead, dead, rpc_timeout_seconds=2) as client:
        for method, url, kw in (("GET", "/api/training/export/sft", {}), ("GET", "/api/training/stats", {}),
                                ("POST", "/api/training/export/dpo", {}),
                                ("POST", "/api/debates/import", {"content": orjson.dumps(debate("d-1"))})):
            r = await client.request(method, url, **kw)
            assert r.status_code == 503, (url, r.text)
            assert r.json()["code"] == "UNAVAILABLE"
