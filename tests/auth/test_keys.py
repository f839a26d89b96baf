"""The keys store, the CLI, the admin REST API, the audit log, the open default and its refusal off loopback,
and secrets hygiene."""

from __future__ import annotations

import hmac
import logging
import subprocess
import sys

import grpc
import pytest

from aragora.training.v1 import exporter_pb2, exporter_pb2_grpc
from services.auth import store as store_module
from services.auth.authn import Authenticator, Unauthenticated
from services.auth.store import KeyStore, service_credential
from tests.support.services import REPO, base_env


def test_a_key_is_stored_hashed_resolves_and_stops_working_when_revoked(tmp_path):
    url = f"sqlite:///{tmp_path}/keys.db"
    store = KeyStore(url, create=True)
    info, key = store.create("alice", "user")
    assert key.startswith(f"agk_{info.id}_") and len(key) > 50
    raw = (tmp_path / "keys.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("keys.db-*"))
    assert key.split("_", 2)[2].encode() not in raw, "the secret itself must not be stored"
    assert store.resolve(key).name == "alice" and store.resolve(key).role == "user"
    assert store.resolve(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.resolve("agk_000000000000_x") is None and store.resolve("nonsense") is None
    store.revoke(info.id)
    assert store.resolve(key) is None
    assert store.has_keys(), "revoking every key must not reopen the service"
    assert [k.to_dict()["active"] for k in store.list()] == [False]
    assert "secret_hash" not in store.list()[0].to_dict()


def test_keys_are_compared_in_constant_time(tmp_path, monkeypatch):
    store = KeyStore(f"sqlite:///{tmp_path}/keys.db", create=True)
    _, key = store.create("alice", "user")
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(store_module.hmac, "compare_digest", spy)
    assert store.resolve(key) is not None
    assert store.resolve(key + "x") is None
    assert store.resolve("agk_abcdefabcdef_unknown-id") is None  # an unknown id costs the same comparison
    assert len(calls) == 3
    auth = Authenticator(store, api_token="tok")
    assert auth.authenticate(b"Bearer tok").role == "admin"
    assert len(calls) == 4  # the api_token too


def test_the_open_default_and_what_a_missing_store_means(tmp_path):
    url = f"sqlite:///{tmp_path}/auth/keys.db"
    auth = Authenticator(KeyStore(url))
    assert not auth.enabled() and auth.authenticate(None).name == "local"
    assert not (tmp_path / "auth").exists(), "a service must not create the keys store"
    KeyStore(url, create=True).create("root", "admin")
    assert auth.enabled()
    with pytest.raises(Unauthenticated, match="missing API token"):
        auth.authenticate(None)


def run(args, **env):
    return subprocess.run([sys.executable, *args], cwd=REPO, env=base_env(**env), capture_output=True, text=True,
                          timeout=120)


def test_cli_creates_lists_revokes_and_shows_the_audit_log(tmp_path):
    url = f"sqlite:///{tmp_path}/keys.db"
    out = run(["-m", "services.auth", "--database-url", url, "keys", "create", "--name", "alice", "--role", "user"])
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    key_id = key.split("_")[1]
    assert KeyStore(url).resolve(key).name == "alice"
    listed = run(["-m", "services.auth", "keys", "list"], GATEWAY_AUTH_DATABASE_URL=url)
    assert key_id in listed.stdout and "alice" in listed.stdout and key not in listed.stdout
    assert run(["-m", "services.auth", "--database-url", url, "keys", "revoke", key_id]).returncode == 0
    assert KeyStore(url).resolve(key) is None
    bad = run(["-m", "services.auth", "--database-url", url, "keys", "revoke", "nope"])
    assert bad.returncode == 1 and "key 'nope' not found" in bad.stderr
    audit = run(["-m", "services.auth", "--database-url", url, "audit"])
    assert "key.create" in audit.stdout and "key.revoke" in audit.stdout and key not in audit.stdout
    bad = run(["-m", "services.auth", "--database-url", url, "keys", "create", "--name", "x", "--role", "root"])
    assert bad.returncode != 0 and "role" in bad.stderr


@pytest.mark.parametrize("service", ["exporter", "trainer", "gateway"])
def test_a_non_loopback_address_without_keys_is_refused_at_start(tmp_path, service):
    prefix = service.upper()
    out = run(["-m", f"services.{service}"], **{f"{prefix}_HOST": "0.0.0.0", f"{prefix}_PORT": "0",
                                                 f"{prefix}_AUTH_DATABASE_URL": f"sqlite:///{tmp_path}/none.db",
                                                 f"{prefix}_DATABASE_URL": f"sqlite:///{tmp_path}/db.db",
                                                 "EXPORTER_LOAD_SAMPLES": "false",
                                                 "TRAINER_JOBS_DIR": str(tmp_path / "jobs")})
    assert out.returncode != 0
    assert "refusing to listen on '0.0.0.0' without API keys" in out.stderr, out.stderr[-2000:]
    assert f"{prefix}_AUTH_DATABASE_URL" in out.stderr and f"{prefix}_API_TOKEN" in out.stderr


def test_admin_rest_api_creates_a_key_shown_once_and_audits_key_changes(gateway, world):
    admin = world.headers("admin")
    r = gateway.post("/api/admin/keys", headers=admin, json={"name": "carol", "role": "viewer"})
    assert r.status_code == 201, r.text
    key, key_id = r.json()["key"], r.json()["id"]
    assert gateway.get("/api/auth/me", headers={"Authorization": f"Bearer {key}"}).json() == \
        {"name": "carol", "role": "viewer", "auth": True}
    listed = gateway.get("/api/admin/keys", headers=admin)
    assert key_id in listed.text and key not in listed.text
    r = gateway.post("/api/admin/keys", headers=admin, json={"name": "", "role": "boss"})
    assert r.status_code == 422 and {e["field"] for e in r.json()["errors"]} == {"name", "role"}
    assert gateway.delete(f"/api/admin/keys/{key_id}", headers=admin).json()["active"] is False
    assert gateway.get("/api/auth/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert gateway.delete("/api/admin/keys/000000000000", headers=admin).status_code == 404
    entries = gateway.get("/api/admin/audit", headers=admin, params={"limit": 1000}).json()["entries"]
    mine = [(e["actor"], e["action"], e["target"]) for e in entries]
    assert ("root", "key.create", key_id) in mine and ("root", "key.revoke", key_id) in mine
    assert ("alice", "job.create", world.job_id) in mine and ("alice", "job.cancel", world.job_id) in mine
    assert key not in str(entries)


def test_the_trainers_worker_credential_reads_exports(world):
    key = service_credential(world.url, "trainer-worker")
    assert key and KeyStore(world.url).resolve(key).role == "viewer"
    with grpc.insecure_channel(world.backends.exporter.address) as channel:
        stub = exporter_pb2_grpc.ExporterServiceStub(channel)
        got = list(stub.ExportSFT(exporter_pb2.ExportSFTRequest(limit=1),
                                  metadata=(("authorization", f"Bearer {key}"),)))
        assert got
        with pytest.raises(grpc.RpcError) as exc:
            stub.WriteExport(exporter_pb2.WriteExportRequest(), metadata=(("authorization", f"Bearer {key}"),))
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_secrets_and_server_paths_stay_out_of_answers_and_logs(gateway, world, caplog):
    caplog.set_level(logging.DEBUG)
    marker = "agk_abcdefabcdef_S3CRETMARKER"
    bodies = []
    for path in ("/api/training/jobs", f"/api/training/jobs/{world.job_id}", "/api/training/stats", "/v1/models"):
        r = gateway.get(path, headers={"Authorization": f"Bearer {marker}"})
        assert r.status_code == 401
        bodies.append(r.text)
    with grpc.insecure_channel(world.backends.trainer.address) as channel:
        from aragora.training.v1 import trainer_pb2, trainer_pb2_grpc

        with pytest.raises(grpc.RpcError) as exc:
            trainer_pb2_grpc.TrainerServiceStub(channel).ListJobs(
                trainer_pb2.ListJobsRequest(), metadata=(("authorization", f"Bearer {marker}"),))
        bodies.append(exc.value.details())
    for caller in ("user", "viewer", "admin"):
        r = gateway.get(f"/api/training/jobs/{world.job_id}/events", headers=world.headers(caller))
        bodies.append(r.text)
        r = gateway.get("/api/training/stats", headers=world.headers(caller))
        stats = r.json()
        bodies.append(r.text)
        artifacts = gateway.get(f"/api/training/jobs/{world.job_id}/artifacts", headers=world.headers(caller)).json()
        if caller != "admin":
            tmp = str(world.backends.tmp_path)
            assert tmp not in r.text and tmp not in str(artifacts), (caller, stats, artifacts)
            assert not stats["export_directory"].startswith("/")
    text = "\n".join(bodies) + caplog.text
    assert "S3CRETMARKER" not in text
    for key in world.keys.values():
        if key:
            assert key not in text and key.split("_", 2)[2] not in text


def test_the_watch_cli_sends_a_key_from_its_environment(world):
    args = ["-m", "services.trainer", "watch", world.job_id, "--address", world.backends.trainer.address]
    ok = run(args, TRAINER_API_TOKEN=world.keys["user"])
    assert ok.returncode == 1, ok.stdout + ok.stderr  # the watch's exit status for a cancelled job
    assert f"{world.job_id}: cancelled" in ok.stdout + ok.stderr
    hidden = run(args, TRAINER_API_TOKEN=world.keys["stranger"])
    assert hidden.returncode != 0 and "not found" in (hidden.stdout + hidden.stderr)
