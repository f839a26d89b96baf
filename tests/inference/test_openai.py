"""The official ``openai`` client against the gateway's /v1 surface: a real HTTP server (uvicorn on a free
port) in front of a real trainer answering with the tiny model and a trained adapter."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
import uvicorn

from aragora.training.v1 import inference_pb2 as ipb
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from tests.inference.conftest import TINY, chat, generate
from tests.support.net import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def base_url(served):
    port = free_port()
    app = create_app(GatewaySettings(exporter_address="127.0.0.1:1", trainer_address=served["running"].address))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    await served["api"].post(f"/api/training/jobs/{served['job'].id}/deploy", json={"name": "legal-openai"})
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    await task


@pytest.fixture
def client(base_url):
    return openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0)


async def test_models_lists_bases_and_deployments(client, served):
    ids = [m.id async for m in client.models.list()]
    assert TINY in ids and "legal-openai" in ids
    model = await client.models.retrieve("legal-openai")
    assert model.id == "legal-openai" and model.owned_by == "aragora"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("no-such-model")


async def test_chat_completion_non_stream(client, served):
    resp = await client.chat.completions.create(
        model="legal-openai", messages=[{"role": "user", "content": "Should the court rule?"}], max_tokens=8,
        temperature=0)
    choice = resp.choices[0]
    assert resp.object == "chat.completion" and resp.model == "legal-openai" and resp.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert resp.usage.completion_tokens <= 8
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    _, text, _ = await generate(served["infer"], served["job"].id, messages=chat("Should the court rule?"),
                                sampling=ipb.SamplingParams(max_new_tokens=8, temperature=0.0))
    assert choice.message.content == text


async def test_chat_completion_stream(client, served):
    stream = await client.chat.completions.create(
        model=served["job"].id, messages=[{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": [{"type": "text", "text": "Is it void?"}]}],
        max_tokens=10, temperature=0.7, seed=4, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and finishes[0] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 10
    again = await client.chat.completions.create(
        model=served["job"].id, messages=[{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Is it void?"}],
        max_tokens=10, temperature=0.7, seed=4)
    assert again.choices[0].message.content == text  # same seed, same answer, streamed or not


async def test_errors_in_openai_shape(client, served, base_url):
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=100_000)
    assert err.value.body["param"] == "max_tokens" and "max_tokens" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "hi"}], temperature=9)
    assert err.value.body["param"] == "temperature"
    with pytest.raises(openai.ConflictError):
        await client.chat.completions.create(model=served["queued"].id, messages=[{"role": "user", "content": "hi"}])
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{base_url}/chat/completions", content=b"{not json")
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}


async def test_a_client_that_goes_away_stops_the_generation(client, served):
    from tests.support.wait import until as wait_for

    engine = served["running"].inference.engine
    stream = await client.chat.completions.create(
        model=TINY, messages=[{"role": "user", "content": "Tell me everything."}], max_tokens=400, temperature=1.0,
        seed=11, stream=True)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()
    await wait_for(lambda: engine.running == 0, timeout=30, what="the generation to stop")
    reason, tokens = engine.finished[-1]
    assert reason == "cancelled" and tokens < 400
