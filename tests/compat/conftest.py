"""Fixtures of the contract tests with Aragora's own clients (repository an0mium/aragora): the real exporter and
trainer gRPC servers and the gateway in front of them, seeded with debates, and the headers each upstream client
sends. Each test replays the requests of one upstream function (named in its docstring) and asserts what that
function reads from the answer."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.conftest import gateway_client
from tests.exporter.conftest import debate, gauntlet
from tests.trainer.conftest import (
    fake_model_folder,
    running_trainer,
    tiny_models_dir,  # noqa: F401 - the session fixture, for test_server_handler
)

# What a browser's (or Node's) fetch(url) sends when the caller gives no header: the upstream frontend's
# useFineTuning hook, training pages and admin export panel call fetch that way.
BROWSER_FETCH = {"accept": "*/*", "sec-fetch-mode": "cors", "sec-fetch-site": "same-origin"}
# The Python SDK's AragoraClient._build_headers (sdk/python/aragora_sdk/client.py).
PYTHON_SDK = {"accept": "application/json", "content-type": "application/json", "user-agent": "aragora-sdk"}

CODELLAMA = "codellama/CodeLlama-7b-Instruct-hf"


def seed_records() -> list[dict]:
    records = [debate(f"d-{i:02d}", vertical=["legal", "code", "finance"][i % 3]) for i in range(12)]
    records += [gauntlet("g-1", "jailbreak", 8.0), gauntlet("g-2", "prompt_injection", 2.0),
                dict(gauntlet("g-3", "jailbreak", 6.0), persona="gdpr")]
    return records


@pytest.fixture
async def aragora(tmp_path, exporter):
    """The gateway over a real exporter (12 debates, 3 gauntlet runs) and a real trainer whose models folder
    holds the default test model and CodeLlama-7b (a config.json: enough to create jobs, not to train)."""
    models_dir = tmp_path / "models"
    fake_model_folder(models_dir)
    fake_model_folder(models_dir, CODELLAMA)
    async with (running_trainer(tmp_path, models_dir=models_dir, exporter_address=exporter.address) as (_, trainer),
                gateway_client(exporter.address, trainer.address) as client):
        body = b"".join(orjson.dumps(r) + b"\n" for r in seed_records())
        r = await client.post("/api/debates/import", content=body)
        assert r.status_code == 200 and r.json()["imported"] == 15, r.text
        client.trainer = trainer
        yield client


async def wait_status(client, job_id: str, statuses: set[str], timeout: float = 120.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = (await client.get(f"/api/training/jobs/{job_id}")).json()
        if job["status"] in statuses:
            return job
        if loop.time() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")
        await asyncio.sleep(0.1)
