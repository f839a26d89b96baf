"""The training spec (defaults, aliases, refusals naming the field) and the base-model catalogue."""

from __future__ import annotations

import json
import os
from typing import get_args

import pytest

from services.common.errors import InvalidArgument
from services.trainer.models import DEFAULT_MODEL_ID, list_models, resolve_model
from services.trainer.spec import TrainingSpec, resolve_dataset_path, validate_spec


class Model:
    id = "test/model"
    max_seq_length = 4096


def violations(raw, data_root, model=Model()):
    with pytest.raises(InvalidArgument) as exc:
        validate_spec(raw, model, data_root)
    return {v.field: v.reason for v in exc.value.violations}


# The standard controls and validation: defaults equal the behaviour before they existed.
CONTROL_DEFAULTS = {
    "gradient_accumulation_steps": 1, "lr_scheduler_type": "linear", "warmup_ratio": 0.0, "warmup_steps": 0,
    "weight_decay": 0.0, "max_grad_norm": 1.0, "validation_split": 0.0, "eval_every_steps": None,
    "early_stopping_patience": None, "early_stopping_min_delta": 0.0, "save_total_limit": None,
}


def test_defaults_are_the_documented_ones(tmp_path):
    spec = validate_spec({}, Model(), tmp_path)
    assert spec.model_dump() == {
        "lora_r": 8, "lora_alpha": 16.0, "lora_dropout": 0.05, "num_epochs": 3, "batch_size": 4,
        "learning_rate": 2e-4, "max_seq_length": 2048, "quantization": "4bit", "gradient_checkpointing": True,
        "dataset_path": None, "method": "sft", "beta": 0.1, "min_confidence": 0.7, "min_confidence_diff": 0.0,
        "target_modules": ["q_proj", "v_proj"], "max_steps": None, "seed": 42, "checkpoint_every_steps": None,
        **CONTROL_DEFAULTS,
        "init_from_job": None, "init_from_checkpoint": None, "num_workers": 1,
    }
    # The stored dump reads back as the same spec (what the worker does with job.json).
    assert TrainingSpec.model_validate(json.loads(json.dumps(spec.model_dump()))) == spec


def test_camel_case_aliases_and_ints_for_floats(tmp_path):
    spec = validate_spec({"loraR": 16, "loraAlpha": 32, "loraDropout": 0, "numEpochs": 1, "batchSize": 2,
                          "learningRate": 0.001, "maxSeqLength": 1024, "gradientCheckpointing": False,
                          "quantization": "none", "target_modules": []}, Model(), tmp_path)
    assert (spec.lora_r, spec.lora_alpha, spec.lora_dropout, spec.num_epochs, spec.batch_size) == (16, 32.0, 0.0, 1, 2)
    assert (spec.learning_rate, spec.max_seq_length, spec.gradient_checkpointing) == (0.001, 1024, False)
    assert spec.target_modules == ["q_proj", "v_proj"]  # an empty repeated field means "unset"


@pytest.mark.parametrize("raw, field, words", [
    ({"lora_r": 0}, "lora_r", "greater than 0"),
    ({"lora_r": "8"}, "lora_r", "valid integer"),
    ({"lora_dropout": 1.0}, "lora_dropout", "less than 1"),
    ({"lora_dropout": -0.1}, "lora_dropout", "greater than or equal to 0"),
    ({"learning_rate": 0}, "learning_rate", "greater than 0"),
    ({"learningRate": -1e-4}, "learning_rate", "greater than 0"),
    ({"quantization": "2bit"}, "quantization", "'2bit' is not one of 4bit, 8bit, none"),
    ({"method": "ppo"}, "method", "not one of sft, dpo, reward"),
    ({"max_seq_length": 8192}, "max_seq_length", "exceeds the limit of test/model (4096 tokens)"),
    ({"num_epochs": 0}, "num_epochs", "greater than 0"),
    ({"batch_size": True}, "batch_size", "valid integer"),
    ({"gradient_checkpointing": "yes"}, "gradient_checkpointing", "valid boolean"),
    ({"min_confidence": 1.5}, "min_confidence", "less than or equal to 1"),
    ({"target_modules": ["q proj"]}, "target_modules", "not a module name"),
    ({"max_steps": 0}, "max_steps", "greater than 0"),
    ({"lora_rank": 8}, "lora_rank", "unknown field"),
    ({"num_workers": 65}, "num_workers", "less than or equal to 64"),
    ({"num_workers": -1}, "num_workers", "greater than or equal to 0"),
    ({"num_workers": 4, "batch_size": 2}, "num_workers", "4 workers exceed batch_size 2"),
])
def test_bad_values_name_the_field(tmp_path, raw, field, words):
    got = violations(raw, tmp_path)
    assert list(got) == [f"training_config.{field}"]
    assert words in got[f"training_config.{field}"]


