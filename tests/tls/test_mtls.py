"""Mutual TLS between real service processes: an exporter and a trainer that require client certificates from
the development CA, a gateway that presents its own, and the trainer's workers presenting theirs to the exporter.
A client without a certificate, with one from another CA, or in plaintext is refused; a bad TLS file stops a
service at start with a message naming the setting."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aragora.training.v1 import exporter_pb2, exporter_pb2_grpc, trainer_pb2_grpc
from aragora.training.v1 import trainer_pb2 as pb
from services.common import healthcheck
from services.common.tls import TlsFiles, aio_channel, sync_channel
from tests.conftest import gateway_client
from tests.support.net import free_ports
from tests.support.services import ServiceProcess, base_env, exporter_env, gateway_env, trainer_env, wait_http
from tests.support.wait import wait_until
from tests.tls.conftest import tls_files, tls_settings
from tests.trainer.conftest import TINY, watch_all

REFUSED = grpc.StatusCode.UNAVAILABLE
"""What a client gets when the TLS handshake fails (either side refusing the other's certificate)."""


def _ready(address: str, tls: TlsFiles, service: ServiceProcess, timeout: float = 90.0) -> None:
    def serving() -> bool:
        service._check_alive()
        with sync_channel(address, tls) as channel:
            try:
                return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status \
                    == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False

    wait_until(serving, timeout, what=f"{service.name} serving over mutual TLS")


@pytest.fixture(scope="module")
def stack(certs, tiny_models_dir, tmp_path_factory):
    """Exporter (sample debates), trainer (the tiny model; workers with worker.pem) and gateway as processes,
    every gRPC hop over mutual TLS with the development certificates."""
    root = tmp_path_factory.mktemp("mtls")
    ex_port, tr_port, gw_port = free_ports(3)
    ex_addr, tr_addr = f"127.0.0.1:{ex_port}", f"127.0.0.1:{tr_port}"
    exporter = ServiceProcess("exporter", base_env(**exporter_env(
        root, ex_port, load_samples="true", **tls_settings(certs, "exporter"))), root / "exporter.log")
    trainer = ServiceProcess("trainer", base_env(TRAINER_EVAL_ENABLED="false", **trainer_env(
        root, tr_port, tiny_models_dir, exporter_address=ex_addr, exporter_retry_seconds="5",
        worker_tls_cert_file=certs / "worker.pem", worker_tls_key_file=certs / "worker-key.pem",
        **tls_settings(certs, "trainer"))), root / "trainer.log")
    gateway = ServiceProcess("gateway", base_env(**gateway_env(
        gw_port, tr_addr, exporter_address=ex_addr, **tls_settings(certs, "gateway"))), root / "gateway.log")
    try:
        client = tls_files(certs, "gateway")
        _ready(ex_addr, client, exporter)
        _ready(tr_addr, client, trainer)
        wait_http([gateway], f"http://127.0.0.1:{gw_port}")
        yield {"exporter": ex_addr, "trainer": tr_addr, "gateway": f"http://127.0.0.1:{gw_port}", "root": root,
               "procs": (exporter, trainer, gateway)}
    finally:
        for service in (gateway, trainer, exporter):
            service.stop(timeout=10)


async def _formats(address: str, tls: TlsFiles | None):
    async with aio_channel(address, tls) as channel:
        return await exporter_pb2_grpc.ExporterServiceStub(channel).GetFormats(exporter_pb2.GetFormatsRequest(),
                                                                                timeout=10)


async def _jobs(address: str, tls: TlsFiles | None):
    async with aio_channel(address, tls) as channel:
        return await trainer_pb2_grpc.TrainerServiceStub(channel).ListJobs(pb.ListJobsRequest(), timeout=10)


async def test_a_client_with_a_certificate_from_the_ca_is_served(stack, certs):
    for name in ("gateway", "trainer", "worker", "exporter"):  # every certificate `make certs` writes is a client's
        assert (await _formats(stack["exporter"], tls_files(certs, name))).formats
        assert (await _jobs(stack["trainer"], tls_files(certs, name))).total >= 0


@pytest.mark.parametrize("call", [_formats, _jobs], ids=["exporter", "trainer"])
async def test_a_client_without_the_right_certificate_is_refused(stack, certs, other_certs, call):
    address = stack["exporter" if call is _formats else "trainer"]
    refused = {
        "no client certificate": tls_files(certs, None),
        "a certificate from another CA": tls_files(other_certs, "gateway", ca=certs / "ca.pem"),
        "a client that does not trust the server's CA": tls_files(other_certs, "gateway"),
        "plaintext": None,
    }
    for why, tls in refused.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(address, tls)
        assert err.value.code() == REFUSED, (why, err.value)
    assert await call(address, tls_files(certs, "gateway"))  # the same server, the right certificate: served


def test_the_container_healthcheck_speaks_mutual_tls(stack, certs, monkeypatch):
    for field, value in tls_settings(certs, "exporter").items():
        monkeypatch.setenv(f"EXPORTER_{field.upper()}", value)
    assert healthcheck.main(["--tls-env", "EXPORTER", stack["exporter"]]) == 0
    assert healthcheck.main(["--tls-env", "EXPORTER", stack["trainer"]]) == 0  # any certificate of the CA
    assert healthcheck.main([stack["exporter"]]) == 1  # plaintext against a TLS server
    monkeypatch.setenv("EXPORTER_TLS_KEY_FILE", str(certs / "nope.pem"))
    assert healthcheck.main(["--tls-env", "EXPORTER", stack["exporter"]]) == 1


async def test_rest_calls_reach_both_backends_over_mutual_tls(stack):
    async with httpx.AsyncClient(base_url=stack["gateway"], timeout=30) as api:
        r = await api.get("/healthz")
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text
        r = await api.get("/api/training/stats")  # the exporter (and the trainer's counts)
        assert r.status_code == 200 and r.json()["total_debates"] > 0, r.text
        r = await api.get("/api/training/export/sft", params={"limit": 2})  # an exporter stream
        assert r.status_code == 200, r.text
        r = await api.post("/api/training/jobs", json={"name": "over-mtls", "base_model": TINY})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        r = await api.get(f"/api/training/jobs/{job_id}")
        assert r.status_code == 200 and r.json()["name"] == "over-mtls"
        r = await api.delete(f"/api/training/jobs/{job_id}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"


@pytest.mark.parametrize("name, folder", [("no TLS settings", None), ("another CA's certificate", "other")])
async def test_a_gateway_without_the_right_certificate_gets_no_answer_from_the_backends(stack, other_certs, name,
                                                                                      folder):
    kw = tls_settings(other_certs, "gateway") if folder else {}
    async with gateway_client(stack["exporter"], stack["trainer"], rpc_timeout_seconds=3, **kw) as api:
        r = await api.get("/api/training/jobs")
        assert r.status_code == 503, (name, r.text)
        r = await api.get("/healthz")
        assert r.json()["status"] != "ok", name


async def test_a_training_job_reads_its_data_from_the_exporter_over_mutual_tls(stack, certs):
    """A job without a dataset_path: its worker (a process of its own, with worker.pem) streams the SFT export
    from the exporter, trains the tiny model and completes; job.json names the files, never a key's contents."""
    async with aio_channel(stack["trainer"], tls_files(certs, "gateway")) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        config = pb.TrainingConfig(num_epochs=1, max_steps=2, batch_size=2, max_seq_length=512, lora_r=4,
                                   lora_alpha=8, quantization=pb.QUANTIZATION_NONE, gradient_checkpointing=False)
        job = (await stub.CreateJob(pb.CreateJobRequest(name="data-over-mtls", vertical="legal", base_model=TINY,
                                                        training_config=config))).job
        await stub.StartJob(pb.StartJobRequest(job_id=job.id))
        _, events = await watch_all(stub, job.id)
        final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
    messages = [e.message for e in events]
    assert final.status == pb.JOB_STATUS_COMPLETED, (final.error, messages[-5:])
    assert any(f"SFT records from the exporter at {stack['exporter']}" in m for m in messages), messages
    job_json = json.loads((stack["root"] / "jobs" / job.id / "job.json").read_text())
    assert job_json["tls_cert_file"] == str(certs / "worker.pem")
    assert job_json["tls_key_file"] == str(certs / "worker-key.pem")
    assert job_json["tls_ca_file"] == str(certs / "ca.pem")
    key = (certs / "worker-key.pem").read_text()
    assert key.splitlines()[1] not in (stack["root"] / "jobs" / job.id / "job.json").read_text()


async def test_a_worker_with_another_cas_certificate_cannot_reach_the_exporter(stack, certs, other_certs, tmp_path):
    """The exporter refuses the worker: the job fails naming the exporter (after the retry window)."""
    from tests.trainer.conftest import running_trainer

    async with running_trainer(tmp_path, exporter_address=stack["exporter"], exporter_retry_seconds=1,
                               worker_tls_cert_file=str(other_certs / "worker.pem"),
                               worker_tls_key_file=str(other_certs / "worker-key.pem"),
                               **tls_settings(certs, "trainer")) as (_, trainer):
        async with aio_channel(trainer.address, tls_files(certs, "gateway")) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            job = (await stub.CreateJob(pb.CreateJobRequest(name="refused", vertical="legal", base_model=TINY))).job
            await stub.StartJob(pb.StartJobRequest(job_id=job.id))
            await watch_all(stub, job.id)
            final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
    assert final.status == pb.JOB_STATUS_FAILED
    assert final.error.startswith(f"exporter unavailable at {stack['exporter']}"), final.error


@pytest.mark.parametrize("service", ["exporter", "trainer", "gateway"])
def test_a_missing_tls_file_stops_the_service_at_start_naming_the_setting(service, certs, tmp_path):
    prefix = service.upper()
    settings = {**tls_settings(certs, service), "tls_key_file": str(tmp_path / "missing-key.pem"), "port": "0",
                "database_url": f"sqlite:///{tmp_path}/db.sqlite"}
    env = base_env(**{f"{prefix}_{k.upper()}": v for k, v in settings.items()})
    out = subprocess.run([sys.executable, "-m", f"services.{service}"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert f"{prefix}_TLS_KEY_FILE (tls_key_file): no such file: {tmp_path / 'missing-key.pem'}" in out.stderr, \
        out.stderr[-2000:]
    assert "Traceback" not in out.stderr
