"""Cards whose weights and engine settings are the same share one loaded engine (sweep.plan.shared_engines):
one load, their requests in one engine call, each with its own prompt, sampling and seed, and every row
naming its own card. The grouping is planned (pure); the fake engine on a real Ray records what it was
handed; the real CPU vLLM path is checked on the shared real sweep (tests/test_real_engine.py)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from jobs.engines.base import EngineSettings
from jobs.engines.fake import FakeEngine
from jobs.generate import generate
from sweep.core.config import Mode, SweepConfig
from sweep.forecast import forecast, plan_table
from sweep.plan import plan
from sweep.queue import CellQueue
from tests.conftest import compose_config, exact_rows, fake_pool
from tests.test_plan import LAPTOP, TWO_H100_NODES
from warehouse.db import connect

SMOL, EXPERT, GEMMA = "SmolLM2-135M", "SmolLM2-135M-expert", "Gemma3-270M-base"
EXPERT_PROMPT = compose_config().model.cards["smollm2_expert"].system_prompt


def engines(cfg: SweepConfig, inventory=LAPTOP) -> list[tuple[str, ...]]:  # noqa: ANN001
    return [e.cards for e in plan(cfg, "r", inventory).engines]


def test_the_cpu_pool_loads_smollm2_once_for_both_its_cards_and_the_plan_says_so() -> None:
    cfg = compose_config()
    p = plan(cfg, "r", LAPTOP)
    assert [e.cards for e in p.engines] == [(SMOL, EXPERT), (GEMMA,)]
    assert p.hosts() == {SMOL: SMOL, EXPERT: SMOL, GEMMA: GEMMA}
    alone = plan(compose_config("run.share_engines=false"), "r", LAPTOP)
    assert [e.cards for e in alone.engines] == [(SMOL,), (EXPERT,), (GEMMA,)]
    # Sharing is how cells run, not what they compute: every content key is the same either way.
    assert [c.key for c in (*p.generate, *p.judge)] == [c.key for c in (*alone.generate, *alone.judge)]
    # The forecast runs the live loop: one load for the two SmolLM2 cards, each judging the other on it.
    shared, apart = forecast(p, cfg, LAPTOP), forecast(alone, compose_config("run.share_engines=false"), LAPTOP)
    assert (shared.loads, apart.loads) == (2, 3)
    assert sorted(s.model for s in shared.spans) == [GEMMA, SMOL]
    from rich.console import Console

    console = Console(width=400, record=True)
    console.print(plan_table(p, cfg, shared, LAPTOP))
    text = console.export_text()
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in text.splitlines() if line.startswith("│")}
    assert set(rows) == {f"{SMOL} + {EXPERT}", GEMMA}  # one instance row naming both cards
    assert rows[f"{SMOL} + {EXPERT}"][-1] == "1" and "2 model loads" in " ".join(text.split())


@pytest.mark.parametrize("override", [
    "model.cards.smollm2_expert.dtype=bfloat16",  # another dtype: other arithmetic
    "model.cards.smollm2_expert.context_length=6000",  # another context length: another max_model_len
    "model.cards.smollm2_expert.gguf.file=SmolLM2-135M-Instruct.Q8_0.gguf",  # other weights
    "model.cards.smollm2_expert.prompt_format=plain",  # another prompt format and stop strings
    "model.cards.smollm2_expert.revision=v2",  # another revision of the same repo
    "model.cards.smollm2_expert.engine=fake",  # another engine
])
def test_cards_that_differ_in_weights_or_engine_settings_load_apart(override: str) -> None:
    assert engines(compose_config(override)) == [(SMOL,), (EXPERT,), (GEMMA,)]


@pytest.mark.parametrize("override", [
    "model.cards.smollm2_expert.sampling.non_thinking.max_tokens=100",  # sampling: per request
    "model.cards.smollm2_expert.system_prompt=other",
    "model.cards.smollm2_expert.mode=thinking",
    "model.cards.smollm2_expert.retry_truncated=3",
    "model.cards.smollm2_expert.family=other",
])
def test_cards_that_differ_only_in_what_each_request_carries_share(override: str) -> None:
    assert engines(compose_config(override)) == [(SMOL, EXPERT), (GEMMA,)]


def test_a_shared_engine_takes_the_longest_window_of_its_cards() -> None:
    """Their windows differ when their budgets do (same context length and KV cache, so the same limit): the
    engine starts with the longest, so each card's requests fit as they would alone."""
    p = plan(compose_config("model.cards.smollm2.sampling.non_thinking.max_tokens=1000"), "r", LAPTOP)
    smol, expert = p.context(SMOL), p.context(EXPERT)
    assert smol is not None and expert is not None and smol.want != expert.want
    assert p.engine_context(SMOL) == max(smol, expert, key=lambda c: c.max_model_len)


