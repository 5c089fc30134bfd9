"""The study's tables for a run, printed from the warehouse's SQL views."""

from __future__ import annotations

from typing import Optional

import duckdb
from rich.console import Console
from rich.table import Table

from warehouse.store import Store


def latest_run(con: duckdb.DuckDBPyConnection) -> Optional[str]:
    row = con.execute("select run_id from runs order by started_at desc limit 1").fetchone()
    return row[0] if row else None


def _fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ranking_table(con: duckdb.DuckDBPyConnection, run_id: str) -> Table:
    t = Table(title=f"Ranking, run {run_id}")
    for col in ("Rank", "Model", "Avg Score", "Wins", "Top 3", "Avg σ", "Valid/Total"):
        t.add_column(col, justify="left" if col == "Model" else "right")
    rows = con.execute(
        "select rank, model, avg_score, wins, top3, evals, avg_sigma, valid_judgments, total_judgments "
        "from rankings where run_id = ? order by rank", [run_id],
    ).fetchall()
    for rank, model, avg, wins, top3, evals, sigma, valid, total in rows:
        t.add_row(str(rank), model, _fmt(avg), str(wins), f"{top3}/{evals}", _fmt(sigma), f"{valid}/{total}")
    return t


def efficiency_table(con: duckdb.DuckDBPyConnection, run_id: str) -> Table:
    t = Table(title=f"Efficiency, run {run_id}")
    for col in ("Model", "Avg Time (s)", "Output tok/s", "Score/sec", "Avg Score / Avg Time"):
        t.add_column(col, justify="left" if col == "Model" else "right")
    rows = con.execute(
        "select model, avg_time_s, output_tokens_per_s, score_per_sec, avg_score_per_avg_time "
        "from efficiency where run_id = ? order by pool_index", [run_id],
    ).fetchall()
    for model, avg_time, tps, sps, ratio in rows:
        t.add_row(model, _fmt(avg_time), _fmt(tps, 1), _fmt(sps, 3), _fmt(ratio, 3))
    return t


def leniency_table(con: duckdb.DuckDBPyConnection, run_id: str) -> Table:
    t = Table(title="Judges")
    cols = ("Judge", "Mean given", "Valid", "ok", "invalid", "truncated", "error", "no_answer")
    for col in cols:
        t.add_column(col, justify="left" if col == "Judge" else "right")
    rows = con.execute(
        "select judge, mean_given, valid, total, ok, invalid, truncated, error, no_answer "
        "from judge_leniency where run_id = ? order by judge", [run_id],
    ).fetchall()
    for judge, mean, valid, total, *counts in rows:
        t.add_row(judge, _fmt(mean), f"{valid}/{total}", *map(str, counts))
    return t


def print_report(con: duckdb.DuckDBPyConnection, store: Store, run_id: str, console: Console) -> None:
    console.print(ranking_table(con, run_id))
    console.print(efficiency_table(con, run_id))
    console.print(leniency_table(con, run_id))
    console.print(f"Data: {store.root}  (runs/, generations/, judgments/ as Parquet, run_id={run_id})")
    console.print(
        f"Query: python -m warehouse --root {store.root} query "
        f"\"select model, avg_score, wins from rankings where run_id = '{run_id}'\""
    )
