"""Continuous batching in the engine (no gRPC): streams of the base and of two adapters decoded together in one
forward per step give exactly the answers each gives alone; joins at a step boundary, padding, leaving at
different lengths, per-row sampling, stop strings and cancel included."""

from __future__ import annotations

import threading

import pytest

from services.trainer.inference.engine import Engine
from services.trainer.inference.planner import Sampling, Target
from tests.inference.conftest import TINY, make_adapter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_models_dir):
    tmp = tmp_path_factory.mktemp("batching")
    base_dir = tiny_models_dir / TINY.replace("/", "--")
    base = Target(base_model=TINY, base_path=base_dir)
    a = Target(base_model=TINY, base_path=base_dir, job_id="job-a",
               adapter_path=make_adapter(base_dir, tmp / "a", 1, ["q_proj", "v_proj"]))
    b = Target(base_model=TINY, base_path=base_dir, job_id="job-b",
               adapter_path=make_adapter(base_dir, tmp / "b", 2, ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]))
    engine = Engine(memory_bytes=1 << 30, threads=1)
    for target in (base, a, b):
        engine.release(engine.acquire(target))
    return engine, {"base": base, "a": a, "b": b}


PROMPTS = {
    "court": "Should the court rule on the contract?",
    "long": "Is the clause void because of the risk of the trial, and what would the judge say on appeal "
            "given the precedent and the statute?",
    "short": "Why not?",
    "market": "What is the risk of the market price?",
}


def _prompt(engine: Engine, loaded, text: str) -> list[int]:
    return engine.prompt_ids(loaded, [{"role": "user", "content": text}])


def _alone(engine: Engine, target: Target, prompt: list[int], sampling: Sampling):
    loaded = engine.acquire(target)
    try:
        return engine.generate(loaded, target, prompt, sampling, threading.Event(), lambda text, n: None)
    finally:
        engine.release(loaded)


def _together(engine: Engine, jobs: list[tuple[Target, list[int], Sampling]], cancel_after: dict[int, int],
              raising: frozenset[int] = frozenset()):
    """Runs every job in its own thread, all submitted while the model is held, so that they decode as one
    batch; ``cancel_after[i]``: job i cancels itself once that many tokens were emitted. Returns each job's
    outcome (or the exception it raised) and, for cancelled ones, the token count when it cancelled; the
    ``emit`` of the jobs in ``raising`` raises."""
    loaded = engine.acquire(jobs[0][0])
    outcomes: list = [None] * len(jobs)
    seen: dict[int, int] = {}
    threads = []
    try:
        with loaded.lock:  # no forward until every stream is submitted
            for i, (target, prompt, sampling) in enumerate(jobs):
                cancel = threading.Event()

                def emit(text: str, n: int, i=i, cancel=cancel) -> None:
                    if i in raising:
                        raise RuntimeError(f"stream {i}'s client is gone")
                    if i in cancel_after and n >= cancel_after[i] and not cancel.is_set():
                        seen[i] = n
                        cancel.set()

                def work(i=i, target=target, prompt=prompt, sampling=sampling, cancel=cancel, emit=emit) -> None:
                    try:
                        outcomes[i] = engine.generate(loaded, target, prompt, sampling, cancel, emit)
                    except RuntimeError as exc:
                        outcomes[i] = exc

                threads.append(threading.Thread(target=work))
                threads[-1].start()
            deadline = threading.Event()
            while engine.running < len(jobs) and not deadline.wait(0.01):
                pass
        for t in threads:
            t.join(120)
    finally:
        engine.release(loaded)
    return outcomes, seen


