"""Judge-panel statistics of a score cube: raw and leniency-calibrated scores, bootstrap intervals, Kendall's tau.

Pure (numpy only): the warehouse (warehouse/stats.py, which reads the cube from DuckDB and adds leave-one-judge-out,
position bias and Bradley-Terry) and adaptive judging (sweep/adaptive.py, which reads the cube between rounds)
share these definitions. Everything is a function of one run's valid scores summed per (eval, judge, respondent)
(a ``ScoreCube``). Definitions (also in README.md, "Judging statistics"):

- Raw score: the ranking's Avg Score (mean over the evals a model appears in of its mean valid
  score there, judges and samples pooled), unrounded.
- Calibrated score: ``quality[respondent]`` of the least-squares fit, over every valid score, of
  ``score = quality[respondent] + leniency[judge] + noise``, identified by ``sum(leniency) = 0``
  over the judges: what the panel's average judge would give. It needs the judge-respondent
  graph to be connected (two cards judging only each other can't separate quality from leniency).
- Bootstrap: each replicate draws the evals and the judges with replacement, independently, and
  recomputes both scores (a drawn judge counts as often as drawn, in the data and in the
  ``sum(leniency) = 0`` constraint). Intervals are percentiles of the replicates; replicates in
  which some model gets no score (or the fit is not identified) are dropped and counted. Own code,
  not scipy.stats.bootstrap: evals and judges are drawn as two crossed factors and one set of draws
  serves both scores, which resampling the observations of one sample can't express.
- Incomplete panels (judge.judges_per_answer = K): nothing changes. A cube cell holds what its judge
  gave, so Avg Score averages the scores each answer got, the fit is the same least squares over the
  judgments that exist (identified when the judge-respondent graph is connected, which a balanced
  panel of K >= 1 is once each judge meets each respondent), and a bootstrap replicate in which some
  model's drawn judges never scored it is dropped and counted like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

REPLICATES = 1000
LEVEL = 0.9


@dataclass(frozen=True)
class ScoreCube:
    """One run's valid scores, summed and counted per (eval, judge, respondent)."""

    evals: tuple[str, ...]
    judges: tuple[str, ...]
    respondents: tuple[str, ...]
    """In pool order, so ties go to the earlier card as in the ranking."""
    total: np.ndarray
    """[eval, judge, respondent] sum of valid weighted scores."""
    count: np.ndarray
    """[eval, judge, respondent] number of valid scores."""



# A scoring method: (cube, eval weights [B, E], judge weights [B, J]) -> scores [B, R], NaN = no score.
Method = Callable[[ScoreCube, np.ndarray, np.ndarray], np.ndarray]


def avg_score(cube: ScoreCube, evals: np.ndarray, judges: np.ndarray) -> np.ndarray:
    """Raw Avg Score under eval and judge weights (multiplicities in a replicate)."""
    out = np.empty((len(evals), len(cube.respondents)))
    for lo in range(0, len(evals), BLOCK):  # [block, eval, respondent] at a time: memory stays flat
        total, count = (_by_judges(a, judges[lo:lo + BLOCK]) for a in (cube.total, cube.count))
        appears = count > 0
        eval_score = np.divide(total, count, out=np.zeros_like(total), where=appears)
        weight = evals[lo:lo + BLOCK, None, :]  # [block, 1, eval]: a batched product sums over the evals
        out[lo:lo + BLOCK] = _ratio((weight @ eval_score)[:, 0], (weight @ appears)[:, 0])
    return out


BLOCK = 100
"""Replicates computed together: [BLOCK, evals, respondents] arrays (90 MB at 10,000 evals and 10 models)."""


def _by_judges(cube: np.ndarray, judges: np.ndarray) -> np.ndarray:
    """[eval, judge, respondent] summed over the judges under each replicate's weights: [B, eval, respondent],
    one matrix product ([B, J] x [J, eval * respondent])."""
    e, j, r = cube.shape
    return (judges @ cube.transpose(1, 0, 2).reshape(j, e * r)).reshape(-1, e, r)


