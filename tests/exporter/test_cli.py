"""``python -m services.exporter import FILE.jsonl``: into the database directly, and through a running exporter."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import orjson
import pytest

from aragora.training.v1 import exporter_pb2 as pb
from tests.conftest import REPO
from tests.exporter.conftest import debate, gauntlet


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(orjson.dumps(debate("d-1")) + b"\n" + b'{"id": "d-2", "task": 3}\n\n'
                     + orjson.dumps(gauntlet("g-1")) + b"\n")
    return path


async def _run(*args, env=None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.exporter", *args, cwd=REPO, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_import_into_the_database(tmp_path, jsonl):
    from services.exporter.store import DebateStore

    url = f"sqlite:///{tmp_path}/cli/debates.db"
    rc, out, err = await _run("import", str(jsonl), env={"EXPORTER_DATABASE_URL": url})
    assert rc == 1, err  # one record rejected
    assert out.splitlines() == ["imported 2, updated 0, rejected 1", "  line 2: task: Input should be a valid string"]
    assert "importing" in err and "100%" in err  # the progress bar
    rc, out, _ = await _run("import", str(jsonl), "--json", env={"EXPORTER_DATABASE_URL": url})
    assert json.loads(out) == {"imported": 0, "updated": 2, "rejected": 1,
                               "rejections": [{"line": 2, "field": "task", "reason": "Input should be a valid string"}]}
    store = DebateStore(url)
    assert store.debates_per_vertical() == {"general": 1} and store.count_gauntlet_runs() == 1
    store.close()


async def test_import_through_a_running_exporter(exporter, jsonl):
    rc, out, err = await _run("import", str(jsonl), "--address", exporter.address, "--json")
    assert rc == 1, err
    assert json.loads(out)["imported"] == 2
    import grpc

    from aragora.training.v1 import exporter_pb2_grpc

    async with grpc.aio.insecure_channel(exporter.address) as ch:
        stats = await exporter_pb2_grpc.ExporterServiceStub(ch).GetExportStats(pb.GetExportStatsRequest(), timeout=5)
    assert (stats.total_debates, stats.total_gauntlet_runs) == (1, 1)


async def test_a_missing_file_or_exporter(tmp_path):
    rc, _, err = await _run("import", str(tmp_path / "nope.jsonl"))
    assert rc == 2 and "no such file" in err
    (tmp_path / "f.jsonl").write_bytes(orjson.dumps(debate("d-1")) + b"\n")
    from tests.support.net import free_port

    rc, _, err = await _run("import", str(tmp_path / "f.jsonl"), "--address", f"127.0.0.1:{free_port()}")
    assert rc == 2 and "UNAVAILABLE" in err


async def test_import_through_an_exporter_that_needs_a_token(tmp_path, jsonl):
    from services.exporter import server
    from tests.conftest import exporter_settings

    running = await server.start(exporter_settings(tmp_path, api_token="tok-1"), port=0)
    try:
        rc, _, err = await _run("import", str(jsonl), "--address", running.address)
        assert rc == 2 and "UNAUTHENTICATED" in err
        rc, out, err = await _run("import", str(jsonl), "--address", running.address, "--json",
                                  env={"EXPORTER_API_TOKEN": "tok-1"})
        assert rc == 1 and json.loads(out)["imported"] == 2, err
    finally:
        await running.stop(0.5)
