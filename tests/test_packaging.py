"""The repository as a package and a document: `pip install .` declares what the services import, pinned as the
lock; every entry point answers --help without starting anything; the README's settings table names every
setting; no code or doc points at a tracker number."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>~!; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_name(name)] = version
    return pins


def _declared(*extras: str) -> list[str]:
    return [*PROJECT["dependencies"], *(r for e in extras for r in PROJECT["optional-dependencies"][e])]


def test_every_declared_dependency_is_pinned_as_in_the_lock():
    """requirements.txt is the lock `make` installs; torch is installed first, by the Makefile and the Dockerfile,
    at the one version pyproject.toml declares."""
    lock = _lock()
    assert "torch" not in lock, "torch is installed on its own first (the CPU build), not from requirements.txt"
    torch = re.search(r"^TORCH_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert re.search(rf"^ARG TORCH_VERSION={re.escape(torch)}$", (REPO / "Dockerfile").read_text(), re.M)
    lock["torch"] = torch
    wrong = []
    for req in _declared(*PROJECT["optional-dependencies"]):
        version = req.split("==", 1)[1] if "==" in req else None
        if lock.get(_name(req)) != version:
            wrong.append(f"{req} (requirements.txt: {lock.get(_name(req))})")
    assert not wrong, f"pyproject.toml and requirements.txt disagree: {wrong}"


def _third_party_imports(root: Path) -> dict[str, str]:
    """Top-level module name -> one file importing it, for every import under ``root`` outside the stdlib and
    the repository's own packages."""
    own = {"services", "aragora", "scripts", "tests"}
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in own and top != "__future__":
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_what_the_services_import_is_a_runtime_dependency():
    """`pip install .[gpu,cluster]` is enough to run every module under services/ (no test or benchmark package)."""
    declared = {_name(r) for r in _declared("gpu", "cluster")}
    dists = importlib.metadata.packages_distributions()
    missing = []
    for module, where in _third_party_imports(REPO / "services").items():
        owners = {_name(d) for d in dists.get(module, [])}
        if not owners & declared:
            missing.append(f"{module} ({where}; from {sorted(owners) or 'no installed distribution'})")
    assert not missing, f"imported by services/ but not in [project.dependencies]: {missing}"


ENTRY_POINTS = ["services.gateway", "services.exporter", "services.trainer", "services.launcher",
                "services.trainer.worker"]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_entry_point_answers_help_without_starting_anything(module, tmp_path):
    """Run from an empty folder: --help prints the usage and exits 0 without binding a port or creating var/."""
    out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'generated'}"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:"), out.stdout
    assert f"python -m {module}" in out.stdout
    assert list(tmp_path.iterdir()) == [], "--help created files"


@pytest.mark.parametrize("script", sorted(PROJECT["scripts"]))
def test_console_scripts_point_at_mains_that_take_help(script, capsys):
    module, _, attr = PROJECT["scripts"][script].partition(":")
    main = getattr(importlib.import_module(module), attr)
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


def _settings_fields() -> list[str]:
    """Every environment variable of every pydantic settings class under services/ (found in the source: the
    ``env_prefix`` of its model_config and its annotated fields)."""
    names = []
    for path in sorted((REPO / "services").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            prefix, fields = None, []
            for stmt in cls.body:
                if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "model_config" for t in stmt.targets):
                    for kw in getattr(stmt.value, "keywords", []):
                        if kw.arg == "env_prefix" and isinstance(kw.value, ast.Constant):
                            prefix = kw.value.value
                elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    if stmt.target.id != "model_config" and not stmt.target.id.startswith("_"):
                        fields.append(stmt.target.id)
            if prefix:
                names += [f"{prefix}{f.upper()}" for f in fields]
    return names


def test_the_readme_settings_table_lists_every_setting():
    names = _settings_fields()
    assert {"EXPORTER_PORT", "TRAINER_MODELS_DIR", "GATEWAY_API_TOKEN"} <= set(names), "settings scan broke"
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Ports and settings"):]
    table = table[: table.index("\n## ", 1)]
    missing = sorted({n for n in names if f"`{n}`" not in table})
    assert not missing, f"settings missing from the README's 'Ports and settings' table: {missing}"


TRACKER = re.compile(r"\b(issues?|tickets?)\s*#?\d+\b|\(#\d+\)", re.IGNORECASE)


def test_no_code_or_doc_points_at_a_tracker_number():
    """A reader of the repository has no access to the tracker: say what the thing is instead."""
    files = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.ts", "*.tsx", "*.proto", "*.sh", "Makefile"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    hits = []
    for name in files:
        if "node_modules" in name or name.startswith(("generated/", "services/gateway/static/")):
            continue
        path = REPO / name
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if TRACKER.search(line):
                hits.append(f"{name}:{n}: {line.strip()[:100]}")
    assert not hits, "tracker numbers in the repository:\n" + "\n".join(hits)


def test_the_runtime_image_installs_no_test_or_benchmark_package():
    """The Dockerfile installs pyproject's runtime dependencies (with the `gpu` and `cluster` extras), the lock only as
    constraints: none of the dev or bench extras' packages."""
    installs = [ln for ln in (REPO / "Dockerfile").read_text().splitlines() if "pip install" in ln]
    assert installs
    text = " ".join(installs)
    assert " -r " not in text, "the image must not install the whole lock (test and benchmark tools)"
    assert ".[gpu,cluster]" in text  # cluster: Ray, for docker-compose.yml's ray profile
    runtime = {_name(r) for r in _declared("gpu")} | {_name(r) for r in PROJECT["optional-dependencies"]["cluster"]}
    for extra in ("dev", "bench"):
        for req in PROJECT["optional-dependencies"][extra]:
            if _name(req) not in runtime:
                assert _name(req) not in text.lower(), f"{req} ({extra}) in the runtime image"


def test_the_wheel_holds_the_services_their_data_and_the_console_scripts(tmp_path):
    """What `pip install .` installs: the services with their data files (sample debates, catalogue,
    migrations, the dashboard bundle), the generated proto package, the console scripts; no tests."""
    import shutil
    import zipfile

    # Built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("services", "generated"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, timeout=300, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {n.split("/")[0] for n in names if not n.endswith(".dist-info") and ".dist-info/" not in n} == \
        {"services", "aragora"}
    for data in ("services/exporter/samples/debates.jsonl", "services/trainer/catalogue.json",
                 "services/exporter/migrations/env.py", "aragora/training/v1/trainer_pb2.py",
                 "services/gateway/static/dashboard/index.html"):
        assert data in names, data
    for script, target in PROJECT["scripts"].items():
        assert f"{script} = {target}" in entry_points
    requires = [ln for ln in metadata.splitlines() if ln.startswith("Requires-Dist:")]
    assert any(ln.startswith("Requires-Dist: torch==") and "extra" not in ln for ln in requires)
    assert all("extra ==" in ln for ln in requires if "pytest" in ln or "trl" in ln), "test/bench deps in runtime"