def test_validation_controls_need_a_validation_split(tmp_path):
    bad = violations({"eval_every_steps": 5, "early_stopping_patience": 2}, tmp_path)
    assert set(bad) == {"training_config.eval_every_steps", "training_config.early_stopping_patience"}
    assert all("validation_split" in reason for reason in bad.values())
    spec = validate_spec({"validationSplit": 0.2, "evalEverySteps": 5, "earlyStoppingPatience": 2,
                          "lrSchedulerType": "cosine"}, Model(), tmp_path)
    assert (spec.eval_every_steps, spec.early_stopping_patience, spec.lr_scheduler_type) == (5, 2, "cosine")
    assert "not one of linear, cosine, constant" in violations({"lr_scheduler_type": "step"}, tmp_path)[
        "training_config.lr_scheduler_type"]


def test_every_bad_field_is_reported_at_once(tmp_path):
    got = violations({"lora_r": -1, "learning_rate": 0, "quantization": "fp8"}, tmp_path)
    assert set(got) == {"training_config.lora_r", "training_config.learning_rate", "training_config.quantization"}


def test_max_seq_length_default_is_capped_at_the_model_limit(tmp_path):
    class Small:
        id, max_seq_length = "test/small", 512

    assert validate_spec({}, Small(), tmp_path).max_seq_length == 512
    assert "exceeds" in violations({"max_seq_length": 2048}, tmp_path, Small())["training_config.max_seq_length"]


def test_dataset_path_is_confined_to_the_data_root(tmp_path):
    root = tmp_path / "data"
    (root / "sets").mkdir(parents=True)
    (root / "sets" / "a.jsonl").write_text("{}\n")
    (tmp_path / "outside.jsonl").write_text("{}\n")
    os.symlink(tmp_path / "outside.jsonl", root / "link.jsonl")
    assert validate_spec({"dataset_path": "sets/a.jsonl"}, Model(), root).dataset_path == "sets/a.jsonl"
    assert validate_spec({"datasetPath": str(root / "sets/a.jsonl")}, Model(), root).dataset_path
    assert validate_spec({"dataset_path": ""}, Model(), root).dataset_path is None
    for path, words in [("../outside.jsonl", "'..'"), ("sets/../../outside.jsonl", "'..'"),
                        (str(tmp_path / "outside.jsonl"), "inside the data root"),
                        ("link.jsonl", "inside the data root"), ("sets/missing.jsonl", "no such file")]:
        assert words in violations({"dataset_path": path}, root)["training_config.dataset_path"], path
    assert resolve_dataset_path("sets/a.jsonl", root) == (root / "sets/a.jsonl").resolve()


def test_catalogue_lists_provisioned_and_unavailable_models(tmp_path, tiny_model):
    models = {m.id: m for m in list_models(tmp_path / "empty")}
    default = models[DEFAULT_MODEL_ID]
    assert default.recommended and not default.available and default.path is None
    assert default.unavailable_reason == ("weights not on this server (no model hub reachable); place them in "
                                          f"{(tmp_path / 'empty').absolute()}/HuggingFaceTB--SmolLM2-135M-Instruct")
    assert {"meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3",
            "Qwen/Qwen2.5-7B-Instruct"} <= set(models)
    assert any("legal" in m.verticals and m.id != DEFAULT_MODEL_ID for m in models.values())
    assert models["meta-llama/Llama-3.1-8B-Instruct"].size == "8B"
    assert default.size == "135M" and default.provider == "HuggingFace"

    # A folder in the models dir is listed (available) even when not in the catalogue.
    local = {m.id: m for m in list_models(tiny_model.parent)}
    tiny = local["test/tiny-llama"]
    assert tiny.available and tiny.path == tiny_model and tiny.max_seq_length == 512
    assert 100_000 < tiny.parameters < 200_000 and "chat" in tiny.capabilities


def test_resolve_model(tmp_path, tiny_model):
    assert resolve_model(tiny_model.parent, "test/tiny-llama").path == tiny_model
    for model_id, words in [("nope/nope", "unknown base model 'nope/nope'"),
                            ("meta-llama/Llama-3.1-8B-Instruct", "is not available: weights not on this server"),
                            ("nlpaueb/legal-bert-base-uncased", "is not available: weights not on this server"),
                            ("meta-llama/Llama-2-7b", "meta-llama/Llama-2-7b-hf is not available")]:
        with pytest.raises(InvalidArgument) as exc:
            resolve_model(tiny_model.parent, model_id)
        assert exc.value.violations[0].field == "base_model"
        assert words in exc.value.violations[0].reason


# --- one source of truth: the proto's TrainingConfig, TrainingSpec, the gateway's models, the JSON Schema ---------

