"""One self-contained HTML page for a run, or for two runs side by side, built from the warehouse views.

Plots are Bokeh figures; ``bokeh.embed.file_html`` with INLINE resources puts BokehJS (only
the bundles the figures use, 1.3 MB) and every figure's data into the page once, so the page
opens with no network. Bokeh rather than Plotly: plotly.js alone is 4.8 MB, nearly all of the
page's 5 MB budget. Tables are plain HTML that sort by column with a few lines of inline JS.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import duckdb
from bokeh.embed import file_html
from bokeh.models import ColumnDataSource, HoverTool, LabelSet
from bokeh.palettes import Viridis256
from bokeh.plotting import figure
from bokeh.resources import INLINE
from bokeh.transform import dodge, linear_cmap
from jinja2 import Environment, PackageLoader

from warehouse import stats
from warehouse.formats import (FAILURE_AWARE_NOTE, consistency_text, fmt, left_out_note, rank_with_range, shown_evals,
                               with_interval)
from warehouse.store import Store

_ENV = Environment(loader=PackageLoader("warehouse", "templates"), autoescape=True,
                   trim_blocks=True, lstrip_blocks=True)

# A judge's judgment rows by outcome, stacked in this order: together they are all its rows.
VALIDITY = {
    "valid": "#2e7d32", "ok, out of range": "#9ccc65", "invalid": "#ef6c00",
    "truncated": "#fbc02d", "error": "#c62828", "no_answer": "#9e9e9e",
}


@dataclass(frozen=True)
class Cell:
    text: str
    sort: str = ""
    """What the column sorts by: a number or text; blank sorts last."""
    cls: str = ""
    href: str = ""
    title: str = ""


@dataclass(frozen=True)
class Table:
    id: str
    headers: Sequence[str]
    rows: Sequence[Sequence[Cell]]


@dataclass(frozen=True)
class Column:
    """A table column over query rows: sorts by row[key], shows `show(row)` or the value formatted."""

    header: str
    key: str
    digits: int = 2
    show: Optional[Callable[[dict[str, Any]], str]] = None

    def cell(self, row: dict[str, Any]) -> Cell:
        value = row.get(self.key)  # absent: a judgment with no criteria has none of their columns
        text = self.show(row) if self.show else _text(value, self.digits)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        return Cell(text, "" if value is None else str(value), "num" if numeric else "")


def table(id: str, columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> Table:
    return Table(id, [c.header for c in columns], [[c.cell(r) for c in columns] for r in rows])


def _text(value: Any, digits: int = 2) -> str:
    if isinstance(value, dt.datetime):
        return f"{value:%Y-%m-%d %H:%M:%S %Z}"
    return fmt(value, digits)


def _delta(key: str, digits: int) -> Callable[[dict[str, Any]], str]:
    """A change with its sign; '-' when the model or cell is absent from one of the runs."""
    def show(row: dict[str, Any]) -> str:
        value = row[key]
        if value is None:
            return "-"
        return f"{value:+.{digits}f}" if value else f"{0:.{digits}f}"  # no sign on "no change"
    return show


RANKING = (
    Column("Rank", "rank", show=lambda r: rank_with_range(r["rank"], r["raw_rank_lo"], r["raw_rank_hi"])),
    Column("Model", "model"),
    Column("Avg Score", "avg_score",
           show=lambda r: "-" if r["avg_score"] is None else with_interval(r["avg_score"], r["raw_lo"], r["raw_hi"])),
    Column("Calibrated", "calibrated_score", show=lambda r: "-" if r["calibrated_score"] is None else with_interval(
        r["calibrated_score"], r["calibrated_lo"], r["calibrated_hi"])),
    Column("Wins", "wins"),
    Column("Top 3", "top3", show=lambda r: f"{r['top3']}/{r['evals']}"), Column("Avg σ", "avg_sigma"),
    Column("Valid/Total", "valid_judgments", show=lambda r: f"{r['valid_judgments']}/{r['total_judgments']}"),
)
FAILURE_AWARE = (
    Column("Rank", "rank"), Column("Model", "model"), Column("Avg Score", "avg_score"),
    Column("Failed answers", "failed_answers", show=lambda r: f"{r['failed_answers']}/{r['answers']}"),
    Column("Evals", "evals"), Column("Study rank", "study_rank", show=lambda r: rank_with_range(r["study_rank"], math.nan, math.nan)),
)
EFFICIENCY = (
    Column("Model", "model"), Column("Avg Time (s)", "avg_time_s"), Column("Output tok/s", "output_tokens_per_s", 1),
    Column("Score/sec", "score_per_sec", 3), Column("Avg Score / Avg Time", "avg_score_per_avg_time", 3),
    Column("Answers $", "answer_cost_usd", 4), Column("Judging $", "judge_cost_usd", 4),
    Column("$ / point", "cost_per_point_usd", 5),
)
PAIRWISE = (
    Column("Rank", "rank"), Column("Model", "model"), Column("Win rate", "win_rate", 3), Column("Wins", "wins"),
    Column("Ties", "ties"), Column("Losses", "losses"), Column("Verdicts", "comparisons"),
    Column("BT strength", "strength", 3),
)
POSITION_BIAS = (
    Column("Judge", "judge"), Column("Decided", "decided"), Column("First wins", "first_wins"),
    Column("P(first)", "first_rate", 3), Column("p-value", "p_value", 4),
    Column("Order consistency", "consistency",
           show=lambda r: consistency_text(r["consistency"], r["pairs"])),
    Column("Biased", "flagged", show=lambda r: "yes" if r["flagged"] else "no"),
)
SOFT_SCORES = (
    Column("Model", "model"), Column("Avg soft score", "avg_soft_score"), Column("Avg sampled score", "avg_score"),
    Column("Gap", "avg_gap", show=_delta("avg_gap", 2)), Column("Mean |gap|", "mean_abs_gap"), Column("Judgments", "n"),
)
RANKING_DELTAS = (
    Column("Model", "model"), Column("Rank A", "rank_a"), Column("Rank B", "rank_b"),
    Column("Δ Rank", "rank_delta", show=_delta("rank_delta", 0)),
    Column("Score A", "score_a"), Column("Score B", "score_b"),
    Column("Δ Score", "score_delta", show=_delta("score_delta", 2)),
)
CELL_DELTAS = (
    Column("Model", "model"), Column("Eval", "eval_id"), Column("Status A", "status_a"), Column("Status B", "status_b"),
    Column("Score A", "score_a"), Column("Score B", "score_b"),
    Column("Δ Score", "score_delta", show=_delta("score_delta", 2)),
)


def records(con: duckdb.DuckDBPyConnection, query: str, *params: Any) -> list[dict[str, Any]]:
    """A query's rows as dicts by column name, through Arrow (DuckDB's own conversion of
    timestamps with a time zone needs pytz)."""
    with warnings.catch_warnings():
        # execute(), not sql(): DuckDB refuses sql() while a caller's execute() result is unread, and
        # the page is built on the connection the terminal report used. The extra copy it warns
        # about is of one page's rows.
        warnings.filterwarnings("ignore", "Arrow output on a DB-API result", UserWarning)
        rows = con.execute(query, list(params)).to_arrow_table()
    return rows.to_pylist(maps_as_pydicts="strict")


def run_page(con: duckdb.DuckDBPyConnection, run_id: str, panel: Optional[stats.PanelStats] = None) -> str:
    """The page of one run: ranking, score against latency, judges, coverage, the evals (all of them up to
    formats.PAGE_EVALS, else those first with a failed or missing cell), provenance. ``panel``: the run's statistics
    when the caller has them (print_report returns them), so the bootstrap runs once per report."""
    run = records(con, "select * from runs where run_id = ?", run_id)[0]
    pool = list(run["pool"])
    panel = panel or stats.analyze(con, run_id)
    ranking = with_intervals(records(con, "select * from rankings where run_id = ? order by rank", run_id), panel)
    efficiency = records(con, "select * from efficiency where run_id = ? order by pool_index", run_id)
    frontier = records(con, "select * from efficiency_frontier where run_id = ?", run_id)
    matrix = records(con, "select * from judge_matrix where run_id = ?", run_id)
    validity = records(con, "select * from judge_leniency where run_id = ?", run_id)
    coverage = records(con, "select * from coverage where run_id = ?", run_id)
    shown = shown_evals((c["eval_id"], c["cell_status"]) for c in coverage)
    left_out = left_out_note(len(shown), len({c["eval_id"] for c in coverage}), run_id)
    coverage = [c for c in coverage if c["eval_id"] in shown]
    soft = records(con, "select * from soft_scores where run_id = ? order by pool_index", run_id)
    scale_max = records(con, "select max(scale_max) as top from judgments where run_id = ?", run_id)[0]["top"]
    plots = [ranking_plot(ranking), frontier_plot(frontier),
             heatmap_plot(matrix, pool, scale_max or 10),  # no judgment yet: any scale colours nothing
             validity_plot(validity, pool)]
    variables = {
        "heading": f"Run {run_id}",
        "subheading": f"{run['suite']} suite, {len(pool)} models: {', '.join(pool)}. "
                      f"{run['status']}, started {run['started_at']:%Y-%m-%d %H:%M} UTC",
        "ranking": table("ranking", RANKING, ranking),
        "failure_aware": table("failure-aware", FAILURE_AWARE, records(
            con, "select * from failure_aware_ranking where run_id = ? order by rank", run_id)),
        "failure_aware_note": FAILURE_AWARE_NOTE,
        "intervals": f"{panel.level:.0%} percentile intervals over {panel.replicates} bootstrap replicates "
                     f"(evals and judges resampled, seed {panel.seed})" if panel else "no valid score: no intervals",
        "efficiency": table("efficiency", EFFICIENCY, efficiency),
        "coverage": coverage_table(coverage),
        **pairwise(con, run_id),
        "soft_scores": table("soft-scores", SOFT_SCORES, soft) if soft else None,
        "evals": drill_down(con, run_id, coverage, sorted(shown)),
        "left_out": left_out,
        **provenance(run),
    }
    return _render("run.html.j2", f"sweep run {run_id}", plots, variables)


def pairwise(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """The pairwise section's tables (judge.pairwise); none when the run has no pairwise verdict."""
    ranking = records(con, "select * from pairwise_ranking where run_id = ? order by rank", run_id)
    if not records(con, "select 1 from comparisons where run_id = ? limit 1", run_id):
        return {"pairwise": None}
    bias = [asdict(b) for b in stats.position_bias(con, run_id)]
    strengths = stats.pairwise_strengths(con, run_id)
    ranking = [{**r, "strength": strengths.get(r["model"])} for r in ranking]
    return {"pairwise": table("pairwise", PAIRWISE, ranking),
            "position_bias": table("position-bias", POSITION_BIAS, bias),
            "bias_alpha": stats.BIAS_ALPHA}


