"""Judge-panel statistics SQL does badly, over the warehouse: leave-one-judge-out, position bias, Bradley-Terry.

The cube, the raw and calibrated scores and the bootstrap are in sweep/core/stats.py (pure, shared with adaptive
judging); here the cube is read from ``stg_judgments`` and the rest is added. Definitions (also in README.md,
"Judging statistics"):

- Leave-one-judge-out: Kendall's tau-b between the scores with every judge and without one.
- Position bias (pairwise verdicts): the exact two-sided binomial test of a judge's first_wins out
  of its decided verdicts (view ``position_bias``) against 1/2: p = min(1, 2 P(X <= min(k, n - k)))
  for X ~ Binomial(n, 1/2), k = first_wins, n = decided. A judge is flagged when p < BIAS_ALPHA.
  Every pair is asked in both orders, so an unbiased judge's first position wins half its decided
  verdicts whatever the answers' quality.
- Bradley-Terry strength (pairwise verdicts): ``beta`` maximising the likelihood of the valid
  verdicts under P(a beats b) = 1 / (1 + exp(beta[b] - beta[a])), a tie counting half a win each
  way, plus one virtual tie per pair of models (a weak prior that keeps strengths finite when a
  model never wins or never loses); centred to mean 0. Fitted by Hunter's (2004) MM iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Optional

import duckdb
import numpy as np
import scipy.stats

from sweep.core.stats import (LEVEL, METHODS, REPLICATES, Ranking, ScoreCube, bootstrap_draws, fit_two_way,
                              kendall_tau_b, ranking, whole)

BIAS_ALPHA = 0.05
"""Significance level at which a judge's preference for a position is flagged."""


def load_cube(con: duckdb.DuckDBPyConnection, run_id: str, keys: Optional[Collection[str]] = None) -> ScoreCube:
    """The cube of one run from stg_judgments; judges and models without a valid score are not in it. With
    ``keys``, only those judgment cells (adaptive judging: the rounds so far, not a later round a rerun holds)."""
    only = " and cell_key in (select unnest(?::varchar[]))" if keys is not None else ""
    rows = con.execute(
        "select eval_id, judge, respondent, pool_index, sum(score) as total, count(*) as n "
        f"from stg_judgments where valid and run_id = ?{only} group by all",
        [run_id, *([sorted(keys)] if keys is not None else [])],
    ).fetchnumpy()
    # Indices by np.unique (sorted, as the names are), so a run of 100k cells fills the cube in numpy, not per row.
    evals, e = np.unique(rows["eval_id"].astype(str), return_inverse=True)
    judges, j = np.unique(rows["judge"].astype(str), return_inverse=True)
    named = rows["respondent"].tolist()
    respondents = tuple(m for _, m in sorted(set(zip(rows["pool_index"].tolist(), named))))
    at = {m: k for k, m in enumerate(respondents)}
    r = np.asarray([at[m] for m in named], dtype=int)
    total = np.zeros((len(evals), len(judges), len(respondents)))
    count = np.zeros_like(total)
    total[e, j, r], count[e, j, r] = rows["total"], rows["n"]  # one row per (eval, judge, respondent)
    return ScoreCube(tuple(evals.tolist()), tuple(judges.tolist()), respondents, total, count)


@dataclass(frozen=True)
class PanelStats:
    """What stats.py reports about one run's judge panel."""

    rankings: dict[str, Ranking]
    """By method; "calibrated" is absent when the two-way fit is not identified."""
    leniency: dict[str, float]
    """Fitted judge offsets (points above the panel's average judge); empty when not identified."""
    lojo: dict[str, dict[str, Optional[float]]]
    """method -> judge left out -> Kendall tau-b between the scores with and without it."""
    level: float
    replicates: int
    seed: int


def leave_one_judge_out(cube: ScoreCube, method: str) -> dict[str, Optional[float]]:
    """Kendall tau-b between the scores with every judge and with each judge left out."""
    j = len(cube.judges)
    full = METHODS[method](cube, *whole(cube))[0]
    without = METHODS[method](cube, np.ones((j, len(cube.evals))), 1 - np.eye(j))
    return {judge: kendall_tau_b(full, without[k]) for k, judge in enumerate(cube.judges)}