def test_greedy_answers_batched_equal_alone_base_and_adapters_mixed(setup):
    engine, t = setup
    loaded = engine.acquire(t["base"])
    try:
        p = {k: _prompt(engine, loaded, v) for k, v in PROMPTS.items()}
    finally:
        engine.release(loaded)
    assert len({len(x) for x in p.values()}) >= 3  # different lengths: the batch pads
    greedy = Sampling(max_new_tokens=16, temperature=0.0)
    jobs = [
        (t["base"], p["court"], greedy),
        (t["a"], p["long"], Sampling(max_new_tokens=9, temperature=0.0)),
        (t["b"], p["short"], Sampling(max_new_tokens=24, temperature=0.0)),
        (t["base"], p["market"], Sampling(max_new_tokens=14, temperature=1.0, top_p=0.9, seed=5)),
        (t["a"], p["court"], greedy),
        (t["b"], p["market"], Sampling(max_new_tokens=30, temperature=1.0, seed=11)),
        (t["a"], p["short"], Sampling(max_new_tokens=40, temperature=0.0)),
    ]
    alone = [_alone(engine, *job) for job in jobs]
    assert alone[0].text != alone[4].text  # the adapter changes the answer
    # A stop string taken from an answer: batched, that stream ends before it as it does alone.
    stop_text = alone[2].text
    assert len(stop_text) > 6, alone[2]
    jobs.append((t["b"], p["short"], Sampling(max_new_tokens=24, temperature=0.0, stop=(stop_text[4:6],))))
    alone.append(_alone(engine, *jobs[-1]))
    assert alone[-1].finish_reason == "stop" and alone[-1].text == stop_text[:stop_text.index(stop_text[4:6])]

    before_steps, before_mixed = engine.steps, engine.mixed_steps
    engine.largest_batch = 0
    batched, _ = _together(engine, jobs, {})
    for i, (one, many) in enumerate(zip(alone, batched, strict=True)):
        assert many == one, (i, one, many)
    assert engine.largest_batch >= len(jobs) - 1  # (the first may decode a step alone before the rest join)
    assert engine.mixed_steps > before_mixed
    # One forward per step for all: far fewer forwards than the streams' tokens.
    assert engine.steps - before_steps < sum(o.completion_tokens for o in batched) / 2
    assert engine.running == 0


def test_a_cancelled_row_leaves_within_a_step_and_the_others_go_on(setup):
    engine, t = setup
    loaded = engine.acquire(t["base"])
    try:
        p = _prompt(engine, loaded, PROMPTS["court"])
        q = _prompt(engine, loaded, PROMPTS["long"])
    finally:
        engine.release(loaded)
    long_run = Sampling(max_new_tokens=60, temperature=1.0, seed=3)
    jobs = [(t["a"], p, long_run), (t["base"], q, Sampling(max_new_tokens=20, temperature=0.0)),
            (t["b"], q, long_run)]
    alone = [_alone(engine, *job) for job in jobs]
    assert alone[0].completion_tokens > 5
    outcomes, seen = _together(engine, jobs, {0: 3})
    cancelled = outcomes[0]
    assert cancelled.finish_reason == "cancelled"
    assert cancelled.completion_tokens == seen[0]  # not one token computed after the cancel was seen
    assert alone[0].text.startswith(cancelled.text)
    assert outcomes[1:] == alone[1:]
    assert engine.running == 0 and ("cancelled", seen[0]) in engine.finished[-3:]


def test_a_stream_whose_emit_fails_gets_the_error_and_the_batch_goes_on(setup):
    engine, t = setup
    loaded = engine.acquire(t["base"])
    try:
        p = _prompt(engine, loaded, PROMPTS["market"])
    finally:
        engine.release(loaded)
    jobs = [(t["base"], p, Sampling(max_new_tokens=12, temperature=0.0)),
            (t["b"], p, Sampling(max_new_tokens=12, temperature=0.0)),
            (t["a"], p, Sampling(max_new_tokens=12, temperature=0.0))]
    alone = [_alone(engine, *job) for job in jobs]
    outcomes, _ = _together(engine, jobs, {}, raising=frozenset({1}))
    assert isinstance(outcomes[1], RuntimeError) and "stream 1" in str(outcomes[1])
    assert [outcomes[0], outcomes[2]] == [alone[0], alone[2]]
    assert engine.running == 0
