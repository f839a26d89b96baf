"""Validating a job's ``training_config`` against the one ``TrainingSpec`` (``services/common/training_spec.py``).

``TrainingSpec`` (names, types, defaults, ranges, help) is defined in ``services/common`` because the gateway
builds its models from it too; this module adds what only the trainer knows (the base model's sequence limit,
the data root). ``validate_spec`` is what the trainer calls at create time: every bad value becomes an
``InvalidArgument`` naming ``training_config.<field>``, and the stored config is ``spec.model_dump()`` with every
default filled in. The worker reads that dump back with ``TrainingSpec.model_validate``. No ML library is
imported here (the service imports this module).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import get_args

from pydantic import ValidationError

from services.common.errors import FieldViolation, InvalidArgument
from services.common.training_spec import (  # noqa: F401  (re-exported: the worker and tests import them here)
    CANONICAL,
    DEFAULT_MAX_SEQ_LENGTH,
    DEFAULT_TARGET_MODULES,
    METHODS,
    QUANTIZATIONS,
    TrainingSpec,
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
        raise ValueError("must lie inside the data root (the trainer's TRAINER_DATA_ROOT)")  # no server path
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
    encoder = bool(getattr(model, "encoder_only", False))
    explicit_len = ({"max_seq_length", "maxSeqLength"} & raw.keys())
    if max_len and not explicit_len:
        raw["max_seq_length"] = min(DEFAULT_MAX_SEQ_LENGTH, max_len)
    if encoder:
        raw = _encoder_defaults(raw, model, max_len)
    try:
        spec = TrainingSpec.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None

    violations: list[FieldViolation] = []
    if encoder and spec.method != "reward":
        violations.append(FieldViolation(
            "training_config.method",
            f"base_model {getattr(model, 'id', '')} is an encoder-only model ({getattr(model, 'model_type', '')} "
            f"family): it cannot generate text, so it cannot be trained with {spec.method}; use method reward "
            f"(a reward model scoring answers)"))
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


def _encoder_defaults(raw: dict, model, max_len: int) -> dict:
    """An encoder-only base (BERT family): unset ``method`` is ``reward`` (the only method it trains with, so
    the guide's create example, which names none, is a reward model), unset ``target_modules`` are its own
    attention projections (``query``/``value``), and a ``max_seq_length`` beyond its absolute position limit
    is capped there (an encoder reads at most that many tokens; the guide's example asks 2048 of a 512-token
    BERT)."""
    from services.trainer.models import encoder_target_modules

    raw = dict(raw)
    if not ({"method"} & raw.keys()):
        raw["method"] = "reward"
    modules = [raw.pop(k) for k in ("target_modules", "targetModules") if k in raw]
    raw["target_modules"] = (modules[0] if modules and modules[0] != []
                             else encoder_target_modules(getattr(model, "model_type", "")))
    for key in ("max_seq_length", "maxSeqLength"):
        value = raw.get(key)
        if max_len and isinstance(value, int) and not isinstance(value, bool) and value > max_len:
            raw[key] = max_len
    return raw


def _invalid(exc: ValidationError) -> InvalidArgument:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        # Report the canonical snake_case name whichever alias the client used.
        if loc:
            loc[0] = CANONICAL.get(loc[0], loc[0])
        field = ".".join(["training_config", *loc[:1]])
        msg = err.get("msg", "invalid value")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif err.get("type") == "literal_error" and loc and loc[0] in TrainingSpec.model_fields:
            allowed = get_args(TrainingSpec.model_fields[loc[0]].annotation)
            msg = f"{err.get('input')!r} is not one of {', '.join(allowed)}"
        out.append(FieldViolation(field, msg))
    return InvalidArgument(out)

