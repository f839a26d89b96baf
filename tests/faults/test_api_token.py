"""The optional API token: with ``GATEWAY_API_TOKEN`` every /api/ endpoint needs ``Authorization: Bearer``;
with ``TRAINER_API_TOKEN`` / ``EXPORTER_API_TOKEN`` every gRPC call needs the ``authorization`` metadata. The
gateway forwards its token to the backends and the trainer's workers send it to the exporter. Health checks,
reflection, the dashboard pages and the API docs stay open."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from aragora.training.v1 import exporter_pb2, exporter_pb2_grpc, trainer_pb2_grpc
from aragora.training.v1 import trainer_pb2 as pb
from services.common.grpc_server import auth_metadata, client_interceptors
from services.exporter import server as exporter_server
from tests.conftest import exporter_settings, gateway_client
from tests.support.wait import until as wait_for
from tests.trainer.conftest import TINY, running_trainer, watch_all

TOKEN = "s3cret-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def backends(tmp_path):
    """An exporter with sample debates and a trainer, both requiring TOKEN."""
    exporter = await exporter_server.start(exporter_settings(tmp_path, load_samples=True, api_token=TOKEN), port=0)
    try:
        async with running_trainer(tmp_path, api_token=TOKEN, exporter_address=exporter.address,
                                   exporter_retry_seconds=2) as (_, trainer):
            yield exporter, trainer
    finally:
        await exporter.stop(0.5)


async def test_rest_needs_the_bearer_token_on_every_api_endpoint(backends):
    exporter, trainer = backends
    async with gateway_client(exporter.address, trainer.address, api_token=TOKEN) as api:
        for path in ("/api/training/jobs", "/api/training/jobs/counts", "/api/training/models",
                     "/api/training/stats", "/api/training/formats", "/api/training/export/sft",
                     "/api/training/jobs/job-0000000000000000/events", "/api/nothing-here"):
            r = await api.get(path)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["code"] == "UNAUTHENTICATED" and r.json()["detail"].startswith("missing API token")
            assert r.headers["www-authenticate"].startswith("Bearer")
            r = await api.get(path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401 and r.json()["detail"].startswith("invalid API token"), path
            r = await api.get(path, headers={"Authorization": TOKEN})  # the scheme is part of it
            assert r.status_code == 401, path
        r = await api.post("/api/training/jobs", json={"name": "t", "base_model": TINY})
        assert r.status_code == 401
        # With the token: the gateway passes it on to the backends, which answer.
        r = await api.get("/api/training/jobs", headers=BEARER)
        assert r.status_code == 200 and r.json() == {"jobs": [], "total": 0}
        r = await api.get("/api/training/stats", headers=BEARER)
        assert r.status_code == 200 and r.json()["total_debates"] > 0
        r = await api.post("/api/training/jobs", headers=BEARER, json={"name": "t", "base_model": TINY})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        r = await api.delete(f"/api/training/jobs/{job_id}", headers=BEARER)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        r = await api.get(f"/api/training/jobs/{job_id}/events", headers=BEARER)
        assert r.status_code == 200 and "event: end" in r.text
        # What the page needs to load and ask for the token stays open.
        r = await api.get("/healthz")
        assert r.status_code == 200 and r.json()["status"] == "ok"  # the backends' health is open too
        for path in ("/openapi.json", "/docs", "/training", "/admin/training", "/training/jobs"):
            r = await api.get(path)
            assert r.status_code != 401, path


async def test_a_gateway_without_the_token_is_refused_by_the_backends(backends):
    exporter, trainer = backends
    async with gateway_client(exporter.address, trainer.address) as api:
        r = await api.get("/api/training/jobs")
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHENTICATED"
        assert "missing API token" in r.json()["detail"]


async def test_grpc_needs_the_token_in_metadata(backends):
    exporter, trainer = backends
    async with grpc.aio.insecure_channel(trainer.address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        for metadata, words in ((None, "missing API token"), ((("authorization", "Bearer nope"),), "invalid API token"),
                                ((("authorization", TOKEN),), "invalid API token")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ListJobs(pb.ListJobsRequest(), metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert err.value.details().startswith(words)
            with pytest.raises(grpc.aio.AioRpcError) as err:  # streams too
                async for _ in stub.WatchJob(pb.WatchJobRequest(job_id="job-x"), metadata=metadata):
                    pass
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        resp = await stub.ListJobs(pb.ListJobsRequest(), metadata=auth_metadata(TOKEN))
        assert resp.total == 0
        # Health and reflection stay open.
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        names = [r.list_services_response async for r in reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))]
        assert "aragora.training.v1.TrainerService" in [s.name for s in names[0].service]
    async with grpc.aio.insecure_channel(exporter.address) as channel:
        stub = exporter_pb2_grpc.ExporterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetFormats(exporter_pb2.GetFormatsRequest())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as err:  # a client stream
            await stub.ImportDebates(iter([exporter_pb2.ImportDebatesRequest(record_json="{}")]))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with grpc.aio.insecure_channel(exporter.address, interceptors=client_interceptors(TOKEN)) as channel:
        formats = await exporter_pb2_grpc.ExporterServiceStub(channel).GetFormats(exporter_pb2.GetFormatsRequest())
        assert formats.formats


async def test_workers_send_the_trainers_token_to_the_exporter(tmp_path):
    """Matching tokens: the worker gets its data from the exporter; another token: the job fails saying the
    exporter refused it."""
    exporter = await exporter_server.start(exporter_settings(tmp_path, load_samples=True, api_token=TOKEN), port=0)
    try:
        for token, ok in ((TOKEN, True), ("another-token", False)):
            async with running_trainer(tmp_path / token, api_token=token, exporter_address=exporter.address,
                                       exporter_retry_seconds=2) as (_, trainer):
                async with grpc.aio.insecure_channel(trainer.address, interceptors=client_interceptors(token)) as ch:
                    stub = trainer_pb2_grpc.TrainerServiceStub(ch)
                    job = (await stub.CreateJob(pb.CreateJobRequest(name="from-exporter", vertical="legal",
                                                                    base_model=TINY))).job
                    await stub.StartJob(pb.StartJobRequest(job_id=job.id))
                    _, events = await watch_all(stub, job.id, until=lambda e: "SFT records from" in e.message)
                    final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
                    if ok:
                        assert f"SFT records from the exporter at {exporter.address}" in events[-1].message
                        await wait_for(lambda job=job: trainer.manager.running_pid(job.id) is None, 120,
                                       what="worker end")
                    else:
                        assert final.status == pb.JOB_STATUS_FAILED, events[-1].message
                        assert final.error.startswith(
                            f"the exporter at {exporter.address} refused the SFT export (UNAUTHENTICATED): "
                            "invalid API token")
    finally:
        await exporter.stop(0.5)
