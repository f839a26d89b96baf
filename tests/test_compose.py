"""docker-compose.yml, checked statically (no Docker engine here): schema-valid, and each service's command,
ports, volumes and addresses agree with the services' settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.exporter.config import ExporterSettings
from services.gateway.config import GatewaySettings
from services.trainer.config import TrainerSettings
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SETTINGS = {"exporter": ExporterSettings, "trainer": TrainerSettings, "gateway": GatewaySettings}
PATH_FIELDS = {"exporter": ["export_dir"], "trainer": ["jobs_dir", "models_dir", "data_root"], "gateway": []}


def test_compose_file_is_valid_against_the_compose_spec():
    exe = Path(sys.executable).parent / "check-jsonschema"
    out = subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec", str(REPO / "docker-compose.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _settings_from(name: str, monkeypatch) -> object:
    env = COMPOSE["services"][name]["environment"]
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))
    return SETTINGS[name](_env_file=None)


@pytest.mark.parametrize("name", ["exporter", "trainer", "gateway"])
def test_service_command_ports_and_volumes_match_settings(name, monkeypatch):
    svc = COMPOSE["services"][name]
    assert svc["command"] == ["python", "-m", f"services.{name}"]
    settings = _settings_from(name, monkeypatch)
    assert settings.host == "0.0.0.0", "a container must listen on all interfaces"
    assert f"{settings.port}:{settings.port}" in svc["ports"]
    mounts = {v.split(":")[1] for v in svc.get("volumes", [])}
    for field in PATH_FIELDS[name]:
        path = str(getattr(settings, field))
        assert any(path == m or path.startswith(m + "/") for m in mounts), f"{name}.{field}={path} is not on a volume"
    for named in (v.split(":")[0] for v in svc.get("volumes", [])):
        assert named in COMPOSE["volumes"]
    assert svc["healthcheck"]["test"], f"{name} has no healthcheck"


def test_addresses_point_at_the_services(monkeypatch):
    exporter = _settings_from("exporter", monkeypatch)
    trainer = _settings_from("trainer", monkeypatch)
    gateway = _settings_from("gateway", monkeypatch)
    assert trainer.exporter_address == f"exporter:{exporter.port}"
    assert gateway.exporter_address == f"exporter:{exporter.port}"
    assert gateway.trainer_address == f"trainer:{trainer.port}"
    for name, port in (("exporter", exporter.port), ("trainer", trainer.port)):
        assert COMPOSE["services"][name]["healthcheck"]["test"][-1] == f"127.0.0.1:{port}"


def test_stores_use_their_own_postgres_databases(monkeypatch):
    exporter = _settings_from("exporter", monkeypatch)
    trainer = _settings_from("trainer", monkeypatch)
    assert exporter.database_url.startswith("postgresql+psycopg://")
    assert exporter.database_url != trainer.database_url
    init = (REPO / "docker" / "postgres-init.sql").read_text()
    for url in (exporter.database_url, trainer.database_url):
        assert f"CREATE DATABASE {url.rsplit('/', 1)[1]}" in init


def test_trainer_can_use_an_nvidia_gpu():
    devices = COMPOSE["services"]["trainer"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_dockerfile_installs_torch_pinned_before_the_rest():
    text = (REPO / "Dockerfile").read_text()
    first = text.index('pip install "torch==${TORCH_VERSION}"')
    rest = text.index("pip install -c requirements.txt")
    assert first < rest
    # The rest keeps that torch: the same pin, so pip cannot swap the build.
    assert '"torch==${TORCH_VERSION}"' in text[rest:].splitlines()[0]


def test_the_compose_trainer_downloads_base_models_from_the_hub(monkeypatch):
    """Hub access is on in the compose deployment (off by default elsewhere) and needs no token to start."""
    assert TrainerSettings.model_fields["hub_enabled"].default is False
    trainer = _settings_from("trainer", monkeypatch)
    assert trainer.hub_enabled is True and trainer.hub_endpoint.startswith("https://")
    assert "TRAINER_HUB_TOKEN" not in COMPOSE["services"]["trainer"]["environment"], "a secret in the compose file"
