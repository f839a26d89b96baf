"""The dashboard's REST for generation and deployments, through the gateway's app and real gRPC."""

from __future__ import annotations

import pytest

from aragora.training.v1 import inference_pb2 as ipb
from tests.inference.conftest import TINY, chat, generate
from tests.trainer.conftest import parse_sse, running_trainer

pytestmark = pytest.mark.slow


async def test_generate_streams_sse(served):
    api, job = served["api"], served["job"]
    r = await api.post("/api/training/generate", json={"model": job.id, "prompt": "Should the court rule?",
                                                      "max_new_tokens": 8, "temperature": 0})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(r.text)
    kinds = [f["event"] for f in frames]
    assert kinds[0] == "started" and kinds[-1] == "finished" and set(kinds[1:-1]) <= {"delta"}
    assert frames[0]["data"]["job_id"] == job.id and frames[0]["data"]["prompt_tokens"] > 0
    done = frames[-1]["data"]
    assert done["text"] == "".join(f["data"]["text"] for f in frames if f["event"] == "delta")
    assert done["finish_reason"] in ("stop", "length") and done["completion_tokens"] <= 8
    # The same answer as over gRPC.
    _, text, _ = await generate(served["infer"], job.id, messages=chat("Should the court rule?"),
                                sampling=ipb.SamplingParams(max_new_tokens=8, temperature=0.0))
    assert text == done["text"]


async def test_generate_errors_before_the_stream(served):
    api, queued = served["api"], served["queued"]
    r = await api.post("/api/training/generate", json={"model": "nope/nope", "prompt": "hi"})
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    r = await api.post("/api/training/generate", json={"model": queued.id, "prompt": "hi"})
    assert r.status_code == 409 and "queued" in r.json()["detail"]
    r = await api.post("/api/training/generate", json={"model": TINY, "prompt": "hi", "max_new_tokens": 99999})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "max_new_tokens"
    r = await api.post("/api/training/generate", json={"model": TINY, "prompt": "hi", "temperature": 5})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "temperature"
    r = await api.post("/api/training/generate", json={"model": TINY})
    assert r.status_code == 422 and "prompt" in r.json()["detail"]
    r = await api.post("/api/training/generate", json={"model": TINY, "prompt": "the court " * 400})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "messages"


async def test_compare_runs_base_and_adapter_with_the_same_seed(served):
    api, job = served["api"], served["job"]
    body = {"prompt": "Is the clause void?", "max_new_tokens": 10, "temperature": 0.8, "seed": 5}
    r = await api.post(f"/api/training/jobs/{job.id}/compare", json=body)
    assert r.status_code == 200, r.text
    frames = parse_sse(r.text)
    assert frames[-1]["event"] == "end" and frames[-1]["data"]["seed"] == 5
    by_side = {side: [f for f in frames if f["data"].get("side") == side] for side in ("base", "adapter")}
    for fs in by_side.values():
        assert fs[0]["event"] == "started" and fs[-1]["event"] == "finished" and fs[0]["data"]["seed"] == 5
    assert by_side["adapter"][0]["data"]["job_id"] == job.id and by_side["base"][0]["data"]["job_id"] is None
    # Each side is what that model alone gives with that seed.
    sampling = ipb.SamplingParams(max_new_tokens=10, temperature=0.8, seed=5)
    _, base, _ = await generate(served["infer"], TINY, messages=chat("Is the clause void?"), sampling=sampling)
    _, adapted, _ = await generate(served["infer"], job.id, messages=chat("Is the clause void?"), sampling=sampling)
    assert by_side["base"][-1]["data"]["text"] == base and by_side["adapter"][-1]["data"]["text"] == adapted
    r = await api.post(f"/api/training/jobs/{served['queued'].id}/compare", json=body)
    assert r.status_code == 409


async def test_deploy_list_undeploy_and_a_restart_keeps_them(served, tiny_models_dir):
    api, job, queued = served["api"], served["job"], served["queued"]
    r = await api.post(f"/api/training/jobs/{job.id}/deploy", json={"name": "legal-v1"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "legal-v1" and r.json()["job_id"] == job.id and r.json()["base_model"] == TINY
    assert (await api.post(f"/api/training/jobs/{job.id}/deploy", json={"name": "legal-v1"})).status_code == 409
    assert (await api.post(f"/api/training/jobs/{job.id}/deploy", json={"name": TINY})).status_code == 409
    r = await api.post(f"/api/training/jobs/{job.id}/deploy", json={"name": "bad name!"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "name"
    r = await api.post(f"/api/training/jobs/{queued.id}/deploy", json={"name": "q"})
    assert r.status_code == 409 and "queued" in r.json()["detail"]
    assert (await api.post("/api/training/jobs/job-nope/deploy")).status_code == 404
    r = await api.post(f"/api/training/jobs/{job.id}/deploy")  # no body: the job's name
    assert r.status_code == 201 and r.json()["name"] == job.name
    names = [d["name"] for d in (await api.get("/api/training/deployments")).json()["deployments"]]
    assert names == sorted(["legal-v1", job.name])

    # The deployment answers under its name, like the job id.
    started, text, _ = await generate(served["infer"], "legal-v1")
    _, same, _ = await generate(served["infer"], job.id)
    assert started.job_id == job.id and text == same

    # Another trainer process on the same database (a restart) serves the same deployments.
    async with running_trainer(served["tmp"], models_dir=tiny_models_dir) as (_stub, again):
        import grpc

        from aragora.training.v1 import inference_pb2_grpc

        async with grpc.aio.insecure_channel(again.address) as channel:
            listed = await inference_pb2_grpc.InferenceServiceStub(channel).ListDeployments(
                ipb.ListDeploymentsRequest())
            assert sorted(d.name for d in listed.deployments) == sorted(["legal-v1", job.name])

    r = await api.delete(f"/api/training/jobs/{job.id}/deploy", params={"name": job.name})
    assert r.status_code == 200 and [d["name"] for d in r.json()["deployments"]] == [job.name]
    assert (await api.delete(f"/api/training/jobs/{job.id}/deploy", params={"name": job.name})).status_code == 404
    names = [d["name"] for d in (await api.get("/api/training/deployments")).json()["deployments"]]
    assert names == ["legal-v1"]


async def test_v1_needs_the_api_token_when_one_is_set(served):
    from tests.conftest import gateway_client

    async with gateway_client("127.0.0.1:1", served["running"].address, api_token="s3cret") as api:
        r = await api.get("/v1/models")
        assert r.status_code == 401
        r = await api.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and TINY in [m["id"] for m in r.json()["data"]]
        r = await api.post("/api/training/generate", json={"model": TINY, "prompt": "hi"})
        assert r.status_code == 401
