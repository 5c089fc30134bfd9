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
from tests.conftest import exact_rows, fake_cli, fake_pool, superseded
from warehouse.db import connect
from warehouse.store import Store

ROOT = Path(__file__).resolve().parents[1]
FULL = (9, 9, 18, 18)  # 3 models x 3 prompts answers; 3 judges x 2 peers x 3 prompts judgments
MEMORY = "cluster.instance_memory_gib=1.5"  # two instances per 4 GiB worker, none on the head


def statuses(store: Store) -> tuple[list[tuple], list[tuple]]:
    con = connect(store)
    return (con.execute("select distinct status from raw_generations").fetchall(),
            con.execute("select distinct status from raw_judgments").fetchall())


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
    assert statuses(result.store) == ([("ok",)], [("ok",)])  # the killed batch was redone, not written as errors
    failures, status = connect(result.store).execute("select instance_failures, status from runs").fetchone()
    assert (failures, status) == (1, "finished")


def test_a_lost_node_moves_its_work_to_another(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    cluster = ray_nodes(workers=2, SWEEP_FAKE_DELAY_S="3")
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=lost", MEMORY, "engine.timeout_s=60")

    here = ray.get_runtime_context().gcs_address
    lost: dict[str, Any] = {}

    def remove_its_node(actor: Any) -> None:
        lost["node"] = actor.node_id
        running = {t.actor_id for t in list_tasks(here, filters=[("state", "=", "RUNNING")])
                   if t.name.startswith("Instance.")}
        lost["busy"] = [a.name for a in list_actors(here, filters=[("state", "=", "ALIVE")])
                        if a.actor_id in running and a.node_id == actor.node_id and a.name.startswith("sweep/lost/")]
        cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == actor.node_id))

    result = while_running("lost", remove_its_node, lambda: run(cfg))
    assert exact_rows(result.store, "lost") == FULL
    assert statuses(result.store) == ([("ok",)], [("ok",)])
    # Each instance busy on the node when it went fails once; one idle there fails only if it is given work
    # again (CPU instances take turns, so which are busy at that instant is a race the test can't fix).
    started = {a.name: a.node_id for a in list_actors(here) if a.name.startswith("sweep/lost/")}
    on_node = [name for name, node in started.items() if node == lost["node"]]
    failures = connect(result.store).execute("select instance_failures from runs").fetchone()[0]
    assert 1 <= len(lost["busy"]) <= failures <= len(on_node), (lost, started)
    # Each model whose busy instance was lost got a new one, started after the loss, on the node still alive.
    number = lambda name: int(name.rsplit("/", 1)[1])  # noqa: E731  (instances are numbered as they start)
    for dead in lost["busy"]:
        model = dead.rsplit("/", 1)[0]
        replacements = [n for n in started if n.startswith(model + "/") and number(n) > number(dead)]
        assert replacements, (dead, started)
        assert all(started[n] != lost["node"] for n in replacements), (dead, started)


