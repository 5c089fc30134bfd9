"""How numbers read in the reports: one formatting for the terminal tables and the HTML page."""

from __future__ import annotations

import math
from typing import Iterable

from rich.console import Console

LOG_WIDTH = 160


def console(stderr: bool = False) -> Console:
    """The terminal's width on a terminal; in a log or a pipe (ray job logs, CI) rich assumes 80
    columns, which wraps the tables' headers, so use a wide line there. Here, not in warehouse.report,
    so that ``plan=true`` prints without importing the report's stack (DuckDB, scipy: ~0.7 s)."""
    out = Console(stderr=stderr)
    return out if out.is_terminal else Console(stderr=stderr, width=LOG_WIDTH)


def fmt(value: object, digits: int = 2) -> str:
    """A value for a table cell; missing values read as "-"."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def with_interval(value: float, lo: float, hi: float) -> str:
    """A score and its bootstrap interval, "7.25 (6.90–7.60)"; no interval when it is NaN."""
    return f"{value:.2f}" + ("" if math.isnan(lo) else f" ({lo:.2f}–{hi:.2f})")


def rank_with_range(rank: int | None, lo: float, hi: float) -> str:
    """A rank and, when the bootstrap moves it, its range: "3 (2–5)"; "unranked" for a model with no valid score."""
    if rank is None:
        return "unranked"
    return str(rank) + ("" if math.isnan(lo) or lo == hi else f" ({int(lo)}–{int(hi)})")


def consistency_text(consistency: float | None, pairs: int) -> str:
    """Order consistency as counts, "1/2 pairs (0.50)": a bare "0.00 of 2" read as a score out of 2."""
    if consistency is None:
        return "-"
    return f"{round(consistency * pairs)}/{pairs} pairs ({consistency:.2f})"


# Shown under the failure-aware ranking in the terminal and on the page, so both say which ranking is which.
FAILURE_AWARE_NOTE = (
    "Failure-aware: an answer the model failed to give (empty, engine error, cut off with nothing to judge) "
    "counts as the scale's minimum from every judge that would have judged it, so coverage is part of the "
    "score. The ranking above is the study's definition: it averages only over the evals a model appears in."
)


PAGE_EVALS = 40
"""Evals a report shows per eval (the coverage matrix; the page's drill-down): a page of 10,000 evals would be
hundreds of MB, and a terminal table of them unreadable."""


def shown_evals(cells: Iterable[tuple[str, str]]) -> set[str]:
    """Of (eval_id, cell_status) pairs, the evals a report shows: all up to PAGE_EVALS, else those with a failed
    or missing cell first, then by id."""
    cells = list(cells)
    trouble = {e for e, status in cells if status != "ok"}
    return set(sorted({e for e, _ in cells}, key=lambda e: (e not in trouble, e))[:PAGE_EVALS])


def left_out_note(shown: int, evals: int, run_id: str) -> str | None:
    """What a report says when shown_evals left evals out, and where they are; None when none was."""
    if shown == evals:
        return None
    return (f"{shown} of {evals} evals shown here (those with a failed or missing cell first, then by id); every "
            f"cell is in the warehouse: python -m warehouse query \"select * from coverage where run_id = '{run_id}'\"")
