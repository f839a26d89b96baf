"""Each server through a real grpc.aio server on port 0 with real stubs: health, reflection, errors."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from aragora.training.v1 import exporter_pb2, exporter_pb2_grpc
from services.common.errors import FieldViolation, InvalidArgument, NotFound
from services.common.grpc_server import ServiceBinding, start_server
from services.exporter.server import SERVICE_NAME as EXPORTER
from services.trainer.server import SERVICE_NAME as TRAINER


@pytest.mark.parametrize("which,name", [("exporter", EXPORTER), ("trainer", TRAINER)])
async def test_health_and_reflection(exporter, trainer, which, name):
    running = {"exporter": exporter, "trainer": trainer}[which]
    async with grpc.aio.insecure_channel(running.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", name):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = set()
        async for r in responses:
            names |= {s.name for s in r.list_services_response.service}
        assert {name, "grpc.health.v1.Health"} <= names

        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)
        responses = stub.ServerReflectionInfo(iter([request]))
        async for r in responses:
            assert r.file_descriptor_response.file_descriptor_proto, "reflection returned no descriptor"


async def test_health_goes_not_serving_on_stop(tmp_path):
    from services.exporter import server
    from tests.conftest import exporter_settings

    running = await server.start(exporter_settings(tmp_path), port=0)
    await running.health.set("", health_pb2.HealthCheckResponse.SERVING)
    await running.stop(0.1)
    async with grpc.aio.insecure_channel(running.address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_formats_served_over_grpc(exporter):
    async with grpc.aio.insecure_channel(exporter.address) as ch:
        resp = await exporter_pb2_grpc.ExporterServiceStub(ch).GetFormats(exporter_pb2.GetFormatsRequest(), timeout=5)
    names = {f.name for f in resp.formats}
    assert {"sft", "dpo", "gauntlet"} <= names


class _Faulty(exporter_pb2_grpc.ExporterServiceServicer):
    """Raises the domain errors the interceptor must map; a fault no real request causes in the skeleton."""

    async def GetFormats(self, request, context):
        raise InvalidArgument([FieldViolation("limit", "must be > 0"), FieldViolation("vertical", "must not be empty")])

    async def GetExportStats(self, request, context):
        raise NotFound("debate debate-9 not found")

    async def WriteExport(self, request, context):
        raise RuntimeError("secret internal detail")

    async def ExportSFT(self, request, context):
        yield exporter_pb2.ExportSFTResponse()
        raise NotFound("stream broke")


async def test_error_interceptor_maps_domain_errors():
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    binding = ServiceBinding(_Faulty(), exporter_pb2_grpc.add_ExporterServiceServicer_to_server, EXPORTER)
    running = await start_server([binding])
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            stub = exporter_pb2_grpc.ExporterServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetFormats(exporter_pb2.GetFormatsRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "limit: must be > 0" in err.value.details()
            status = rpc_status.from_call(err.value)
            br = error_details_pb2.BadRequest()
            status.details[0].Unpack(br)
            assert [v.field for v in br.field_violations] == ["limit", "vertical"]

            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetExportStats(exporter_pb2.GetExportStatsRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.WriteExport(exporter_pb2.WriteExportRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.INTERNAL
            assert "secret" not in err.value.details()

            got = []
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for item in stub.ExportSFT(exporter_pb2.ExportSFTRequest(), timeout=5):
                    got.append(item)
            assert len(got) == 1 and err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await running.stop(0)