def test_a_hung_engine_is_killed_and_its_cells_requeued(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    ray_nodes(workers=2, SWEEP_FAKE_HANG_ONCE=str(tmp_path / "hung"))
    cfg = fake_pool(f"warehouse.root={tmp_path / 'wh'}", "run.name=hung", MEMORY, "engine.timeout_s=10")
    result = run(cfg)
    assert (tmp_path / "hung").exists()  # the hang did happen
    assert exact_rows(result.store, "hung") == FULL
    assert statuses(result.store) == ([("ok",)], [("ok",)])
    assert connect(result.store).execute("select instance_failures, status from runs").fetchone() == (1, "finished")


def test_an_instance_that_keeps_failing_leaves_error_rows_not_gaps(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    """Batches take 5 s and the limit is 3 s: every cell ends as an error row. The coverage command
    shows them; a rerun with room for the batches recomputes every one of them."""
    ray_nodes(workers=1, SWEEP_FAKE_DELAY_S="5")
    settings = (f"warehouse.root={tmp_path}", "run.name=gaveup", MEMORY, "run.retries=1", "model=smol_pair")
    result = run(fake_pool(*settings, "engine.timeout_s=3"))
    con = connect(result.store)
    assert exact_rows(result.store, "gaveup") == (6, 6, 6, 6)  # every cell has a row
    assert con.execute("select distinct status, attempts, error from generations").fetchall() == [
        ("error", 2, "no result within engine.timeout_s=3 s (hung engine)")]  # tried once and retried once
    # Two models, each instance killed twice (the try and its one retry); judging needs no model.
    assert con.execute("select instance_failures, status from runs").fetchone() == (4, "finished")
    assert con.execute("select distinct status from judgments").fetchall() == [("no_answer",)]
    counted = con.execute("select sum(valid_judgments), sum(total_judgments) from rankings").fetchone()
    assert counted == (0, 6)
    assert con.execute("select distinct cell_status, reason from coverage").fetchall() == [("failed", "answer error")]
    shown = subprocess.run([sys.executable, "-m", "warehouse", "--root", str(tmp_path), "coverage", "gaveup"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "Coverage, run gaveup: 0 of 6 cells usable" in shown.stdout
    assert shown.stdout.count("FAILED: answer error") == 6, shown.stdout

    # engine.timeout_s is not part of any cell's key: the same cells, now with time to finish.
    again = run(fake_pool(*settings, "engine.timeout_s=60"))
    con = connect(again.store)
    assert exact_rows(again.store, "gaveup") == (6, 6, 6, 6)
    assert statuses(again.store) == ([("ok",)], [("ok",)])  # the error rows were recomputed, not reused
    assert con.execute("select reused_cells, instance_failures, status from runs").fetchone() == (0, 0, "finished")
    # Set aside: each model's batch file of 3 error answers, and each judge's batch file of 3 verdicts on them.
    assert len(superseded(tmp_path)) == 2 + 2


# The driver, with one change: its Nth temp-file write of a table writes half the bytes, says where
# (SWEEP_TEST_CRASH_MARK) and stops, so the test can kill -9 it in the middle of a write.
CRASH_MID_WRITE = """
import os, runpy, sys, time
from pathlib import Path
from fsspec.implementations.local import LocalFileSystem

table, at, mark = os.environ["SWEEP_TEST_CRASH_TABLE"], int(os.environ["SWEEP_TEST_CRASH_AT"]), os.environ["SWEEP_TEST_CRASH_MARK"]
real, seen = LocalFileSystem.pipe_file, []

def pipe_file(self, path, value, *args, **kwargs):
    if path.endswith(".tmp") and f"/{table}/" in path:
        seen.append(path)
        if len(seen) == at:
            with open(path, "wb") as f:
                f.write(value[: len(value) // 2])
            Path(mark).write_text(path)
            time.sleep(3600)
    return real(self, path, value, *args, **kwargs)

LocalFileSystem.pipe_file = pipe_file
sys.argv[0] = "sweep"
runpy.run_module("sweep", run_name="__main__", alter_sys=True)
"""


def answers(store: Store) -> int:
    """Answers in the files that landed whole (a batch file holds one model's answers)."""
    return sum(pq.read_metadata(f).num_rows for f in store.files("generations"))


# The second write of answers: one model's batch (3 answers) had landed; of verdicts: every answer had.
@pytest.mark.parametrize("table, answers_before", [("generations", 3), ("judgments", 9)])
def test_a_driver_killed_with_sigkill_mid_write_finishes_on_rerun(tmp_path: Path, table: str,
                                                                  answers_before: int) -> None:
    """kill -9 of the driver (and the local Ray it started) while it writes its second file of answers
    (answering) or of verdicts (judging): the half-written file is never read, the rerun finishes."""
    wh, mark = tmp_path / "wh", tmp_path / "crashed-in"
    env = {**os.environ, "SWEEP_TEST_CRASH_TABLE": table, "SWEEP_TEST_CRASH_AT": "2", "SWEEP_TEST_CRASH_MARK": str(mark)}
    cli = fake_cli(wh, "run.early_judging=false")  # judging starts once all 9 answers are written
    driver = subprocess.Popen([sys.executable, "-c", CRASH_MID_WRITE, *cli[3:]], cwd=ROOT, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not mark.exists() and driver.poll() is None:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    half = Path(mark.read_text())  # the write did start, and stopped half way
    assert half.exists() and half.name.startswith(".") and 0 < half.stat().st_size
    store = Store(str(wh))
    assert str(half) not in store.files(table) and answers(store) == answers_before
    assert connect(store).execute("select status from raw_runs").fetchall() == [("running",)]
    rerun = subprocess.run(cli, cwd=ROOT, env={**os.environ}, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"reusing {answers_before} answers" in rerun.stderr
    assert exact_rows(store, "cli") == FULL  # the raw tables: the half file is not read, nothing twice
    assert connect(store).execute("select status, instance_failures from raw_runs").fetchall() == [("finished", 0)]
    # Temp files stay hidden from every reader; the only one is the one the crash left.
    assert sorted(wh.glob("**/.*.tmp")) == [half]
