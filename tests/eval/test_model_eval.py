"""Evaluation numbers come from the model: with a preference we put into the model (DPO or SFT toward one side,
or toward the other), accuracy and win rate move the way they must; an untouched adapter draws with its base.
And the DPO objective itself: response-only log-probabilities, the reference computed once with the adapter
disabled, loss log 2 at the first step."""

from __future__ import annotations

import json
import math

import pytest

from services.trainer.worker import evaluate as ev
from services.trainer.worker.batching import used_indices
from services.trainer.worker.encoding import encode_pairs, encode_records
from services.trainer.worker.logprobs import sequence_logps
from services.trainer.worker.methods.dpo import DPOMethod
from services.trainer.worker.methods.sft import SFTMethod
from services.trainer.worker.sources import HeldOut
from tests.eval.conftest import Recorder, as_sft, fake_job, known_pairs, swapped, train

SETTINGS = dict(samples=1, sample_max_new_tokens=4, draw_tolerance=1e-3, batch_size=8)


@pytest.fixture(scope="module")
def data():
    train_pairs = known_pairs(24, seed=1) + known_pairs(24, seed=2, vertical="medical")
    held_pairs = known_pairs(12, seed=3) + known_pairs(12, seed=4, vertical="medical")
    held = HeldOut(sft=as_sft(known_pairs(8, seed=5) + known_pairs(8, seed=6, vertical="medical")),
                      pairs=held_pairs)
    return train_pairs, held


def dpo_objective(tokenizer, pairs, beta=0.1):
    import torch

    encoded, _ = encode_pairs(tokenizer, pairs, 128)
    return DPOMethod(encoded, tokenizer.pad_token_id, torch.device("cpu"), beta)


def run_eval(tmp_path, model, tokenizer, held):
    rec = Recorder()
    figures = ev.evaluate(fake_job(tmp_path), model, tokenizer, held, rec.sink, ev.EvalSettings(**SETTINGS))
    return figures, rec.events


def test_an_untrained_adapter_draws_every_match_with_its_base(tmp_path, lora_model, tokenizer, data):
    _, held = data
    f, events = run_eval(tmp_path, lora_model, tokenizer, held)
    base, adapter = f["base"], f["adapter"]
    assert f["eval_matches"] == f["eval_dpo_pairs"] == 24 and f["eval_sft_records"] == 16
    assert f["evaluation"]["draws"] == 24 and f["win_rate"] == 0.5 and f["elo_rating"] == 1500.0
    assert adapter["preference_accuracy"] == base["preference_accuracy"]
    assert adapter["heldout_loss"] == pytest.approx(base["heldout_loss"], abs=1e-6)
    assert base["perplexity"] == pytest.approx(math.exp(base["heldout_loss"]))
    assert set(f["vertical_accuracy"]) == {"legal", "medical"}
    # The job never looks frozen: eval events from the start to the summary, counts within their totals.
    phases = [e["phase"] for e in events if e["type"] == "eval"]
    assert phases[0] == "start" and phases[-1] == "done"
    assert {"base: held-out loss", "base: preference", "adapter: held-out loss", "adapter: preference",
            "samples"} <= set(phases)
    assert all(0 <= e["done"] <= e["total"] for e in events)
    samples = json.loads((tmp_path / ev.SAMPLES_FILE).read_text())["samples"]
    assert len(samples) == 1 and samples[0]["base"] == samples[0]["adapter"]  # same weights, same greedy answer


@pytest.mark.parametrize("toward", ["chosen", "rejected"])
def test_dpo_moves_accuracy_and_win_rate_the_way_it_was_trained(tmp_path, lora_model, tokenizer, data, toward):
    train_pairs, held = data
    objective = dpo_objective(tokenizer, train_pairs if toward == "chosen" else swapped(train_pairs))
    objective.compute_reference(lora_model)
    steps = train(lora_model, objective, steps=20, lr=1e-2)
    assert steps[0].loss == pytest.approx(math.log(2), abs=1e-5)  # policy == reference before the first update
    assert steps[-1].loss < steps[0].loss
    assert set(steps[-1].extra) >= {"reward_accuracy", "reward_margin"}

    f, _ = run_eval(tmp_path, lora_model, tokenizer, held)
    base_acc, acc = f["base"]["preference_accuracy"], f["adapter"]["preference_accuracy"]
    if toward == "chosen":
        assert steps[-1].extra["reward_margin"] > 0
        assert acc >= 0.9 and acc > base_acc
        assert f["win_rate"] >= 0.9 and f["elo_rating"] > 1800
        assert all(v >= 0.8 for v in f["vertical_accuracy"].values())
    else:
        assert steps[-1].extra["reward_margin"] > 0  # it learnt what it was shown: the swapped side
        assert acc <= 0.1 and acc < base_acc
        assert f["win_rate"] <= 0.1 and f["elo_rating"] < 1200
    assert f["evaluation"]["wins"] + f["evaluation"]["draws"] + f["evaluation"]["losses"] == 24