def compare_page(con: duckdb.DuckDBPyConnection, run_a: str, run_b: str) -> str:
    """Run B against run A: score and rank deltas, the cells that changed, the config diff."""
    runs = records(con, "select * from runs where run_id in (?, ?) order by run_id = ?", run_a, run_b, run_b)
    deltas = records(con, "select * from ranking_deltas where run_a = ? and run_b = ?", run_a, run_b)
    cells = records(con, "select * from cell_deltas where run_a = ? and run_b = ?", run_a, run_b)
    changed = [c for c in cells if c["changed"]]
    facts = ("run_id", "suite", "status", "started_at", "wall_s", "config_hash", "git_commit")
    variables = {
        "heading": f"Run {run_a} \N{RIGHTWARDS ARROW} {run_b}",
        "subheading": f"A = {run_a}, B = {run_b}",
        "runs": Table("runs", ("", *facts), [[Cell(label), *(Column(f, f).cell(r) for f in facts)]
                                             for label, r in zip("AB", runs)]),
        "ranking": table("ranking", RANKING_DELTAS, deltas),
        "cells_changed": table("cells", CELL_DELTAS, changed),
        "changed": len(changed),
        "cells": len(cells),
        "config_diff": "".join(difflib.unified_diff(
            runs[0]["config_yaml"].splitlines(keepends=True), runs[1]["config_yaml"].splitlines(keepends=True),
            f"A {run_a}", f"B {run_b}")),
    }
    return _render("compare.html.j2", f"sweep runs {run_a} vs {run_b}", [deltas_plot(deltas)], variables)