def _field_set(pb_fields, spec_fields):
    missing_in_spec = sorted(set(pb_fields) - set(spec_fields))
    missing_in_proto = sorted(set(spec_fields) - set(pb_fields))
    return missing_in_spec, missing_in_proto


def test_the_proto_and_the_spec_have_the_same_training_parameters():
    """A field added to one and not the other fails here (the trainer would otherwise drop it silently)."""
    from aragora.training.v1 import trainer_pb2 as pb
    from services.common.training_config import enum_names

    fields = {f.name: f for f in pb.TrainingConfig.DESCRIPTOR.fields}
    missing_in_spec, missing_in_proto = _field_set(fields, TrainingSpec.model_fields)
    assert not missing_in_spec, f"TrainingConfig fields with no TrainingSpec entry: {missing_in_spec}"
    assert not missing_in_proto, f"TrainingSpec fields with no TrainingConfig field: {missing_in_proto}"
    for name, field in fields.items():
        info = TrainingSpec.model_fields[name]
        assert info.description and info.title, f"{name}: give it a title (label) and a description (help)"
        if field.enum_type is not None:
            # The spec's choices are the enum's values by plain name (QUANTIZATION_4BIT -> "4bit").
            assert set(get_args(info.annotation)) == set(enum_names(field.enum_type).values()), name
        elif not field.is_repeated:
            # "Unset takes the default" needs presence: `optional` in the proto.
            assert field.has_presence, f"TrainingConfig.{name} must be declared `optional`"


def _non_defaults() -> dict:
    """A value for every parameter that differs from its default and lies in its range."""
    values = {}
    for name, info in TrainingSpec.model_fields.items():
        default = info.get_default(call_default_factory=True)
        choices = get_args(info.annotation)
        if all(isinstance(c, str) for c in choices) and choices:
            values[name] = next(c for c in choices if c != default)
        elif info.annotation is bool:
            values[name] = not default
        elif "list" in str(info.annotation):
            values[name] = ["k_proj"]
        elif "str" in str(info.annotation):
            values[name] = "data.jsonl"
        elif "float" in str(info.annotation):
            values[name] = default / 2 if default else 0.5
        else:
            values[name] = default + 1 if default else 5
    return values


def test_every_parameter_travels_through_protobuf_and_the_gateway(tmp_path):
    """Each spec field, set to a non-default value under its camelCase name, reaches the trainer's config
    (gateway request model -> protobuf -> the trainer's dict -> TrainingSpec) and comes back in the response."""
    from services.common.training_config import config_from_pb, config_to_pb
    from services.common.training_spec import camel_name
    from services.gateway.routers.jobs import TrainingJobCreate, config_public

    values = _non_defaults()
    (tmp_path / "data.jsonl").write_text("{}\n")
    body = TrainingJobCreate.model_validate({"jobName": "j", "trainingConfig": {
        camel_name(k): v for k, v in values.items()}})
    message = body.training_config.to_pb()
    raw = config_from_pb(message)
    assert raw == values
    spec = validate_spec(raw, Model(), tmp_path)
    assert {k: getattr(spec, k) for k in values} == values
    # The stored config back to protobuf and out of the gateway.
    assert config_public(config_to_pb(spec.model_dump())).model_dump() == spec.model_dump()
    assert set(TrainingJobCreate.model_fields["training_config"].annotation.model_fields) == set(values)


def test_the_json_schema_has_every_default_range_and_name():
    from services.common.training_spec import config_json_schema

    schema = config_json_schema()
    props = schema["properties"]
    assert schema["x-order"] == list(props) == list(TrainingSpec.model_fields)
    defaults = {k: p["default"] for k, p in props.items()}
    # The user guide's defaults.
    assert defaults == {
        "lora_r": 8, "lora_alpha": 16.0, "lora_dropout": 0.05, "num_epochs": 3, "batch_size": 4,
        "learning_rate": 2e-4, "max_seq_length": 2048, "quantization": "4bit", "gradient_checkpointing": True,
        "dataset_path": None, "method": "sft", "beta": 0.1, "min_confidence": 0.7, "min_confidence_diff": 0.0,
        "target_modules": ["q_proj", "v_proj"], "max_steps": None, "seed": 42, "checkpoint_every_steps": None,
        **CONTROL_DEFAULTS,
        "init_from_job": None, "init_from_checkpoint": None, "num_workers": 1,
    }
    assert props["lora_dropout"]["minimum"] == 0 and props["lora_dropout"]["exclusiveMaximum"] == 1
    assert props["lora_r"]["exclusiveMinimum"] == 0
    assert props["quantization"]["enum"] == ["4bit", "8bit", "none"]
    assert props["lora_r"]["x-camelCase"] == "loraR" and props["max_seq_length"]["x-camelCase"] == "maxSeqLength"
    assert props["max_steps"]["x-group"] == "advanced" and "x-group" not in props["dataset_path"]