def test_sft_on_the_chosen_side_lowers_heldout_loss_and_raises_accuracy(tmp_path, lora_model, tokenizer, data):
    import torch

    train_pairs, held = data
    encoded, _ = encode_records(tokenizer, as_sft(train_pairs), 128)
    train(lora_model, SFTMethod(encoded, tokenizer.pad_token_id, torch.device("cpu")), steps=20, lr=1e-2)
    f, _ = run_eval(tmp_path, lora_model, tokenizer, held)
    assert f["adapter"]["heldout_loss"] < f["base"]["heldout_loss"] - 0.1
    assert f["adapter"]["perplexity"] < f["base"]["perplexity"]
    assert f["adapter"]["preference_accuracy"] > f["base"]["preference_accuracy"]
    assert f["win_rate"] > 0.5


def test_reference_is_computed_once_with_the_adapter_disabled(lora_model, tokenizer, data):
    """Training changes the adapter, never the reference: the loop runs one forward pass per step (the policy),
    and the reference equals the base model's log-probabilities."""
    import torch

    train_pairs, _ = data
    objective = dpo_objective(tokenizer, train_pairs)
    # Make the adapter non-zero first: the reference must still be the base model's.
    with torch.no_grad():
        for name, p in lora_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    used = used_indices(objective.lengths, 4, 0, 3)
    assert len(used) == 12  # 3 steps x 4 pairs: only those pay for a reference pass
    objective.compute_reference(lora_model, indices=used)
    ref_c = objective.ref_chosen.clone()
    assert torch.isnan(ref_c).sum() == len(train_pairs) - 12

    causal = lora_model.get_base_model()
    with torch.no_grad(), lora_model.disable_adapter():
        seqs = [objective.pairs[i].sequences()[0] for i in used]
        base_c, _ = sequence_logps(causal, seqs, tokenizer.pad_token_id, torch.device("cpu"))
    assert torch.allclose(ref_c[used], base_c, atol=1e-4)
    with torch.no_grad():
        adapted_c, _ = sequence_logps(causal, seqs, tokenizer.pad_token_id, torch.device("cpu"))
    assert not torch.allclose(adapted_c, base_c, atol=1e-3)  # the adapter does change the policy

    calls = []
    hook = causal.get_decoder().register_forward_hook(lambda *a: calls.append(1))
    try:
        train(lora_model, objective, steps=3, lr=1e-3, seed=0)
    finally:
        hook.remove()
    assert len(calls) == 3  # one forward per step: chosen and rejected together, no reference pass
    assert torch.equal(objective.ref_chosen[used], ref_c[used])
    with pytest.raises(RuntimeError, match="no reference"):
        unused = next(i for i in range(len(train_pairs)) if i not in used)
        objective.step(causal, [unused])


def test_sequence_logps_are_response_only_and_padding_safe(lora_model, tokenizer):
    """Batched, right-padded sums equal a plain full-logits computation over each sequence's response tokens."""
    import torch

    causal = lora_model.get_base_model()
    seqs = [([5, 9, 17, 33, 41, 60, 71], 3), ([5, 9, 12, 80], 2), ([7, 8, 9, 10, 11, 12, 13, 14, 15], 8)]
    with torch.no_grad():
        sums, counts = sequence_logps(causal, seqs, tokenizer.pad_token_id, torch.device("cpu"))
        for (ids, plen), s, c in zip(seqs, sums, counts):
            logits = causal(input_ids=torch.tensor([ids])).logits[0].float()
            logp = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:]).unsqueeze(1))[:, 0]
            assert float(s) == pytest.approx(float(logp[plen - 1:].sum()), abs=1e-3)
            assert int(c) == len(ids) - plen


def test_pairs_are_encoded_like_sft_records(tokenizer):
    """Same chat-template prompt as SFT (so an SFT adapter is evaluated on the prompt it was trained with), each
    side ends with the end-of-turn token, and sequences are cut at max_seq_length with the prompt kept."""
    pair = known_pairs(1, seed=9)[0]
    (encoded,), stats = encode_pairs(tokenizer, [pair], 128)
    (sft,), _ = encode_records(tokenizer, as_sft([pair]), 128)
    assert encoded.prompt == sft.input_ids[:sft.prompt_len]
    assert encoded.prompt + encoded.chosen == sft.input_ids
    assert encoded.chosen[-1] == encoded.rejected[-1] == tokenizer.eos_token_id
    short, stats = encode_pairs(tokenizer, [pair], len(encoded.prompt) + 3)
    assert stats.truncated == 1 and len(short[0].chosen) == len(short[0].rejected) == 3
    none, stats = encode_pairs(tokenizer, [pair], len(encoded.prompt))
    assert none == [] and stats.dropped == [0]


