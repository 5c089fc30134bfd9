"""Faults injected into real multi-node Ray clusters on this machine: the sweep still ends
with every cell exactly once (fake engines: these tests are about the driver, not vLLM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow.parquet as pq
import pytest
import ray
from ray.util.state import list_actors, list_tasks

from sweep.run import RunResult, run
from tests.conftest import fake_cli, fake_pool
from warehouse.db import connect
from warehouse.store import Store

ROOT = Path(__file__).resolve().parents[1]
FULL = (9, 9, 18, 18)  # 3 models x 3 prompts answers; 3 judges x 2 peers x 3 prompts judgments
MEMORY = "cluster.instance_memory_gib=1.5"  # two instances per 4 GiB worker, none on the head


def exact_rows(store: Store, run_id: str) -> tuple[int, int, int, int]:
    """Row counts and distinct cell keys, straight from the Parquet files (no dedup view)."""
    con = connect(store)
    q = "select count(*), count(distinct cell_key) from raw_{} where run_id = ?"
    return (*con.execute(q.format("generations"), [run_id]).fetchone(),
            *con.execute(q.format("judgments"), [run_id]).fetchone())


def while_running(run_id: str, action: Callable[[Any], None], sweep: Callable[[], RunResult]) -> RunResult:
    """Run the sweep here and, in another thread, ``action(actor)`` on the first instance of
    ``run_id`` seen in the middle of a batch (SWEEP_FAKE_DELAY_S keeps batches long enough)."""
    errors: list[BaseException] = []

    def act() -> None:
        try:
            deadline = time.monotonic() + 120
            here = ray.get_runtime_context().gcs_address  # other Rays may run on this machine
            while time.monotonic() < deadline:
                busy = {t.actor_id for t in list_tasks(here, filters=[("state", "=", "RUNNING")])
                        if t.name.startswith("Instance.")}
                ours = [a for a in list_actors(here, filters=[("state", "=", "ALIVE")])
                        if a.actor_id in busy and a.name.startswith(f"sweep/{run_id}/")]
                if ours:
                    return action(ours[0])
                time.sleep(0.2)
            raise TimeoutError("no instance ever ran a batch")
        except BaseException as e:  # surfaced in the test thread below
            errors.append(e)

    side = threading.Thread(target=act)
    side.start()
    result = sweep()
    side.join()
    if errors:
        raise errors[0]
    return result


def test_an_instance_killed_mid_batch_is_replaced(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    ray_nodes(workers=2, SWEEP_FAKE_DELAY_S="3")
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=killed", MEMORY, "engine.timeout_s=60")
    result = while_running("killed", lambda actor: ray.kill(ray.get_actor(actor.name)), lambda: run(cfg))
    assert exact_rows(result.store, "killed") == FULL
    failures, status = connect(result.store).execute("select instance_failures, status from runs").fetchone()
    assert (failures, status) == (1, "finished")


def test_a_lost_node_moves_its_work_to_another(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    cluster = ray_nodes(workers=2, SWEEP_FAKE_DELAY_S="3")
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=lost", MEMORY, "engine.timeout_s=60")

    def remove_its_node(actor: Any) -> None:
        cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == actor.node_id))

    result = while_running("lost", remove_its_node, lambda: run(cfg))
    assert exact_rows(result.store, "lost") == FULL
    assert connect(result.store).execute("select instance_failures from runs").fetchone()[0] >= 1


def test_a_hung_engine_is_killed_and_its_cells_requeued(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    ray_nodes(workers=2, SWEEP_FAKE_HANG_ONCE=str(tmp_path / "hung"))
    cfg = fake_pool(f"warehouse.root={tmp_path / 'wh'}", "run.name=hung", MEMORY, "engine.timeout_s=10")
    result = run(cfg)
    assert (tmp_path / "hung").exists()  # the hang did happen
    assert exact_rows(result.store, "hung") == FULL
    assert connect(result.store).execute("select instance_failures from runs").fetchone() == (1,)


def test_an_instance_that_keeps_failing_leaves_error_rows_not_gaps(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    ray_nodes(workers=1, SWEEP_FAKE_DELAY_S="30")
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=gaveup", MEMORY, "engine.timeout_s=3", "run.retries=1",
                    "model=smol_pair")
    result = run(cfg)
    con = connect(result.store)
    assert exact_rows(result.store, "gaveup") == (6, 6, 6, 6)  # every cell has a row
    assert con.execute("select distinct status from generations").fetchall() == [("error",)]
    assert con.execute("select distinct status from judgments").fetchall() == [("no_answer",)]
    counted = con.execute("select sum(valid_judgments), sum(total_judgments) from rankings").fetchone()
    assert counted == (0, 6)
    assert con.execute("select distinct cell_status, reason from coverage").fetchall() == [("failed", "answer error")]


def test_a_driver_killed_with_sigkill_finishes_on_rerun(tmp_path: Path) -> None:
    env = {**os.environ, "SWEEP_FAKE_DELAY_S": "4"}
    driver = subprocess.Popen(fake_cli(tmp_path), cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "generations").glob("**/*.parquet")):
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
    driver.wait()
    # Answers in the files that landed whole (a batch file holds a model's answers; temp files end in .tmp).
    written = sum(pq.read_metadata(f).num_rows for f in (tmp_path / "generations").glob("**/*.parquet"))
    assert 0 < written < 9
    rerun = subprocess.run(fake_cli(tmp_path), cwd=ROOT, env={**os.environ}, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"reusing {written} answers" in rerun.stderr
    assert exact_rows(Store(str(tmp_path)), "cli") == FULL
    assert not list(tmp_path.glob("**/.*.tmp"))  # no half-written file survived
