"""The training spec: the one definition of a job's training parameters (names, types, defaults, ranges, help).

Every other description of a training parameter is derived from ``TrainingSpec``:

- the trainer validates a job's ``training_config`` with it (``services/trainer/spec.py``) and the worker reads
  the stored dump back with it;
- the gateway builds its request and response models from it (``services/gateway/routers/jobs.py``) and serves
  its JSON Schema at ``GET /api/training/config-schema`` (``config_json_schema``);
- the dashboard's New Job form is built from that JSON Schema (``web/src/api/trainingConfig.schema.json``,
  written by scripts/build_dashboard.sh);
- the protobuf ``TrainingConfig`` message must have exactly these fields (``tests/trainer_worker/test_spec_models.py``
  fails otherwise), and both edges convert it with ``services/common/training_config.py``, which reads the field
  list from the message descriptor.

It lives in ``services/common`` because both the trainer and the gateway import it and the gateway is stateless
and must not depend on the trainer's package. No ML library and no protobuf is imported here.

Field names follow PEFT/TRL (``lora_r`` -> ``LoraConfig.r``, ``learning_rate``, ``max_seq_length``...); each
is also accepted under its camelCase name (``loraR``, ``numEpochs``...), the user guide's. A field's ``title``
is the form's label, its ``description`` the help text; ``json_schema_extra={"x-group": "advanced"}`` puts it
under the form's "Advanced" section (the others are the guide's parameter table, in this order).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, AliasGenerator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

DEFAULT_TARGET_MODULES = ["q_proj", "v_proj"]
DEFAULT_MAX_SEQ_LENGTH = 2048
QUANTIZATIONS = ("4bit", "8bit", "none")
METHODS = ("sft", "dpo", "reward")
LR_SCHEDULERS = ("linear", "cosine", "constant")
MAX_NUM_WORKERS = 64
"""The most data-parallel worker processes one job may ask for (``num_workers``)."""

ADVANCED = {"x-group": "advanced"}


def camel_name(name: str) -> str:
    """The camelCase name a parameter is also accepted under (``lora_r`` -> ``loraR``)."""
    return to_camel(name)


def aliases(name: str) -> AliasChoices:
    """Every name a parameter is accepted under: snake_case first, then camelCase (when it differs)."""
    camel = camel_name(name)
    return AliasChoices(name, camel) if camel != name else AliasChoices(name)


class TrainingSpec(BaseModel):
    """A job's training parameters with the user guide's defaults."""

    # strict: "8" is not a rank and true is not 1 (a wrong-typed value is refused, not coerced);
    # forbid: a misspelled field is an error rather than silently ignored.
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, frozen=True,
                              alias_generator=AliasGenerator(validation_alias=aliases))

    lora_r: int = Field(8, gt=0, le=1024, title="LoRA rank",
                        description="LoRA rank, LoraConfig.r (higher = more parameters)")
    lora_alpha: float = Field(16.0, gt=0, title="LoRA alpha", description="LoRA scaling factor")
    lora_dropout: float = Field(0.05, ge=0, lt=1, title="LoRA dropout", description="Dropout for regularization")
    num_epochs: int = Field(3, gt=0, le=1000, title="Epochs", description="Training epochs")
    batch_size: int = Field(4, gt=0, le=4096, title="Batch size", description="Training batch size")
    learning_rate: float = Field(2e-4, gt=0, le=1.0, title="Learning rate", description="Learning rate")
    max_seq_length: int = Field(DEFAULT_MAX_SEQ_LENGTH, gt=0, title="Max sequence length",
                                description="Maximum sequence length in tokens (capped at the base model's limit); "
                                            "longer examples are truncated")
    quantization: Literal["4bit", "8bit", "none"] = Field(
        "4bit", title="Quantization", description="Quantization level of the base model (4bit, 8bit, none)")
    gradient_checkpointing: bool = Field(True, title="Gradient checkpointing",
                                         description="Enable gradient checkpointing (saves memory)")
    dataset_path: str | None = Field(None, title="Dataset path",
                                     description="Custom dataset: a JSONL file inside the trainer's data root "
                                                 "(relative or absolute); empty uses the exporter's debates")
    method: Literal["sft", "dpo", "reward"] = Field(
        "sft", title="Method", json_schema_extra=ADVANCED,
        description="sft: learn the consensus answers; dpo: prefer the winning answer over a losing one; "
                    "reward: a reward model scoring answers (Bradley-Terry on the preference pairs; the default "
                    "and only method for an encoder-only base such as BERT)")
    beta: float = Field(0.1, gt=0, le=100, title="DPO beta", json_schema_extra=ADVANCED,
                        description="DPO temperature (DPO only)")
    min_confidence: float = Field(0.7, ge=0, le=1, title="Min. consensus confidence", json_schema_extra=ADVANCED,
                                  description="SFT data: keep debates whose consensus confidence is at least this")
    min_confidence_diff: float = Field(0.0, ge=0, le=1, title="Min. confidence difference",
                                       json_schema_extra=ADVANCED,
                                       description="DPO data: keep pairs whose confidence difference is at least this")
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES), title="Target modules",
                                      json_schema_extra=ADVANCED,
                                      description="Modules LoRA adapts (the attention projections by default)")
    max_steps: int | None = Field(None, gt=0, title="Max steps", json_schema_extra=ADVANCED,
                                  description="Stop after this many optimizer steps; empty trains every epoch in full")
    seed: int = Field(42, ge=0, lt=2**32, title="Seed", json_schema_extra=ADVANCED,
                      description="Random seed (same seed, same data: same run)")
    checkpoint_every_steps: int | None = Field(None, gt=0, title="Checkpoint every", json_schema_extra=ADVANCED,
                                               description="Optimizer steps between checkpoints; empty uses the "
                                                           "trainer's setting")
    gradient_accumulation_steps: int = Field(
        1, gt=0, le=1024, title="Gradient accumulation", json_schema_extra=ADVANCED,
        description="Batches whose gradients are summed before each optimizer step; the effective batch is "
                    "batch size x this")
    lr_scheduler_type: Literal["linear", "cosine", "constant"] = Field(
        "linear", title="LR scheduler", json_schema_extra=ADVANCED,
        description="Learning-rate schedule after warmup: linear (decay to 0), cosine (half a cosine to 0) "
                    "or constant")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, title="Warmup ratio", json_schema_extra=ADVANCED,
                                description="Share of the optimizer steps spent raising the learning rate "
                                            "from 0 (warmup steps win when set)")
    warmup_steps: int = Field(0, ge=0, le=1_000_000, title="Warmup steps", json_schema_extra=ADVANCED,
                              description="Optimizer steps spent raising the learning rate from 0; 0 uses "
                                          "the warmup ratio")
    weight_decay: float = Field(0.0, ge=0, le=10, title="Weight decay", json_schema_extra=ADVANCED,
                                description="AdamW (decoupled) weight decay of the LoRA weights")
    max_grad_norm: float = Field(1.0, ge=0, le=1e6, title="Max gradient norm", json_schema_extra=ADVANCED,
                                 description="Clip the gradient's global L2 norm to this; 0: no clipping")
    validation_split: float = Field(0.0, ge=0, le=0.5, title="Validation split", json_schema_extra=ADVANCED,
                                    description="Share of the training debates held out to measure the "
                                                "validation loss during training; 0: no validation")
    eval_every_steps: int | None = Field(None, gt=0, title="Validate every", json_schema_extra=ADVANCED,
                                         description="Optimizer steps between validations (needs a validation "
                                                     "split); empty: at each epoch end only")
    early_stopping_patience: int | None = Field(
        None, gt=0, le=10_000, title="Early stopping patience", json_schema_extra=ADVANCED,
        description="Stop after this many validations without improvement (needs a validation split); "
                    "empty: never stop early")
    early_stopping_min_delta: float = Field(
        0.0, ge=0, title="Early stopping min. delta", json_schema_extra=ADVANCED,
        description="The least drop of the validation loss that counts as an improvement")
    save_total_limit: int | None = Field(None, gt=0, le=100_000, title="Checkpoints kept",
                                         json_schema_extra=ADVANCED,
                                         description="Keep only the newest this many checkpoints (plus the best "
                                                     "by validation loss); empty: keep all")
    init_from_job: str | None = Field(None, min_length=1, max_length=200, title="Warm start from job",
                                      json_schema_extra=ADVANCED,
                                      description="Start from the LoRA weights of this earlier job (its adapter; "
                                                  "it must have completed) instead of a fresh adapter; same base "
                                                  "model, LoRA rank and target modules")
    init_from_checkpoint: int | None = Field(None, gt=0, title="Warm start checkpoint", json_schema_extra=ADVANCED,
                                             description="With a warm start: the step of the earlier job's "
                                                         "checkpoint to start from (checkpoint-<step>) instead of "
                                                         "its final adapter")
    num_workers: int = Field(1, ge=0, le=MAX_NUM_WORKERS, title="Workers (data-parallel)",
                             json_schema_extra=ADVANCED,
                             description="Processes the job trains on in parallel, each with a share of every "
                                         "batch (one per GPU on a GPU machine); at most batch size; 0 or 1: one "
                                         "process. The optimisation is the same as one process's")

    @field_validator("*", mode="before")
    @classmethod
    def _int_is_a_float(cls, v, info: ValidationInfo):
        # Every float field: JSON and protobuf give 16 for 16.0, taken as 16.0. A bool is not a number.
        if cls.model_fields[info.field_name].annotation in (float, float | None):
            if isinstance(v, bool):
                raise ValueError("Input should be a valid number")
            return float(v) if isinstance(v, int) else v
        return v

    @field_validator("eval_every_steps", "early_stopping_patience")
    @classmethod
    def _needs_validation(cls, v, info: ValidationInfo):
        # validation_split is validated before these (field order); absent from info.data when it was invalid.
        if v is not None and info.data.get("validation_split", 1.0) <= 0:
            raise ValueError("needs a validation set: set validation_split > 0 (e.g. 0.1)")
        return v

    @field_validator("num_workers")
    @classmethod
    def _workers_share_a_batch(cls, v: int, info: ValidationInfo):
        # batch_size is validated before this field; absent from info.data when it was invalid.
        batch = info.data.get("batch_size")
        if batch is not None and v > batch:
            raise ValueError(f"{v} workers exceed batch_size {batch}: each worker takes a share of every batch, "
                             f"so at most batch_size workers (raise batch_size or lower num_workers)")
        return v

    @property
    def world_size(self) -> int:
        """The number of training processes (``num_workers``, 0 counting as 1)."""
        return max(1, self.num_workers)

    @field_validator("dataset_path", "init_from_job", mode="before")
    @classmethod
    def _empty_path_is_none(cls, v):
        return None if v == "" else v

    @field_validator("target_modules", mode="before")
    @classmethod
    def _empty_modules_is_default(cls, v):
        # A protobuf repeated field cannot say "unset": an empty list means the default.
        return list(DEFAULT_TARGET_MODULES) if v is None or v == [] else v

    @field_validator("target_modules")
    @classmethod
    def _module_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name or not all(c.isalnum() or c in "_." for c in name):
                raise ValueError(f"{name!r} is not a module name (letters, digits, '_' and '.')")
        if len(set(v)) != len(v):
            raise ValueError("module names must not repeat")
        return v

    def to_lora_config(self):
        """The peft ``LoraConfig`` of this spec (peft is imported here, lazily)."""
        from peft import LoraConfig, TaskType

        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=list(self.target_modules),
            bias="none",
        )


# Every name a parameter goes by (snake_case and camelCase) -> its snake_case name.
CANONICAL: dict[str, str] = {
    choice: name
    for name, info in TrainingSpec.model_fields.items()
    for choice in (info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else [name])
    if isinstance(choice, str)
}


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of a job's ``training_config`` (``GET /api/training/config-schema``).

    Each property carries its ``default``, its range (``minimum`` / ``exclusiveMinimum`` / ``maximum`` /
    ``exclusiveMaximum``), ``enum`` for a choice, ``title`` (label) and ``description`` (help), plus
    ``x-camelCase`` (the other name it is accepted under) and ``x-group`` (``"advanced"`` for the parameters
    beyond the guide's table). ``x-order`` lists the properties in the spec's order.
    """
    schema = TrainingSpec.model_json_schema(mode="validation")
    schema["title"] = "TrainingConfig"
    for name, prop in schema["properties"].items():
        # A default_factory's value is a default too (pydantic leaves it out of the schema).
        prop.setdefault("default", TrainingSpec.model_fields[name].get_default(call_default_factory=True))
        prop["x-camelCase"] = camel_name(name)
    schema["x-order"] = list(TrainingSpec.model_fields)
    return schema
