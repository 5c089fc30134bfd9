"""The study's tables for a run, printed from the warehouse's SQL views."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import duckdb
from rich.console import Console
from rich.table import Table

from warehouse import stats
from warehouse.formats import (FAILURE_AWARE_NOTE, consistency_text, fmt, left_out_note, rank_with_range, shown_evals,
                               with_interval)
from warehouse.store import Store


def latest_run(con: duckdb.DuckDBPyConnection) -> Optional[str]:
    row = con.execute("select run_id from runs order by started_at desc limit 1").fetchone()
    return row[0] if row else None


# Columns of names: left-aligned and never wrapped or cut, since a name is what a row is about.
NAME_COLUMNS = ("Model", "Judge", "Family", "Judge family")


def ranking_table(con: duckdb.DuckDBPyConnection, run_id: str) -> Table:
    rows = con.execute(
        "select rank, model, avg_score, wins, top3, evals, avg_sigma, valid_judgments, total_judgments, unranked "
        "from rankings where run_id = ?", [run_id],
    ).fetchall()
    reasons = [f"{row[1]} ({row[-1]})" for row in rows if row[-1]]
    caption = ("Unranked: " + "; ".join(reasons)) if reasons else None
    t = _table(f"Ranking, run {run_id}", ("Rank", "Model", "Avg Score", "Wins", "Top 3", "Avg σ", "Valid/Total"),
               caption)
    for rank, model, avg, wins, top3, evals, sigma, valid, total, _ in rows:
        t.add_row(rank_with_range(rank, math.nan, math.nan), model, fmt(avg), str(wins), f"{top3}/{evals}", fmt(sigma),
                  f"{valid}/{total}")
    return t


def failure_aware_table(con: duckdb.DuckDBPyConnection, run_id: str) -> Table:
    t = _table(f"Failure-aware ranking, run {run_id}",
               ("Rank", "Model", "Avg Score", "Failed answers", "Evals", "Study rank"), FAILURE_AWARE_NOTE)
    rows = con.execute(
        "select rank, model, avg_score, failed_answers, answers, evals, study_rank "
        "from failure_aware_ranking where run_id = ? order by rank", [run_id],
    ).fetchall()
    for rank, model, avg, failed, answers, evals, study_rank in rows:
        t.add_row(str(rank), model, fmt(avg), f"{failed}/{answers}", str(evals),
                  rank_with_range(study_rank, math.nan, math.nan))
    return t


def efficiency_table(con: duckdb.DuckDBPyConnection, run_id: str) -> Table:
    answers, judging = con.execute(
        "select (select sum(cost_usd) from generations where run_id = $1), "
        "(select sum(judge_cost_usd) from efficiency where run_id = $1)", [run_id]).fetchone()
    caption = None
    if answers is not None or judging is not None:
        total = (answers or 0) + (judging or 0)
        caption = (f"API cost, whole run: ${total:.4f} (answers ${answers or 0:.4f}, judgments ${judging or 0:.4f}); "
                   "local engines cost nothing here")
    t = _table(f"Efficiency, run {run_id}", ("Model", "Avg Time (s)", "Output tok/s", "Score/sec",
                                             "Avg Score / Avg Time", "Answers $", "Judging $", "$ / point"), caption)
    rows = con.execute(
        "select model, avg_time_s, output_tokens_per_s, score_per_sec, avg_score_per_avg_time, answer_cost_usd, "
        "judge_cost_usd, cost_per_point_usd from efficiency where run_id = ? order by pool_index", [run_id],
    ).fetchall()
    for model, avg_time, tps, sps, ratio, answer_cost, judge_cost, per_point in rows:
        t.add_row(model, fmt(avg_time), fmt(tps, 1), fmt(sps, 3), fmt(ratio, 3), fmt(answer_cost, 4),
                  fmt(judge_cost, 4), fmt(per_point, 5))
    return t


def leniency_table(con: duckdb.DuckDBPyConnection, run_id: str) -> Table:
    t = _table("Judges", ("Judge", "Mean given", "Valid", "ok", "invalid", "truncated", "error", "no_answer"))
    rows = con.execute(
        "select judge, mean_given, valid, total, ok, invalid, truncated, error, no_answer "
        "from judge_leniency where run_id = ? order by judge", [run_id],
    ).fetchall()
    for judge, mean, valid, total, *counts in rows:
        t.add_row(judge, fmt(mean), f"{valid}/{total}", *map(str, counts))
    return t


def deltas_table(con: duckdb.DuckDBPyConnection, run_a: str, run_b: str) -> Table:
    """Each model's rank and score in run B against run A (ranking_deltas)."""
    t = _table(f"Ranking, run {run_a} -> {run_b}", ("Model", "Rank A", "Rank B", "Δ Rank", "Score A", "Score B",
                                                    "Δ Score"))
    rows = con.execute(
        "select model, rank_a, rank_b, rank_delta, score_a, score_b, score_delta "
        "from ranking_deltas where run_a = ? and run_b = ?", [run_a, run_b],
    ).fetchall()
    for model, *values in rows:
        t.add_row(model, *map(fmt, values))
    return t


