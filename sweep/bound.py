"""A lower bound on any schedule's makespan that counts the reloads peer judging forces. Pure.

Inputs are the cost model's own figures (sweep/forecast.py): per model its GPUs, its load ``L``,
its answers ``G`` and its judging ``J[judge][respondent]``, each on one instance of its shape.

Three arguments, the bound is the largest:

1. Work (the old bound): GPU-seconds of one load, the answers and the judging of every model,
   over the GPUs; and the longest single model, ``L + G + J``.
2. Reloads. Every model judges every other (peer judging), so let S be the models loaded exactly
   once and M the model whose answers land last. A model of S judges M's answers within its
   only residency, so it is still loaded when they land, and M is loaded then too: S and M are
   resident at one instant, so S (with M, when M is outside S) fits the cluster at once. Every
   model outside S loads at least twice. Bound: the minimum over the sets S that fit together
   of the GPU-seconds with one load per model of S and two per other model, over the GPUs.
   (Adding a model to S only lowers the sum, so only the largest sets that fit are tried, and a branch
   of the search that can't beat the best set found is skipped: 16 models no longer walk 2^16 sets.)
3. Timing. A model X's answers exist no earlier than ``L_X + G_X``. Every other model Y judges
   them: either Y is loaded at that instant (the models loaded then, with X, fit at once), and
   ends no earlier than ``L_X + G_X + J[Y][X]``, or it loads afterwards and ends no earlier than
   ``L_X + G_X + L_Y + J[Y][X]``. Bound: the largest over X of the minimum, over the sets that
   can be loaded beside X, of the latest such end.

Data-parallel replicas split a model's job over several instances; the runner splits a job only as far
as ``sweep.schedule.most_instances`` allows (while one more instance saves more than its load), so for
its schedules the longest-model term and argument 3 take a model's answers and its judging each split
that far (``split``): a bound on the runner's schedules, not on every conceivable one. Study, 1 sample: 710 s on 8 x H100 (argument 2: the FP8 397B fills
the node, so either it loads twice or the seven others do), 334 s on 16 (argument 3: the 397B's
answers exist at 265 s; besides it only 122B + Coder-Next fit node 1 then, so the 35B-A3B reloads
after them) against 530 s and 276 s for argument 1 alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Iterator, Mapping, Optional, Sequence

from sweep.schedule import Capacity, Demand
from sweep.sizing import Inventory


@dataclass(frozen=True)
class Bound:
    seconds: float
    """The largest of the three arguments."""
    work_s: float
    """Argument 1 alone (the bound printed before reloads were counted)."""
    reload_s: float
    timing_s: float
    loaded_once: tuple[str, ...]
    """The set S that gives argument 2."""


def fit_together(names: Sequence[str], demands: Mapping[str, Demand], inventory: Inventory) -> bool:
    """Whether all of ``names`` can be loaded at once (largest first, as the runner places them)."""
    capacity = Capacity(inventory)
    return all(capacity.take(demands[n]) is not None for n in sorted(names, key=lambda n: -demands[n].gpus))


def largest_sets(names: Sequence[str], fits: Callable[[Sequence[str]], bool],
                 wanted: Callable[[Collection[str], Collection[str]], bool] = lambda chosen, rest: True,
                 ) -> Iterator[tuple[str, ...]]:
    """Every set of ``names`` that fits and to which no other name can be added (depth first), skipping
    the branches ``wanted(chosen, rest)`` turns down: the sets holding ``chosen`` within ``chosen + rest``
    (a caller after the best set prunes what can't beat the best so far; the order is the same)."""
    def grow(chosen: tuple[str, ...], rest: Sequence[str]) -> Iterator[tuple[str, ...]]:
        if not wanted(chosen, rest):
            return
        if not rest:
            if not any(n not in chosen and fits((*chosen, n)) for n in names):
                yield chosen
            return
        head, tail = rest[0], rest[1:]
        if fits((*chosen, head)):
            yield from grow((*chosen, head), tail)
        yield from grow(chosen, tail)

    yield from grow((), list(names))


def lower_bound(demands: Mapping[str, Demand], load_s: Mapping[str, float], gen_s: Mapping[str, float],
                busy_s: Mapping[str, float], judge_s: Mapping[str, Mapping[str, float]], inventory: Inventory,
                reload_s: Optional[Mapping[str, float]] = None, first_hold_s: Optional[Mapping[str, float]] = None,
                split: Optional[Mapping[str, tuple[int, int]]] = None) -> Bound:
    """The bound of the module docstring. ``busy_s``: a model's answers and all its judging in one batch
    each; ``judge_s[j][r]``: judge j on r's answers alone; ``reload_s``: the least a load after the first
    can take (Policy.warm_reloads: from host memory), else ``load_s``; ``first_hold_s``: the least time a
    first load holds its GPUs (Policy.read_ahead: its files may have been read before it started, so as
    little as a reload), else ``load_s``. A first load still ends no sooner than ``load_s`` after the start
    (reading ahead takes what a cold load's read takes, before the same start-up), so the longest model and
    argument 3 keep ``load_s``. ``split``: the most instances a model's answers and its judging each run on
    (replicas; default one). Models that hold no GPU (CPU, API) reload for free. sweep.forecast computes it
    once per plan and policy family."""
    # A reload is never slower than a first load.
    again_s = {n: min(load_s[n], t) for n, t in (reload_s or load_s).items()}
    hold_s = {n: min(load_s[n], t) for n, t in (first_hold_s or load_s).items()}
    names = list(demands)
    gpus_total = inventory.gpus
    busy = {n: busy_s.get(n, 0.0) for n in names}
    parts = {n: (split or {}).get(n, (1, 1)) for n in names}
    # One model's answers and then its judging, each on as many instances as the runner splits it over.
    chain = {n: gen_s.get(n, 0.0) / parts[n][0] + (busy[n] - gen_s.get(n, 0.0)) / parts[n][1] for n in names}
    longest = max((load_s[n] + chain[n] for n in names), default=0.0)
    if not gpus_total:
        return Bound(longest, longest, longest, longest, tuple(names))
    gpu = {n: demands[n].gpus for n in names}
    work = sum(gpu[n] * busy[n] for n in names)
    work_s = max((work + sum(gpu[n] * hold_s[n] for n in names)) / gpus_total, longest)

    on_gpu = [n for n in names if gpu[n]]
    known: dict[frozenset[str], bool] = {}

    def fits(group: Sequence[str]) -> bool:
        key = frozenset(group)
        if key not in known:
            known[key] = fit_together(tuple(key), demands, inventory)
        return known[key]

    def cost(once: Collection[str]) -> float:
        return (work + sum(gpu[n] * (hold_s[n] + (0.0 if n in once else again_s[n])) for n in on_gpu)) / gpus_total

    # Branch and bound: a set within chosen + rest costs no less than chosen + rest itself (the same sum,
    # term by term no smaller, so in floats too); a branch that can't beat the best so far is skipped.
    best_s, best_set = float("inf"), ()
    for s in largest_sets(on_gpu, fits, lambda chosen, rest: cost({*chosen, *rest}) < best_s):
        if cost(s) < best_s:
            best_s, best_set = cost(s), s
    forced_s = max(best_s, longest)

    timing_s = 0.0
    for x in on_gpu:
        answered = load_s[x] + gen_s.get(x, 0.0) / parts[x][0]
        judges = [y for y in on_gpu if y != x and x in judge_s.get(y, {})]
        if not judges:
            continue

        def end(loaded: Collection[str]) -> float:
            return max(answered + judge_s[y][x] / parts[y][1] + (0.0 if y in loaded else again_s[y]) for y in judges)

        # The minimum over the sets, found as far as it matters: below what another model already bounds,
        # a lower value changes nothing; a branch that ends no earlier, all of chosen + rest loaded, is skipped.
        earliest = float("inf")
        for loaded in largest_sets(judges, lambda group: fits((x, *group)),
                                   lambda chosen, rest: earliest > timing_s and end({*chosen, *rest}) < earliest):
            earliest = min(earliest, end(loaded))
        timing_s = max(timing_s, earliest)
    return Bound(max(work_s, forced_s, timing_s), work_s, forced_s, timing_s, tuple(best_set))