def with_intervals(rows: list[dict[str, Any]], panel: Optional[stats.PanelStats]) -> list[dict[str, Any]]:
    """The ranking's rows with the judging statistics added: for each method (raw, calibrated) the
    score, its interval and the rank interval, as <method>_score, _lo, _hi, _rank_lo, _rank_hi."""
    return [{**row, **{f"{method}_{k}": v for method in ("raw", "calibrated")
                       for k, v in _fit(panel, method, row["model"]).items()}} for row in rows]


def _fit(panel: Optional[stats.PanelStats], method: str, model: str) -> dict[str, Any]:
    fit = panel.rankings.get(method) if panel else None
    if fit is None or model not in fit.models:  # no valid score, or the method is not identified
        return {"score": None, "lo": math.nan, "hi": math.nan, "rank_lo": math.nan, "rank_hi": math.nan}
    i = fit.models.index(model)
    return {"score": float(fit.score[i]), "lo": float(fit.score_lo[i]), "hi": float(fit.score_hi[i]),
            "rank_lo": float(fit.rank_lo[i]), "rank_hi": float(fit.rank_hi[i])}


def save_run_page(con: duckdb.DuckDBPyConnection, store: Store, run_id: str,
                  panel: Optional[stats.PanelStats] = None) -> str:
    """Write the run's page to <root>/reports/<run_id>.html; returns where it is."""
    return store.put(f"reports/{run_id}.html", run_page(con, run_id, panel).encode())