def test_batched_samples_are_the_answers_of_one_prompt_at_a_time(tmp_path, lora_model, tokenizer, data):
    """The samples come from one batched, left-padded ``generate`` of every prompt with the adapter off and on
    (peft's mixed batch); each answer is the greedy answer of that prompt alone, the adapter disabled for the
    base as before. The adapter is moved off its zero start so base and adapter differ."""
    import torch

    from services.trainer.worker.encoding import prompt_and_response

    _, held = data
    sft = [dict(r, input=r["input"] + " because" * k) for k, r in enumerate(held.sft)]  # prompts of 4 lengths
    held = HeldOut(sft=sft, pairs=held.pairs)
    with torch.no_grad():
        for name, p in lora_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    lora_model.eval()
    settings = ev.EvalSettings(samples=4, sample_max_new_tokens=12)
    progress = ev._Progress(Recorder().sink)
    samples = ev.generate_samples(lora_model, tokenizer, held, settings, 128, progress)
    records = ev.balanced_take(held.sft, 4)
    prompts = [tokenizer(prompt_and_response(tokenizer, r)[0], add_special_tokens=False)["input_ids"]
               for r in records]
    assert len({len(p) for p in prompts}) > 1  # prompts of different lengths: the batch is padded
    assert len(samples) == 4
    differ = 0
    for record, ids, sample in zip(records, prompts, samples):
        for which in ("base", "adapter"):
            ctx = lora_model.disable_adapter() if which == "base" else torch.no_grad()
            with ctx, torch.no_grad():
                x = torch.tensor([ids])
                gen = lora_model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                                          max_new_tokens=12, use_cache=True, pad_token_id=tokenizer.pad_token_id,
                                          eos_token_id=tokenizer.eos_token_id)
            alone = tokenizer.decode(gen[0, x.shape[1]:], skip_special_tokens=True).strip()
            assert sample[which] == alone, (which, sample[which], alone)
        assert sample["reference"] == record["output"]
        differ += sample["base"] != sample["adapter"]
    assert differ  # the adapter changes the answers: the mixed batch really ran both


def test_the_evaluation_of_a_short_job_is_cut_to_the_trainings_cost(tmp_path, lora_model, tokenizer, data):
    """With the training's cost known (``for_training``), records and pairs are cut to the same share so that
    base + adapter passes and the samples fit in ``max_cost_ratio`` x the training's token passes; never below
    4 of each; the start event and metrics.json say so. Without a training cost (or ratio 0): no cut."""
    from services.trainer.worker.encoding import encode_pairs, encode_records

    _, held = data
    settings = ev.EvalSettings(**SETTINGS)
    assert ev.budget(held, tokenizer, settings, 128) == (held, settings, None)
    off = settings.model_copy(update={"max_cost_ratio": 0.0}).for_training(10, True)
    assert ev.budget(held, tokenizer, off, 128) == (held, off, None)

    sft, _ = encode_records(tokenizer, held.sft, 128)
    pairs, _ = encode_pairs(tokenizer, held.pairs, 128)
    full = 2 * (sum(len(e.input_ids) for e in sft) + sum(p.length for p in pairs))
    short = settings.for_training(full // 7, gradient_checkpointing=True)  # about a third of the passes it needs
    assert short.training_token_passes == int(2.5 * (full // 7))
    cut, used_settings, allowed = ev.budget(held, tokenizer, short, 128)
    assert used_settings.samples == 1
    assert allowed == short.training_token_passes
    assert 4 <= len(cut.sft) < len(held.sft) and 4 <= len(cut.pairs) < len(held.pairs)
    # Round-robin across verticals: every vertical keeps its share.
    assert cut.sft == ev._round_robin(held.sft)[:len(cut.sft)] and cut.pairs == ev._round_robin(held.pairs)[
        :len(cut.pairs)]
    assert abs(len(cut.sft) / len(held.sft) - len(cut.pairs) / len(held.pairs)) < 0.1  # the same share of each
    sft, _ = encode_records(tokenizer, cut.sft, 128)
    pairs, _ = encode_pairs(tokenizer, cut.pairs, 128)
    samples = 2 * (max(len(e.input_ids) for e in sft) + ev.SAMPLE_TOKEN_PASSES * settings.sample_max_new_tokens)
    assert 2 * (sum(len(e.input_ids) for e in sft) + sum(p.length for p in pairs)) + samples <= allowed
    assert {v for r in cut.sft for v in [r["metadata"]["vertical"]]} == {"legal", "medical"}

    tiny = settings.for_training(1, gradient_checkpointing=False)
    floor, _, _ = ev.budget(held, tokenizer, tiny, 128)
    assert len(floor.sft) == len(floor.pairs) == ev.MIN_BUDGET_ITEMS

    rec = Recorder()
    f = ev.evaluate(fake_job(tmp_path), lora_model, tokenizer, held, rec.sink, short)
    assert f["evaluation"]["cut_by_budget"] and f["evaluation"]["budget_token_passes"] == allowed
    assert f["eval_sft_records"] == len(cut.sft) and f["eval_dpo_pairs"] == len(cut.pairs)
    start = next(e for e in rec.events if e.get("phase") == "start")
    assert f"cut from {len(held.sft)} and {len(held.pairs)} (1 of 1 samples)" in start["message"]
