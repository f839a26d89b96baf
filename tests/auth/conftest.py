"""Fixtures of the auth tests: the real exporter and trainer gRPC servers (on a loop of their own, in a thread)
and the gateway's app, all three on one keys store holding an admin's, two users' and a viewer's keys, and a job
of the first user (cancelled: nothing here trains) with a deployment of it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from services.auth.store import KeyStore
from tests.faults.conftest import BackgroundBackends

CALLERS = ("admin", "user", "viewer", "stranger", "none")
"""Who calls: an admin, the user owning the job, a viewer, another user (the stranger), no key at all."""


@dataclass
class AuthWorld:
    url: str
    keys: dict[str, str | None]
    backends: BackgroundBackends
    job_id: str
    deployment: str

    def metadata(self, caller: str) -> tuple:
        key = self.keys[caller]
        return (("authorization", f"Bearer {key}"),) if key else ()

    def headers(self, caller: str) -> dict:
        key = self.keys[caller]
        return {"Authorization": f"Bearer {key}"} if key else {}


def make_keys(url: str) -> dict[str, str | None]:
    store = KeyStore(url, create=True)
    try:
        return {"admin": store.create("root", "admin")[1], "user": store.create("alice", "user")[1],
                "viewer": store.create("vera", "viewer")[1], "stranger": store.create("bob", "user")[1],
                "none": None}
    finally:
        store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> AuthWorld:
    tmp = tmp_path_factory.mktemp("auth")
    url = f"sqlite:///{tmp}/auth/keys.db"
    keys = make_keys(url)
    backends = BackgroundBackends(tmp, exporter_extra={"auth_database_url": url}, auth_database_url=url)
    try:
        with grpc.insecure_channel(backends.trainer.address) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            md = (("authorization", f"Bearer {keys['user']}"),)
            job = stub.CreateJob(pb.CreateJobRequest(name="alice-job", base_model="test/tiny-llama"), metadata=md).job
            stub.CancelJob(pb.CancelJobRequest(job_id=job.id), metadata=md)
        # A deployment of alice's job, written into the trainer's store (the job never trained: deploying it
        # through the API needs a completed job).
        deployment = backends.trainer.inference.deployments.add("alice-model", job.id, job.base_model).name
        yield AuthWorld(url, keys, backends, job.id, deployment)
    finally:
        backends.close()


@pytest.fixture(scope="module")
def gateway(world):
    """The gateway's app on the same keys store, behind a (blocking) test client."""
    from starlette.testclient import TestClient

    from services.gateway.app import create_app
    from services.gateway.config import GatewaySettings

    settings = GatewaySettings(exporter_address=world.backends.exporter.address,
                               trainer_address=world.backends.trainer.address, auth_database_url=world.url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client
