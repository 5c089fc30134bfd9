"""How numbers read in the reports: one formatting for the terminal tables and the HTML page."""

from __future__ import annotations

import math


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
