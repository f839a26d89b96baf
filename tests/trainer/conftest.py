"""Fixtures of the trainer's tests: real trainer gRPC servers on port 0 over fresh SQLite files, with a model
folder the catalogue lists, a data root holding a small SFT dataset, and (for training tests) the tiny random
Llama built once per session."""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from aragora.training.v1 import trainer_pb2_grpc
from services.trainer import server as trainer_server
from tests.conftest import trainer_settings

TINY = "test/tiny-llama"
DATASET = "sft/train.jsonl"

# Tiny sizes so a training job takes seconds on a CPU.
FAST = dict(num_epochs=1, max_steps=6, batch_size=2, max_seq_length=128, quantization=pb.QUANTIZATION_NONE,
            lora_r=4, lora_alpha=8, learning_rate=5e-3, gradient_checkpointing=False, dataset_path=DATASET,
            checkpoint_every_steps=3)
# A job that keeps training until it is stopped (cancel / kill tests).
LONG = dict(FAST, num_epochs=1000, max_steps=100_000, checkpoint_every_steps=2)

_WORDS = "the court ruled that the contract clause was void because the party lacked notice of the risk".split()


def sft_records(n: int = 12) -> list[dict]:
    out = []
    for i in range(n):
        words = [_WORDS[(i * 7 + k) % len(_WORDS)] for k in range(10)]
        out.append({
            "instruction": "Answer the debate question with the consensus view.",
            "input": f"Question {i}: should the {words[1]} {words[2]} the {words[4]}?",
            "output": " ".join(words).capitalize() + ".",
            "metadata": {"debate_id": f"debate-{i // 2}", "consensus_confidence": 0.9, "rounds": 3,
                         "vertical": "legal"},
        })
    return out


def write_dataset(data_root: Path, name: str = DATASET, n: int = 12) -> Path:
    path = data_root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in sft_records(n)), encoding="utf-8")
    return path


def fake_model_folder(models_dir: Path, model_id: str = TINY, max_len: int = 512) -> Path:
    """A model folder the catalogue lists (config.json only): enough for every test that does not train."""
    folder = models_dir / model_id.replace("/", "--")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": max_len, "model_type": "llama"}))
    return folder


@asynccontextmanager
async def running_trainer(tmp_path: Path, models_dir: Path | None = None, **settings):
    """A real trainer server on a free port (its settings under ``tmp_path``), a stub, and the server."""
    if models_dir is None:
        models_dir = tmp_path / "models"
        fake_model_folder(models_dir)
    settings.setdefault("data_root", tmp_path / "data")
    write_dataset(Path(settings["data_root"]))
    s = trainer_settings(tmp_path, models_dir=models_dir, **settings)
    running = await trainer_server.start(s, port=0)
    channel = grpc.aio.insecure_channel(running.address)
    try:
        yield trainer_pb2_grpc.TrainerServiceStub(channel), running
    finally:
        await channel.close()
        await running.stop(0.5)


@pytest.fixture
async def trainer_stub(tmp_path):
    """A trainer (no real model: nothing here trains) and its stub."""
    async with running_trainer(tmp_path) as (stub, running):
        yield stub, running


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """A models folder holding the tiny random Llama (built once per session)."""
    from tests.support.tiny_model import build_tiny_model

    models_dir = tmp_path_factory.mktemp("tiny-models")
    build_tiny_model(models_dir, TINY)
    return models_dir


def create_request(name: str, **config) -> pb.CreateJobRequest:
    return pb.CreateJobRequest(name=name, vertical="legal", base_model=TINY,
                               training_config=pb.TrainingConfig(**config))


async def watch_all(stub, job_id: str, after: int = 0, until=None) -> tuple[pb.Job, list[pb.JobEvent]]:
    """The snapshot and every event of one WatchJob stream (until it ends, or ``until(event)`` is true)."""
    snapshot, events = None, []
    call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=after))
    async for item in call:
        if item.WhichOneof("item") == "snapshot":
            assert snapshot is None and not events, "the snapshot must come first, once"
            snapshot = item.snapshot
        else:
            events.append(item.event)
            if until is not None and until(item.event):
                call.cancel()
                break
    return snapshot, events


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its status says it is gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def parse_sse(text: str) -> list[dict]:
    """SSE frames as dicts: id (int or None), event, data (parsed JSON)."""
    out = []
    for frame in text.split("\n\n"):
        fields = {"id": None, "event": "message", "data": ""}
        lines = [ln for ln in frame.splitlines() if ln and not ln.startswith(":")]
        if not lines or all(ln.startswith("retry:") for ln in lines):
            continue
        for ln in lines:
            key, _, value = ln.partition(": ")
            if key == "id":
                fields["id"] = int(value)
            elif key in ("event", "data"):
                fields[key] = value
        fields["data"] = json.loads(fields["data"]) if fields["data"] else None
        out.append(fields)
    return out
