"""The dashboard end to end, in real headless Chromium, against the three real services as separate processes.

Exporter (with the sample debates), trainer (with the tiny random Llama in its models folder) and gateway run
like ``python -m services.launcher`` runs them, but on free ports with their data under a temporary folder.
The browser opens /training and does what a person would: looks at the models and the exports, fills the New
Job form (tripping the form's own check and an API field error first), starts a job and watches its progress
bar advance to Completed live, opens its metrics and artifacts and downloads a file, starts a second job and
cancels it, reads the stats bar, then sees the page say so when the trainer and then the gateway go away, and
recover by itself when they come back. Screenshots of every tab land in tests/artifacts/screenshots/.

Needs Debian's chromium at /usr/bin/chromium (skipped otherwise) and the `playwright` Python package (driving
that browser; no browser download).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port
from tests.support.services import ServiceProcess
from tests.support.wait import wait_until

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); the dashboard's browser test needs it",
                allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402  (after the skip: needs the browser)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "tests" / "artifacts" / "screenshots"
TINY = "test/tiny-llama"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The three services on free ports; yields (gateway URL, services by name, the folder holding their data)."""
    from tests.support.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("dashboard-e2e")
    models = root / "models"
    build_tiny_model(models, TINY)
    ports = {name: free_port() for name in ("exporter", "trainer", "gateway")}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "TRAINER_", "GATEWAY_"))}
    base.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    exporter_addr, trainer_addr = f"127.0.0.1:{ports['exporter']}", f"127.0.0.1:{ports['trainer']}"
    envs = {
        "exporter": dict(base, EXPORTER_PORT=str(ports["exporter"]),
                         EXPORTER_DATABASE_URL=f"sqlite:///{root}/exporter/debates.db",
                         EXPORTER_EXPORT_DIR=str(root / "exports"), EXPORTER_LOAD_SAMPLES="true"),
        "trainer": dict(base, TRAINER_PORT=str(ports["trainer"]),
                        TRAINER_DATABASE_URL=f"sqlite:///{root}/trainer/jobs.db",
                        TRAINER_JOBS_DIR=str(root / "jobs"), TRAINER_MODELS_DIR=str(models),
                        TRAINER_DATA_ROOT=str(root / "data"), TRAINER_EXPORTER_ADDRESS=exporter_addr,
                        TRAINER_GRACE_SECONDS="2"),
        "gateway": dict(base, GATEWAY_PORT=str(ports["gateway"]), GATEWAY_EXPORTER_ADDRESS=exporter_addr,
                        GATEWAY_TRAINER_ADDRESS=trainer_addr, GATEWAY_RPC_TIMEOUT_SECONDS="5"),
    }
    (root / "data").mkdir()
    services = {name: ServiceProcess(name, env, root / f"{name}.log", start=False) for name, env in envs.items()}
    url = f"http://127.0.0.1:{ports['gateway']}"
    try:
        for s in services.values():
            s.start()
        try:
            wait_until(lambda: healthy(url), 90, "the three services to be healthy")
        except AssertionError as err:
            raise AssertionError("\n\n".join(f"--- {s.name}\n{s.tail()}" for s in services.values())) from err
        yield url, services, root
    finally:
        for s in reversed(list(services.values())):
            s.stop(timeout=10)
            s.kill_group()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def stat(page: Page, key: str) -> str:
    return page.get_by_test_id(f"stat-{key}-value").inner_text()


def open_tab(page: Page, label: str, path: str) -> None:
    page.get_by_role("tab", name=label).click()
    expect(page).to_have_url(re.compile(rf"/training/{path}$"))


def fill_job_form(page: Page, name: str, **params: str) -> None:
    page.locator("#f-name").fill(name)
    page.locator("#f-vertical").select_option("legal")
    page.locator("#f-base_model").select_option(TINY)
    for field, value in params.items():
        page.locator(f"#f-{field}").fill(value)
    page.locator("#f-quantization").select_option("none")
    page.locator("#f-gradient_checkpointing").uncheck()


