"""Fixtures of the model hub tests: the tiny random Llama served by a loopback hub (tests/hub/fakehub.py) as
``org/tiny-llama`` (with a duplicate ``pytorch_model.bin`` and an ``original/`` folder a download must skip),
a gated copy, and an encoder-only model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.hub.fakehub import FakeHub

MODEL = "org/tiny-llama"
GATED = "org/gated-llama"
ENCODER = "org/tiny-bert"
TOKEN = "hf_test_secret_token_123"


@pytest.fixture(scope="session")
def hub_repos(tmp_path_factory) -> dict[str, Path]:
    from tests.support.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("hub-repos")
    tiny = build_tiny_model(root / "built", "org/tiny-llama")
    repo = root / "tiny"
    shutil.copytree(tiny, repo)
    weights = next(repo.glob("*.safetensors")).read_bytes()
    (repo / "pytorch_model.bin").write_bytes(weights)  # a duplicate format: never downloaded
    (repo / "original").mkdir()
    (repo / "original" / "consolidated.pth").write_bytes(weights)
    (repo / "README.md").write_text("# tiny\n")
    bert = root / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    (bert / "model.safetensors").write_bytes(weights[:1000])
    return {"tiny": repo, "bert": bert}


@pytest.fixture
def fake_hub(hub_repos):
    hub = FakeHub()
    hub.add(MODEL, hub_repos["tiny"])
    hub.add(GATED, hub_repos["tiny"], gated_token=TOKEN)
    hub.add(ENCODER, hub_repos["bert"], info_config=False)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
