"""The trainer <-> worker contract (``services/trainer/protocol.py``) from both ends: what the service writes as
``job.json`` is what the worker reads, and each stdout line the worker can write is read back as written; a
line the protocol does not define cannot be written, and a bad value never breaks the reader."""

from __future__ import annotations

import io
import json
import math

import pytest

from services.trainer import protocol
from services.trainer.artifacts import JobLayout
from services.trainer.orm import Job
from services.trainer.supervisor import job_file
from services.trainer.worker.events import EventSink
from services.trainer.worker.job import JobConfig, WorkerError
from tests.conftest import trainer_settings
from tests.trainer.conftest import TINY, fake_model_folder


def test_the_job_file_the_service_writes_is_the_one_the_worker_reads(tmp_path):
    settings = trainer_settings(tmp_path, exporter_retry_seconds=7.5, checkpoint_every_steps=9)
    model_dir = fake_model_folder(settings.models_dir)
    job = Job(id="job-1", name="n", vertical="legal", base_model=TINY,
              training_config={"lora_r": 4, "num_epochs": 2, "checkpoint_every_steps": None})
    layout = JobLayout(tmp_path / "jobs" / job.id)
    layout.root.mkdir(parents=True)
    job_file(job, settings, model_dir, resume=True).write(layout.job_file)
    assert not list(layout.root.glob(".*.tmp"))
    config = JobConfig.load(layout.root)
    assert (config.job_id, config.vertical, config.base_model, config.resume) == ("job-1", "legal", TINY, True)
    assert config.exporter_retry_seconds == 7.5 and config.checkpoint_every_steps == 9
    assert config.spec.lora_r == 4 and config.spec.num_epochs == 2
    assert config.data_root == settings.data_root.absolute() and config.model_path == model_dir.absolute()
    assert config.checkpoints_dir == layout.checkpoints_dir and config.adapter_dir == layout.adapter_dir
    assert config.data_dir == layout.data_dir
    # The token never travels in the file (it is a downloadable artifact).
    assert "token" not in layout.job_file.read_text()


def test_a_job_file_without_a_model_is_refused_naming_it(tmp_path):
    layout = JobLayout(tmp_path)
    protocol.JobFile(job_id="j", base_model="x/y").write(layout.job_file)
    with pytest.raises(WorkerError, match="no model_path .*'x/y'"):
        JobConfig.load(tmp_path)
    layout.job_file.write_text("[1]")
    with pytest.raises(WorkerError, match="job file unreadable"):
        JobConfig.load(tmp_path)


def sent(**kwargs) -> dict:
    out = io.StringIO()
    EventSink(out).emit(**kwargs)
    return json.loads(out.getvalue())


def test_each_line_the_worker_writes_reads_back_as_written():
    line = sent(type="step", message="m", epoch=0.5, step=3, total_steps=6, loss=1.25, learning_rate=1e-3,
                examples_seen=6, tokens_per_second=10.0, progress=0.5, extra={"accuracy": 1.0})
    parsed = protocol.parse_line(json.dumps(line).encode())
    assert parsed == protocol.StepLine(message="m", epoch=0.5, step=3, total_steps=6, loss=1.25, learning_rate=1e-3,
                                       examples_seen=6, tokens_per_second=10.0, progress=0.5, extra={"accuracy": 1.0})
    for kind, fields in (("checkpoint", {"path": "checkpoints/checkpoint-3", "step": 3}),
                         ("eval", {"phase": "base", "done": 1, "total": 2, "metrics": {"x": 0.5}}),
                         ("data", {"training_examples": 4, "training_debates": 2, "total_steps": 8}),
                         ("result", {"final_loss": 0.5, "metrics_path": JobLayout.METRICS_FILE}),
                         ("status", {"status": "training"}), ("warning", {}), ("error", {}), ("log", {})):
        parsed = protocol.parse_line(json.dumps(sent(type=kind, message="m", **fields)).encode())
        assert parsed == protocol.LINE_TYPES[kind](message="m", **fields)


def test_a_line_the_protocol_does_not_define_cannot_be_written():
    with pytest.raises(TypeError, match="no field"):
        sent(type="step", step=1, grad_norm=2.0)
    with pytest.raises(TypeError, match="unknown worker line type 'progress'"):
        sent(type="progress")


def test_non_finite_numbers_go_out_as_null_and_bad_values_read_as_defaults():
    assert sent(type="step", loss=math.nan, step=1)["loss"] is None
    parsed = protocol.parse_line(b'{"type": "step", "step": "x", "total_steps": 4, "loss": "nan", "progress": 7}')
    assert parsed.step == 0 and parsed.loss is None and parsed.progress == 1.0
    assert protocol.parse_line(b"not json from a library") == "not json from a library"
    assert protocol.parse_line(b'{"type": "unheard-of"}') == '{"type": "unheard-of"}'
    assert protocol.parse_line(b"  \n") is None


def test_the_checkpoint_name_is_written_once():
    assert JobLayout.checkpoint_name(12) == "checkpoint-12" and JobLayout.checkpoint_step("checkpoint-12") == 12
    assert JobLayout.checkpoint_step(".checkpoint-12.tmp") is None and JobLayout.checkpoint_step("checkpoint-x") is None