def _table(title: str, columns: Sequence[str], caption: Optional[str] = None) -> Table:
    t = Table(title=title, caption=caption)
    for col in columns:
        name = col in NAME_COLUMNS
        t.add_column(col, justify="left" if name else "right", no_wrap=name, overflow="fold")
    return t


def calibrated_table(con: duckdb.DuckDBPyConnection, run_id: str, panel: stats.PanelStats) -> Table:
    """Leniency-calibrated scores beside the raw ranking, each with bootstrap intervals."""
    pct = f"{panel.level:.0%}"
    raw, cal = panel.rankings["raw"], panel.rankings.get("calibrated")
    official = {m: (rank, avg) for rank, m, avg in con.execute(
        "select rank, model, avg_score from rankings where run_id = ?", [run_id]).fetchall()}
    caption = (
        "Calibrated: quality(model) in score = quality(model) + leniency(judge), least squares, leniencies sum to 0"
        f"{'' if cal else ' (not identified: the judges and models split into separate groups)'}. "
        f"In brackets: {pct} percentile intervals over {panel.replicates} bootstrap replicates of evals and judges "
        f"(seed {panel.seed}; used: raw {raw.replicates}, calibrated {cal.replicates if cal else 0})."
    )
    t = _table(f"Calibrated ranking, run {run_id}", ("Model", "Calibrated", "Rank", "Avg Score", "Raw rank"), caption)
    for i in sorted(range(len(raw.models)), key=lambda i: (cal or raw).rank[i]):
        rank, avg = official[raw.models[i]]
        t.add_row(
            raw.models[i],
            with_interval(cal.score[i], cal.score_lo[i], cal.score_hi[i]) if cal else "-",
            rank_with_range(cal.rank[i], cal.rank_lo[i], cal.rank_hi[i]) if cal else "-",
            with_interval(avg, raw.score_lo[i], raw.score_hi[i]),
            rank_with_range(rank, raw.rank_lo[i], raw.rank_hi[i]),
        )
    return t


def common_evals_table(con: duckdb.DuckDBPyConnection, run_id: str) -> Table:
    rows = con.execute(
        "select rank, model, avg_score, wins, top3, evals, all_evals_rank, all_evals "
        "from common_evals_ranking where run_id = ? order by rank", [run_id],
    ).fetchall()
    (every,) = con.execute("select count(distinct eval_id) from eval_scores where run_id = ?", [run_id]).fetchone()
    common = max((r[5] for r in rows), default=0)
    t = _table(f"Ranking over the {common} of {every} evals every ranked model appears in",
               ("Rank", "Model", "Avg Score", "Wins", "Top 3", "All-evals rank", "All evals"),
               None if common else "No eval has a valid score for every ranked model: no comparison on equal terms.")
    for rank, model, avg, wins, top3, evals, all_rank, all_evals in rows if common else []:
        t.add_row(str(rank), model, fmt(avg), str(wins), f"{top3}/{evals}", str(all_rank), str(all_evals))
    return t


