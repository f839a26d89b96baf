"""Fixtures of the exporter's tests: small hand-built debates and a store on SQLite under tmp_path."""

from __future__ import annotations

import copy
import shutil

import pytest

from services.exporter.exports import Exporter
from services.exporter.importer import Importer
from services.exporter.store import DebateStore


def debate(
    id: str = "debate-1",
    vertical: str = "general",
    agents: tuple[str, ...] = ("alpha", "beta", "gamma"),
    rounds: int = 2,
    winner: str = "alpha",
    votes: dict[str, tuple[str, float]] | None = None,
    reached: bool = True,
    task: str | None = None,
) -> dict:
    """One valid import record: each agent proposes in each round ("<agent> r<round> on <id>"); by default every
    agent votes for ``winner`` with confidence 0.8 except the last agent, who votes for itself."""
    if votes is None:
        votes = {a: (winner, 0.8) for a in agents[:-1]}
        votes[agents[-1]] = (agents[-1], 0.8)
    return {
        "type": "debate",
        "id": id,
        "task": task or f"What should be done about case {id}?",
        "vertical": vertical,
        "created_at": "2024-05-01T12:00:00Z",
        "rounds": [
            {"number": r, "proposals": [{"agent": a, "content": f"{a} r{r} on {id}"} for a in agents]}
            for r in range(1, rounds + 1)
        ],
        "critiques": [
            {"round": 1, "agent": agents[0], "target_agent": agents[1], "issues": ["vague"],
             "suggestions": ["be specific"], "severity": 4.0}
        ],
        "votes": [{"agent": a, "choice": c, "confidence": conf} for a, (c, conf) in votes.items()],
        "consensus": {"reached": reached, "final_answer": f"final answer of {id}" if reached else "",
                      "winner": winner if reached else "", "dissenting_views": []},
    }


def gauntlet(id: str = "gauntlet-1", attack_type: str = "prompt_injection", severity: float = 5.0,
             success: bool = False) -> dict:
    return {"type": "gauntlet", "id": id, "prompt": f"attack {id}", "response": f"response to {id}",
            "attack_type": attack_type, "severity": severity, "success": success,
            "findings": ["Resisted manipulation"], "persona": "red-teamer"}


def with_changes(record: dict, **changes) -> dict:
    out = copy.deepcopy(record)
    out.update(changes)
    return out


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory):
    """One SQLite file migrated to head; each test's store starts from a copy (migrating from scratch per test
    would cost a fifth of a second each). The store still runs ``migrate`` on the copy, a no-op at head."""
    path = tmp_path_factory.mktemp("template") / "debates.db"
    DebateStore(f"sqlite:///{path}").close()
    return path


@pytest.fixture
def store(tmp_path, migrated_template):
    """A debate store on a fresh SQLite file under tmp_path."""
    path = tmp_path / "store" / "debates.db"
    path.parent.mkdir()
    shutil.copyfile(migrated_template, path)
    s = DebateStore(f"sqlite:///{path}")
    yield s
    s.close()


@pytest.fixture
def exporter_logic(store, tmp_path):
    return Exporter(store, tmp_path / "exports", batch=7)


def load(store, records) -> object:
    imp = Importer(store, chunk=5)
    for r in records:
        imp.add_object(r)
    return imp.finish()


@pytest.fixture(scope="module")
async def api(tmp_path_factory):
    """The gateway in front of one exporter shared by a module's tests (for requests that change no data or
    use their own ids); the trainer is not needed by these routes, so its address points nowhere."""
    from services.exporter import server
    from tests.conftest import exporter_settings, gateway_client
    from tests.support.net import free_port

    running = await server.start(exporter_settings(tmp_path_factory.mktemp("api")), port=0)
    async with gateway_client(running.address, f"127.0.0.1:{free_port()}") as client:
        yield client
    await running.stop(0.5)
