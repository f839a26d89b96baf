"""The training spec: one validated model of a job's ``training_config``.

Field names follow PEFT/TRL (``lora_r`` -> ``LoraConfig.r``, ``learning_rate``, ``max_seq_length``...); the
guide's camelCase names (``loraR``, ``numEpochs``...) are accepted as aliases. ``validate_spec`` is what the
trainer calls at create time: every bad value becomes an ``InvalidArgument`` naming ``training_config.<field>``,
and the stored config is ``spec.model_dump()`` with every default filled in. The worker reads that dump back
with ``TrainingSpec.model_validate``. No ML library is imported here (the service imports this module).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.common.errors import FieldViolation, InvalidArgument

DEFAULT_TARGET_MODULES = ["q_proj", "v_proj"]
DEFAULT_MAX_SEQ_LENGTH = 2048
QUANTIZATIONS = ("4bit", "8bit", "none")
METHODS = ("sft", "dpo")


def _alias(snake: str, camel: str | None = None):
    return AliasChoices(snake, camel) if camel else AliasChoices(snake)


class TrainingSpec(BaseModel):
    """A job's training parameters with the user guide's defaults."""

    # strict: "8" is not a rank and true is not 1 (a wrong-typed value is refused, not coerced);
    # forbid: a misspelled field is an error rather than silently ignored.
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, frozen=True)

    lora_r: int = Field(8, gt=0, le=1024, validation_alias=_alias("lora_r", "loraR"),
                        description="LoRA rank (LoraConfig.r)")
    lora_alpha: float = Field(16.0, gt=0, validation_alias=_alias("lora_alpha", "loraAlpha"),
                              description="LoRA scaling factor (LoraConfig.lora_alpha)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, validation_alias=_alias("lora_dropout", "loraDropout"),
                                description="Dropout of the LoRA layers, in [0, 1)")
    num_epochs: int = Field(3, gt=0, le=1000, validation_alias=_alias("num_epochs", "numEpochs"))
    batch_size: int = Field(4, gt=0, le=4096, validation_alias=_alias("batch_size", "batchSize"))
    learning_rate: float = Field(2e-4, gt=0, le=1.0, validation_alias=_alias("learning_rate", "learningRate"))
    max_seq_length: int = Field(DEFAULT_MAX_SEQ_LENGTH, gt=0,
                                validation_alias=_alias("max_seq_length", "maxSeqLength"),
                                description="Longest training sequence in tokens; longer ones are truncated")
    quantization: Literal["4bit", "8bit", "none"] = Field("4bit", validation_alias=_alias("quantization"))
    gradient_checkpointing: bool = Field(True, validation_alias=_alias("gradient_checkpointing",
                                                                       "gradientCheckpointing"))
    dataset_path: str | None = Field(None, validation_alias=_alias("dataset_path", "datasetPath"),
                                     description="A JSONL file inside the data root (relative or absolute)")
    method: Literal["sft", "dpo"] = Field("sft", validation_alias=_alias("method"))
    beta: float = Field(0.1, gt=0, le=100, validation_alias=_alias("beta"))
    min_confidence: float = Field(0.7, ge=0, le=1, validation_alias=_alias("min_confidence", "minConfidence"))
    min_confidence_diff: float = Field(0.0, ge=0, le=1,
                                       validation_alias=_alias("min_confidence_diff", "minConfidenceDiff"))
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES),
                                      validation_alias=_alias("target_modules", "targetModules"))
    max_steps: int | None = Field(None, gt=0, validation_alias=_alias("max_steps", "maxSteps"))
    seed: int = Field(42, ge=0, lt=2**32, validation_alias=_alias("seed"))
    checkpoint_every_steps: int | None = Field(None, gt=0, validation_alias=_alias("checkpoint_every_steps",
                                                                                  "checkpointEverySteps"))

    @field_validator("lora_alpha", "lora_dropout", "learning_rate", "beta", "min_confidence",
                     "min_confidence_diff", mode="before")
    @classmethod
    def _int_is_a_float(cls, v):
        # JSON and protobuf give 16 for 16.0; strict mode would otherwise refuse it. A bool is not a number.
        if isinstance(v, bool):
            raise ValueError("Input should be a valid number")
        return float(v) if isinstance(v, int) else v

    @field_validator("dataset_path", mode="before")
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


def resolve_dataset_path(dataset_path: str, data_root: Path) -> Path:
    """The absolute file a ``dataset_path`` names: relative paths are taken from ``data_root``.

    Raises ``ValueError`` (with the reason) when it contains ``..`` or lies outside ``data_root``.
    """
    if ".." in PurePosixPath(dataset_path.replace("\\", "/")).parts:
        raise ValueError("must not contain '..'")
    root = Path(os.path.realpath(data_root))
    path = Path(dataset_path)
    full = Path(os.path.realpath(path if path.is_absolute() else root / path))
    # realpath also resolves symlinks, so a link inside the root pointing outside it is refused too.
    if full != root and root not in full.parents:
        raise ValueError(f"must lie inside the data root {root}")
    return full


def validate_spec(raw: dict, model, data_root: Path) -> TrainingSpec:
    """Validates the SET fields of a training config for ``model`` (a ``BaseModelInfo``).

    ``raw``: snake_case (or camelCase) keys of the fields that were set. Unset ``max_seq_length`` takes the
    default 2048 capped at the model's limit; an explicit value beyond the limit is refused. Raises
    ``InvalidArgument`` listing every bad field as ``training_config.<field>``.
    """
    if not isinstance(raw, dict):
        raise InvalidArgument("must be an object", field="training_config")
    raw = {k: v for k, v in raw.items() if v is not None or k in ("dataset_path", "datasetPath")}
    max_len = int(getattr(model, "max_seq_length", 0) or 0)
    if max_len and not ({"max_seq_length", "maxSeqLength"} & raw.keys()):
        raw["max_seq_length"] = min(DEFAULT_MAX_SEQ_LENGTH, max_len)
    try:
        spec = TrainingSpec.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None

    violations: list[FieldViolation] = []
    if max_len and spec.max_seq_length > max_len:
        violations.append(FieldViolation(
            "training_config.max_seq_length",
            f"{spec.max_seq_length} exceeds the limit of {getattr(model, 'id', 'the model')} ({max_len} tokens)"))
    if spec.dataset_path is not None:
        try:
            full = resolve_dataset_path(spec.dataset_path, data_root)
        except ValueError as exc:
            violations.append(FieldViolation("training_config.dataset_path", str(exc)))
        else:
            if not full.is_file():
                violations.append(FieldViolation("training_config.dataset_path",
                                                 f"no such file in the data root: {spec.dataset_path}"))
    if violations:
        raise InvalidArgument(violations)
    return spec


def _invalid(exc: ValidationError) -> InvalidArgument:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        # Report the canonical snake_case name whichever alias the client used.
        if loc:
            loc[0] = _CANONICAL.get(loc[0], loc[0])
        field = ".".join(["training_config", *loc[:1]])
        msg = err.get("msg", "invalid value")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif err.get("type") == "literal_error" and loc and loc[0] in ("quantization", "method"):
            allowed = QUANTIZATIONS if loc[0] == "quantization" else METHODS
            msg = f"{err.get('input')!r} is not one of {', '.join(allowed)}"
        out.append(FieldViolation(field, msg))
    return InvalidArgument(out)


_CANONICAL = {
    choice: name
    for name, info in TrainingSpec.model_fields.items()
    for choice in (info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else [])
    if isinstance(choice, str)
}
