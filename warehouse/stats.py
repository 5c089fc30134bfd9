"""Judge-panel statistics SQL does badly: leniency-calibrated scores, bootstrap intervals, leave-one-judge-out.

Everything here is a pure function of one run's valid scores summed per (eval, judge, respondent)
(a ``ScoreCube``, read from ``stg_judgments``), so each number can be recomputed from the
warehouse. Definitions (also in README.md, "Judging statistics"):

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
- Leave-one-judge-out: Kendall's tau-b between the scores with every judge and without one.
- Incomplete panels (judge.judges_per_answer = K): nothing changes. A cube cell holds what its judge
  gave, so Avg Score averages the scores each answer got, the fit is the same least squares over the
  judgments that exist (identified when the judge-respondent graph is connected, which a balanced
  panel of K >= 1 is once each judge meets each respondent), and a bootstrap replicate in which some
  model's drawn judges never scored it is dropped and counted like any other.
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
from typing import Callable, Optional

import duckdb
import numpy as np
import scipy.stats

REPLICATES = 1000
LEVEL = 0.9
BIAS_ALPHA = 0.05
"""Significance level at which a judge's preference for a position is flagged."""


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


def load_cube(con: duckdb.DuckDBPyConnection, run_id: str) -> ScoreCube:
    """The cube of one run from stg_judgments; judges and models without a valid score are not in it."""
    rows = con.execute(
        "select eval_id, judge, respondent, pool_index, sum(score) as total, count(*) as n "
        "from stg_judgments where valid and run_id = ? group by all", [run_id],
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


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