def panel_table(con: duckdb.DuckDBPyConnection, run_id: str, panel: stats.PanelStats) -> Table:
    """Per judge: fitted leniency, whether it tells models apart, and how much the ranking leans on it."""
    t = _table("Judge panel", ("Judge", "Family", "Leniency", "Spread", "Score σ", "LOJO τ raw", "LOJO τ cal."),
               caption="Leniency: fitted offset from the average judge. Spread: max - min of its mean score per "
                       "model. LOJO τ: Kendall tau-b of the scores without this judge against the scores with all.")
    rows = con.execute(
        "select judge, family, spread, score_sd from flat_judges where run_id = ? order by judge", [run_id],
    ).fetchall()
    for judge, family, spread, sd in rows:
        lenient = panel.leniency.get(judge)
        t.add_row(judge, family, "-" if lenient is None else f"{lenient:+.2f}", fmt(spread), fmt(sd),
                  *(fmt(panel.lojo.get(m, {}).get(judge)) for m in ("raw", "calibrated")))
    return t


def _matrix(title: str, corner: str, cells: list[tuple[str, str, str]]) -> Table:
    """Rows and columns in the order they first appear in ``cells`` (row, column, text)."""
    columns = list(dict.fromkeys(c for _, c, _ in cells))
    text = {(r, c): v for r, c, v in cells}
    t = _table(title, (corner, *columns))
    for r in sorted({r for r, _, _ in cells}):
        t.add_row(r, *(text.get((r, c), "-") for c in columns))
    return t


def print_judging(con: duckdb.DuckDBPyConnection, run_id: str, console: Console,
                  panel: Optional[stats.PanelStats] = None) -> None:
    """The judge panel beside the ranking: calibrated scores with intervals, the ranking over common
    evals, leniency and flat judges, the judge and family matrices, agreement, the scrub."""
    panel = panel or stats.analyze(con, run_id)
    if panel is None:
        console.print("Judging statistics: no valid score in this run.")
        return
    judge_cells = con.execute("select judge, respondent, mean_score from judge_matrix where run_id = ? "
                              "order by pool_index, judge", [run_id]).fetchall()
    family_cells = con.execute("select judge_family, respondent_family, mean_score, vs_others from family_leniency "
                               "where run_id = ? order by respondent_family, judge_family", [run_id]).fetchall()
    for table in (
        calibrated_table(con, run_id, panel),
        common_evals_table(con, run_id),
        panel_table(con, run_id, panel),
        _matrix("Mean score given (judge x model)", "Judge", [(j, r, fmt(m)) for j, r, m in judge_cells]),
        _matrix("Mean score given (judge family x model family; vs other families)", "Judge family",
                [(j, r, fmt(m) + ("" if v is None else f" ({v:+.2f})")) for j, r, m, v in family_cells]),
    ):
        console.print(table)
    alpha, units, values, judges = con.execute(
        "select alpha, units, pairable_values, judges from judge_agreement where run_id = ?", [run_id]).fetchone()
    console.print(f"Agreement: Krippendorff's alpha (interval) = {fmt(alpha, 3)} over {units} answers scored by "
                  f"2+ judges ({values} scores, {judges} judges)")
    flat = [j for (j,) in con.execute("select judge from flat_judges where run_id = ? and flat", [run_id]).fetchall()]
    console.print(f"Flat judges (spread <= 1% of the scale: they don't tell models apart): {', '.join(flat) or 'none'}")
    scrubbed, judged = con.execute("select count(*) filter (where scrubbed is not null), count(*) filter "
                                   "(where status <> 'no_answer') from judgments where run_id = ?", [run_id]).fetchone()
    console.print(f"Self-identification scrubbed from {scrubbed} of {judged} judged answers (judgments.scrubbed)")


def print_pairwise(con: duckdb.DuckDBPyConnection, run_id: str, console: Console) -> None:
    """Pairwise verdicts (judge.pairwise): the win-rate ranking and each judge's position bias."""
    (rows,) = con.execute("select count(*) from comparisons where run_id = ?", [run_id]).fetchone()
    if not rows:
        return
    t = _table(f"Pairwise ranking, run {run_id}", ("Rank", "Model", "Win rate", "Wins", "Ties", "Losses", "Verdicts",
                                                   "BT strength"),
               caption="Win rate: (wins + ties / 2) / valid verdicts the model's answer was in; "
                       "every pair asked in both orders (view pairwise_ranking). BT strength: Bradley-Terry "
                       "log-strength, mean 0: P(a beats b) = 1 / (1 + exp(b - a)) (warehouse/stats.py).")
    strengths = stats.pairwise_strengths(con, run_id)
    for rank, model, rate, wins, ties, losses, n in con.execute(
            "select rank, model, win_rate, wins, ties, losses, comparisons from pairwise_ranking "
            "where run_id = ? order by rank", [run_id]).fetchall():
        t.add_row(str(rank), model, fmt(rate, 3), str(wins), str(ties), str(losses), str(n),
                  fmt(strengths.get(model), 3))
    console.print(t)
    t = _table("Position bias", ("Judge", "Decided", "First wins", "P(first)", "p-value", "Order consistency",
                                 "Biased"),
               caption=f"P(first): share of decided verdicts won by the answer shown first (0.5 = none); p-value: "
                       f"exact two-sided binomial test against 0.5, flagged below {stats.BIAS_ALPHA}. Order "
                       "consistency: pairs whose two orders picked the same answer (view position_bias).")
    for b in stats.position_bias(con, run_id):
        t.add_row(b.judge, str(b.decided), str(b.first_wins), fmt(b.first_rate, 3), fmt(b.p_value, 4),
                  consistency_text(b.consistency, b.pairs), "yes" if b.flagged else "no")
    console.print(t)


