"""The product as `make up` runs it: three separate processes under the launcher, reached over HTTP, stopped
with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.support.net import free_port


@pytest.fixture
def launched(tmp_path):
    ports = {"EXPORTER_PORT": free_port(), "TRAINER_PORT": free_port(), "GATEWAY_PORT": free_port()}
    env = dict(
        os.environ,
        **{k: str(v) for k, v in ports.items()},
        TRAINER_EXPORTER_ADDRESS=f"127.0.0.1:{ports['EXPORTER_PORT']}",
        GATEWAY_EXPORTER_ADDRESS=f"127.0.0.1:{ports['EXPORTER_PORT']}",
        GATEWAY_TRAINER_ADDRESS=f"127.0.0.1:{ports['TRAINER_PORT']}",
        EXPORTER_DATABASE_URL=f"sqlite:///{tmp_path}/exporter.db",
        EXPORTER_EXPORT_DIR=str(tmp_path / "exports"),
        TRAINER_DATABASE_URL=f"sqlite:///{tmp_path}/trainer.db",
        TRAINER_JOBS_DIR=str(tmp_path / "jobs"),
        TRAINER_MODELS_DIR=str(tmp_path / "models"),
        TRAINER_DATA_ROOT=str(tmp_path / "data"),
    )
    log = open(tmp_path / "launcher.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "services.launcher"], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("services did not become healthy:\n" + (tmp_path / "launcher.log").read_text())
        time.sleep(0.3)
    yield proc, base, tmp_path / "launcher.log"
    if proc.poll() is None:
        proc.kill()
        for child in psutil.Process(proc.pid).children(recursive=True) if psutil.pid_exists(proc.pid) else []:
            child.kill()


def test_three_processes_serve_and_stop_on_sigterm(launched):
    proc, base, logfile = launched
    children = psutil.Process(proc.pid).children()
    cmdlines = sorted(" ".join(c.cmdline()[-2:]) for c in children)
    assert cmdlines == ["-m services.exporter", "-m services.gateway", "-m services.trainer"]

    r = httpx.get(f"{base}/api/training/formats", timeout=10)
    assert r.status_code == 200 and "sft" in r.json()["formats"]
    r = httpx.get(f"{base}/api/training/jobs", timeout=10)
    assert r.status_code == 200 and isinstance(r.json()["jobs"], list)
    health = httpx.get(f"{base}/healthz", timeout=10).json()
    assert health["services"] == {"gateway": "SERVING", "exporter": "SERVING", "trainer": "SERVING"}

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
    log = logfile.read_text()
    # Logs are interleaved and labelled by service.
    for name in ("exporter", "trainer", "gateway"):
        assert f"{name} | " in log
    assert "all stopped: exporter=0, trainer=0, gateway=0" in log


def test_stop_order_is_gateway_then_trainer_then_exporter(launched):
    """The gateway stops first (no new requests), then the trainer (checkpoints its jobs), the exporter last (the
    trainer's workers may still read from it): each only after the one before it has exited."""
    proc, _, logfile = launched
    by_name = {c.cmdline()[-1].split(".")[-1]: c for c in psutil.Process(proc.pid).children()}
    assert sorted(by_name) == ["exporter", "gateway", "trainer"]
    order = ["gateway", "trainer", "exporter"]

    def gone(c: psutil.Process) -> bool:
        try:
            return not c.is_running() or c.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    proc.send_signal(signal.SIGTERM)
    while proc.poll() is None:
        dead = [name for name in order if gone(by_name[name])]
        # Whenever a service is gone, every one before it in the order is gone too.
        assert dead == order[: len(dead)], f"{dead} stopped before {order[: len(dead)]}"
        time.sleep(0.005)
    assert proc.wait(60) == 0
    lines = [ln for ln in logfile.read_text().splitlines() if ln.startswith("launcher | ") and "stopped (" in ln]
    assert lines == [f"launcher | {name} stopped (0)" for name in order]


def test_one_service_failing_stops_the_others(tmp_path):
    port = free_port()
    env = dict(os.environ, EXPORTER_PORT="not-a-port", GATEWAY_PORT=str(port), TRAINER_PORT=str(free_port()),
               TRAINER_DATABASE_URL=f"sqlite:///{tmp_path}/t.db", EXPORTER_DATABASE_URL=f"sqlite:///{tmp_path}/e.db")
    out = subprocess.run([sys.executable, "-m", "services.launcher"], cwd=tmp_path, env=env, capture_output=True,
                         timeout=120)
    assert out.returncode == 1
    text = out.stdout.decode()
    assert "exporter exited with code" in text and "stopping the others" in text
    assert "port" in text.lower()
