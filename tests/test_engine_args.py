"""The keyword arguments vllm.LLM is constructed with, for each kind of instance the plan makes.

No GPU needed: ``vllm`` is replaced by a module whose ``LLM`` records its keyword arguments and stops
the construction there; the settings come from the real plan, placement and sweep.engine_args,
and jobs.engines.vllm.VllmEngine turns them into the arguments, as in a run.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from typing import Any

import pytest
from omegaconf import OmegaConf

from jobs.engines.vllm import VllmEngine
from sweep import engine_args, provenance, sizing
from sweep.plan import plan
from sweep.schedule import Capacity, Placement, demand
from tests.conftest import compose_config

GiB = sizing.GiB
LAPTOP = sizing.Inventory((sizing.Node(2.0, 0, 16 * GiB),))


class Captured(Exception):
    pass


@pytest.fixture
def llm_kwargs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def record(**kwargs: Any) -> None:
        seen.update(kwargs)
        raise Captured

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=record))
    return seen


def started(seen: dict[str, Any], key: str, *overrides: str, inventory: sizing.Inventory | None = None) -> dict[str, Any]:
    """Plan the config, place card ``key`` on an empty cluster, build its engine; the LLM kwargs."""
    cfg = compose_config("evals=hard", *overrides)
    inventory = inventory or sizing.described(cfg.cluster)
    the_plan = plan(cfg, "t", inventory)
    card = next(c for c in the_plan.cards if c.name == cfg.model.cards[key].name)
    d = demand(card, cfg, inventory)
    where = Capacity(inventory).take(d)
    assert where is not None
    settings = engine_args.settings(card, d.shape, where, cfg, the_plan.context(card.name))
    if not settings.weights:  # packaged weights: the actor converts them; their path is not the point here
        settings = dataclasses.replace(settings, weights="packaged")
    with pytest.raises(Captured):
        VllmEngine(card, settings)
    return dict(seen)


def test_a_cpu_card_gets_its_kv_cache_eager_mode_and_float32_in_process(llm_kwargs: dict[str, Any]) -> None:
    kw = started(llm_kwargs, "smollm2", "model=cpu", inventory=LAPTOP)
    # Judging: the hard suite's longest judge prompt (4,332 bytes: a pairwise one, with room for the cut-off
    # notice under both answers) + 1.1 x a peer's 384-token answer (423; no re-asks by default) + a 512-token
    # verdict re-asked twice (2,048): 6,803, under its 8,192 context. No chunked prefill on CPU: a step holds a
    # whole longest prompt (6,803 > vLLM-CPU's 4,096), since splitting a seeded request's prompt fails there.
    assert kw == {"model": "packaged", "dtype": "float32", "max_model_len": 6803, "enforce_eager": True, "seed": 0,
                  "disable_log_stats": False, "kv_cache_memory_bytes": 1 * GiB, "distributed_executor_backend": "uni",
                  "enable_chunked_prefill": False, "max_num_batched_tokens": 6803}


def test_a_one_gpu_card_leaves_the_kv_cache_to_gpu_memory_utilization_with_cuda_graphs(llm_kwargs: dict) -> None:
    kw = started(llm_kwargs, "qwen3_8b", "model=all", "cluster=h100_8", "model.cards.qwen3_5_397b_a17b.dtype=fp8")
    assert "kv_cache_memory_bytes" not in kw  # it would override gpu_memory_utilization (vllm/config/cache.py)
    assert kw["gpu_memory_utilization"] == 0.9 and kw["enforce_eager"] is False
    assert (kw["model"], kw["revision"], kw["dtype"]) == ("Qwen/Qwen3-8B", "main", "bfloat16")
    # Its budget re-asked (2 x 32,768) or judging long answers would need more: capped at its context.
    assert kw["max_model_len"] == 40960
    assert (kw["tensor_parallel_size"], kw["pipeline_parallel_size"], kw["distributed_executor_backend"]) == (1, 1, "uni")


def test_a_tp4_card_runs_mp_on_one_node(llm_kwargs: dict[str, Any]) -> None:
    kw = started(llm_kwargs, "qwen3_5_122b_a10b", "model=all", "cluster=h100_8",
                 "model.cards.qwen3_5_397b_a17b.dtype=fp8")
    assert (kw["tensor_parallel_size"], kw["pipeline_parallel_size"], kw["distributed_executor_backend"]) == (4, 1, "mp")
    assert (kw["model"], kw["dtype"], kw["enforce_eager"]) == ("Qwen/Qwen3.5-122B-A10B", "bfloat16", False)
    assert "kv_cache_memory_bytes" not in kw
    # Judging Coder-Next's answers re-asked at 2 x 65,536 tokens: 4,332 + 1.1 x 131,072 + 4 x 512 = 150,560,
    # within its 262,144 context.
    assert kw["max_model_len"] == 150560


def test_a_tp_x_pp_card_across_nodes_runs_on_rays_executor(llm_kwargs: dict[str, Any]) -> None:
    kw = started(llm_kwargs, "qwen3_5_397b_a17b", "model=all", "cluster=h100_2x8")
    assert (kw["tensor_parallel_size"], kw["pipeline_parallel_size"], kw["distributed_executor_backend"]) == (8, 2, "ray")
    assert (kw["model"], kw["revision"], kw["dtype"], kw["enforce_eager"]) == (
        "Qwen/Qwen3.5-397B-A17B", "main", "bfloat16", False)
    assert "kv_cache_memory_bytes" not in kw and kw["max_model_len"] == 150560


def test_prefer_fp8_loads_the_fp8_checkpoint_in_vllms_auto_dtype(llm_kwargs: dict[str, Any]) -> None:
    kw = started(llm_kwargs, "qwen3_5_397b_a17b", "model=all", "cluster=h100_8", "engine.prefer_fp8=true")
    # "fp8" is no vLLM dtype: the checkpoint's quantization config makes it FP8.
    assert (kw["model"], kw["revision"], kw["dtype"]) == ("Qwen/Qwen3.5-397B-A17B-FP8", "main", "auto")
    assert (kw["tensor_parallel_size"], kw["pipeline_parallel_size"], kw["distributed_executor_backend"]) == (8, 1, "mp")
    nine = started(llm_kwargs, "qwen3_5_9b", "model=all", "cluster=h100_8", "engine.prefer_fp8=true")
    assert (nine["model"], nine["dtype"]) == ("Qwen/Qwen3.5-9B", "bfloat16")  # publishes no FP8 checkpoint


def test_a_user_can_force_eager_mode_either_way(llm_kwargs: dict[str, Any]) -> None:
    gpu = started(llm_kwargs, "qwen3_8b", "model=all", "cluster=h100_8", "model.cards.qwen3_5_397b_a17b.dtype=fp8",
                  "engine.enforce_eager=true")
    cpu = started(llm_kwargs, "smollm2", "model=cpu", "engine.enforce_eager=false", inventory=LAPTOP)
    assert (gpu["enforce_eager"], cpu["enforce_eager"]) == (True, False)


def test_prefer_fp8_changes_the_model_under_test_so_the_cells_keys_and_provenance() -> None:
    inventory = sizing.described(compose_config("cluster=h100_8").cluster)
    bf16 = compose_config("model=all", "evals=smoke", "cluster=h100_8", "model.cards.qwen3_5_397b_a17b.dtype=fp8")
    fp8 = compose_config("model=all", "evals=smoke", "cluster=h100_8", "engine.prefer_fp8=true")
    keys = {}
    for name, cfg in (("bf16", bf16), ("fp8", fp8)):
        p = plan(cfg, "t", inventory)
        keys[name] = {c.model: c.key for c in p.generate if c.sample == 0 and c.eval_id == p.suite.prompts[0].id}
        assert {c.name: c.dtype.value for c in p.cards}["Qwen3-8B"] == ("fp8" if name == "fp8" else "auto")
    assert keys["bf16"]["Qwen3-8B"] != keys["fp8"]["Qwen3-8B"]
    assert keys["bf16"]["Qwen3.5-9B"] == keys["fp8"]["Qwen3.5-9B"]  # no FP8 checkpoint: the same model
    assert keys["bf16"]["Qwen3.5-397B-A17B"] == keys["fp8"]["Qwen3.5-397B-A17B"]  # FP8 either way
    assert "prefer_fp8: true" in provenance.config_yaml(OmegaConf.structured(fp8))


def test_a_budget_that_cant_fit_is_refused_naming_the_card_need_and_fix() -> None:
    from sweep.core.errors import SweepError

    cfg = compose_config("model=cpu", "evals=hard", "model.cards.smollm2.sampling.non_thinking.max_tokens=9000")
    with pytest.raises(SweepError) as e:
        plan(cfg, "t", LAPTOP)
    msg = str(e.value)
    # Its longest answer prompt (961 bytes + 16 of chat markup) + 9,000 tokens exceed its 8,192-token context.
    assert "SmolLM2-135M: its prompts and output budget need 9,977 tokens, its context length is 8,192" in msg
    assert "sampling.max_tokens" in e.value.fix


def test_the_prefer_fp8_plan_on_one_h100_node_shows_what_each_engine_starts_with() -> None:
    from rich.console import Console

    from sweep.forecast import show_plan

    console = Console(width=200, record=True)
    console.print(show_plan(compose_config("model=all", "evals=hard", "plan=true", "cluster=h100_8",
                                           "engine.prefer_fp8=true")))
    text = console.export_text()
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in text.splitlines() if line.startswith("│")}
    # The 397B fits one node in FP8: 8 x (0.9 x 80 GiB - 399 GB / 8 - 3 GiB) = 193.7 GB of KV cache.
    assert rows["Qwen3.5-397B-A17B"][:8] == ["8", "8 x 1", "0", "fp8", "399.0", "193.7", "150,560", "yes"]
    assert rows["Qwen3.5-9B"][3] == "bfloat16"  # no FP8 checkpoint
    assert rows["Qwen3-8B"][3:8] == ["fp8", "9.4", "64.6", "40,960*", "yes"]


def test_the_load_log_line_names_the_figures_the_engine_starts_with() -> None:
    cfg = compose_config("model=all", "evals=hard", "cluster=h100_2x8")
    inventory = sizing.described(cfg.cluster)
    the_plan = plan(cfg, "t", inventory)
    card = the_plan.card("Qwen3.5-397B-A17B")
    d = demand(card, cfg, inventory)
    where = Capacity(inventory).take(d)
    assert where is not None
    ctx = the_plan.context(card.name)
    line = engine_args.describe(engine_args.settings(card, d.shape, where, cfg, ctx), ctx)
    # 0.9 x 80 GiB - 794 GB / 16 - 3 GiB = 24.5 GB per GPU left for the KV cache.
    assert line == ("Qwen/Qwen3.5-397B-A17B@main bfloat16, TP 8 x PP 2 (ray), max_model_len 150,560, "
                    "KV from gpu_memory_utilization=0.9 (~24.5 GB per GPU estimated), CUDA graphs")
    cpu = compose_config("model=cpu", "evals=hard")
    cpu_plan = plan(cpu, "t", LAPTOP)
    smol = cpu_plan.card("SmolLM2-135M")
    assert engine_args.describe(engine_args.settings(smol, None, Placement((0,)), cpu, cpu_plan.context(smol.name)),
                                cpu_plan.context(smol.name)) == (
        "local weights float32, TP 1 x PP 1 (uni), max_model_len 6,803, KV 1.0 GiB, eager")