def _render(template: str, title: str, plots: list[figure], variables: dict[str, Any]) -> str:
    return file_html(plots, INLINE, title, template=_ENV.get_template(template), template_variables=variables)


def _figure(name: str, title: str, **options: Any) -> figure:
    # No toolbar: without one the page opened about a fifth faster in headless Chromium (median
    # of 15 loads); hover tooltips work without it.
    return figure(name=name, title=title, sizing_mode="stretch_width", tools="", toolbar_location=None,
                  **{"height": 340, **options})


def ranking_plot(rows: list[dict[str, Any]]) -> figure:
    """Each ranked model's score with its bootstrap interval: raw, and leniency-calibrated beside it."""
    ranked = [r for r in rows if r["avg_score"] is not None]
    models = [r["model"] for r in ranked]
    fig = _figure("ranking", "Score with its interval, best first", y_range=list(reversed(models)),
                  x_axis_label="score", height=140 + 50 * len(models))
    for method, offset, color in (("raw", 0.12, "#1f5fa8"), ("calibrated", -0.12, "#ef6c00")):
        shown = [r for r in ranked if r[f"{method}_score"] is not None]
        source = ColumnDataSource({
            "model": [r["model"] for r in shown], "score": [r[f"{method}_score"] for r in shown],
            "lo": [r[f"{method}_lo"] for r in shown], "hi": [r[f"{method}_hi"] for r in shown],
        })
        y = dodge("model", offset, range=fig.y_range)
        fig.segment("lo", y, "hi", y, source=source, color=color, line_width=3)
        fig.scatter("score", y, source=source, size=10, color=color, legend_label=method)
    fig.add_tools(HoverTool(tooltips=[("model", "@model"), ("score", "@score{0.00}"),
                                      ("interval", "@lo{0.00} to @hi{0.00}")]))
    fig.legend.location = "bottom_right"
    return fig


def frontier_plot(points: list[dict[str, Any]]) -> figure:
    """Avg score against avg latency per model; the frontier's models filled and joined."""
    fig = _figure("frontier", "Score against latency", x_axis_label="Avg time per answer (s)",
                  y_axis_label="Avg score")
    source = ColumnDataSource({
        "model": [p["model"] for p in points], "score": [p["avg_score"] for p in points],
        "time": [p["avg_time_s"] for p in points], "rank": [p["rank"] for p in points],
        "fill": ["#1f5fa8" if p["on_frontier"] else "white" for p in points],
        "where": ["on the frontier" if p["on_frontier"] else "off the frontier" for p in points],
    })
    edge = [p for p in points if p["on_frontier"]]  # the view orders points by time
    fig.line([p["avg_time_s"] for p in edge], [p["avg_score"] for p in edge], line_dash="dashed", color="#1f5fa8")
    points = fig.scatter("time", "score", source=source, size=12, fill_color="fill", line_color="#1f5fa8",
                         line_width=2, legend_field="where")
    fig.add_layout(LabelSet(x="time", y="score", text="model", source=source, x_offset=8, y_offset=4,
                            text_font_size="11px"))
    fig.add_tools(HoverTool(renderers=[points], tooltips=[("model", "@model"), ("rank", "@rank"),
                                                          ("avg score", "@score{0.00}"), ("avg time", "@time{0.000} s")]))
    fig.legend.location = "bottom_right"
    fig.x_range.range_padding = 0.25  # room for the names beside the points
    return fig


