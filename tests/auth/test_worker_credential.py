"""With API keys on (and no api_token), a job's worker reads its training data from the exporter with the
trainer's own service account, which never lands in the job's files or events."""

from __future__ import annotations

import grpc

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from services.auth import store as store_module
from services.auth.store import KeyStore
from services.common.grpc_server import client_interceptors
from services.exporter import server as exporter_server
from tests.conftest import exporter_settings
from tests.support.wait import until as wait_for
from tests.trainer.conftest import TINY, running_trainer, watch_all


async def test_a_workers_data_comes_from_the_exporter_with_the_trainers_service_key(tmp_path):
    url = f"sqlite:///{tmp_path}/auth/keys.db"
    store = KeyStore(url, create=True)
    _, key = store.create("alice", "user")
    exporter = await exporter_server.start(exporter_settings(tmp_path, load_samples=True, auth_database_url=url),
                                           port=0)
    try:
        async with running_trainer(tmp_path, auth_database_url=url, exporter_address=exporter.address,
                                   exporter_retry_seconds=2) as (_, trainer):
            async with grpc.aio.insecure_channel(trainer.address, interceptors=client_interceptors(key)) as ch:
                stub = trainer_pb2_grpc.TrainerServiceStub(ch)
                job = (await stub.CreateJob(pb.CreateJobRequest(name="from-exporter", vertical="legal",
                                                                base_model=TINY))).job
                assert job.owner == "alice"
                await stub.StartJob(pb.StartJobRequest(job_id=job.id))
                _, events = await watch_all(stub, job.id, until=lambda e: "SFT records from" in e.message)
                assert f"SFT records from the exporter at {exporter.address}" in events[-1].message
                await wait_for(lambda: trainer.manager.running_pid(job.id) is None, 120, what="worker end")
            service = [k for k in store.list() if k.kind == "service"]
            assert [(k.name, k.role, k.revoked_at) for k in service] == [("trainer-worker", "viewer", None)]
            written = "".join(p.read_text(errors="replace") for p in (tmp_path / "jobs" / job.id).rglob("*")
                              if p.is_file() and p.suffix in (".json", ".jsonl", ".log"))
            secret = store_module._SERVICE_KEYS[(url, "trainer-worker")]  # the key the trainer minted
            assert secret not in written and key not in written
    finally:
        await exporter.stop(0.5)
        store.close()
