"""Adaptive judging (``judge.adaptive``): after a first round at K judges per answer, spend more judgments where
the ranking is uncertain. Pure: the driver runs each round and hands this module the scores so far.

The rule, after each round r (1, 2, ...) while r < ``judge.rounds`` and fewer than ``judge.budget`` judgments
(every round's, round 1's included) are planned: rank the models by their calibrated score (the raw Avg Score
when the two-way fit is not identified) with bootstrap rank intervals (sweep.core.stats: evals and judges redrawn,
ROUND_REPLICATES replicates, seeded by ``judge.seed`` and the round, 90% level); two neighbours in that order are
uncertain when their rank intervals overlap. A model's weight is the number of uncertain neighbour pairs it is in
(0, 1 or 2; a model with no valid score yet counts 2). If no pair is uncertain, judging stops: the order is
separated. Otherwise the next round spends ceil(left / rounds left) of the judgments left, shared among the models
in proportion to their weights (largest remainders, ties to the earlier card); a model's share goes to its answers
with the fewest judges first (ties by a seeded hash), one more judge each, cycling while its share lasts, and each
extra judge is the next one of the panel's balanced design (sweep.panel.more: the eligible judge not yet on the
answer that has judged the respondent least, then the least loaded). An answer whose eligible judges are all on it
takes no more. So a round's cells are a pure function of the judgments of the rounds before it: a rerun plans the
same rounds and reuses every cell it finished.
"""

from __future__ import annotations

import math
from typing import Collection, Mapping, Sequence

import numpy as np

from sweep import panel
from sweep.core.stats import LEVEL, ScoreCube, bootstrap_draws, ranking

ROUND_REPLICATES = 200
"""Bootstrap replicates behind a round's decision (the report's intervals use 1,000; the decision needs only which
neighbours overlap, and 200 keeps a round's statistics under a second for 15 models x 1,000 prompts)."""

Answer = tuple[str, tuple[str, int]]
"""(respondent, (eval_id, sample))."""


def weights(cube: ScoreCube, models: Sequence[str], seed: int, level: float = LEVEL,
            replicates: int = ROUND_REPLICATES) -> dict[str, int]:
    """Per model (pool order): how many of its two neighbours in the ranking its bootstrap rank interval
    overlaps; 2 for a model without a valid score, and for every model when no replicate is usable."""
    draws = bootstrap_draws(cube, replicates, seed) if cube.respondents else None
    found = draws is not None and (ranking(cube, "calibrated", draws, level) or ranking(cube, "raw", draws, level))
    if not found or not np.isfinite(found.rank_lo).all():
        return dict.fromkeys(models, 2)
    out = dict.fromkeys(models, 2) | dict.fromkeys(found.models, 0)
    order = np.argsort(found.rank, kind="stable")
    for upper, lower in zip(order, order[1:]):
        if found.rank_hi[upper] >= found.rank_lo[lower]:
            out[found.models[upper]] += 1
            out[found.models[lower]] += 1
    return out


def shares(total: int, weight: Mapping[str, int]) -> dict[str, int]:
    """``total`` split in proportion to ``weight`` by largest remainders, ties to the earlier key."""
    whole = sum(weight.values())
    if not whole:
        return {m: 0 for m in weight}
    exact = {m: total * w / whole for m, w in weight.items()}
    out = {m: math.floor(x) for m, x in exact.items()}
    rest = sorted(weight, key=lambda m: -(exact[m] - out[m]))  # stable: ties keep the keys' order
    for m in rest[:total - sum(out.values())]:
        out[m] += 1
    return out


def next_round(cube: ScoreCube, chosen: Mapping[Answer, Collection[str]], eligible: Mapping[str, Sequence[str]],
               models: Sequence[str], budget: int, rounds_left: int, seed: int, round_: int,
               ) -> list[tuple[str, tuple[str, int], str]]:
    """The extra (respondent, slot, judge) cells of the next round; empty when the ranking is separated, the
    budget is spent or no round is left. ``chosen``: every answer's judges so far (all rounds)."""
    left = budget - sum(len(js) for js in chosen.values())
    if left <= 0 or rounds_left <= 0:
        return []
    weight = weights(cube, models, hash_seed(seed, round_))
    if not any(weight.values()):
        return []
    by_model: dict[str, list[Answer]] = {m: [] for m in models}
    for answer in chosen:
        by_model[answer[0]].append(answer)
    wanted: list[Answer] = []
    for model, n in shares(-(-left // rounds_left), weight).items():
        mine = sorted(by_model[model], key=lambda a: (len(chosen[a]), panel.rank_key(seed, "adaptive", a)))
        wanted += [mine[i % len(mine)] for i in range(n)] if mine else []
    return panel.more(chosen, wanted, eligible, seed)


def hash_seed(seed: int, round_: int) -> int:
    """The bootstrap's seed for a round: another draw each round, the same on a rerun."""
    return int(panel.rank_key(seed, "bootstrap", round_)[:8], 16)