def test_dashboard_end_to_end(stack):
    url, services, root = stack
    jobs_dir = root / "jobs"
    with_browser(lambda page: run_scenario(page, url, services, jobs_dir))


def with_browser(scenario) -> None:
    """Runs ``scenario(page)`` in a fresh headless Chromium; a screenshot is kept when it fails."""
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        try:
            scenario(page)
        except BaseException:
            shot(page, "failure")
            raise
        finally:
            context.close()
            browser.close()
    # Uncaught exceptions in the page are bugs even when everything shown looked right.
    assert errors == []


def run_scenario(page: Page, url: str, services: dict[str, ServiceProcess], jobs_dir: Path) -> None:
    page.goto(f"{url}/training")
    expect(page.get_by_role("heading", name="Fine-tuning")).to_be_visible()
    expect(page.get_by_test_id("health")).to_have_text(re.compile("All services up"), timeout=15_000)
    expect(page.get_by_test_id("no-jobs")).to_be_visible()
    for key in ("training", "queued", "completed", "failed"):
        assert stat(page, key) == "0"

    # --- Available Models: the tiny model is available; catalogue models without weights say why --------------
    open_tab(page, "Available Models", "models")
    tiny = page.locator(f'[data-testid="model-card"][data-model-id="{TINY}"]')
    expect(tiny).to_be_visible()
    assert tiny.get_attribute("data-available") == "true"
    # The catalogue's models have no weights in this trainer's models folder: each says why it is unavailable.
    unavailable = page.locator('[data-testid="model-card"][data-available="false"]')
    expect(unavailable.first).to_be_visible()
    listed = httpx.get(f"{url}/api/training/models", timeout=10).json()["models"]
    assert unavailable.count() == sum(not m["available"] for m in listed) >= 1
    expect(unavailable.first.get_by_test_id("unavailable-reason")).to_contain_text("Not available")
    shot(page, "3-available-models")
    page.get_by_label("Filter by provider").select_option(index=1)
    assert page.get_by_test_id("model-card").count() >= 1
    page.get_by_label("Filter by provider").select_option("")

    # --- Exports: preview SFT with the guide's filters, count, download JSONL ---------------------------------
    open_tab(page, "Exports", "exports")
    expect(page.get_by_test_id("data-stats")).to_contain_text("debates stored")
    page.get_by_label("vertical").select_option("legal")
    page.get_by_role("button", name="Preview").click()
    count_text = page.get_by_test_id("record-count").inner_text()
    shown = int(re.match(r"(\d+) record", count_text).group(1))
    assert shown > 0
    expect(page.get_by_test_id("export-preview").locator("li")).to_have_count(min(5, shown))
    expect(page.get_by_test_id("export-preview")).to_contain_text("instruction")
    shot(page, "4-exports")
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download JSONL").click()
    lines = Path(dl.value.path()).read_text().splitlines()
    assert len(lines) == shown
    assert all(json.loads(line)["metadata"]["vertical"] == "legal" for line in lines)
    page.get_by_role("radio", name="DPO").check()
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("export-preview")).to_contain_text("chosen")

    # --- New Job: the form's own check, then an API field error, both beside their field ------------------------
    open_tab(page, "New Job", "new")
    expect(page.locator(f'#f-base_model option[value="{TINY}"]')).to_have_count(1)
    fill_job_form(page, "e2e_legal_v1", lora_r="0", lora_alpha="8", num_epochs="1", batch_size="2",
                  learning_rate="5e-3", max_seq_length="512", dataset_path="../outside.jsonl")
    page.get_by_test_id("start-training").click()
    expect(page.get_by_test_id("error-lora_r")).to_contain_text("greater than 0")
    page.locator("#f-lora_r").fill("4")
    expect(page.get_by_test_id("error-lora_r")).to_have_count(0)
    page.get_by_test_id("start-training").click()
    # The trainer refuses a dataset path outside its data root: 422 with the field, shown next to it.
    expect(page.get_by_test_id("error-dataset_path")).to_be_visible()
    expect(page.get_by_test_id("form-error")).to_contain_text("not created")
    shot(page, "2-new-job-errors")
    page.locator("#f-dataset_path").fill("")
    # A dozen optimizer steps: enough to watch the bar move, short enough for a CPU shared with others.
    page.get_by_text("Advanced: method").click()
    page.locator("#f-max_steps").fill("12")
    shot(page, "2-new-job")

    # --- Start Training: created, started, shown in Active Jobs, progress advancing live to Completed ------------
    page.get_by_test_id("start-training").click()
    expect(page).to_have_url(re.compile(r"/training/jobs$"))
    card = page.locator('[data-testid="job-card"][data-job-name="e2e_legal_v1"]')
    expect(card).to_be_visible()
    progress_seen: set[float] = set()
    statuses_seen: list[str] = []
    live_seen = False
    took_training_shot = False
    deadline = time.monotonic() + 420  # a bound against a hang, not a speed check: the CPU is shared
    while True:
        status = card.get_attribute("data-status")
        if not statuses_seen or statuses_seen[-1] != status:
            statuses_seen.append(status)
        progress_seen.add(float(card.get_by_test_id("progress").get_attribute("data-progress")))
        live_seen = live_seen or (card.get_attribute("data-stream") == "open" and status == "training")
        if status == "training" and not took_training_shot and max(progress_seen) > 0:
            shot(page, "1-active-jobs-training")
            took_training_shot = True
        if status in ("completed", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, (
            f"job still {status}; statuses {statuses_seen}\n{services['trainer'].tail()}")
        time.sleep(0.05)
    assert status == "completed", f"{statuses_seen}: {card.get_by_test_id('job-error').all_inner_texts()}"
    assert "training" in statuses_seen, statuses_seen
    intermediate = sorted(v for v in progress_seen if 0 < v < 1)
    assert len(intermediate) >= 2, f"the progress bar did not advance visibly: {sorted(progress_seen)}"
    assert live_seen, "the card never showed the live event stream while training"
    expect(card.get_by_test_id("progress")).to_have_attribute("aria-valuenow", "100")
    expect(card.get_by_test_id("loss")).not_to_have_text("–")
    expect(card.get_by_test_id("completed-at")).not_to_have_text("–")
    expect(card.get_by_test_id("loss-chart")).to_be_visible()
    assert int(card.get_by_test_id("loss-chart").get_attribute("data-points")) >= 2
    expect(page.get_by_test_id("stat-completed-value")).to_have_text("1", timeout=10_000)

    # --- View Metrics and View Artifacts; download one file ---------------------------------------------------
    card.get_by_role("button", name="View Metrics").click()
    metrics = card.get_by_test_id("metrics-panel")
    expect(metrics).to_be_visible(timeout=15_000)
    expect(metrics.get_by_test_id("metric-final-loss")).not_to_have_text("–")
    job_id = card.get_attribute("data-job-id")
    served = httpx.get(f"{url}/api/training/jobs/{job_id}/metrics", timeout=10).json()
    shown_loss = float(metrics.get_by_test_id("metric-final-loss").inner_text())
    assert shown_loss == pytest.approx(served["final_loss"], rel=1e-3)
    # The held-out evaluation ran (the sample debates hold out legal SFT records and DPO pairs): the adapter
    # beside the base model, and a bar per vertical.
    assert served["adapter"] and served["base"], served
    assert served["adapter"]["vertical_accuracy"], served["adapter"]
    expect(metrics.locator("table.compare")).to_contain_text("Adapter")
    expect(metrics.get_by_test_id("vertical-bars").locator(".bar.adapter")).to_have_count(
        len(served["adapter"]["vertical_accuracy"]))
    card.get_by_role("button", name="View Artifacts").click()
    artifacts = card.get_by_test_id("artifacts-panel")
    expect(artifacts).to_be_visible(timeout=15_000)
    row = artifacts.locator('[data-testid="artifact-row"][data-name$="adapter_config.json"]').first
    expect(row).to_be_visible()
    name = row.get_attribute("data-name")
    card.scroll_into_view_if_needed()
    shot(page, "1-active-jobs-metrics-artifacts")
    with page.expect_download() as dl:
        row.get_by_role("button", name="Download").click()
    assert dl.value.suggested_filename == "adapter_config.json"
    downloaded = Path(dl.value.path()).read_bytes()
    assert downloaded == (jobs_dir / job_id / name).read_bytes()
    assert json.loads(downloaded)["r"] == 4  # the LoRA rank typed into the form

    # --- A second job, cancelled while it trains ----------------------------------------------------------------
    open_tab(page, "New Job", "new")
    fill_job_form(page, "e2e_cancel_me", lora_r="4", lora_alpha="8", num_epochs="50", batch_size="2",
                  learning_rate="5e-3", max_seq_length="512")
    page.get_by_test_id("start-training").click()
    expect(page).to_have_url(re.compile(r"/training/jobs$"))
    second = page.locator('[data-testid="job-card"][data-job-name="e2e_cancel_me"]')
    expect(second).to_have_attribute("data-status", "training", timeout=240_000)
    expect(page.get_by_test_id("stat-training-value")).to_have_text("1", timeout=10_000)
    second.get_by_role("button", name="Cancel").click()
    expect(second.get_by_test_id("cancel-confirm")).to_contain_text("cannot be resumed")
    second.get_by_role("button", name="Yes, cancel job").click()
    expect(second).to_have_attribute("data-status", "cancelled", timeout=30_000)
    expect(second.get_by_test_id("status-badge")).to_have_text("Cancelled")

    # --- The stats bar counts ---------------------------------------------------------------------------------
    expect(page.get_by_test_id("stat-training-value")).to_have_text("0", timeout=10_000)
    expect(page.get_by_test_id("stat-queued-value")).to_have_text("0")
    expect(page.get_by_test_id("stat-completed-value")).to_have_text("1")
    expect(page.get_by_test_id("stat-failed-value")).to_have_text("0")
    expect(page.locator(".stat-other")).to_contain_text("1 cancelled")
    # Filters: only the completed job.
    page.get_by_label("Filter by status").select_option("completed")
    expect(page.get_by_test_id("job-card")).to_have_count(1)
    expect(page.get_by_test_id("job-card")).to_have_attribute("data-job-name", "e2e_legal_v1")
    page.get_by_label("Filter by status").select_option("")
    expect(page.get_by_test_id("job-card")).to_have_count(2)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "1-active-jobs")

    # --- The trainer goes away: the page says so, keeps what it showed, and recovers by itself ----------------------
    services["trainer"].stop(signal.SIGTERM)
    banner = page.get_by_test_id("connection-banner")
    expect(banner).to_be_visible(timeout=20_000)
    expect(banner).to_have_attribute("data-status", "degraded")
    expect(banner).to_contain_text("trainer")
    expect(page.get_by_test_id("job-card")).to_have_count(2)  # never a blank page
    expect(page.get_by_test_id("jobs-stale")).to_contain_text("as last loaded", timeout=15_000)
    shot(page, "5-trainer-down")
    services["trainer"].start()
    expect(banner).to_be_hidden(timeout=60_000)
    expect(page.get_by_test_id("health")).to_have_text(re.compile("All services up"))
    expect(page.get_by_test_id("stat-completed-value")).to_have_text("1")
    expect(page.get_by_test_id("job-card")).to_have_count(2)

    # --- The gateway itself goes away and comes back on the same port -------------------------------------------
    services["gateway"].stop(signal.SIGTERM)
    expect(banner).to_be_visible(timeout=20_000)
    expect(banner).to_have_attribute("data-status", "offline")
    expect(banner).to_contain_text("Gateway unreachable")
    expect(page.get_by_test_id("job-card")).to_have_count(2)
    shot(page, "5-gateway-down")
    services["gateway"].start()
    expect(banner).to_be_hidden(timeout=60_000)
    expect(page.get_by_test_id("stat-completed-value")).to_have_text("1")
    shot(page, "6-recovered")

    # The admin path serves the same app, on its own tab paths.
    page.goto(f"{url}/admin/training/models")
    expect(page.get_by_role("tab", name="Available Models")).to_have_attribute("aria-selected", "true")
    expect(page.locator(f'[data-testid="model-card"][data-model-id="{TINY}"]')).to_be_visible()