def panel_stats(cube: ScoreCube, replicates: int = REPLICATES, seed: int = 0, level: float = LEVEL) -> PanelStats:
    """Both rankings with intervals, the judges' leniencies and leave-one-judge-out taus; same seed, same numbers."""
    draws = bootstrap_draws(cube, replicates, seed)
    results = {m: ranking(cube, m, draws, level) for m in METHODS}
    leniency = fit_two_way(cube, *whole(cube))[1][0]
    return PanelStats(
        rankings={m: r for m, r in results.items() if r is not None},
        leniency=dict(zip(cube.judges, leniency.tolist())) if np.isfinite(leniency).all() else {},
        lojo={m: leave_one_judge_out(cube, m) for m in results if results[m] is not None},
        level=level, replicates=replicates, seed=seed,
    )


def analyze(
    con: duckdb.DuckDBPyConnection, run_id: str, replicates: int = REPLICATES, seed: int = 0, level: float = LEVEL,
) -> Optional[PanelStats]:
    """The statistics of one run from the warehouse; None when it has no valid score."""
    cube = load_cube(con, run_id)
    return panel_stats(cube, replicates, seed, level) if cube.respondents else None


def sign_test(k: int, n: int) -> float:
    """Exact two-sided binomial test of k successes in n trials against p = 1/2 (1.0 when n = 0):
    scipy.stats.binomtest, which at p = 1/2 is min(1, 2 P(X <= min(k, n - k)))."""
    return float(scipy.stats.binomtest(k, n, 0.5).pvalue) if n else 1.0


@dataclass(frozen=True)
class PositionBias:
    """One judge's row of the position_bias view, with the sign test of its first_rate."""

    judge: str
    decided: int
    first_wins: int
    first_rate: Optional[float]
    consistency: Optional[float]
    pairs: int
    p_value: float
    flagged: bool
    """p_value < BIAS_ALPHA: the judge prefers a position (which one: first_rate above or below 1/2)."""


def position_bias(con: duckdb.DuckDBPyConnection, run_id: str, alpha: float = BIAS_ALPHA) -> list[PositionBias]:
    """Per judge of a run with pairwise verdicts: the position_bias view plus its sign test."""
    rows = con.execute("select judge, decided, first_wins, first_rate, consistency, pairs from position_bias "
                       "where run_id = ? order by judge", [run_id]).fetchall()
    return [PositionBias(judge, n, k, rate, consistency, pairs, p := sign_test(k, n), p < alpha)
            for judge, n, k, rate, consistency, pairs in rows]


BT_PRIOR_TIES = 1.0
"""Virtual ties per pair of models in the Bradley-Terry fit."""


def bradley_terry(wins: dict[tuple[str, str], float], prior_ties: float = BT_PRIOR_TIES,
                  tol: float = 1e-10, max_iter: int = 100_000) -> dict[str, float]:
    """Log-strengths, mean 0, from ``wins[(a, b)]`` = verdicts a won against b (ties as 0.5 each way)."""
    models = sorted({m for pair in wins for m in pair})
    index = {m: i for i, m in enumerate(models)}
    w = np.full((len(models), len(models)), prior_ties / 2)
    np.fill_diagonal(w, 0.0)
    for (a, b), k in wins.items():
        w[index[a], index[b]] += k
    games, won = w + w.T, w.sum(axis=1)
    p = np.ones(len(models))
    for _ in range(max_iter):
        new = won / (games / (p[:, None] + p[None, :])).sum(axis=1)
        new /= np.exp(np.log(new).mean())
        done = np.max(np.abs(np.log(new) - np.log(p))) < tol
        p = new
        if done:
            break
    return {m: float(np.log(p[index[m]])) for m in models}


def pairwise_strengths(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, float]:
    """Bradley-Terry strengths of a run's respondents from its valid pairwise verdicts (empty: none)."""
    wins: dict[tuple[str, str], float] = {}
    for first, second, verdict, n in con.execute(
            "select first, second, verdict, count(*) from stg_comparisons where run_id = ? and valid "
            "group by all", [run_id]).fetchall():
        shares = {"1": (1.0, 0.0), "2": (0.0, 1.0), "tie": (0.5, 0.5)}[verdict]
        for (a, b), share in zip(((first, second), (second, first)), shares):
            wins[(a, b)] = wins.get((a, b), 0.0) + share * n
    return bradley_terry(wins) if wins else {}
