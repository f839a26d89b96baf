"""The guide's create example (``base_model: nlpaueb/legal-bert-base-uncased``) through the real TrainerService:
accepted where its folder is present, as a reward model (the only method an encoder trains with); ``sft`` and
``dpo`` on it refused with INVALID_ARGUMENT naming ``training_config.method`` and the reason."""

from __future__ import annotations

import json

import grpc
import pytest

from aragora.training.v1 import trainer_pb2 as pb
from services.common.training_config import config_to_pb
from tests.trainer.conftest import fake_model_folder, running_trainer
from tests.trainer.test_api import _refused, violations

LEGAL_BERT = "nlpaueb/legal-bert-base-uncased"
GUIDE = {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "num_epochs": 3, "batch_size": 4,
         "learning_rate": 0.0002, "max_seq_length": 2048, "quantization": "4bit", "gradient_checkpointing": True}


@pytest.fixture
async def stub(tmp_path):
    models = tmp_path / "models"
    fake_model_folder(models)
    folder = models / LEGAL_BERT.replace("/", "--")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "max_position_embeddings": 512,
                                                    "architectures": ["BertForMaskedLM"]}))
    async with running_trainer(tmp_path, models_dir=models) as (stub, _):
        yield stub


async def test_the_guides_example_is_accepted_as_a_reward_model(stub):
    job = (await stub.CreateJob(pb.CreateJobRequest(name="legal_specialist_v1", vertical="legal",
                                                    base_model=LEGAL_BERT, training_config=config_to_pb(GUIDE)))).job
    c = job.training_config
    assert job.base_model == LEGAL_BERT and c.method == pb.TRAINING_METHOD_REWARD
    assert c.max_seq_length == 512 and list(c.target_modules) == ["query", "value"]
    assert c.quantization == pb.QUANTIZATION_4BIT and c.lora_r == 8


@pytest.mark.parametrize("method", ["sft", "dpo"])
async def test_an_encoder_is_refused_for_sft_and_dpo(stub, method):
    err = await _refused(stub, pb.CreateJobRequest(name="x", vertical="legal", base_model="legal-bert",
                                                   training_config=config_to_pb({**GUIDE, "method": method})))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason = violations(err)["training_config.method"]
    assert f"base_model {LEGAL_BERT} is an encoder-only model" in reason and f"trained with {method}" in reason
    assert (await stub.ListJobs(pb.ListJobsRequest())).jobs == []  # nothing half-written
