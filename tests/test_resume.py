"""Nothing lost, nothing twice: reruns reuse finished cells, changes redo only what they
touch, unreadable files are set aside, and re-asks are bounded and recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.run import run
from tests.conftest import exact_rows, fake_pool
from tests.test_faults import FULL
from warehouse.db import connect
from warehouse.store import Store

pytestmark = pytest.mark.usefixtures("ray_local")


def test_rerunning_the_same_config_does_no_model_work(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    first = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=same"))
    files = sorted(p.name for p in tmp_path.glob("*/**/*.parquet"))
    again = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=same"))
    assert (first.model_loads, again.model_loads) == (3, 0)
    assert "nothing to compute" in capfd.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("*/**/*.parquet")) == files
    assert exact_rows(again.store, "same") == FULL
    assert connect(again.store).execute("select reused_cells from runs").fetchone() == (27,)


def test_changing_one_prompt_redoes_only_its_cells(tmp_path: Path) -> None:
    run(fake_pool(f"warehouse.root={tmp_path}", "run.name=edit"))
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=edit")
    cfg.evals.prompts[0].prompt = "What is the capital of Italy? Answer in one sentence."
    result = run(cfg)
    con = connect(result.store)
    # 3 models x 1 prompt answers and 3 judges x 2 peers x 1 prompt judgments are new; 6 + 12 reused.
    assert con.execute("select reused_cells from runs").fetchone() == (18,)
    assert exact_rows(result.store, "edit") == FULL
    assert con.execute("select count(*) from generations where prompt like '%Italy%'").fetchone() == (3,)
    superseded = list((tmp_path / "superseded").glob("**/*.parquet"))
    assert len(superseded) == 3 + 3  # the old answer file of each model and verdict file of each judge
    assert len(list((tmp_path / "generations").glob("**/eval_id=capital-france/*.parquet"))) == 3  # the new ones


def test_resume_false_recomputes_without_duplicates(tmp_path: Path) -> None:
    run(fake_pool(f"warehouse.root={tmp_path}", "run.name=fresh"))
    again = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=fresh", "run.resume=false"))
    assert again.model_loads == 3
    assert exact_rows(again.store, "fresh") == FULL


def test_a_truncated_parquet_file_is_skipped_with_a_warning_and_recomputed(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    run(fake_pool(f"warehouse.root={tmp_path}", "run.name=torn"))
    victim = sorted((tmp_path / "generations").glob("**/*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])  # a crash-truncated copy: no footer
    foreign = victim.parent / "notes.parquet"
    foreign.write_bytes(b"not parquet at all")
    con = connect(Store(str(tmp_path)))
    err = capfd.readouterr().err
    assert f"warning: skipping {victim}" in err and f"warning: skipping {foreign}" in err
    assert con.execute("select count(*) from generations").fetchone() == (9 - 1,)  # one answer per (model, eval) file
    result = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=torn"))
    assert exact_rows(result.store, "torn") == FULL
    # Set aside, not deleted: the two unreadable files, and the two judges' verdicts on the
    # answer that was asked again (they judged text that no longer exists).
    assert len(list((tmp_path / "superseded").glob("**/*.parquet"))) == 2 + 2

