"""The protobuf ``TrainingConfig`` message <-> a plain dict of training parameters, field list from the descriptor.

Used at the two edges that see the message: the trainer's servicer (``services/trainer/convert.py``) and the
gateway's job routes. No field is named here: a scalar field with presence (``optional``) is set when the
client set it, an enum field when it is not ``*_UNSPECIFIED``, a repeated field when it is not empty. An enum
value's plain name is its protobuf name without the enum's prefix, lower-cased (``QUANTIZATION_4BIT`` ->
``"4bit"``, ``TRAINING_METHOD_DPO`` -> ``"dpo"``), which is what ``TrainingSpec``'s ``Literal`` choices are.
``tests/trainer_worker/test_spec_models.py`` checks that the message and ``TrainingSpec`` have the same fields and
choices, so a parameter added to both travels end to end with no other edit.
"""

from __future__ import annotations

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor

from aragora.training.v1 import trainer_pb2 as pb
from services.common.errors import InvalidArgument

FIELDS: tuple[FieldDescriptor, ...] = tuple(pb.TrainingConfig.DESCRIPTOR.fields)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def enum_names(enum: EnumDescriptor) -> dict[int, str]:
    """An enum's values (UNSPECIFIED left out) by number -> plain name."""
    unspecified = next(v.name for v in enum.values if v.number == 0)
    prefix = unspecified[: -len("UNSPECIFIED")]
    return {v.number: v.name[len(prefix):].lower() for v in enum.values if v.number != 0}


def _enum_values(enum: EnumDescriptor) -> dict[str, int]:
    return {name: number for number, name in enum_names(enum).items()}


def config_from_pb(config: pb.TrainingConfig, *, strict: bool = True) -> dict:
    """The fields that are SET, snake_case, enum values by plain name (unset ones absent).

    ``strict``: an enum number this code does not know is an ``InvalidArgument`` naming
    ``training_config.<field>`` (a client's request); otherwise it is left out (a message to display).
    """
    raw: dict = {}
    for field in FIELDS:
        value = getattr(config, field.name)
        if _is_repeated(field):
            if value:
                raw[field.name] = list(value)
        elif field.enum_type is not None:
            if field.has_presence and not config.HasField(field.name):
                continue
            if not field.has_presence and value == 0:
                continue
            names = enum_names(field.enum_type)
            if value in names:
                raw[field.name] = names[value]
            elif strict:
                readable = field.enum_type.name[0] + "".join(
                    f" {c.lower()}" if c.isupper() else c for c in field.enum_type.name[1:])
                raise InvalidArgument(f"unknown {readable.lower()} {value}", field=f"training_config.{field.name}")
        elif config.HasField(field.name):
            raw[field.name] = value
    return raw


def config_to_pb(values: dict) -> pb.TrainingConfig:
    """A ``TrainingConfig`` with every parameter of ``values`` that is not None (unknown keys are ignored)."""
    out = pb.TrainingConfig()
    for field in FIELDS:
        value = values.get(field.name)
        if value is None:
            continue
        if _is_repeated(field):
            getattr(out, field.name).extend(value)
        elif field.enum_type is not None:
            number = _enum_values(field.enum_type).get(value)
            if number is not None:
                setattr(out, field.name, number)
        else:
            setattr(out, field.name, value)
    return out
