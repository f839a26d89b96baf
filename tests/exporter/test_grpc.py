"""The exporter through a real grpc.aio server on port 0 and a real stub."""

from __future__ import annotations

import json

import grpc
import pytest

from aragora.training.v1 import exporter_pb2 as pb
from aragora.training.v1 import exporter_pb2_grpc
from services.exporter.importer import split_of
from tests.exporter.conftest import debate, gauntlet


@pytest.fixture
async def stub(exporter):
    async with grpc.aio.insecure_channel(exporter.address) as ch:
        yield exporter_pb2_grpc.ExporterServiceStub(ch)


async def _import(stub, records) -> pb.ImportDebatesResponse:
    return await stub.ImportDebates(iter([pb.ImportDebatesRequest(record_json=json.dumps(r)) for r in records]),
                                    timeout=30)


async def _collect(call) -> list:
    out = []
    async for msg in call:
        out.extend(msg.records)
    return out


async def test_import_then_export_sft_and_dpo_by_split_and_vertical(stub):
    records = [debate(f"debate-{i:03d}", vertical=("legal" if i % 2 else "medical")) for i in range(40)]
    resp = await _import(stub, records)
    assert (resp.imported, resp.updated, resp.rejected) == (40, 0, 0)

    sft = await _collect(stub.ExportSFT(pb.ExportSFTRequest(), timeout=30))
    assert [r.metadata.debate_id for r in sft] == sorted(r["id"] for r in records)
    train = await _collect(stub.ExportSFT(pb.ExportSFTRequest(split=pb.SPLIT_TRAIN), timeout=30))
    held = await _collect(stub.ExportSFT(pb.ExportSFTRequest(split=pb.SPLIT_HELDOUT), timeout=30))
    assert {r.metadata.debate_id for r in held} == {r["id"] for r in records if split_of(r["id"]) == "heldout"}
    assert len(train) + len(held) == 40 and held
    assert not {r.metadata.debate_id for r in train} & {r.metadata.debate_id for r in held}

    legal = await _collect(stub.ExportDPO(pb.ExportDPORequest(vertical="legal", split=pb.SPLIT_TRAIN), timeout=30))
    assert legal and all(r.metadata.vertical == "legal" for r in legal)
    assert all(split_of(r.metadata.debate_id) == "train" for r in legal)
    # three agents: two pairs per debate, chosen is the winner's last-round proposal
    one = [r for r in legal if r.metadata.debate_id == legal[0].metadata.debate_id]
    did = one[0].metadata.debate_id
    assert [r.rejected for r in one] == [f"beta r2 on {did}", f"gamma r2 on {did}"]
    assert all(r.chosen == f"alpha r2 on {did}" for r in one)
    # votes: two of 0.8 for alpha, one for gamma -> shares 2/3, 0, 1/3
    assert [round(r.metadata.confidence_diff, 4) for r in one] == [0.6667, 0.3333]


