"""Planning is pure and fast: cells, keys, blind judge prompts, refusals before any load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sweep.core import prompts
from sweep import sizing
from sweep.core.errors import SweepError
from sweep.plan import plan
from tests.conftest import compose_config

GiB = sizing.GiB
LAPTOP = sizing.Inventory((sizing.Node(cpus=2, gpus=0, memory_bytes=16 * GiB),))
ROOT = Path(__file__).resolve().parents[1]
TWO_H100_NODES = sizing.Inventory(tuple(sizing.Node(96, 8, 1024 * GiB, 80 * GiB) for _ in range(2)))


def test_planning_imports_neither_ray_nor_vllm() -> None:
    code = (
        "import sys; from tests.conftest import compose_config; from sweep.plan import plan; "
        "from tests.test_plan import LAPTOP; plan(compose_config(), 'r', LAPTOP); "
        "print(sorted(m for m in ('ray', 'vllm', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cells_cover_every_model_prompt_sample_and_every_peer_pair() -> None:
    cfg = compose_config("run.samples=2")
    p = plan(cfg, "r1", LAPTOP)
    models, prompts, samples = len(cfg.model.cards), len(cfg.evals.prompts), 2
    assert len(p.generate) == models * prompts * samples
    assert len(p.judge) == models * (models - 1) * prompts * samples  # self excluded
    assert all(j.judge != j.respondent for j in p.judge)
    keys = [c.key for c in p.generate] + [c.key for c in p.judge]
    assert len(set(keys)) == len(keys)
    answers = {c.key for c in p.generate}
    assert {j.answer_key for j in p.judge} == answers  # every answer is judged


def test_keys_are_stable_and_change_only_with_what_they_depend_on() -> None:
    base = plan(compose_config("evals=smoke"), "r1", LAPTOP)
    again = plan(compose_config("evals=smoke"), "another-run", LAPTOP)
    assert [c.key for c in base.generate] == [c.key for c in again.generate]
    changed = plan(compose_config("evals=smoke", "model.cards.smollm2.system_prompt=Be brief."), "r1", LAPTOP)
    moved = {c.key for c in changed.generate} ^ {c.key for c in base.generate}
    # only SmolLM2-135M's 3 answers change (3 old keys out, 3 new in)
    assert len(moved) == 6
    assert {c.model for c in changed.generate if c.key in moved} == {"SmolLM2-135M"}


# 9 answers, 18 verdicts on the smoke suite; one card's change moves its 3 answers and 12 verdicts
# (the 2 x 3 on its answers, its own 2 x 3 on the others').
@pytest.mark.parametrize("override, moved", [
    # sizes a GPU's KV reservation only: each instance's window is fitted to its cards' budgets
    ("engine.max_model_len=2048", (0, 0)),
    ("model.cards.smollm2.engine=fake", (3, 12)),  # another engine writes other text from the same weights
    ("engine.kv_cache_gib=2", (0, 0)),  # how many sequences run at once, not what each computes
    ("engine.concurrency=8", (0, 0)),
    ("engine.enforce_eager=false", (0, 0)),  # the same ops, with or without CUDA graphs
    ("engine.gpu_memory_utilization=0.5", (0, 0)),
    ("engine.timeout_s=5", (0, 0)),
])
def test_keys_cover_the_engine_settings_that_change_outputs(override: str, moved: tuple[int, int]) -> None:
    base = plan(compose_config("evals=smoke"), "r1", LAPTOP)
    other = plan(compose_config("evals=smoke", override), "r1", LAPTOP)
    assert (len({c.key for c in other.generate} - {c.key for c in base.generate}),
            len({c.key for c in other.judge} - {c.key for c in base.judge})) == moved


def test_sampling_inherits_card_then_override() -> None:
    p = plan(compose_config("evals=smoke", "sampling.max_tokens=64"), "r", LAPTOP)
    expert = next(c for c in p.generate if c.model == "SmolLM2-135M-expert")
    assert (expert.sampling.temperature, expert.sampling.top_p, expert.sampling.max_tokens) == (0.7, 0.9, 64)
    judge = p.judge[0]
    assert (judge.sampling.temperature, judge.sampling.max_tokens) == (0.0, 512)  # the panel's, not the card's


def test_judge_prompt_is_blind() -> None:
    cfg = compose_config()
    p = plan(cfg, "r", LAPTOP)
    for cell in p.judge[:40]:
        messages = prompts.judge_messages(cfg.evals, cell.eval_id, "An answer.", cell.label, 300)
        text = " ".join(content for _, content in messages).lower()
        for card in cfg.model.cards.values():
            for name in {card.name, card.family, card.name.split("-")[0]}:
                assert name.lower() not in text, (name, cell.label)
        assert cell.label.startswith("Response ")


def test_study_pool_fits_two_h100_nodes() -> None:
    p = plan(compose_config("model=all", "evals=smoke"), "r", TWO_H100_NODES)
    assert len(p.generate) == 8 * 3


ONE_GPU_NODE = sizing.Inventory((sizing.Node(8, 1, 64 * GiB, 80 * GiB),))
# 16.4 GB of weights + 64 sequences x 4096 tokens x 144 KiB of KV; the GPU a CPU machine would need.
NO_GPUS = ["8 of 8 models need GPUs and this cluster has none",
           "Qwen3-8B: 16 GB of bfloat16 weights + 38.7 GB KV cache; the smallest shape vLLM runs it in is "
           "TP 1 x PP 1 = 1 x 80 GiB GPUs; in FP8 (Qwen/Qwen3-8B-FP8, engine.prefer_fp8=true): 9 GB",
           "Qwen3.5-397B-A17B: 794 GB of bfloat16 weights", "fix:"]
# One 8-GPU node: the 397B alone; a shape vLLM can run (TP divides the 32 heads), not a memory count
# ("at least 11 GPUs"), and the FP8 way out.
ONE_H100_NODE = ["1 of 8 models don't fit this cluster",
                 "the biggest slot one model can span is 1 node(s) x 8 GPUs of 80 GiB",
                 "Qwen3.5-397B-A17B: 794 GB of bfloat16 weights",
                 "the smallest shape vLLM runs it in is TP 8 x PP 2 = 16 x 80 GiB GPUs (2 nodes of 8); in FP8 "
                 "(Qwen/Qwen3.5-397B-A17B-FP8, engine.prefer_fp8=true): 399 GB, TP 8 x PP 1 = 8 x 80 GiB GPUs", "fix:"]
REFUSALS = {
    "plan, no GPUs": (NO_GPUS + ["this cluster has none (1 node(s), 2 CPUs, 16 GiB RAM, no GPUs)"], []),
    "python -m sweep, this CPU machine": (NO_GPUS, []),
    # 397B (794 GB), 122B (244 GB), Coder-Next (160 GB) and 32B (66 GB + KV) need several GPUs; one GPU
    # per node means TP 1, so as many pipeline stages (nodes) as the weights need.
    "plan, 1-GPU nodes": (["4 of 8 models don't fit this cluster",
                           "the biggest slot one model can span is 1 node(s) x 1 GPUs of 80 GiB",
                           "Qwen3.5-397B-A17B: 794 GB of bfloat16 weights + 1.0 GB KV cache; the smallest shape vLLM "
                           "runs it in is TP 1 x PP 11 = 11 x 80 GiB GPUs (11 nodes of 1)",
                           "Qwen3.5-122B-A10B: 244 GB", "Qwen3-Coder-Next: 160 GB", "Qwen3-32B: 66 GB"],
                          ["Qwen3-8B", "Qwen3.5-27B"]),
    "plan=true, h100_8": (ONE_H100_NODE, []),
    "live run, Ray node of 8 GPUs": (ONE_H100_NODE, []),
}


def refusal(how: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The refusal's text, reached ``how``; each way in also checks that nothing started."""
    if how.startswith("plan, "):
        with pytest.raises(SweepError) as e:
            plan(compose_config("model=all", "evals=smoke", "engine.concurrency=8") if how == "plan, 1-GPU nodes"
                 else compose_config("model=all"), "r", ONE_GPU_NODE if how == "plan, 1-GPU nodes" else LAPTOP)
        return str(e.value)
    if how == "live run, Ray node of 8 GPUs":
        from ray.util.placement_group import placement_group_table
        from ray.util.state import list_actors

        from sweep.run import run
        from tests.test_placement import study

        cluster = request.getfixturevalue("ray_nodes")(workers=1, gpus=8, cpus=8)
        with pytest.raises(SweepError) as e:
            run(study(tmp_path, "refused"))
        assert [a for a in list_actors(cluster.address) if a.name.startswith("sweep/")] == []
        assert placement_group_table() == {}
        return str(e.value)
    # The CLI: exit 2, no traceback. plan=true never imports Ray; the run stops before any answer is written.
    from tests.test_forecast import fake_ray

    planned = how == "plan=true, h100_8"
    args = ["plan=true", "cluster=h100_8"] if planned else ["evals=smoke", f"warehouse.root={tmp_path}"]
    out = subprocess.run([sys.executable, "-m", "sweep", "model=all", *args], capture_output=True, text=True,
                         timeout=300, cwd=ROOT, env=fake_ray(tmp_path) if planned else None)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert not (tmp_path / "generations").exists()
    return out.stderr


