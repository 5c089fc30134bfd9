"""Nothing lost, nothing twice: reruns reuse finished cells, changes redo only what they
touch, unreadable files are set aside, and re-asks are bounded and recorded."""

from __future__ import annotations

import posixpath
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sweep.core.errors import SweepError
from sweep.run import run
from tests.conftest import exact_rows, fake_pool, superseded
from tests.test_faults import FULL
from warehouse.db import compact, connect
from sweep.core.rows import SCHEMAS
from warehouse.store import Store

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("ray_local")


def test_rerunning_the_same_config_does_no_model_work(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    first = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=same"))
    files = first.store.files("generations") + first.store.files("judgments")
    # The run's sums were stored when it ended, and the views read them (no compaction needed).
    stored = "select count(*) > 0, (select bool_and(_aggregated) from stg_judgments) from raw_eval_judgments"
    assert connect(first.store).execute(stored).fetchone() == (True, True)
    (sums,) = first.store.files("eval_judgments")
    again = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=same"))
    assert (first.model_loads, again.model_loads) == (3, 0)
    assert "nothing to compute" in capfd.readouterr().err
    assert again.store.files("generations") + again.store.files("judgments") == files  # none rewritten
    assert exact_rows(again.store, "same") == FULL
    assert connect(again.store).execute("select reused_cells from runs").fetchone() == (27,)
    assert again.store.files("eval_judgments") == [sums]  # still true to the run: not written again


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
    # the old answer file of each model and verdict file of each judge, and the run's row each time it was rewritten
    assert [p.parts[0] for p in superseded(tmp_path, "generations", "judgments", "runs")] == \
        ["generations"] * 3 + ["judgments"] * 3 + ["runs"] * 3
    # each old file's reusable cells in a file of their own, and the new answers in one file per model
    assert len(result.store.files("generations", "edit")) == 3 + 3
    # the sums stored at the first run's end went stale with its files, and were stored again at this one's
    assert con.execute("select count(*), bool_and(_aggregated) from stg_judgments").fetchone() == (18, True)


def test_resume_false_recomputes_without_duplicates(tmp_path: Path) -> None:
    first = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=fresh"))
    old = [posixpath.relpath(p, tmp_path) for t in ("generations", "judgments") for p in first.store.files(t)]
    again = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=fresh", "run.resume=false"))
    assert again.model_loads == 3
    assert exact_rows(again.store, "fresh") == FULL
    # The recomputed cells replace the old files, which are kept under superseded/, not rewritten in place.
    assert sorted(str(p) for p in superseded(tmp_path)) == sorted(old)


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
    assert con.execute("select count(*) from generations").fetchone() == (9 - 3,)  # a batch file: one model's answers
    result = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=torn"))
    assert exact_rows(result.store, "torn") == FULL
    err = capfd.readouterr().err  # each path whole on its line, though longer than the console is wide
    assert f"warning: {victim} is not readable warehouse Parquet" in err and f"warning: {foreign} is not" in err
    # Set aside, not deleted: the two unreadable files, and the two judges' verdicts on the
    # answer that was asked again (they judged text that no longer exists).
    # (their other verdicts are kept, in a file of their own).
    assert len(superseded(tmp_path)) == 2 + 2


def test_a_compacted_run_still_resumes_cell_by_cell(tmp_path: Path) -> None:
    """After `python -m warehouse compact`, one file holds the run: a changed prompt still redoes only its cells
    (the compacted file's other cells move to a file of their own), and a plain rerun redoes nothing."""
    run(fake_pool(f"warehouse.root={tmp_path}", "run.name=packed"))
    assert compact(Store(str(tmp_path)), "packed") == {"generations": (3, 9), "judgments": (3, 18)}
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=packed")
    cfg.evals.prompts[0].prompt = "What is the capital of Italy? Answer in one sentence."
    result = run(cfg)
    assert connect(result.store).execute("select reused_cells from runs").fetchone() == (18,)
    assert exact_rows(result.store, "packed") == FULL
    again = run(cfg)
    assert again.model_loads == 0 and exact_rows(again.store, "packed") == FULL


def test_a_card_name_the_warehouse_cant_store_stops_before_any_model_loads(tmp_path: Path) -> None:
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=badname")
    next(iter(cfg.model.cards.values())).name = "line\nbreak"
    with pytest.raises(SweepError, match="can't be a warehouse folder name"):
        run(cfg)
    assert not (tmp_path / "generations").exists() and not (tmp_path / "runs").exists()


def test_corrupt_pages_and_a_foreign_schema_are_skipped_by_query_and_report_and_redone(tmp_path: Path) -> None:
    """A file whose footer is intact but whose pages are garbage, and a sound Parquet file of another
    table's shape: query and report skip each with a warning naming it, the rerun sets both aside."""
    run(fake_pool(f"warehouse.root={tmp_path}", "run.name=rot"))
    rotten = sorted((tmp_path / "generations").glob("**/*.parquet"))[0]
    data = bytearray(rotten.read_bytes())
    footer = len(data) - 8 - pq.ParquetFile(rotten).metadata.serialized_size
    data[4:footer] = bytes(b ^ 0x5A for b in data[4:footer])  # every page, not the footer or the magic bytes
    rotten.write_bytes(bytes(data))
    assert pq.read_schema(rotten).names == SCHEMAS["generations"].names  # the footer still reads
    foreign = sorted((tmp_path / "judgments").glob("**/*.parquet"))[0].parent / "part-notes.parquet"
    pq.write_table(pa.table({"note": ["not a verdict"]}), foreign)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "warehouse", "--root", str(tmp_path), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    for out in (cli("query", "select count(*) as answers from generations"), cli("report", "rot")):
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"warning: skipping {rotten}" in out.stderr and f"warning: skipping {foreign}" in out.stderr
    assert "│       6 │" in cli("query", "select count(*) as answers from generations").stdout  # 9 - a batch file of 3
    result = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=rot"))
    assert exact_rows(result.store, "rot") == FULL
    aside = [p.name for p in superseded(tmp_path)]
    # The two bad files, and the two other judges' batch files, which held verdicts on the answers asked
    # again (their other verdicts are kept, in a file of their own); nothing deleted.
    assert len(aside) == 4 and rotten.name in aside and foreign.name in aside
