"""The Playground tab in real headless Chromium, against the three real services as separate processes.

A job is trained on the exporter's sample debates (the tiny random Llama, a few steps) through the REST API;
the page then picks it, fills a held-out debate prompt, tries a prompt style, and watches the base model's and
the adapter's answers stream side by side (the same seed), shows the job's eval samples and metrics, and
deploys the adapter, which the OpenAI-compatible /v1/models then lists.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright  # noqa: E402, I001

from tests.browser.test_dashboard_e2e import CHROMIUM, CHROMIUM_ARGS, shot, stack  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

TINY = "test/tiny-llama"
FAST = {"num_epochs": 1, "max_steps": 4, "batch_size": 2, "max_seq_length": 384, "quantization": "none",
        "lora_r": 4, "lora_alpha": 8, "learning_rate": 0.005, "gradient_checkpointing": False,
        "checkpoint_every_steps": 2}


def trained_job(url: str) -> dict:
    r = httpx.post(f"{url}/api/training/jobs", json={"name": "playground_legal", "vertical": "legal",
                                                     "base_model": TINY, "training_config": FAST}, timeout=30)
    assert r.status_code == 201, r.text
    job = r.json()
    assert httpx.post(f"{url}/api/training/jobs/{job['id']}/start", timeout=30).status_code == 200
    deadline = time.monotonic() + 300
    while True:
        job = httpx.get(f"{url}/api/training/jobs/{job['id']}", timeout=30).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, "the job did not finish in 300 s"
        time.sleep(0.5)
    assert job["status"] == "completed", job["error"]
    return job


def test_playground_compares_base_and_adapter_side_by_side(stack):  # noqa: F811
    url, services, _root = stack
    job = trained_job(url)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            page.goto(f"{url}/training/playground")
            expect(page.get_by_role("tab", name="Playground")).to_have_attribute("aria-selected", "true")
            expect(page.get_by_test_id("pg-job")).to_have_value(job["id"])
            # Its checkpoints, its held-out prompts and its eval samples are offered.
            expect(page.get_by_test_id("pg-checkpoint").locator("option")).to_have_count(3)  # final, 2, 4
            heldout = page.get_by_test_id("pg-heldout")
            expect(heldout).to_be_enabled()
            heldout.select_option(index=1)
            expect(page.get_by_test_id("pg-prompt")).not_to_have_value("")
            expect(page.get_by_test_id("pg-samples")).to_be_visible()
            page.get_by_test_id("pg-style").select_option("judge")
            page.get_by_test_id("pg-max-tokens").fill("12")
            page.get_by_test_id("pg-seed").fill("42")
            page.get_by_test_id("pg-run").click()
            for side in ("base", "adapter"):
                expect(page.get_by_test_id(f"pg-status-{side}")).to_contain_text("tokens ·", timeout=60_000)
            expect(page.get_by_test_id("pg-used-seed")).to_have_text("seed 42")
            base_text = page.get_by_test_id("pg-text-base").inner_text()
            adapter_text = page.get_by_test_id("pg-text-adapter").inner_text()
            shot(page, "playground")

            # The page shows what the API gives for the same prompt and seed.
            prompt = page.get_by_test_id("pg-prompt").input_value()
            r = httpx.post(f"{url}/api/training/jobs/{job['id']}/compare", timeout=60, json={
                "prompt": prompt, "system": "You are an impartial judge of debates. Give the consensus view and the "
                "reasons for it.", "max_new_tokens": 12, "temperature": 0.7, "seed": 42})
            finished = {}
            for frame in r.text.split("\n\n"):
                if frame.startswith("event: finished"):
                    data = json.loads(frame.split("data: ", 1)[1])
                    finished[data["side"]] = data["text"]
            assert finished["base"].strip() == base_text.strip()
            assert finished["adapter"].strip() == adapter_text.strip()

            # A bad value is reported with its field; nothing streams.
            page.get_by_test_id("pg-max-tokens").fill("5000")
            page.get_by_test_id("pg-run").click()
            expect(page.get_by_test_id("pg-error")).to_contain_text("max_new_tokens")

            # Deploy: listed here and by the OpenAI-compatible API.
            page.get_by_test_id("pg-deploy-name").fill("legal-playground")
            page.get_by_test_id("pg-deploy").click()
            expect(page.get_by_test_id("pg-deployments")).to_contain_text("legal-playground")
            ids = [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=30).json()["data"]]
            assert "legal-playground" in ids and TINY in ids
        except Exception:
            shot(page, "playground-failure")
            raise
        finally:
            browser.close()