async def test_limit_and_bad_filters(stub):
    await _import(stub, [debate(f"d-{i}") for i in range(5)])
    got = await _collect(stub.ExportSFT(pb.ExportSFTRequest(limit=2), timeout=30))
    assert [r.metadata.debate_id for r in got] == ["d-0", "d-1"]
    for req in (pb.ExportSFTRequest(min_confidence=1.5), pb.ExportSFTRequest(limit=0),
                pb.ExportSFTRequest(split=7)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _collect(stub.ExportSFT(req, timeout=30))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_typed_records_and_gauntlet(stub):
    from google.protobuf import json_format

    d = debate("typed-1")
    typed = pb.Debate()
    json_format.ParseDict({k: v for k, v in d.items() if k != "type"}, typed)
    g = gauntlet("g-1")
    run = pb.GauntletRun()
    json_format.ParseDict({k: v for k, v in g.items() if k != "type"}, run)
    reqs = [pb.ImportDebatesRequest(debate=typed), pb.ImportDebatesRequest(gauntlet_run=run),
            pb.ImportDebatesRequest(line=99)]
    resp = await stub.ImportDebates(iter(reqs), timeout=30)
    assert (resp.imported, resp.rejected) == (2, 1)
    assert (resp.rejections[0].line, resp.rejections[0].field) == (99, "record")
    sft = await _collect(stub.ExportSFT(pb.ExportSFTRequest(), timeout=30))
    assert sft[0].output == "final answer of typed-1"
    gr = await _collect(stub.ExportGauntlet(pb.ExportGauntletRequest(), timeout=30))
    assert [(r.prompt, r.attack_type, list(r.findings)) for r in gr] == [
        ("attack g-1", "prompt_injection", ["Resisted manipulation"])]


async def test_exports_stream_in_batches_and_a_client_may_stop_early(tmp_path):
    from services.exporter import server
    from tests.conftest import exporter_settings

    running = await server.start(exporter_settings(tmp_path, export_batch=4), port=0)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            stub = exporter_pb2_grpc.ExporterServiceStub(ch)
            await _import(stub, [debate(f"d-{i:02d}") for i in range(10)])
            sizes = [len(m.records) async for m in stub.ExportSFT(pb.ExportSFTRequest(), timeout=30)]
            assert sizes == [4, 4, 2]
            sizes = [len(m.records) async for m in stub.ExportDPO(pb.ExportDPORequest(limit=9), timeout=30)]
            assert sizes == [4, 4, 1]
            call = stub.ExportDPO(pb.ExportDPORequest(), timeout=30)
            first = await call.read()
            assert len(first.records) == 4
            call.cancel()
            # the server is unaffected by a client that went away
            again = await _collect(stub.ExportSFT(pb.ExportSFTRequest(), timeout=30))
            assert len(again) == 10
    finally:
        await running.stop(0.5)


async def test_write_export_and_stats_over_grpc(stub, exporter):
    await _import(stub, [debate("d-1", vertical="finance"), gauntlet("g-1"), gauntlet("g-2", "jailbreak")])
    resp = await stub.WriteExport(pb.WriteExportRequest(format=pb.EXPORT_FORMAT_GAUNTLET,
                                                        gauntlet=pb.ExportGauntletRequest(attack_type="jailbreak")),
                                  timeout=30)
    assert resp.record_count == 1 and resp.file.name.startswith("gauntlet_export_") and resp.file.size_bytes > 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.WriteExport(pb.WriteExportRequest(), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "format" in err.value.details()
    stats = await stub.GetExportStats(pb.GetExportStatsRequest(), timeout=30)
    assert dict(stats.debates_per_vertical) == {"finance": 1}
    assert (stats.total_debates, stats.total_gauntlet_runs, stats.sft_available) == (1, 2, True)
    assert [f.name for f in stats.exported_files] == [resp.file.name]


async def test_formats_include_the_import_record(stub):
    resp = await stub.GetFormats(pb.GetFormatsRequest(), timeout=30)
    formats = {f.name: f for f in resp.formats}
    assert set(formats) == {"sft", "dpo", "gauntlet", "import"}
    schema = json.loads(formats["import"].json_schema)
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(formats["import"].example_json), schema)
    jsonschema.validate(debate("d-1"), schema)


async def test_typed_and_jsonl_batches_carry_the_same_records(stub):
    from google.protobuf.json_format import MessageToDict

    await _import(stub, [debate(f"d-{i}", vertical="code") for i in range(6)] + [gauntlet("g-1"), gauntlet("g-2")])
    calls = {"sft": (stub.ExportSFT, pb.ExportSFTRequest), "dpo": (stub.ExportDPO, pb.ExportDPORequest),
             "gauntlet": (stub.ExportGauntlet, pb.ExportGauntletRequest)}
    for name, (rpc, req) in calls.items():
        typed = [MessageToDict(r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
                 for r in await _collect(rpc(req(), timeout=30))]
        lines = []
        async for msg in rpc(req(jsonl=True), timeout=30):
            assert not msg.records
            lines += [json.loads(x) for x in msg.jsonl.decode().splitlines()]
        assert typed == lines and len(lines) >= 2, name
