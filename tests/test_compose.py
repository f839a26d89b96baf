"""docker-compose.yml (and the GPU override docker-compose.gpu.yml), checked statically (no Docker engine here):
schema-valid; each service's command, ports, volumes and addresses agree with the services' settings; and the
deployment rules: no GPU reserved outside the override, no gRPC port published, no secret written inline (all
from .env, documented in .env.example), the base model provisioned by a one-shot service, the sample debates
and the Ray nodes behind their profiles, mutual TLS between the services with the files `make certs` writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.common.tls import TlsFiles
from services.exporter.config import ExporterSettings
from services.gateway.config import GatewaySettings
from services.trainer.config import TrainerSettings
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
GPU = yaml.safe_load((REPO / "docker-compose.gpu.yml").read_text())
SERVICES = COMPOSE["services"]
SETTINGS = {"exporter": ExporterSettings, "trainer": TrainerSettings, "gateway": GatewaySettings}
PATH_FIELDS = {"exporter": ["export_dir"], "trainer": ["jobs_dir", "models_dir", "data_root"], "gateway": []}
GRPC_PORTS = {"exporter": 50051, "trainer": 50052}
CERT_FILES = {"ca.pem"} | {f"{n}{s}.pem" for n in ("exporter", "trainer", "gateway", "worker") for s in ("", "-key")}
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _env_example() -> dict[str, str]:
    """``.env.example``'s variables (commented-out ones too, with their example value)."""
    out = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


ENV_EXAMPLE = _env_example()
# What a user's .env holds after filling in .env.example: the required values set.
DOTENV = {k: v or f"test-{k.lower()}" for k, v in ENV_EXAMPLE.items() if k != "COMPOSE_PROFILES"}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error} against ``env``."""
    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        got = env.get(name)
        if op in (":-", "-"):
            return got if got or (op == "-" and got is not None) else arg
        if op in (":?", "?") and (got is None or (op == ":?" and not got)):
            raise AssertionError(f"{name} is required: {arg}")
        return got or ""

    return VARIABLE.sub(one, value)


def _variables(node) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_variables(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_variables(v) for v in node)) if node else set()
    return {m.group(1) for m in VARIABLE.finditer(str(node))}


def _settings_from(name: str, monkeypatch) -> object:
    for k, v in SERVICES[name]["environment"].items():
        monkeypatch.setenv(k, interpolate(str(v), DOTENV))
    return SETTINGS[name](_env_file=None)


def _mounts(svc: dict) -> dict[str, str]:
    """{container path: source} of a service's volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}


@pytest.mark.parametrize("file", ["docker-compose.yml", "docker-compose.gpu.yml"])
def test_compose_files_are_valid_against_the_compose_spec(file):
    exe = Path(sys.executable).parent / "check-jsonschema"
    out = subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec", str(REPO / file)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", ["exporter", "trainer", "gateway"])
def test_service_command_ports_and_volumes_match_settings(name, monkeypatch):
    svc = SERVICES[name]
    assert svc["command"] == ["python", "-m", f"services.{name}"]
    settings = _settings_from(name, monkeypatch)
    assert settings.host == "0.0.0.0", "a container must listen on all interfaces"
    if name == "gateway":
        assert svc["ports"] == [f"{settings.port}:{settings.port}"]
    else:
        assert "ports" not in svc, f"{name}'s gRPC port is published to the host"
        assert str(settings.port) in svc["expose"]
    mounts = _mounts(svc)
    for field in PATH_FIELDS[name]:
        path = str(getattr(settings, field))
        assert any(path == m or path.startswith(m + "/") for m in mounts), f"{name}.{field}={path} is not on a volume"
    for source in mounts.values():
        assert source in COMPOSE["volumes"] or source.startswith("./"), source
    assert svc["healthcheck"]["test"], f"{name} has no healthcheck"


def test_addresses_point_at_the_services(monkeypatch):
    exporter = _settings_from("exporter", monkeypatch)
    trainer = _settings_from("trainer", monkeypatch)
    gateway = _settings_from("gateway", monkeypatch)
    assert trainer.exporter_address == f"exporter:{exporter.port}"
    assert gateway.exporter_address == f"exporter:{exporter.port}"
    assert gateway.trainer_address == f"trainer:{trainer.port}"
    for name, port in (("exporter", exporter.port), ("trainer", trainer.port)):
        test = SERVICES[name]["healthcheck"]["test"]
        assert test[-1] == f"127.0.0.1:{port}"
        # The healthcheck speaks the server's mutual TLS with the service's own files.
        assert test[-3:-1] == ["--tls-env", name.upper()]


def test_stores_use_their_own_postgres_databases(monkeypatch):
    exporter = _settings_from("exporter", monkeypatch)
    trainer = _settings_from("trainer", monkeypatch)
    assert exporter.database_url.startswith("postgresql+psycopg://")
    assert exporter.database_url != trainer.database_url
    init = (REPO / "docker" / "postgres-init.sql").read_text()
    urls = [exporter.database_url, trainer.database_url]
    urls += [str(v) for s in SERVICES.values() for k, v in s.get("environment", {}).items()
             if k.endswith("_AUTH_DATABASE_URL")]
    assert len(urls) == 5, "the three services share one API keys store"
    for url in urls:
        assert f"CREATE DATABASE {url.rsplit('/', 1)[1]}" in init