@pytest.mark.parametrize("how", [pytest.param(h, marks=[pytest.mark.ray] if "Ray" in h else []) for h in REFUSALS])
def test_a_pool_too_large_for_the_cluster_is_refused_with_needs_and_shapes(
        how: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    text = " ".join(refusal(how, tmp_path, request).split())  # the CLI wraps long lines
    present, absent = REFUSALS[how]
    assert [line for line in present if line not in text] == [], text
    assert [name for name in absent if name in text] == [], text


def test_host_memory_refusal_on_a_small_node() -> None:
    tiny = sizing.Inventory((sizing.Node(2, 0, 1 * GiB),))
    with pytest.raises(SweepError, match="needs .* GiB of host memory; the largest node has 1.0 GiB"):
        plan(compose_config("evals=smoke"), "r", tiny)


def test_two_prompts_with_the_same_text_are_two_cells() -> None:
    """Issue 13: the cell key holds the eval id, so a suite item repeated under another id (another rubric)
    gets its own answers and its own verdicts, and no written row is hidden behind a shared key."""
    cfg = compose_config("evals=smoke", "evals.prompts.1.prompt=${evals.prompts.0.prompt}")
    assert cfg.evals.prompts[0].prompt == cfg.evals.prompts[1].prompt
    p = plan(cfg, "r1", LAPTOP)
    keys = [c.key for c in (*p.generate, *p.judge)]
    assert len(set(keys)) == len(keys) == len(p.generate) + len(p.judge)
    by_eval = {(c.model, c.eval_id): c.key for c in p.generate}
    assert all(by_eval[m, "capital-france"] != by_eval[m, "addition"] for m, _ in by_eval)


def test_keys_are_the_content_keys_of_their_parts() -> None:
    """The planner builds keys from templates (the parts that don't vary encoded once); they must be the
    content_key of every part, as written by runs before, or a resume would recompute everything."""
    from dataclasses import asdict

    from sweep.core.cells import content_key
    from sweep.plan import _identity

    cfg = compose_config("evals=smoke", "run.samples=2", "judge.soft_scores=true", "judge.pairwise=true")
    p = plan(cfg, "r", LAPTOP)
    cards = {c.name: c for c in p.cards}
    item = {i.id: i for i in cfg.evals.prompts}
    for a in p.generate:
        assert a.key == content_key("generate", _identity(cards[a.model]), a.eval_id, a.messages, a.sampling)
    answer = {a.key: a for a in p.generate}
    for j in p.judge:
        assert j.key == content_key(
            "judge", _identity(cards[j.judge]), cfg.judge.mode.value, j.answer_key, prompts.JUDGE_TEMPLATE,
            cfg.evals.judge_brief, [asdict(c) for c in cfg.evals.criteria], item[j.eval_id].rubric,
            cfg.judge.justification_max_chars, j.sampling, j.scrub, ("soft_scores", prompts.SOFT_TOP_K),
            ("cut_off", prompts.CUT_OFF_NOTICE))  # judge.judge_truncated, on by default
        assert answer[j.answer_key].model == j.respondent
    for c in p.compare:
        assert c.key == content_key(
            "compare", _identity(cards[c.judge]), cfg.judge.mode.value, c.first_key, c.second_key,
            prompts.COMPARE_TEMPLATE, cfg.evals.judge_brief, [asdict(x) for x in cfg.evals.criteria],
            item[c.eval_id].rubric, cfg.judge.justification_max_chars, c.sampling, c.scrub,
            ("cut_off", prompts.CUT_OFF_NOTICE))
    assert (len(p.judge), len(p.compare)) == (3 * 2 * 3 * 2, 3 * 3 * 2 * 2)


def test_the_plan_counts_its_answer_sizes_and_panel_once() -> None:
    """What the cost model and the context windows read instead of walking the cells: per card its answers,
    longest prompt, prefill estimate and budget; per (judge, respondent) the judgments, as the cells have them."""
    from collections import Counter

    from sweep.engine_args import message_tokens

    p = plan(compose_config("evals=smoke", "run.samples=2", "judge.judges_per_answer=1"), "r", LAPTOP)
    for s in p.sizes:
        mine = [a for a in p.generate if a.model == s.model]
        assert (s.answers, s.prompt_tokens, s.prefill_tokens, s.budget) == (
            len(mine), max(message_tokens(a.messages) for a in mine),
            sum(sum(len(t.split()) for _, t in a.messages) * 4 // 3 for a in mine),
            max(a.sampling.max_tokens for a in mine))
    assert [s.model for s in p.sizes] == [c.name for c in p.cards]
    counted = Counter((j.judge, j.respondent) for j in p.judge)
    assert {(x.judge, x.respondent): x.judgments for x in p.loads} == counted and sum(counted.values()) == 3 * 3 * 2
    assert all(x.verdict_budget == 512 for x in p.loads)
