"""The reward method: a scalar head trained with the Bradley-Terry loss on preference pairs, in the worker process
(``python -m services.trainer.worker JOB_DIR``), on a tiny random BERT (an encoder, like the guide's
``nlpaueb/legal-bert-base-uncased``) and on the tiny random Llama (a decoder); the head saved with the adapter and
reloaded; the held-out preference accuracy of the trained head against the untrained one; the refusals."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

from services.common.errors import InvalidArgument
from tests.eval.conftest import known_pairs
from tests.support.tiny_bert import build_tiny_bert
from tests.trainer_worker.conftest import make_job, run_worker, write_jsonl

pytestmark = pytest.mark.slow

LEGAL_BERT = "nlpaueb/legal-bert-base-uncased"
# The user guide's create example, word for word (it names no method and no dataset; the pairs come from a file
# here because the test has no exporter).
GUIDE_CONFIG = {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "num_epochs": 3, "batch_size": 4,
                "learning_rate": 0.0002, "max_seq_length": 2048, "quantization": "4bit",
                "gradient_checkpointing": True}
FAST = {"method": "reward", "dataset_path": "pairs.jsonl", "quantization": "none", "num_epochs": 8, "batch_size": 4,
        "learning_rate": 2e-2, "max_seq_length": 96, "lora_r": 4, "lora_alpha": 8, "gradient_checkpointing": False,
        "seed": 3}
N_PAIRS = 24


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, tiny_model):
    """A models folder with the tiny BERT (as itself and in the guide's model's folder) and the tiny Llama."""
    root = tmp_path_factory.mktemp("reward-models")
    bert = build_tiny_bert(root)
    shutil.copytree(bert, root / LEGAL_BERT.replace("/", "--"))
    shutil.copytree(tiny_model, root / tiny_model.name)
    return root


def pairs_root(tmp_path_factory, name: str):
    root = tmp_path_factory.mktemp(name)
    write_jsonl(root / "data" / "pairs.jsonl", known_pairs(N_PAIRS // 2, seed=1) +
                known_pairs(N_PAIRS // 2, seed=2, vertical="medical"))
    return root


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, models_dir):
    root = pairs_root(tmp_path_factory, "reward-bert")
    job_dir = make_job(root, "job-bert", models_dir / "test--tiny-bert", FAST)
    return run_worker(job_dir, timeout=400)


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, models_dir, tiny_model):
    root = pairs_root(tmp_path_factory, "reward-llama")
    job_dir = make_job(root, "job-llama", models_dir / tiny_model.name, FAST)
    return run_worker(job_dir, timeout=400)


def _check_trained(rc, w, head: str):
    assert rc == 0, w.log()
    kinds = [e["type"] for e in w.events]
    assert kinds[-1] == "result" and "error" not in kinds
    steps = w.of_type("step")
    assert len(steps) == FAST["num_epochs"] * N_PAIRS // FAST["batch_size"]
    assert all(set(s["extra"]) >= {"reward_accuracy", "reward_margin"} for s in steps)
    first = sum(s["loss"] for s in steps[:3]) / 3
    last = sum(s["loss"] for s in steps[-3:]) / 3
    assert last < first - 0.05, [s["loss"] for s in steps]
    assert steps[-1]["extra"]["reward_margin"] > 0
    metrics = json.loads((w.job_dir / "metrics.json").read_text())
    assert metrics["method"] == "reward" and metrics["reward"]["loss"] == "bradley-terry"
    from safetensors.torch import load_file

    saved = load_file(w.job_dir / "adapter" / "adapter_model.safetensors")
    assert any(head in k for k in saved), sorted(saved)
    config = json.loads((w.job_dir / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and head in config["modules_to_save"]
    assert any(f"{head} with a scalar head" in e["message"] or head in e["message"] for e in w.of_type("log"))


def test_reward_job_on_an_encoder_learns_the_preference(bert_run):
    rc, w = bert_run
    _check_trained(rc, w, "classifier")


def test_reward_job_on_a_decoder_learns_the_preference(llama_run):
    rc, w = llama_run
    _check_trained(rc, w, "score")


def _reload(model_dir, adapter_dir, seed: int):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)  # the untrained head the job started from (same seed, same draw)
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    base.config.pad_token_id = tok.pad_token_id
    return PeftModel.from_pretrained(base, adapter_dir), tok


@pytest.mark.parametrize("which", ["bert", "llama"])
def test_the_head_reloads_and_beats_the_untrained_head_on_held_out_pairs(which, bert_run, llama_run, models_dir,
                                                                         tmp_path):
    import torch
    from safetensors.torch import load_file

    from services.trainer.worker.evaluate import EvalSettings
    from services.trainer.worker.events import EventSink
    from services.trainer.worker.methods.reward import evaluate_reward
    from services.trainer.worker.sources import HeldOut

    rc, w = bert_run if which == "bert" else llama_run
    assert rc == 0, w.log()
    job = json.loads((w.job_dir / "job.json").read_text())
    model, tok = _reload(job["model_path"], w.job_dir / "adapter", FAST["seed"])
    head = "classifier" if which == "bert" else "score"
    saved = {k: v for k, v in load_file(w.job_dir / "adapter" / "adapter_model.safetensors").items() if head in k}
    loaded = {n: p for n, p in model.named_parameters() if head in n and "modules_to_save" in n}
    assert loaded and len(loaded) == len(saved)
    for name, tensor in saved.items():
        match = [p for n, p in loaded.items() if n.endswith(name.split(head, 1)[1])]
        assert match and torch.equal(match[0].detach(), tensor), name
    held = known_pairs(12, seed=9) + known_pairs(12, seed=10, vertical="medical")  # never trained on
    sink = EventSink(open(tmp_path / "events.jsonl", "w"))
    fake = SimpleNamespace(job_dir=tmp_path, vertical="", spec=SimpleNamespace(max_seq_length=FAST["max_seq_length"]))
    figures = evaluate_reward(fake, model, tok, HeldOut(pairs=held, available_pairs=len(held), source="test"), sink,
                              EvalSettings())
    base, adapter = figures["base"], figures["adapter"]
    assert set(base) == set(adapter) >= {"preference_accuracy", "vertical_accuracy", "mean_margin", "heldout_loss"}
    assert figures["eval_dpo_pairs"] == figures["eval_matches"] == len(held)
    assert set(adapter["vertical_accuracy"]) == {"legal", "medical"}
    # The untrained head's scores are near 0 (whichever way its random direction happens to lean): its
    # Bradley-Terry loss is about log 2; the trained head separates the held-out pairs.
    assert base["heldout_loss"] == pytest.approx(0.6931, abs=0.05), figures
    assert adapter["heldout_loss"] < 0.3 and adapter["preference_accuracy"] >= 0.9, figures
    assert adapter["preference_accuracy"] >= base["preference_accuracy"]
    assert adapter["mean_margin"] > base["mean_margin"] + 1.0
    assert figures["win_rate"] > 0.5 and figures["elo_rating"] > 1500


def test_the_guides_create_example_trains_where_its_weights_are_present(tmp_path, models_dir):
    """legal-bert (here: the tiny BERT in its folder) with the guide's config: accepted as a reward model,
    max_seq_length capped at the encoder's position limit, LoRA on BERT's query/value; the job completes."""
    write_jsonl(tmp_path / "data" / "pairs.jsonl", known_pairs(8, seed=1))
    job_dir = make_job(tmp_path, "job-guide", models_dir / LEGAL_BERT.replace("/", "--"),
                       {**GUIDE_CONFIG, "dataset_path": "pairs.jsonl", "max_steps": 3})
    spec = json.loads((job_dir / "job.json").read_text())["training_config"]
    assert spec["method"] == "reward" and spec["max_seq_length"] == 128
    assert spec["target_modules"] == ["query", "value"]
    rc, w = run_worker(job_dir, timeout=300)
    assert rc == 0, w.log()
    assert w.of_type("result") and (job_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((job_dir / "metrics.json").read_text())["base_model"] == LEGAL_BERT


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_an_encoder_is_refused_for_generative_methods(models_dir, tmp_path, method):
    from services.trainer.models import resolve_model
    from services.trainer.spec import validate_spec

    model = resolve_model(models_dir, LEGAL_BERT)
    assert model.encoder_only and model.model_type == "bert"
    with pytest.raises(InvalidArgument) as exc:
        validate_spec({**GUIDE_CONFIG, "method": method}, model, tmp_path)
    (v,) = exc.value.violations
    assert v.field == "training_config.method"
    assert v.reason.startswith(f"base_model {LEGAL_BERT} is an encoder-only model (bert family): it cannot "
                               f"generate text, so it cannot be trained with {method}; use method reward")
    # A decoder takes every method, reward included; an explicit limit beyond a decoder's is still refused.
    llama = resolve_model(models_dir, "test/tiny-llama")
    assert not llama.encoder_only
    assert validate_spec({"method": "reward"}, llama, tmp_path).target_modules == ["q_proj", "v_proj"]
    with pytest.raises(InvalidArgument, match="exceeds the limit"):
        validate_spec({"max_seq_length": 4096}, llama, tmp_path)


def test_the_catalogue_lists_legal_bert_as_an_encoder_for_reward_models(tmp_path):
    from services.trainer.models import list_models

    bert = {m.id: m for m in list_models(tmp_path)}[LEGAL_BERT]
    assert bert.encoder_only and "reward" in bert.capabilities and not bert.available
    assert "weights not on this server" in bert.unavailable_reason


def test_a_checkpoint_restores_the_trained_head(models_dir, tmp_path):
    """Resume: a checkpoint holds the head (``modules_to_save``) and loading it into a fresh model restores it."""
    import io

    import torch

    from services.trainer.models import resolve_model
    from services.trainer.spec import validate_spec
    from services.trainer.worker import checkpoint, modeling
    from services.trainer.worker.events import EventSink
    from services.trainer.worker.methods.reward import RewardMethod

    info = resolve_model(models_dir, "test/tiny-bert")
    spec = validate_spec({**FAST, "dataset_path": None}, info, tmp_path)
    tok = modeling.load_tokenizer(info.path)
    a = RewardMethod.load_model(info.path, spec, tok, EventSink(io.StringIO())).model
    head = {n: p for n, p in a.named_parameters() if "modules_to_save" in n}
    assert head and all(p.requires_grad for p in head.values())
    with torch.no_grad():
        for p in head.values():
            p.add_(1.0)  # "trained"
    opt = torch.optim.AdamW([p for p in a.parameters() if p.requires_grad])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    folder = checkpoint.save_checkpoint(tmp_path / "ckpt", 1, a, opt, sched, {"step": 1}, checkpoint.capture_rng(),
                                        "test/tiny-bert")
    b = RewardMethod.load_model(info.path, spec, tok, EventSink(io.StringIO())).model
    opt_b = torch.optim.AdamW([p for p in b.parameters() if p.requires_grad])
    checkpoint.load_checkpoint(folder, b, opt_b, torch.optim.lr_scheduler.LambdaLR(opt_b, lambda s: 1.0))
    restored = dict(b.named_parameters())
    for name, p in head.items():
        assert torch.equal(restored[name].detach(), p.detach()), name
