"""``python -m services.trainer models pull|list|delete`` as a user runs it (a subprocess), against the
loopback hub and a real trainer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from tests.hub.conftest import MODEL
from tests.support.services import REPO
from tests.trainer.conftest import running_trainer


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.trainer", "models", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, **env))


async def test_models_pull_list_delete(fake_hub, tmp_path):
    models = tmp_path / "models"
    env = dict(TRAINER_MODELS_DIR=str(models), TRAINER_HUB_ENABLED="true", TRAINER_HUB_ENDPOINT=fake_hub.endpoint)
    off = cli("pull", MODEL, TRAINER_MODELS_DIR=str(models))
    assert off.returncode == 1 and "TRAINER_HUB_ENABLED" in off.stderr
    bad = cli("pull", "org/none", **env)
    assert bad.returncode == 1 and "pull failed (not_found): unknown model id" in bad.stderr
    done = cli("pull", MODEL, **env)
    assert done.returncode == 0, done.stderr
    assert "downloading org/tiny-llama" in done.stderr and "ready in the models folder" in done.stderr
    listed = cli("list", **env)
    assert listed.returncode == 0 and listed.stdout.startswith(f"{MODEL}\t") and "\thub\t" in listed.stdout
    async with running_trainer(tmp_path, models_dir=models) as (_stub, trainer):
        # The trainer serves on this test's event loop: the CLI runs in a thread meanwhile.
        gone = await asyncio.to_thread(cli, "delete", MODEL, "--address", trainer.address, **env)
        assert gone.returncode == 0 and "deleted" in gone.stderr, gone.stderr
        again = await asyncio.to_thread(cli, "delete", MODEL, "--address", trainer.address, **env)
        assert again.returncode == 1 and "no model" in again.stderr
    assert "no models" in cli("list", **env).stdout
