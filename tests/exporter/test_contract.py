"""The contract: every record exported from the bundled sample debates, through the gateway (JSON array and
JSONL) and into files, validates against the JSON Schema the gateway publishes for its format; every sample line
validates against the published import schema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from services.exporter.server import BUNDLED_SAMPLES
from tests.conftest import exporter_settings, gateway_client
from tests.support.net import free_port


@pytest.fixture(scope="module")
async def samples_api(tmp_path_factory):
    """A gateway in front of an exporter that loaded the bundled samples on start (as `make up` does)."""
    from services.exporter import server

    tmp = tmp_path_factory.mktemp("samples")
    running = await server.start(exporter_settings(tmp, load_samples=True), port=0)
    async with gateway_client(running.address, f"127.0.0.1:{free_port()}") as client:
        client.export_dir = tmp / "exports"
        yield client
    await running.stop(0.5)


@pytest.fixture(scope="module")
async def schemas(samples_api):
    r = await samples_api.get("/api/training/formats")
    assert r.status_code == 200
    out = {}
    for name, f in r.json()["formats"].items():
        jsonschema.Draft202012Validator.check_schema(f["json_schema"])
        out[name] = jsonschema.Draft202012Validator(f["json_schema"], format_checker=jsonschema.FormatChecker())
        out[name].validate(f["example"])
    return out


def _check(validator, records) -> None:
    for i, rec in enumerate(records):
        errors = sorted(validator.iter_errors(rec), key=str)
        assert not errors, f"record {i}: {errors[0].message} at {list(errors[0].path)}"


async def test_samples_loaded_on_first_start(samples_api):
    stats = (await samples_api.get("/api/training/stats")).json()
    assert stats["total_debates"] >= 600 and stats["total_gauntlet_runs"] >= 150
    assert set(stats["debates_per_vertical"]) >= {"legal", "medical", "code", "finance", "general"}


@pytest.mark.parametrize("fmt", ["sft", "dpo", "gauntlet"])
async def test_every_exported_record_validates(samples_api, schemas, fmt):
    as_array = (await samples_api.get(f"/api/training/export/{fmt}")).json()
    r = await samples_api.get(f"/api/training/export/{fmt}?format=jsonl")
    as_jsonl = [json.loads(line) for line in r.text.splitlines()]
    assert as_array == as_jsonl and len(as_array) >= 150
    _check(schemas[fmt], as_array)
    # strict shapes: exactly the guide's fields, nothing more
    keys = {"sft": {"instruction", "input", "output", "metadata"}, "dpo": {"prompt", "chosen", "rejected", "metadata"},
            "gauntlet": {"prompt", "response", "attack_type", "success", "findings"}}[fmt]
    assert all(set(x) == keys for x in as_array)
    written = (await samples_api.post(f"/api/training/export/{fmt}")).json()
    lines = (samples_api.export_dir / written["name"]).read_text().splitlines()
    assert [json.loads(x) for x in lines] == as_array and written["record_count"] == len(lines)


async def test_held_out_split_is_about_a_fifth(samples_api):
    held = (await samples_api.get("/api/training/export/sft?split=heldout")).json()
    total = (await samples_api.get("/api/training/export/sft")).json()
    assert 0.12 < len(held) / len(total) < 0.28


def test_sample_lines_validate_against_the_import_schema():
    """Every sample line passed the importer's validation when loaded; this checks the published schema agrees
    (on every 7th line and every gauntlet run, to keep the test quick)."""
    from services.exporter.formats import json_schema

    validator = jsonschema.Draft202012Validator(json_schema("import"))
    lines = [json.loads(x) for x in BUNDLED_SAMPLES.read_text().splitlines()]
    _check(validator, [r for i, r in enumerate(lines) if i % 7 == 0 or r["type"] == "gauntlet"])