def test_odd_names_and_repos_group_by_weights_not_by_name() -> None:
    """Card names with slashes, quotes, pluses and non-ASCII, and Hub repos alike: equal repos share."""
    cfg = compose_config("model=[smollm2,smollm2_expert,gemma3_270m]")
    smol, expert, gemma = (cfg.model.cards[k] for k in ("smollm2", "smollm2_expert", "gemma3_270m"))
    odd = "org/Smöl LM + 'x' ..\\"
    cfg.model.cards = {
        "a": replace(smol, name='qwen/qwen3-8b "a"', gguf=None, hf_repo=odd),
        "b": replace(expert, name="b + c ü", gguf=None, hf_repo=odd),
        "c": replace(expert, name="../c", gguf=None, hf_repo=odd + "2"),
        "d": replace(gemma, name="d"),
    }
    p = plan(cfg, "r", LAPTOP)
    assert [e.cards for e in p.engines] == [('qwen/qwen3-8b "a"', "b + c ü"), ("../c",), ("d",)]
    assert p.engines[0].name == 'qwen/qwen3-8b "a" + b + c ü'


def test_api_cards_keep_their_own_clients() -> None:
    cfg = compose_config("model=[served_smollm2,gemma3_270m]")
    served = cfg.model.cards["served_smollm2"]
    cfg.model.cards["served_expert"] = replace(served, name="served-expert", system_prompt="be brief")
    assert engines(cfg) == [("SmolLM2-135M-served",), (GEMMA,), ("served-expert",)]


def test_a_models_thinking_and_non_thinking_cards_share_its_gpus() -> None:
    """On GPUs: Qwen3-8B's thinking card and its non-thinking one are one engine, one load, the same shape."""
    cfg = compose_config("model=[qwen3_8b,qwen3_32b]")
    think = replace(cfg.model.cards["qwen3_8b"], name="Qwen3-8B-thinking", mode=Mode.thinking)
    cfg.model.cards["qwen3_8b_thinking"] = think
    p = plan(cfg, "r", TWO_H100_NODES)
    assert [e.cards for e in p.engines] == [("Qwen3-8B", "Qwen3-8B-thinking"), ("Qwen3-32B",)]
    assert p.hosts()["Qwen3-8B-thinking"] == "Qwen3-8B"
    f = forecast(p, cfg, TWO_H100_NODES)
    apart = replace(cfg, run=replace(cfg.run, share_engines=False))
    assert f.loads == 2 and forecast(plan(apart, "r", TWO_H100_NODES), apart, TWO_H100_NODES).loads == 3


def test_a_shared_queue_hands_one_engine_all_its_cards_cells() -> None:
    p = plan(compose_config("evals=smoke"), "r", LAPTOP)
    q = CellQueue(p, compose_config("evals=smoke").judge, {})
    assert set(q.generate) == {SMOL, GEMMA}
    assert [c.model for c in q.generate[SMOL]] == [SMOL] * 3 + [EXPERT] * 3
    assert {c.judge for c in q.left(SMOL)[0]} == {SMOL, EXPERT} and q.judges() == {SMOL, GEMMA}