def fit_two_way(cube: ScoreCube, evals: np.ndarray, judges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of score = quality[r] + leniency[j]: (quality [B, R], leniency [B, J]).

    Solved per replicate as the normal equations plus the constraint sum_j w_j leniency_j = 0
    (w_j: the judge's multiplicity, 0 if it has no score in the replicate), via a Lagrange
    multiplier. NaN where a model or judge has no score, or the fit is not identified.
    """
    # [B, E] x [E, J * R], one matrix product, then the judges' weights
    e, nj, nr = cube.total.shape
    total, count = ((evals @ a.reshape(e, nj * nr)).reshape(-1, nj, nr) * judges[:, :, None]
                    for a in (cube.total, cube.count))
    b = len(count)
    per_resp, per_judge = count.sum(1), count.sum(2)
    present = np.where(per_judge > 0, judges, 0.0)
    size = nr + nj + 1  # quality, leniency, the multiplier
    q, ln = np.arange(nr), nr + np.arange(nj)
    kkt = np.zeros((b, size, size))
    kkt[:, q, q] = np.where(per_resp > 0, per_resp, 1.0)  # a parameter with no data is pinned at 0
    kkt[:, ln, ln] = np.where(per_judge > 0, per_judge, 1.0)
    kkt[:, :nr, nr:-1] = count.transpose(0, 2, 1)
    kkt[:, nr:-1, :nr] = count
    kkt[:, nr:-1, -1] = kkt[:, -1, nr:-1] = present
    rhs = np.concatenate([total.sum(1), total.sum(2), np.zeros((b, 1))], axis=1)
    solved = np.full((b, size), np.nan)
    # Singular exactly when the judge-respondent graph falls apart: each piece could shift freely.
    ok = np.linalg.matrix_rank(kkt) == size
    if ok.any():
        solved[ok] = np.linalg.solve(kkt[ok], rhs[ok][..., None])[..., 0]
    return np.where(per_resp > 0, solved[:, :nr], np.nan), np.where(present > 0, solved[:, nr:-1], np.nan)


def calibrated_score(cube: ScoreCube, evals: np.ndarray, judges: np.ndarray) -> np.ndarray:
    """The fitted quality: what the panel's average judge would give each model."""
    return fit_two_way(cube, evals, judges)[0]


METHODS: dict[str, Method] = {"raw": avg_score, "calibrated": calibrated_score}


def whole(cube: ScoreCube) -> tuple[np.ndarray, np.ndarray]:
    """Weights that take every eval and every judge once: the data as it is, one replicate."""
    return np.ones((1, len(cube.evals))), np.ones((1, len(cube.judges)))


def ranks(scores: np.ndarray) -> np.ndarray:
    """1 = highest score, along the last axis; ties to the earlier model, NaN last."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return np.argsort(order, axis=-1, kind="stable") + 1


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> Optional[float]:
    """Kendall's tau-b over the entries finite in both; None when undefined (a constant side).

    Own code, not scipy.stats.kendalltau: scipy returns -0.9999999999999999 for an exactly reversed
    order (tests/test_stats.py asserts the exact -1 of leave-one-judge-out)."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    upper = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[:, None] - x[None, :])[upper], np.sign(y[:, None] - y[None, :])[upper]
    pairs = len(dx)
    denominator = np.sqrt((pairs - np.sum(dx == 0)) * (pairs - np.sum(dy == 0)))
    return float(np.sum(dx * dy) / denominator) if denominator > 0 else None


@dataclass(frozen=True)
class Ranking:
    """One scoring method over a run: point scores and ranks with bootstrap percentile intervals."""

    method: str
    models: tuple[str, ...]
    score: np.ndarray
    rank: np.ndarray
    score_lo: np.ndarray
    score_hi: np.ndarray
    rank_lo: np.ndarray
    """Rank interval: lower/higher order statistic at the same percentiles as the score interval."""
    rank_hi: np.ndarray
    replicates: int
    """Replicates used: those in which every model got a score."""


def bootstrap_draws(cube: ScoreCube, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicities of evals [B, E] and judges [B, J] in each replicate, drawn independently."""
    rng = np.random.default_rng(seed)
    e, j = len(cube.evals), len(cube.judges)
    return (rng.multinomial(e, np.full(e, 1 / e), size=replicates).astype(float),
            rng.multinomial(j, np.full(j, 1 / j), size=replicates).astype(float))


def ranking(cube: ScoreCube, method: str, draws: tuple[np.ndarray, np.ndarray], level: float) -> Optional[Ranking]:
    """Point scores and intervals of one method; None when the point estimate is not defined."""
    score = METHODS[method](cube, *whole(cube))[0]
    if not np.isfinite(score).all():
        return None
    replicate_scores = METHODS[method](cube, *draws)
    kept = replicate_scores[np.isfinite(replicate_scores).all(1)]
    tails = [(1 - level) / 2, (1 + level) / 2]
    if len(kept):
        score_lo, score_hi = np.quantile(kept, tails, axis=0)
        replicate_ranks = ranks(kept)
        rank_lo = np.quantile(replicate_ranks, tails[0], axis=0, method="lower")
        rank_hi = np.quantile(replicate_ranks, tails[1], axis=0, method="higher")
    else:  # no usable replicate: the intervals are unknown
        score_lo = score_hi = rank_lo = rank_hi = np.full_like(score, np.nan)
    return Ranking(method, cube.respondents, score, ranks(score), score_lo, score_hi, rank_lo, rank_hi, len(kept))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