def heatmap_plot(pairs: list[dict[str, Any]], pool: list[str], scale_max: int) -> figure:
    """Judge (rows) x respondent (columns): the mean valid score the judge gave."""
    fig = _figure("heatmap", "Mean score by judge (row) and respondent (column)", x_range=pool,
                  y_range=list(reversed(pool)), x_axis_location="above",
                  tooltips=[("judge", "@judge"), ("respondent", "@respondent"), ("mean", "@label"),
                            ("valid / rows", "@n / @total"), ("vs other judges", "@vs_others{+0.00}")],
                  height=120 + 60 * len(pool))
    source = ColumnDataSource({
        **{k: [p[k] for p in pairs] for k in ("judge", "respondent", "mean_score", "n", "total", "vs_others")},
        "label": [fmt(p["mean_score"]) for p in pairs],
        # Dark cells get white text: Viridis is dark below its middle.
        "ink": ["white" if (p["mean_score"] or 0) < scale_max / 2 else "black" for p in pairs],
    })
    colors = linear_cmap("mean_score", Viridis256, low=0, high=scale_max, nan_color="#d0d4da")
    cells = fig.rect("respondent", "judge", width=0.95, height=0.95, source=source, fill_color=colors,
                     line_color=None)
    fig.text("respondent", "judge", text="label", source=source, text_align="center", text_baseline="middle",
             text_color="ink")
    fig.add_layout(cells.construct_color_bar(title="mean score"), "right")
    fig.grid.visible = False
    fig.axis.axis_line_color = None
    fig.xaxis.major_label_orientation = 0.4
    return fig


def validity_plot(judges: list[dict[str, Any]], pool: list[str]) -> figure:
    """Each judge's judgment rows stacked by outcome (valid, ok but out of range, invalid, ...)."""
    order = [j for j in pool if any(r["judge"] == j for r in judges)]
    by_judge = {r["judge"]: r for r in judges}
    counts = {
        "valid": [by_judge[j]["valid"] for j in order],
        "ok, out of range": [by_judge[j]["ok"] - by_judge[j]["valid"] for j in order],
        **{s: [by_judge[j][s] for j in order] for s in ("invalid", "truncated", "error", "no_answer")},
    }
    fig = _figure("validity", "Judgment rows by outcome, per judge", y_range=list(reversed(order)),
                  x_axis_label="judgment rows", height=140 + 40 * len(order),
                  tooltips="$name: @$name")
    fig.hbar_stack(list(VALIDITY), y="judge", height=0.7, source=ColumnDataSource({"judge": order, **counts}),
                   fill_color=list(VALIDITY.values()), line_color=None, legend_label=list(VALIDITY))
    fig.legend.orientation = "horizontal"
    fig.add_layout(fig.legend[0], "below")
    fig.ygrid.visible = False
    return fig


def deltas_plot(deltas: list[dict[str, Any]]) -> figure:
    """Each model's avg score in run A and run B, joined: the arrow of the change."""
    present = [d for d in deltas if d["score_a"] is not None or d["score_b"] is not None]
    models = [d["model"] for d in present]
    fig = _figure("deltas", "Avg score, A (hollow) to B (filled)", y_range=list(reversed(models)),
                  x_axis_label="avg score", height=120 + 40 * len(models))
    both = [d for d in present if d["score_a"] is not None and d["score_b"] is not None]
    fig.segment([d["score_a"] for d in both], [d["model"] for d in both], [d["score_b"] for d in both],
                [d["model"] for d in both], color="#8a94a6", line_width=2)
    for side, fill in (("score_a", "white"), ("score_b", "#1f5fa8")):
        shown = [d for d in present if d[side] is not None]
        fig.scatter([d[side] for d in shown], [d["model"] for d in shown], size=11, fill_color=fill,
                    line_color="#1f5fa8", line_width=2)
    return fig