def test_no_service_reserves_a_gpu_outside_the_gpu_override():
    for name, svc in SERVICES.items():
        assert "deploy" not in svc or "devices" not in svc["deploy"].get("resources", {}).get("reservations", {}), \
            f"{name} reserves a device: `docker compose up` fails on a host without the NVIDIA toolkit"
        assert "gpus" not in svc and svc.get("runtime") != "nvidia", name
    for name in ("trainer", "ray-worker"):
        assert name in SERVICES
        devices = GPU["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
        assert GPU["services"][name]["build"]["args"]["TORCH_INDEX_URL"].endswith("/cu128")
    assert set(GPU["services"]) <= set(SERVICES), "the override only adds to services of docker-compose.yml"


def test_only_the_gateways_http_port_is_published():
    published = {name: svc["ports"] for name, svc in SERVICES.items() if svc.get("ports")}
    assert published == {"gateway": ["8080:8080"]}
    for svc in GPU["services"].values():
        assert "ports" not in svc


SECRET = re.compile(r"(TOKEN|PASSWORD|SECRET|_KEY)$")


def test_no_secret_is_written_in_the_compose_file():
    """Every token and password is a ${VARIABLE} from .env; .env.example documents each variable used."""
    for name, svc in SERVICES.items():
        for key, value in svc.get("environment", {}).items():
            value = str(value)
            if SECRET.search(key):
                assert re.fullmatch(VARIABLE.pattern, value), f"{name}: {key} is written inline"
            if "://" in value and "@" in value:  # a URL with credentials: the password is a variable
                password = value.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
                assert re.fullmatch(VARIABLE.pattern, password), f"{name}: {key} holds a password inline"
    used = _variables(COMPOSE)
    assert {"POSTGRES_PASSWORD", "ARAGORA_API_TOKEN"} <= used
    assert used <= set(ENV_EXAMPLE), f"variables not documented in .env.example: {sorted(used - set(ENV_EXAMPLE))}"
    for key in ("POSTGRES_PASSWORD", "ARAGORA_API_TOKEN", "TRAINER_HUB_TOKEN"):
        assert ENV_EXAMPLE[key] == "", f".env.example ships a value for the secret {key}"
    assert ".env" in (REPO / ".gitignore").read_text().split()
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_required_secrets_stop_compose_when_missing():
    """Without .env, compose refuses to start (instead of running with an empty password or no token)."""
    for value in (SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"],
                  SERVICES["gateway"]["environment"]["GATEWAY_API_TOKEN"]):
        with pytest.raises(AssertionError, match="is required"):
            interpolate(value, {})
    tokens = {interpolate(str(SERVICES[n]["environment"][f"{n.upper()}_API_TOKEN"]), DOTENV)
              for n in ("exporter", "trainer", "gateway")}
    assert tokens == {DOTENV["ARAGORA_API_TOKEN"]}, "the three services share one token"


def test_the_base_model_is_provisioned_by_a_one_shot_service(monkeypatch):
    provision = SERVICES["provision"]
    assert provision["command"] == ["python", "-m", "services.trainer", "provision"]
    assert provision["restart"] == "no" and "profiles" not in provision
    trainer = _settings_from("trainer", monkeypatch)
    assert provision["environment"]["TRAINER_MODELS_DIR"] == str(trainer.models_dir)
    assert _mounts(provision)[str(trainer.models_dir)] == _mounts(SERVICES["trainer"])[str(trainer.models_dir)]
    assert SERVICES["trainer"]["depends_on"]["provision"] == {"condition": "service_completed_successfully"}


def test_sample_debates_load_only_with_the_samples_profile(monkeypatch):
    assert _settings_from("exporter", monkeypatch).load_samples is False
    samples = SERVICES["samples"]
    assert samples["profiles"] == ["samples"] and samples["restart"] == "no"
    command = samples["command"]
    assert command[:4] == ["python", "-m", "services.exporter", "import"]
    assert (REPO / command[4]).is_file(), "the image holds services/, so the path is relative to /app"
    assert samples["environment"]["EXPORTER_DATABASE_URL"] == SERVICES["exporter"]["environment"][
        "EXPORTER_DATABASE_URL"]
    for name, svc in SERVICES.items():
        if name != "exporter":
            assert "EXPORTER_LOAD_SAMPLES" not in svc.get("environment", {}), name


def test_ray_nodes_join_with_the_ray_profile(monkeypatch):
    ray = {name for name, svc in SERVICES.items() if "ray" in " ".join(map(str, svc.get("command", [])))}
    assert ray == {"ray-head", "ray-worker"}
    for name in ray:
        assert SERVICES[name]["profiles"] == ["ray"]
        assert SERVICES[name]["command"][:2] == ["ray", "start"]
    head = SERVICES["ray-head"]["command"]
    assert "--head" in head and "--port=6379" in head
    assert "--address=ray-head:6379" in SERVICES["ray-worker"]["command"]
    trainer = SERVICES["trainer"]
    assert trainer["depends_on"]["ray-head"] == {"condition": "service_healthy", "required": False}
    env = trainer["environment"]
    assert env["TRAINER_RAY_ADDRESS"] == "ray-head:6379"
    assert interpolate(env["TRAINER_EXECUTOR"], {}) == "local"
    assert interpolate(env["TRAINER_EXECUTOR"], {"ARAGORA_EXECUTOR": "ray"}) == "ray"
    # A Ray driver needs a node of its own: with the ray executor the trainer's container joins the cluster
    # without CPUs or GPUs (no job lands there), then runs the trainer's command; with local, just the command.
    sh, flag, script, zero = trainer["entrypoint"]
    assert (sh, flag, zero) == ("sh", "-c", "trainer") and trainer["command"] == ["python", "-m", "services.trainer"]
    assert 'if [ "$$TRAINER_EXECUTOR" = ray ]; then' in script and script.rstrip().endswith('exec "$$@"')
    assert 'ray start --address="$$TRAINER_RAY_ADDRESS" --num-cpus=0 --num-gpus=0' in script
    assert SERVICES["ray-head"]["healthcheck"]["test"] == ["CMD", "ray", "health-check", "--address", "127.0.0.1:6379"]
    # Every node mounts the trainer's jobs folder (artifacts), models, datasets and certificates at its paths.
    settings = _settings_from("trainer", monkeypatch)
    mounts = _mounts(trainer)
    for name in ray:
        for path in (settings.jobs_dir, settings.models_dir, settings.data_root, Path(settings.tls_cert_file).parent):
            assert _mounts(SERVICES[name]).get(str(path)) == mounts[str(path)], (name, path)
    assert "cluster" in (REPO / "Dockerfile").read_text().split('-e ".[')[1].split("]")[0], "ray in the image"


@pytest.mark.parametrize("name", ["exporter", "trainer", "gateway"])
def test_services_talk_mutual_tls_with_the_files_make_certs_writes(name, monkeypatch, tmp_path):
    from tests.tls.conftest import dev_certs

    svc = SERVICES[name]
    certs_dir = {v: k for k, v in _mounts(svc).items()}["./var/certs"]
    assert svc["volumes"][-1].endswith(":ro")
    settings = _settings_from(name, monkeypatch)
    tls = TlsFiles.from_settings(settings)
    assert tls.cert_file and tls.key_file and tls.ca_file, f"{name} is not set up for mutual TLS"
    files = [tls.cert_file, tls.key_file, tls.ca_file]
    if name == "trainer":
        worker = settings.worker_tls()
        files += [worker.cert_file, worker.key_file]
        assert Path(worker.cert_file).name == "worker.pem"
    assert {str(Path(f).parent) for f in files} == {certs_dir}
    assert {Path(f).name for f in files} <= CERT_FILES
    assert Path(tls.cert_file).name == f"{name}.pem"
    # The same names, in a folder `make certs` filled: credentials load (server and client side).
    dev_certs.write_dev_certs(tmp_path)
    local = TlsFiles(*(str(tmp_path / Path(f).name) for f in files[:3]))
    local.check()
    assert local.server_credentials() is not None and local.channel_credentials() is not None


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
    assert interpolate(SERVICES["trainer"]["environment"]["TRAINER_HUB_TOKEN"], {}) == ""


def test_the_trainers_entrypoint_joins_ray_only_with_the_ray_executor(tmp_path):
    """The entrypoint script as the container runs it (compose turns $$ into $): local runs the command at once;
    ray runs `ray start` first (a stand-in `ray` on PATH records its arguments) and stops if it fails."""
    _, _, script, zero = SERVICES["trainer"]["entrypoint"]
    script = script.replace("$$", "$")
    fake = tmp_path / "bin" / "ray"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/ray-args\nexit "${{FAKE_RAY_EXIT:-0}}"\n')
    fake.chmod(0o755)
    base = {"PATH": f"{fake.parent}:/usr/bin:/bin", "TRAINER_RAY_ADDRESS": "ray-head:6379"}

    def run(**env):
        return subprocess.run(["sh", "-c", script, zero, "echo", "trainer started"], env={**base, **env},
                              capture_output=True, text=True, timeout=30)

    out = run(TRAINER_EXECUTOR="local")
    assert out.returncode == 0 and out.stdout == "trainer started\n" and not (tmp_path / "ray-args").exists()
    out = run(TRAINER_EXECUTOR="ray")
    assert out.returncode == 0 and out.stdout == "trainer started\n"
    assert (tmp_path / "ray-args").read_text().split() == [
        "start", "--address=ray-head:6379", "--num-cpus=0", "--num-gpus=0", "--disable-usage-stats"]
    out = run(TRAINER_EXECUTOR="ray", FAKE_RAY_EXIT="1")
    assert out.returncode == 1 and "trainer started" not in out.stdout