def test_cards_sharing_an_engine_re_ask_as_each_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """One engine call for both cards' answers, each re-asked by its own card's count."""
    monkeypatch.setenv("SWEEP_FAKE_NEEDS_TOKENS", "10000")  # every answer is cut off
    cfg = compose_config("evals=smoke", "model.cards.smollm2.retry_truncated=2")
    p = plan(cfg, "r", LAPTOP)
    cards = {c.name: c for c in p.cards}
    engine = FakeEngine(cards[SMOL], EngineSettings("", "float32", 2048, None, True, 1, 0.9, False, 0))
    rows = generate(engine, cards, {SMOL: 0, EXPERT: 1}, p.suite, [c for c in p.generate if c.model != GEMMA], "r",
                    None)
    assert [(r.model, r.attempts, r.pool_index, json.loads(r.sampling)["max_tokens"]) for r in rows] == \
        [(SMOL, 3, 0, 384 * 4)] * 3 + [(EXPERT, 1, 1, 384)] * 3


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray whose workers record every fake engine call (SWEEP_FAKE_CALLS: they inherit the env)."""
    import ray

    calls = tmp_path_factory.mktemp("calls")
    os.environ["SWEEP_FAKE_CALLS"] = str(calls)
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    finally:
        del os.environ["SWEEP_FAKE_CALLS"]
    yield calls
    ray.shutdown()


def test_two_cards_on_one_fake_engine_load_once_and_each_request_keeps_its_card(recorded: Path,
                                                                               tmp_path: Path) -> None:
    from sweep.run import run

    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=shared")
    cfg.model.cards["smollm2_expert"].hf_repo = cfg.model.cards["smollm2"].hf_repo  # the same weights again
    result = run(cfg)
    assert result.model_loads == 2 and sorted(result.starts) == [GEMMA, SMOL]
    assert exact_rows(result.store, "shared") == (9, 9, 18, 18)
    calls = [json.loads(line) for f in sorted(recorded.glob("*.jsonl")) for line in f.read_text().splitlines()]
    shared = [c for c in calls if c["card"] == SMOL]
    assert len({c["pid"] for c in shared}) == 1  # one process, one engine, for both cards
    (answers,) = [c["requests"] for c in shared if not c["requests"][0]["verdict"]]  # one call for all six
    prompts = {i.prompt for i in cfg.evals.prompts}
    mine = [r for r in answers if r["messages"][0][0] != "system"]
    expert = [r for r in answers if r["messages"][0] == ["system", EXPERT_PROMPT]]
    assert len(mine) == len(expert) == 3 and {r["messages"][-1][1] for r in mine + expert} == prompts
    assert {(s["temperature"], s["top_p"], s["seed"]) for s in (r["sampling"] for r in mine)} == {(0.0, 1.0, 0)}
    assert {(s["temperature"], s["top_p"], s["seed"]) for s in (r["sampling"] for r in expert)} == {(0.7, 0.9, 0)}
    # Its verdicts for both judge cards in one call: each judge's own sampling (the expert card's top_p).
    both = [c["requests"] for c in shared if c["requests"][0]["verdict"] and
            {r["sampling"]["top_p"] for r in c["requests"]} == {1.0, 0.9}]
    assert both, [[r["sampling"]["top_p"] for r in c["requests"]] for c in shared]
    con = connect(result.store)
    pid = shared[0]["pid"]
    # Rows carry their own card: its system prompt and sampling, answered by the shared engine's process.
    got = con.execute("select model, system_prompt, json_extract(sampling, '$.temperature')::double, "
                      "bool_and(answer like ('%from pid ' || ?)), count(*) from raw_generations "
                      "group by all order by 1", [str(pid)]).fetchall()
    assert got[1:] == [(SMOL, None, 0.0, True, 3), (EXPERT, EXPERT_PROMPT, 0.7, True, 3)]
    assert got[0][0] == GEMMA and got[0][3] is False
    judged = con.execute("select judge, list(distinct respondent order by respondent), count(*) from raw_judgments "
                         "group by 1 order by 1").fetchall()
    assert judged == [(GEMMA, [SMOL, EXPERT], 6), (SMOL, [GEMMA, EXPERT], 6), (EXPERT, [GEMMA, SMOL], 6)]
    files = {Path(f).parent.name for f in result.store.files("judgments", "shared")}
    assert files == {f"judge={n}" for n in (GEMMA, SMOL, EXPERT)}  # each judge card's own partition