def completed_job(url: str) -> str:
    """The id of a completed job: the end-to-end test's when it ran first, else one trained here (two steps),
    so this test does not depend on the order the tests run in."""
    jobs = httpx.get(f"{url}/api/training/jobs", params={"status": "completed"}, timeout=10).json()["jobs"]
    if jobs:
        return jobs[0]["id"]
    body = {"name": "e2e_token_job", "vertical": "legal", "base_model": TINY,
            "training_config": {"lora_r": 4, "num_epochs": 1, "batch_size": 2, "max_seq_length": 256,
                                "quantization": "none", "gradient_checkpointing": False, "max_steps": 2}}
    created = httpx.post(f"{url}/api/training/jobs", json=body, timeout=30)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert httpx.post(f"{url}/api/training/jobs/{job_id}/start", timeout=30).status_code == 200

    def status() -> str | None:
        s = httpx.get(f"{url}/api/training/jobs/{job_id}", timeout=10).json()["status"]
        return s if s in ("completed", "failed", "cancelled") else None

    assert wait_until(status, 300, f"job {job_id} to finish", interval=1.0) == "completed"
    return job_id


def test_dashboard_asks_for_the_api_token(stack):
    """A gateway with GATEWAY_API_TOKEN: the page asks for the token once, then everything works with it (the
    event streams too, which EventSource could not authenticate), and a reload remembers it."""
    url, services, root = stack
    done_id = completed_job(url)
    token = "e2e-s3cret-token"
    port = free_port()
    guarded = ServiceProcess("gateway", dict(services["gateway"].env, GATEWAY_PORT=str(port), GATEWAY_API_TOKEN=token),
                             root / "gateway-token.log", start=False)
    guarded_url = f"http://127.0.0.1:{port}"
    guarded.start()
    try:
        wait_until(lambda: healthy(guarded_url), 60, "the gateway with a token")
        auth = {"Authorization": f"Bearer {token}"}
        jobs = httpx.get(f"{guarded_url}/api/training/jobs", headers=auth, timeout=10).json()
        assert httpx.get(f"{guarded_url}/api/training/jobs", timeout=10).status_code == 401

        def scenario(page: Page) -> None:
            page.goto(f"{guarded_url}/training")
            prompt = page.get_by_test_id("token-prompt")
            expect(prompt).to_be_visible(timeout=15_000)
            prompt.get_by_label("API token").fill("wrong-token")
            prompt.get_by_role("button", name="Save token").click()
            # Refused again: asked again.
            expect(prompt).to_be_visible(timeout=15_000)
            expect(prompt).to_contain_text("saved in this browser")
            prompt.get_by_label("API token").fill(token)
            prompt.get_by_role("button", name="Save token").click()
            expect(prompt).to_be_hidden(timeout=15_000)
            expect(page.get_by_test_id("health")).to_have_text(re.compile("All services up"), timeout=15_000)
            expect(page.get_by_test_id("job-card")).to_have_count(jobs["total"], timeout=15_000)
            assert page.evaluate("localStorage.getItem('aragora.training.apiToken')") == token
            # A finished job's log comes over the event stream, read with fetch to send the token.
            card = page.locator(f'[data-testid="job-card"][data-job-id="{done_id}"]')
            expect(card.get_by_test_id("loss-chart")).to_be_visible(timeout=20_000)
            card.get_by_role("button", name="View Artifacts").click()
            row = card.get_by_test_id("artifact-row").first
            with page.expect_download() as dl:
                row.get_by_role("button", name="Download").click()
            assert Path(dl.value.path()).stat().st_size > 0
            shot(page, "7-with-api-token")
            page.reload()
            expect(page.get_by_test_id("health")).to_have_text(re.compile("All services up"), timeout=15_000)
            expect(page.get_by_test_id("token-prompt")).to_have_count(0)

        with_browser(scenario)
    finally:
        guarded.stop(timeout=10)