def coverage_table(cells: list[dict[str, Any]]) -> Table:
    """Model (rows) x eval (columns): the eval score, or why there is none; each links to its eval."""
    evals = sorted({c["eval_id"] for c in cells})
    rows = {model: {c["eval_id"]: c for c in row} for model, row in _group(cells, "model").items()}  # in pool order

    def cell(c: dict[str, Any]) -> Cell:
        ok = c["cell_status"] == "ok"
        title = f"{c['answers']} answer(s), {c['valid_judgments']}/{c['judgments']} valid judgments"
        return Cell(fmt(c["eval_score"]) if ok else c["cell_status"], str(c["eval_score"]) if ok else "",
                    c["cell_status"], f"#eval-{c['eval_id']}", f"{c['reason']}; {title}" if c["reason"] else title)

    return Table("coverage", ("Model", *evals),
                 [[Cell(model, model), *(cell(by_eval[e]) for e in evals)] for model, by_eval in rows.items()])


def drill_down(con: duckdb.DuckDBPyConnection, run_id: str, coverage: list[dict[str, Any]],
               evals: list[str]) -> list[dict[str, Any]]:
    """Per eval of ``evals``: the prompt, every answer, and every judgment of it with the judge's name beside
    the label it saw."""
    answers = records(con, "select * from generations where run_id = ? and list_contains(?, eval_id) "
                           "order by eval_id, pool_index, sample", run_id, evals)
    judgments = records(con, "select * from judgments where run_id = ? and list_contains(?, eval_id) "
                             "order by pool_index, judge", run_id, evals)
    criteria = list(dict.fromkeys(k for j in judgments for k in (j["criteria"] or {})))
    columns = (
        Column("Judge", "judge"), Column("Saw it as", "label"),
        *(Column(c.capitalize(), f"criterion {c}") for c in criteria),
        Column("Score", "score", show=lambda j: fmt(j["score"]) + ("" if j["valid"] else " (not valid)")),
        Column("Status", "status"), Column("Justification", "justification"),
    )
    by_answer = _group([{**j, **{f"criterion {k}": v for k, v in (j["criteria"] or {}).items()}} for j in judgments],
                       "answer_key")

    def with_judgments(answer: dict[str, Any]) -> dict[str, Any]:
        rows = by_answer.get(answer["cell_key"], [])
        return {**answer, "judgments": table("", columns, rows),
                "unparsed": [j for j in rows if j["status"] != "ok" and j["raw"]]}

    per_eval = _group([with_judgments(a) for a in answers], "eval_id")
    evals = []
    for eval_id, cells in sorted(_group(coverage, "eval_id").items()):
        shown = per_eval.get(eval_id, [])
        ok = sum(c["cell_status"] == "ok" for c in cells)
        scored = [c for c in cells if c["eval_score"] is not None]
        best = max(scored, key=lambda c: c["eval_score"]) if scored else None  # the first max: pool order breaks ties
        evals.append({
            "eval_id": eval_id,
            "category": shown[0]["category"] if shown else "",
            "prompt": shown[0]["prompt"] if shown else "(no answer row holds the prompt)",
            "answers": shown,
            "samples": max((a["sample"] + 1 for a in shown), default=1),
            "missing": [c["model"] for c in cells if c["cell_status"] == "missing"],
            "summary": f"{ok}/{len(cells)} cells ok" + (f", best {best['model']} ({best['eval_score']:.2f})"
                                                        if best else ""),
        })
    return evals


def provenance(run: dict[str, Any]) -> dict[str, Any]:
    """Where the run came from: every column of its runs row, packages and hardware laid out."""
    special = ("config_yaml", "packages", "hardware")
    facts = [{"field": k, "value": ", ".join(v) if isinstance(v, list) else v}
             for k, v in run.items() if k not in special]
    packages = [{"package": k, "version": v} for k, v in sorted(run["packages"].items())]
    return {
        "provenance": table("provenance", (Column("Field", "field"), Column("Value", "value", 3)), facts),
        "packages": table("packages", (Column("Package", "package"), Column("Version", "version")), packages),
        "hardware": json.dumps(json.loads(run["hardware"]), indent=2),
        "config_hash": run["config_hash"],
        "config_yaml": run["config_yaml"],
    }


def _group(rows: list[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r[key]].append(r)
    return out
