"""The driver on a real local Ray: every cell lands once, models load as few times as room allows.

Engines are fake here (these tests are about scheduling and bookkeeping); the real engine
path is tests/test_e2e.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pytest
import ray

from sweep.forecast import local_inventory
from sweep.plan import next_round, plan
from sweep.run import run
from sweep.scheduler import Submitted
from tests.conftest import exact_rows, fake_pool, superseded
from tests.test_plan import LAPTOP
from warehouse.db import connect
from warehouse.stats import load_cube
from warehouse.store import Store

pytestmark = pytest.mark.usefixtures("ray_local")


def test_a_pool_that_fits_loads_each_model_once(tmp_path: Path) -> None:
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=fits", "run.samples=2")
    result = run(cfg)
    assert result.model_loads == 3
    n, prompts = 3, 3
    assert exact_rows(result.store, "fits") == (n * prompts * 2,) * 2 + (n * (n - 1) * prompts * 2,) * 2
    files = result.store.files("generations", "fits")
    assert len(files) == n  # one file per batch: each model answers its 6 cells in one
    run_row = connect(result.store).execute("select status, model_loads, generate_cells from runs").fetchone()
    assert run_row == ("finished", 3, 18)


def test_a_pool_too_big_to_hold_at_once_reloads_only_what_it_must(tmp_path: Path) -> None:
    node_gib = ray.cluster_resources()["memory"] / (1 << 30)
    # Room for two instances at a time, not three.
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=tight", f"cluster.instance_memory_gib={node_gib * 0.45}")
    result = run(cfg)
    # 3 loads to answer; the last two stay loaded and judge first; the first reloads once.
    assert result.model_loads == 4
    assert exact_rows(result.store, "tight") == (9, 9, 18, 18)


def test_judges_never_see_their_own_answers_and_answers_are_blind(tmp_path: Path) -> None:
    result = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=blind"))
    con = connect(result.store)
    assert con.execute("select count(*) from judgments where judge = respondent").fetchone() == (0,)
    labels = con.execute("select distinct pool_index, label from judgments order by 1").fetchall()
    assert labels == [(0, "Response A"), (1, "Response B"), (2, "Response C")]  # one neutral label per respondent


def test_a_sweep_writes_to_s3_and_duckdb_reads_it_back(s3_root: tuple[str, dict]) -> None:
    root, options = s3_root
    cfg = fake_pool(f"warehouse.root={root}", "run.name=s3run")
    cfg.warehouse.storage_options = options
    result = run(cfg)
    assert result.store.files("generations", "s3run")[0].startswith(root.removeprefix("s3://"))
    assert exact_rows(result.store, "s3run") == (9, 9, 18, 18)
    ranked = connect(result.store).execute("select count(*) from rankings where run_id = 's3run'").fetchone()
    assert ranked == (3,)


def test_a_sweep_streams_batches_and_a_crash_loses_only_what_was_in_flight(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each model answers 6 cells in 3 batches and judges 12 in 6 or more (early judging takes what has
    landed), each its own Parquet file. The driver fails on its 4th write of answers: 3 batches (6 answers)
    are in the warehouse; the rerun computes the other 12 answers and the judgments not written, nothing else."""
    settings = (f"warehouse.root={tmp_path}", "run.name=stream", "run.batch_cells=2", "run.samples=2")
    writes: list[str] = []
    real = Store.write

    def write(self: Store, table: str, rows: Sequence[Any], name: str, **kw: Any) -> Any:
        if table == "generations":
            writes.append(name)
            if len(writes) == 4:
                raise OSError("injected: the disk went away")
        return real(self, table, rows, name, **kw)

    monkeypatch.setattr(Store, "write", write)
    with pytest.raises(OSError, match="injected"):
        run(fake_pool(*settings))
    monkeypatch.setattr(Store, "write", real)
    store = Store(str(tmp_path))
    con = connect(store)
    answered = {k for (k,) in con.execute("select cell_key from raw_generations").fetchall()}
    judged = {k for (k,) in con.execute("select cell_key from raw_judgments").fetchall()}
    assert len(answered) == 6 and len(store.files("generations", "stream")) == 3

    again = run(fake_pool(*settings))
    assert exact_rows(again.store, "stream") == (18, 18, 36, 36)
    the_plan = plan(fake_pool(*settings), "stream", local_inventory())
    submitted = [e for e in again.trace if isinstance(e, Submitted)]
    redone = Counter(k for e in submitted for k in e.cells)
    assert set(redone) == {c.key for c in (*the_plan.generate, *the_plan.judge)} - answered - judged
    assert max(redone.values()) == 1
    per_model = Counter(Path(f).parent.name for f in again.store.files("generations", "stream"))
    assert sorted(per_model.values()) == [3, 3, 3]  # every model's answers in 3 files, one per batch
    assert max(len(e.cells) for e in submitted) == 2


def test_adaptive_judging_runs_two_rounds_stores_their_round_and_a_rerun_reuses_both(tmp_path: Path) -> None:
    """judge.adaptive on the fake engine: round 2 runs as a second scheduling loop over the landed answers, its
    cells are the rule's (sweep.adaptive) for round 1's scores, and a rerun plans the same rounds and reuses them."""
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=adapt", "run.samples=2", "judge.adaptive=true",
                    "judge.judges_per_answer=1", "judge.budget=30", "judge.rounds=2")
    result = run(cfg)
    con = connect(result.store)
    by_round = dict(con.execute("select round, count(*) from judgments group by round").fetchall())
    # 3 models x 3 prompts x 2 samples = 18 answers, one judge each; round 2: the 12 left of the budget.
    assert by_round == {1: 18, 2: 12}, by_round
    # Round 2 is what the rule asks for given round 1's scores, cell for cell.
    the_plan = plan(cfg, "adapt", LAPTOP)
    first = {c.key for c in the_plan.judge}
    expected = next_round(cfg, the_plan, load_cube(con, "adapt", first), 1)
    assert {k for (k,) in con.execute("select cell_key from judgments where round = 2").fetchall()} == \
        {c.key for c in expected}
    assert con.execute("select count(*) from judgments where judge = respondent").fetchone() == (0,)
    assert con.execute("select judge_cells from runs").fetchone() == (30,)
    rows = con.execute("select cell_key, round, score from judgments order by cell_key").fetchall()
    moved = superseded(tmp_path, "judgments", "generations")  # the batch files the run's compaction folded
    again = run(cfg)
    assert again.model_loads == 0  # both rounds reused, nothing computed
    assert connect(again.store).execute("select cell_key, round, score from judgments order by cell_key").fetchall() \
        == rows
    assert superseded(tmp_path, "judgments", "generations") == moved  # nothing set aside: every row reused
