"""The plan table and the simulation behind it: pure, on described clusters, no Ray."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from sweep import sizing
from sweep.cost import Work, seconds
from sweep.forecast import ORDERS, Basis, Forecast, best_policy, forecast
from sweep.plan import plan
from sweep.schedule import Policy, demand
from sweep.scheduler import Started, Submitted
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]


def study_forecast(cluster: str, *overrides: str) -> Forecast:
    cfg = compose_config("model=all", "evals=hard", f"cluster={cluster}", *overrides)
    inventory = sizing.described(cfg.cluster)
    return forecast(plan(cfg, "r", inventory), cfg, inventory)


def never_oversubscribed(f: Forecast, gpus_per_node: int) -> None:
    """At every instant, the instances alive on a node hold at most its GPUs."""
    events = sorted({s.start for s in f.spans})
    for t in events:
        used: dict[int, int] = defaultdict(int)
        for s in f.spans:
            if s.start <= t < s.end:
                for node in s.where.nodes:
                    used[node] += s.demand.shape.tp if s.where.spans_nodes else s.demand.gpus
        assert max(used.values()) <= gpus_per_node, (t, dict(used))


def test_study_on_two_h100_nodes_loads_the_397b_twice_and_the_rest_once() -> None:
    f = study_forecast("h100_2x8")
    loads = defaultdict(int)
    for s in f.spans:
        loads[s.model] += 1
    # 794 GB BF16 takes all 16 GPUs: it answers first, gives the room to the other seven, and
    # comes back to judge once their answers exist. The other seven fit together and judge
    # without reloading.
    assert loads == {**{m: 1 for m in loads}, "Qwen3.5-397B-A17B": 2}
    big = [s for s in f.spans if s.model == "Qwen3.5-397B-A17B"]
    assert big[0].where.nodes == (0, 1) and big[0].demand.shape.pp == 2
    never_oversubscribed(f, 8)
    assert f.lower_bound_s <= f.makespan_s
    assert f.makespan_s == max(s.end for s in f.spans)


def test_on_64_gpus_every_model_loads_once_and_the_makespan_is_near_the_bound() -> None:
    f = study_forecast("h100_64")
    assert f.loads == 8
    never_oversubscribed(f, 8)
    # The longest single model (the 397B: load, answers, judging) is the bound here.
    assert f.makespan_s <= 1.1 * f.lower_bound_s


def test_fp8_397b_runs_tp8_on_one_h200_node() -> None:
    f = study_forecast("h200_8", "model.cards.qwen3_5_397b_a17b.dtype=fp8", "engine.max_model_len=40960")
    big = next(s for s in f.spans if s.model == "Qwen3.5-397B-A17B")
    assert (big.demand.shape.tp, big.demand.shape.pp, big.where.nodes) == (8, 1, (0,))
    never_oversubscribed(f, 8)


def fake_ray(tmp_path: Path) -> dict[str, str]:
    """An environment in which importing ray fails: proof the plan never starts it; nor does it import the
    report's stack (DuckDB, scipy), which would add most of a second to every plan."""
    for package in ("ray", "duckdb", "scipy"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"raise ImportError('plan=true must not import {package}')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}


def test_plan_cli_prints_the_table_without_ray(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sweep", "model=all", "evals=hard", "plan=true", "cluster=h100_2x8"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=fake_ray(tmp_path),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text, flat = out.stdout, " ".join(out.stdout.split())  # the title and caption wrap at the table's width
    assert "8 models, 88 answers, 616 judgments on 2 node(s), 384 CPUs, 4096 GiB RAM, 16 H100 GPUs of 80 GiB" in flat
    for col in ("model", "GPUs", "TP x PP", "node", "dtype", "weight GB", "KV GB", "max_model_len", "graphs",
                "est. time", "loads"):
        assert col in text
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in text.splitlines() if line.startswith("│")}
    # KV GB: what gpu_memory_utilization leaves the engine, 16 x (0.9 x 80 GiB - 794 GB / 16 - 3 GiB) = 391.4 GB.
    # max_model_len: judging Coder-Next's answers re-asked at 2 x 65,536 tokens, 1.1 x for the judge's tokenizer,
    # plus the judge prompt and a verdict re-asked twice (4 x 512); Qwen3-8B stops at its 40,960 (capped: *).
    assert rows["Qwen3.5-397B-A17B"][:8] == ["16", "8 x 2", "0,1", "bfloat16", "794.0", "391.4", "150,560", "yes"]
    assert rows["Qwen3-8B"][:8] == ["1", "1 x 1", "1", "bfloat16", "16.4", "57.7", "40,960*", "yes"]
    assert "warning: Qwen3-8B: max_model_len capped at 40,960 tokens (its context length)" in flat
    # The BF16 397B spans both nodes: loaded once, last (widest_last), it answers and judges everyone; the
    # seven others answer first and reload to judge its answers (589 s against 665 s loading it twice).
    assert rows["Qwen3-8B"][-1] == "2" and rows["Qwen3.5-397B-A17B"][-1] == "1"
    assert "15 model loads" in flat




def test_one_basis_forecasts_each_policy_as_a_fresh_forecast_does() -> None:
    """best_policy builds the per-plan part once (sweep.forecast.Basis: cost figures, cell work, bound, a cell
    queue snapshot) and runs the loop per policy on a copy of the queue: each forecast, made one after another
    on one Basis, equals a forecast from scratch: makespan, loads, every span and the loop's whole trace."""
    cfg = compose_config("model=all", "evals=hard", "engine.prefer_fp8=true", "cluster=h100_8")
    inventory = sizing.described(cfg.cluster)
    the_plan = plan(cfg, "r", inventory)
    basis = Basis(the_plan, cfg, inventory)
    backwards = tuple(c.name for c in reversed(the_plan.cards))
    policies = [Policy(), Policy(order="widest_last"), Policy(order="given", sequence=backwards),
                Policy(order="cheap_last_loaded", judge_ready=True), Policy(order="widest_last", warm_reloads=True),
                Policy(order="pool", fuse=False, replicas=False, early_judging=False), Policy()]
    shared = [basis.forecast(p) for p in policies]
    for p, f in zip(policies, shared):
        fresh = forecast(the_plan, cfg, inventory, p)
        assert f.trace == fresh.trace and len(f.trace) > 40, p
        assert [dataclasses.astuple(s) for s in f.spans] == [dataclasses.astuple(s) for s in fresh.spans], p
        assert (f.makespan_s, f.loads, f.gpu_s, f.model_s, f.bound) == (
            fresh.makespan_s, fresh.loads, fresh.gpu_s, fresh.model_s, fresh.bound), p
    # The policies differ where they should: the check above compares schedules that are not all one.
    assert len({(round(f.makespan_s, 6), f.loads) for f in shared}) >= 4
    assert shared[-1].bound is not None and shared[4].bound is not None
    assert shared[4].bound.seconds < shared[-1].bound.seconds  # warm reloads: its own, lower bound


def test_the_run_takes_the_load_order_whose_forecast_ends_first() -> None:
    cfg = compose_config("model=all", "evals=hard", "cluster=h100_2x8", "model.cards.qwen3_5_397b_a17b.dtype=fp8")
    inventory = sizing.described(cfg.cluster)
    the_plan = plan(cfg, "r", inventory)
    policy, best = best_policy(the_plan, cfg, inventory)
    by_order = {o: forecast(the_plan, cfg, inventory, Policy(order=o)) for o in ORDERS}
    # On 16 GPUs the seven smaller models can't all stay loaded beside the 397B: loading the cheap
    # ones first keeps the 122B and Coder-Next loaded into judging, and only cheap models reload.
    named = min(ORDERS, key=lambda o: (round(by_order[o].makespan_s), by_order[o].loads))
    assert named == "cheap_last_loaded"
    assert by_order[named].makespan_s < by_order["largest"].makespan_s
    assert by_order[named].loads > by_order["largest"].loads
    # The search from it finds an order that ends sooner still (344 -> 334 s under the cost model).
    assert policy.order == "given" and best.makespan_s < by_order[named].makespan_s
    never_oversubscribed(best, 8)


def test_replicas_use_idle_gpus_when_a_load_pays_off() -> None:
    cfg = compose_config("model=all", "evals=hard", "run.samples=8", "cluster=h100_64")
    inventory = sizing.described(cfg.cluster)
    the_plan = plan(cfg, "r", inventory)
    alone, replicated = (forecast(the_plan, cfg, inventory, Policy(replicas=r, early_judging=False))
                         for r in (False, True))
    assert alone.loads == 8 and replicated.loads > 8
    assert replicated.makespan_s < alone.makespan_s
    never_oversubscribed(replicated, 8)
    # Work is conserved: the busy seconds of a model's instances add up to its work alone.
    for name in alone.model_s:
        busy = sum(s.busy_s for s in replicated.spans if s.model == name)
        assert busy == pytest.approx(sum(s.busy_s for s in alone.spans if s.model == name), rel=1e-6)


def test_api_cards_plan_beside_gpu_models_without_loads_or_gpus() -> None:
    """An API card holds no GPUs and loads nothing; two on one endpoint take turns, as in the runner."""
    cfg = compose_config("model=[served_smollm2,qwen3_8b]", "evals=hard", "cluster=h100_8")
    cfg.model.cards["served_twin"] = dataclasses.replace(cfg.model.cards["served_smollm2"], name="Served-twin")
    inventory = sizing.described(cfg.cluster)
    f = forecast(plan(cfg, "r", inventory), cfg, inventory)
    api = [s for s in f.spans if s.demand.endpoint]
    assert {s.model for s in api} == {"SmolLM2-135M-served", "Served-twin"}
    assert all(s.demand.gpus == 0 and s.ready == s.start for s in api)
    assert f.loads == 1  # Qwen3-8B only
    assert f.gpu_s == pytest.approx(f.model_s["Qwen3-8B"])  # API work is not GPU work
    # On the shared endpoint, one card's batch ends before the other's starts.
    first, second = sorted(api, key=lambda s: s.start)
    # Each API card (cost.py: 50 tokens/s per request, 16 requests at once) answers 11 prompts at its
    # 384-token budget in one wave, and judges 2 x 11 answers at 150 verdict tokens in two waves.
    assert {s.model: f.model_s[s.model] for s in api} == {"SmolLM2-135M-served": pytest.approx(384 / 50 + 2 * 150 / 50),
                                                          "Served-twin": pytest.approx(384 / 50 + 2 * 150 / 50)}
    assert second.end - first.start >= f.model_s[first.model] + f.model_s[second.model] - 1e-6


def test_idle_judges_judge_the_answers_that_exist_while_others_answer() -> None:
    cfg = compose_config("model=all", "evals=hard", "run.samples=8", "cluster=h100_64")
    inventory = sizing.described(cfg.cluster)
    the_plan = plan(cfg, "r", inventory)
    late, early = (forecast(the_plan, cfg, inventory, Policy(early_judging=e)) for e in (False, True))
    assert early.makespan_s < late.makespan_s and early.loads == 8
    never_oversubscribed(early, 8)
    for name in late.model_s:  # the same work, done sooner (in more, smaller batches: a little less batched)
        busy, alone = (sum(s.busy_s for s in f.spans if s.model == name) for f in (early, late))
        assert alone - 1e-6 <= busy <= 1.25 * alone
    # On one CPU node the instances take turns: nobody is idle while another answers.
    cpu = compose_config("evals=hard")
    local = sizing.Inventory((sizing.Node(2.0, 0, 24 << 30),))
    cpu_plan = plan(cpu, "r", local)
    assert (forecast(cpu_plan, cpu, local, Policy(early_judging=True)).makespan_s
            == forecast(cpu_plan, cpu, local, Policy(early_judging=False)).makespan_s)


def test_replicas_and_early_judging_can_be_turned_off_from_the_config() -> None:
    on = compose_config("model=all", "evals=hard", "run.samples=8", "cluster=h100_64")
    off = compose_config("model=all", "evals=hard", "run.samples=8", "cluster=h100_64", "run.replicas=false",
                         "run.early_judging=false")
    inventory = sizing.described(on.cluster)
    (p_on, f_on), (p_off, f_off) = (best_policy(plan(c, "r", inventory), c, inventory) for c in (on, off))
    assert p_on.replicas and p_on.early_judging and not p_off.replicas and not p_off.early_judging
    assert f_off.makespan_s > f_on.makespan_s
    with pytest.raises(Exception, match="early_judging"):
        compose_config("run.early_judging=sometimes")


def test_backfill_and_read_ahead_are_set_from_the_config() -> None:
    """Issue 15's plan on 8 x H100 with 8 samples: backfill (on by default) ends it sooner; run.backfill=false
    turns it off, run.read_ahead=true on (and sooner still), in the plan the live run takes."""
    runs = {}
    for name, extra in (("default", ()), ("no backfill", ("run.backfill=false",)), ("ahead", ("run.read_ahead=true",))):
        cfg = compose_config("model=all", "evals=hard", "engine.prefer_fp8=true", "cluster=h100_8", "run.samples=8",
                             *extra)
        inventory = sizing.described(cfg.cluster)
        runs[name] = best_policy(plan(cfg, "r", inventory), cfg, inventory)
    (p_on, f_on), (p_off, f_off), (p_ahead, f_ahead) = runs.values()
    assert p_on.backfill and not p_on.read_ahead and not p_off.backfill and p_ahead.read_ahead
    assert f_ahead.makespan_s < f_on.makespan_s < f_off.makespan_s
    for bad in ("run.backfill=sometimes", "run.read_ahead=maybe"):
        with pytest.raises(Exception, match=bad.split("=")[0].split(".")[1]):
            compose_config(bad)


def test_a_moe_decode_step_reads_the_experts_of_the_real_batch() -> None:
    # 11 answers decode together: the step reads the experts 11 sequences route to, whatever
    # engine.concurrency allows (64 would read 72% of the 397B's experts instead of ~20%).
    cfg = compose_config("model=all", "evals=hard", "model.cards.qwen3_5_397b_a17b.dtype=fp8", "cluster=h100_8")
    inventory = sizing.described(cfg.cluster)
    card = cfg.model.cards["qwen3_5_397b_a17b"]
    d = demand(card, cfg, inventory)
    w = Work(prefill=1100, decode=11 * 1200, sequences=11)
    assert seconds(card, d, w, inventory, 64) == seconds(card, d, w, inventory, 11)
    arch = card.architecture
    touched = 1 - (1 - arch.experts_per_token / arch.num_experts) ** 11
    read = (17e9 + (397e9 - 17e9) * touched) * 1.0  # FP8: a byte per parameter
    step = read / (3350e9 * 0.6 * 8 * 0.85 ** 3)
    assert seconds(card, d, Work(0, 11 * 1200, 11), inventory, 64) == pytest.approx(1200 * step)


def test_backfill_judges_early_only_within_the_time_the_waiting_model_waits_anyway() -> None:
    """8 x H100, issue 15's FP8 plan: the 397B needs the whole node and loads last (widest_last). A model
    done answering while it waits judges what it can before the room frees anyway (the other instances'
    projected ends), then leaves: the 397B loads no later, the makespan is no longer."""
    cards = "[qwen3_5_397b_a17b,qwen3_5_122b_a10b,qwen3_5_27b,qwen3_8b,qwen3_5_9b]"
    cfg = compose_config(f"model={cards}", "evals=hard", "engine.prefer_fp8=true", "cluster=h100_8", "run.samples=8")
    inventory = sizing.described(cfg.cluster)
    the_plan = plan(cfg, "r", inventory)
    plain, filled = (forecast(the_plan, cfg, inventory, Policy(order="widest_last", backfill=b)) for b in (False, True))
    big = "Qwen3.5-397B-A17B"

    def waited(f: Forecast) -> tuple[float, list[str]]:
        """When the 397B loaded, and the instances sent early judging before that."""
        at = next(i for i, e in enumerate(f.trace) if isinstance(e, Started) and e.model == big)
        return (next(s.start for s in f.spans if s.model == big),
                [e.instance for e in f.trace[:at] if isinstance(e, Submitted) and e.early])

    (start, none), (filled_start, early) = waited(plain), waited(filled)
    assert not none and early  # nothing judges early while it waits, unless backfilled
    assert filled_start <= start
    for name in early:  # each ended its early job, and left, by the time the 397B loaded
        assert next(s for s in filled.spans if s.model == name).end <= filled_start + 1e-6
    assert filled.makespan_s <= plain.makespan_s and filled.loads <= plain.loads
    never_oversubscribed(filled, 8)
    # The whole plan: the node idled while six models waited for the 122B with ready verdicts to compute.
    cfg = compose_config("model=all", "evals=hard", "engine.prefer_fp8=true", "cluster=h100_8", "run.samples=8")
    the_plan = plan(cfg, "r", inventory)
    plain, filled = (forecast(the_plan, cfg, inventory, Policy(order="widest_last", backfill=b)) for b in (False, True))
    assert waited(filled)[0] <= waited(plain)[0]
    assert filled.makespan_s < plain.makespan_s and filled.makespan_s <= 1.10 * filled.lower_bound_s


def test_late_load_lets_the_last_waiting_model_load_later_while_its_answers_still_end_in_time() -> None:
    """2 x 8 H100, issue 15's FP8 plan at 8 samples: the 122B waits for room on the small models' node.
    With late_load it loads later, as long as its answers still end before the others' projected ends,
    so the 9B done answering judges the 8B's answers before it leaves: less to judge after its reload."""
    cfg = compose_config("model=all", "evals=hard", "engine.prefer_fp8=true", "cluster=h100_2x8", "run.samples=8")
    inventory = sizing.described(cfg.cluster)
    the_plan = plan(cfg, "r", inventory)
    plain, late = (forecast(the_plan, cfg, inventory, Policy(order="cheap_last_loaded", late_load=x))
                   for x in (False, True))
    start = [next(s.start for s in f.spans if s.model == "Qwen3.5-122B-A10B") for f in (plain, late)]
    assert start[1] > start[0]  # the price: it waits longer
    assert late.makespan_s < plain.makespan_s and late.loads == plain.loads
    never_oversubscribed(late, 8)
    _, best = best_policy(the_plan, cfg, inventory, Policy(late_load=True))
    assert best.makespan_s <= 1.10 * best.lower_bound_s < plain.makespan_s
