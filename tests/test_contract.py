"""The contract: generated/ matches protos/, and every RPC, message, field and enum value is documented."""

from __future__ import annotations

import filecmp
import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parent.parent
PROTOS = sorted(str(p.relative_to(REPO / "protos")) for p in (REPO / "protos").rglob("*.proto"))


def _protoc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", ".", *args, *PROTOS], cwd=REPO / "protos",
                   check=True)


def test_generated_is_not_stale(tmp_path):
    _protoc(f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}")
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*.py*"))
    assert fresh, "protoc generated nothing"
    committed = sorted(p.relative_to(REPO / "generated") for p in (REPO / "generated").rglob("*_pb2*.py*"))
    assert fresh == committed, "generated/ has other files than protos/ generates: run `make protos`"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, REPO / "generated" / p, shallow=False)]
    assert not stale, f"generated/ is stale for {stale}: run `make protos`"


def _module(proto: str, suffix: str = "_pb2"):
    """The generated module of one proto file (``aragora/training/v1/trainer.proto`` -> ``...trainer_pb2``)."""
    return importlib.import_module(proto.removesuffix(".proto").replace("/", ".") + suffix)


@pytest.mark.parametrize("proto", PROTOS)
def test_imports_follow_the_proto_package(proto):
    """Each proto file's messages and its service stubs import by the proto's package name."""
    messages = _module(proto)
    assert messages.DESCRIPTOR.name == proto
    assert messages.DESCRIPTOR.package == str(Path(proto).parent).replace("/", ".")
    if messages.DESCRIPTOR.services_by_name:
        assert _module(proto, "_pb2_grpc")


def _documented_paths(fds: descriptor_pb2.FileDescriptorSet) -> tuple[list[str], set[tuple]]:
    """Every element that must carry a comment, and the source paths that do."""
    need, have = [], set()
    for f in fds.file:
        for loc in f.source_code_info.location:
            if loc.leading_comments.strip() or loc.trailing_comments.strip():
                have.add((f.name, tuple(loc.path)))
        for si, svc in enumerate(f.service):
            need.append((f.name, (6, si), f"service {svc.name}"))
            for mi, m in enumerate(svc.method):
                need.append((f.name, (6, si, 2, mi), f"rpc {svc.name}.{m.name}"))
        for mi, msg in enumerate(f.message_type):
            need.append((f.name, (4, mi), f"message {msg.name}"))
            for fi, fld in enumerate(msg.field):
                need.append((f.name, (4, mi, 2, fi), f"field {msg.name}.{fld.name}"))
        for ei, enum in enumerate(f.enum_type):
            need.append((f.name, (5, ei), f"enum {enum.name}"))
            for vi, v in enumerate(enum.value):
                need.append((f.name, (5, ei, 2, vi), f"enum value {v.name}"))
    return need, have


def test_every_rpc_field_and_enum_value_is_documented(tmp_path):
    out = tmp_path / "set.pb"
    _protoc("--include_source_info", f"--descriptor_set_out={out}")
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    need, have = _documented_paths(fds)
    missing = [label for (fname, path, label) in need if (fname, path) not in have]
    # Fields of a oneof are documented like any other; the oneof's own name is not an element here.
    assert not missing, f"undocumented in protos/: {missing}"


def _enums(messages):
    yield from messages.enum_types
    for msg in messages.nested_types:
        yield from _enums(msg)


@pytest.mark.parametrize("proto", PROTOS)
def test_enums_have_a_zero_unspecified_value(proto):
    """Every enum of this proto file (top-level and nested in messages) starts with ``<NAME>_UNSPECIFIED = 0``."""
    file = _module(proto).DESCRIPTOR
    enums = [*file.enum_types_by_name.values()]
    for msg in file.message_types_by_name.values():
        enums += _enums(msg)
    for enum in enums:
        zero = enum.values_by_number[0]
        assert zero.name.endswith("_UNSPECIFIED"), f"{proto}: {enum.full_name} starts with {zero.name}"


def test_one_request_response_pair_per_rpc():
    from aragora.training.v1 import exporter_pb2, trainer_pb2

    for mod in (exporter_pb2, trainer_pb2):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            inputs = [m.input_type.name for m in svc.methods]
            outputs = [m.output_type.name for m in svc.methods]
            assert len(set(inputs)) == len(inputs) and len(set(outputs)) == len(outputs)
            for m in svc.methods:
                assert m.input_type.name == f"{m.name}Request", m.full_name
                assert m.output_type.name == f"{m.name}Response", m.full_name


def test_training_config_unset_is_distinguishable_from_zero():
    from aragora.training.v1 import trainer_pb2

    cfg = trainer_pb2.TrainingConfig()
    for name in ("lora_r", "lora_alpha", "lora_dropout", "num_epochs", "batch_size", "learning_rate",
                 "max_seq_length", "gradient_checkpointing", "dataset_path"):
        assert not cfg.HasField(name), name
    cfg.lora_dropout = 0.0
    assert cfg.HasField("lora_dropout")


BUF_VERSION = re.search(r"^BUF_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)


def _buf(*args: str) -> subprocess.CompletedProcess:
    """buf (buf.yaml at the repository root), fetched from npm by npx on first use and cached."""
    if shutil.which("npx") is None:
        pytest.skip("npx (Node.js and npm) is not installed: buf comes from npm (apt-get install npm)")
    return subprocess.run(["npx", "--yes", f"@bufbuild/buf@{BUF_VERSION}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_protos_pass_buf_lint_standard():
    out = _buf("lint")
    assert out.returncode == 0, out.stdout + out.stderr


def test_protos_make_no_breaking_change_against_the_released_contract():
    """protos/released.binpb is the contract as last released (`make release-contract` records it); a change
    that breaks wire, JSON or generated-code compatibility with it fails here."""
    out = _buf("breaking", "--against", "protos/released.binpb")
    assert out.returncode == 0, out.stdout + out.stderr