def print_soft_scores(con: duckdb.DuckDBPyConnection, run_id: str, console: Console) -> None:
    """Expected scores beside sampled ones (judge.soft_scores); nothing when the run has none."""
    rows = con.execute("select model, avg_soft_score, avg_score, avg_gap, mean_abs_gap, n from soft_scores "
                       "where run_id = ? order by pool_index", [run_id]).fetchall()
    if not rows:
        return
    t = _table(f"Soft scores, run {run_id}", ("Model", "Avg soft score", "Avg sampled score", "Gap", "Mean |gap|",
                                              "Judgments"),
               caption="Soft score: the judge's expected weighted score under its probabilities of the score tokens "
                       "(jobs/judge.py soft_criteria), over valid judgments that have one (view soft_scores).")
    for model, soft, sampled, gap, abs_gap, n in rows:
        t.add_row(model, fmt(soft), fmt(sampled), f"{gap:+.2f}", fmt(abs_gap), str(n))
    console.print(t)


def coverage_table(con: duckdb.DuckDBPyConnection, run_id: str) -> Table:
    """Model x eval: the eval score where the cell is usable, else missing or failed and why; the evals the
    page shows (formats.shown_evals), with a caption saying what it left out."""
    cells = con.execute("select model, eval_id, cell_status, eval_score, reason from coverage where run_id = ? "
                        "order by eval_id", [run_id]).fetchall()
    shown = shown_evals((e, status) for _, e, status, _, _ in cells)
    texts = [(m, e, fmt(score) if status == "ok" else f"{status.upper()}: {reason}")
             for m, e, status, score, reason in cells if e in shown]
    bad = sum(status != "ok" for _, _, status, _, _ in cells)
    table = _matrix(f"Coverage, run {run_id}: {len(cells) - bad} of {len(cells)} cells usable", "Model", texts)
    table.caption = left_out_note(len(shown), len({e for _, e, _, _, _ in cells}), run_id)
    return table


def run_line(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    status, loads, reused, failures, wall = con.execute(
        "select status, model_loads, reused_cells, instance_failures, wall_s from runs where run_id = ?", [run_id]
    ).fetchone()
    return (f"Run {run_id}: {status}, {fmt(wall, 0)} s, {loads} model loads, {reused or 0} cells reused from "
            f"earlier attempts, {failures or 0} instance failures")


def print_report(con: duckdb.DuckDBPyConnection, store: Store, run_id: str,
                 console: Console) -> Optional[stats.PanelStats]:
    """The run's tables; returns its judging statistics, for the page to render without computing them again."""
    panel = stats.analyze(con, run_id)
    console.print(ranking_table(con, run_id))
    console.print(failure_aware_table(con, run_id))
    console.print(efficiency_table(con, run_id))
    console.print(leniency_table(con, run_id))
    console.print(coverage_table(con, run_id))
    print_judging(con, run_id, console, panel)
    print_soft_scores(con, run_id, console)
    print_pairwise(con, run_id, console)
    console.print(run_line(con, run_id))
    console.print(f"Data: {store.root}  (runs/, generations/, judgments/ as Parquet, run_id={run_id})")
    console.print(
        f"Query: python -m warehouse --root {store.root} query "
        f"\"select model, avg_score, wins from rankings where run_id = '{run_id}'\""
    )
    return panel
