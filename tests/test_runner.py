"""The driver on a real local Ray: every cell lands once, models load as few times as room allows.

Engines are fake here (these tests are about scheduling and bookkeeping); the real engine
path is tests/test_e2e.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from sweep.run import run
from tests.conftest import exact_rows, fake_pool
from warehouse.db import connect

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
