"""Bounded re-asks: cut-off answers get a larger budget, unusable verdicts a new seed; the
final status and attempt count are stored, and what still fails is kept and counted."""

from __future__ import annotations

from pathlib import Path

from sweep.run import run
from tests.conftest import fake_pool
from tests.conftest import exact_rows
from tests.test_faults import FULL
from warehouse.db import connect


def test_cut_off_answers_are_asked_again_with_a_larger_budget(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    ray_nodes(workers=1, worker_memory_gib=8, SWEEP_FAKE_NEEDS_TOKENS="100")
    wh = f"warehouse.root={tmp_path}"
    retried = run(fake_pool(wh, "run.name=retried", "sampling.max_tokens=64", "run.retry_truncated=1"))  # 64 -> 128
    kept = run(fake_pool(wh, "run.name=kept", "sampling.max_tokens=64"))  # no re-ask: the default
    con = connect(retried.store)
    answers = dict(con.execute("select run_id, list(distinct (status, attempts)) from generations group by 1").fetchall())
    assert answers["retried"] == [("ok", 2)]
    assert answers["kept"] == [("truncated", 1)]
    # The stored sampling is what the last ask used: the re-ask's doubled budget.
    budgets = dict(con.execute("select run_id, list(distinct json_extract(sampling, '$.max_tokens')::int) "
                               "from generations group by 1").fetchall())
    assert budgets == {"retried": [128], "kept": [64]}
    # A cut-off answer with content is judged (its judges told so: tests/test_judge.py).
    verdicts = dict(con.execute("select run_id, list(distinct status) from judgments group by 1").fetchall())
    assert verdicts == {"retried": ["ok"], "kept": ["ok"]}
    assert exact_rows(kept.store, "kept") == FULL


def test_unusable_verdicts_are_asked_again_with_a_new_seed(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    ray_nodes(workers=1, worker_memory_gib=8, SWEEP_FAKE_BAD_FIRST_VERDICT="1")
    wh = f"warehouse.root={tmp_path}"
    run(fake_pool(wh, "run.name=reasked"))
    result = run(fake_pool(wh, "run.name=once", "judge.retries=0"))
    con = connect(result.store)
    verdicts = dict(con.execute("select run_id, list(distinct (status, attempts)) from judgments group by 1").fetchall())
    assert verdicts["reasked"] == [("ok", 2)]
    assert verdicts["once"] == [("invalid", 1)]
    assert con.execute("select valid_judgments, total_judgments from rankings where run_id = 'once' limit 1"
                       ).fetchone() == (0, 6)
    # judge.retries raised on resume: the verdicts left invalid get their re-ask, the answers are reused.
    again = run(fake_pool(wh, "run.name=once", "judge.retries=1"))
    con = connect(again.store)
    assert con.execute("select list(distinct (status, attempts)) from judgments where run_id = 'once'"
                       ).fetchone() == ([("ok", 2)],)
    assert con.execute("select reused_cells from runs where run_id = 'once'").fetchone() == (9,)
    assert exact_rows(again.store, "once") == FULL
