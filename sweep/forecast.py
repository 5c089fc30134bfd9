"""How long a sweep will take on a cluster, and how often it loads each model: a discrete-event
simulation of the runner's own policy (sweep.schedule: load order, admission, placement, keeping
instances loaded for judging) on the cost model's clock (sweep.cost). Pure: ``plan=true`` prints
it, bench/scheduler_sim.py measures the policy with it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Optional

from rich.table import Table

from sweep import engine_args, suite_file
from sweep.bound import Bound, lower_bound
from sweep.core.cells import SweepPlan
from sweep.core.config import ModelCard, SweepConfig
from sweep.cost import PageCache, load_seconds, reload_seconds, seconds, total, work_by_respondent, work_seconds
from sweep.plan import plan
from sweep.schedule import (Capacity, Demand, Placement, Policy, admit, demand, keep_loaded, lane, load_order,
                            worth_another)
from sweep.sizing import Inventory, Node, described, run_dtype, schedulable_memory, weight_bytes


@dataclass
class Span:
    """One instance's life: loaded at ``start``, ready at ``ready``, stopped at ``end``."""

    model: str
    demand: Demand
    where: Placement
    start: float
    ready: float
    end: float = math.inf
    busy_s: float = 0.0


@dataclass
class Forecast:
    spans: list[Span] = field(default_factory=list)
    makespan_s: float = 0.0
    model_s: dict[str, float] = field(default_factory=dict)
    """Per model: load + answers + judging at its shape, one instance (the longest-model bound)."""
    gpu_s: float = 0.0
    """GPU-seconds of work, one load per model included (on CPU: node-seconds of compute)."""
    gpus: int = 0
    bound: Optional[Bound] = None
    """The lower bound that counts the reloads peer judging forces (sweep/bound.py)."""

    @property
    def loads(self) -> int:
        """Instances that load weights (API cards load none)."""
        return sum(not s.demand.endpoint for s in self.spans)

    @property
    def lower_bound_s(self) -> float:
        if self.bound is not None:
            return self.bound.seconds
        return max(self.gpu_s / self.gpus if self.gpus else 0.0, max(self.model_s.values(), default=0.0))


def forecast(the_plan: SweepPlan, conf: SweepConfig, inventory: Inventory, policy: Policy = Policy()) -> Forecast:
    """Simulate the runner on ``inventory``: answers (every model), then judging, with the same
    order, admission, placement, keep and early-judging rules as sweep.run.Executor."""
    gen, by_respondent = work_by_respondent(the_plan)
    judge = {j: total(by.values()) for j, by in by_respondent.items()}
    cards = list(the_plan.cards)
    demands = {c.name: demand(c, conf, inventory) for c in cards}
    batch = conf.engine.concurrency
    out = Forecast(gpus=inventory.gpus)
    busy_s: dict[str, float] = {}
    for c in cards:
        d = demands[c.name]
        busy = busy_s[c.name] = sum(seconds(c, d, w[c.name], inventory, batch) for w in (gen, judge) if c.name in w)
        out.model_s[c.name] = load_seconds(c, d) + busy
        # A load holds its GPUs; CPU instances load while another one computes; API cards
        # compute elsewhere.
        out.gpu_s += out.model_s[c.name] * d.gpus if d.gpus else 0.0 if d.endpoint else busy
    if inventory.gpus:
        judge_by = {j: {r: seconds(the_plan.card(j), demands[j], w, inventory, batch) for r, w in by.items()}
                    for j, by in by_respondent.items()}
        out.bound = lower_bound(demands, {c.name: load_seconds(c, demands[c.name]) for c in cards},
                                {c.name: seconds(c, demands[c.name], gen[c.name], inventory, batch)
                                 for c in cards if c.name in gen}, busy_s, judge_by, inventory,
                                {c.name: reload_seconds(c, demands[c.name]) for c in cards} if policy.warm_reloads
                                else None)
    else:
        out.gpus = len(inventory.nodes)  # CPU instances take turns per node: a node is one "GPU"
    loads = {c.name: load_seconds(c, demands[c.name]) for c in cards}
    capacity = Capacity(inventory)
    cache = PageCache(inventory) if policy.warm_reloads else None
    alive: dict[str, Span] = {}
    clock = 0.0

    def load_time(card: ModelCard, where: Placement) -> float:
        return cache.load_seconds(card, demands[card.name], where) if cache else loads[card.name]

    def start(card: ModelCard) -> bool:
        where = capacity.take(demands[card.name])
        if where is None:
            return False
        span = Span(card.name, demands[card.name], where, clock, clock + load_time(card, where))
        alive[card.name] = span
        out.spans.append(span)
        return True

    def stop(name: str) -> None:
        span = alive.pop(name)
        span.end = clock
        capacity.give_back(span.where, span.demand)

    # Judging not done early, per judge and respondent (see ``early`` in the answers phase).
    left = {j: dict(by) for j, by in by_respondent.items()}
    keep = set(judge)
    for (phase, phase_work), order_by in zip((("answers", gen), ("judgments", judge)),
                                             work_seconds(the_plan, conf, inventory)):
        if phase == "judgments":
            phase_work = {j: total(by.values()) for j, by in left.items() if by}
        pending = load_order([c for c in cards if c.name in phase_work], demands, order_by, loads, policy)
        pending.sort(key=lambda c: c.name not in alive)  # loaded ones first (stable), as the runner
        running: list[list] = []  # [end, card, the replica's span or None, whether it answers]
        while pending or running:
            admit(pending, alive, start)
            # CPU instances on one node, and API cards on one endpoint, take turns, as in the runner.
            spans = (replica or alive[c.name] for _, c, replica, _ in running)
            busy = {lane(s.demand, s.where) for s in spans} - {None}
            for card in [c for c in pending if c.name in alive]:
                span = alive[card.name]
                turn = lane(span.demand, span.where)
                if turn:
                    if turn in busy:
                        continue
                    busy.add(turn)
                pending.remove(card)
                took = seconds(card, span.demand, phase_work[card.name], inventory, batch)
                load = loads[card.name]
                instances: list[Optional[Span]] = [None]  # None: the model's own instance
                while (policy.replicas and span.demand.shape is not None and all(c.name in alive for c in pending)
                       and worth_another(took, load, len(instances))):
                    where = capacity.take(span.demand)
                    if where is None:
                        break
                    instances.append(Span(card.name, span.demand, where, clock, clock + load_time(card, where)))
                    out.spans.append(instances[-1])
                for replica in instances:
                    (replica or span).busy_s += took / len(instances)
                    running.append([max(clock, (replica or span).ready) + took / len(instances), card, replica,
                                    phase == "answers"])
            if phase == "answers" and policy.early_judging and (pending or any(r[3] for r in running)):
                # Loaded judges with nothing to do judge the answers that exist, as the runner.
                answered = {c.name for c in cards if c.name in gen} - {c.name for c in pending} - {
                    r[1].name for r in running if r[3]}
                for name, span in alive.items():
                    turn = lane(span.demand, span.where)
                    ready = [r for r in left.get(name, {}) if r in answered]
                    idle = not any(r[1].name == name and r[2] is None for r in running)
                    if not ready or not idle or (turn and turn in busy):
                        continue
                    busy.add(turn)
                    took = seconds(the_plan.card(name), span.demand, total(left[name].pop(r) for r in ready),
                                   inventory, batch)
                    span.busy_s += took
                    running.append([max(clock, span.ready) + took, the_plan.card(name), None, False])
                    if not left[name]:
                        keep.discard(name)
            if not running:
                raise RuntimeError(f"{pending[0].name} never fits the cluster")  # check_fits prevents it
            running.sort(key=lambda r: r[0])
            clock, card, replica, _ = running.pop(0)
            if replica is not None:
                replica.end = clock
                capacity.give_back(replica.where, replica.demand)
            elif not any(r[1].name == card.name and r[2] is None for r in running) and not keep_loaded(
                    phase == "answers" and card.name in keep, pending, alive, policy,
                    ready=any(r in gen and all(c.name != r for c in pending) and not any(x[1].name == r and x[3]
                                                                                        for x in running)
                              for r in left.get(card.name, {}))):
                stop(card.name)
    for name in list(alive):
        stop(name)
    out.makespan_s = clock
    return out


ORDERS = ("largest", "cheap_last_loaded", "widest_last", "cheap_first_widest_last")
SEARCH_FORECASTS = 400
"""At most this many forecasts in best_policy's search: ~1 ms of CPU each for the study's 8 models once
the plan's bound and token counts are known (memoised), 0.25-0.4 s in all (BENCHMARKS.md)."""


def best_policy(the_plan: SweepPlan, conf: SweepConfig, inventory: Inventory,
                base: Optional[Policy] = None) -> tuple[Policy, Forecast]:
    """The load order whose forecast ends first (then: fewer loads), with the configured replicas
    and early judging (or ``base``'s other fields: bench/scheduler_sim.py); the live run uses it.

    First the named ORDERS; then a local search over explicit orders (order="given") from each of
    them, the best first: move one model to another position, keep the move when the forecast ends
    sooner, until no move helps or the forecast meets its lower bound; the search stops when
    SEARCH_FORECASTS forecasts are spent (GPU clusters only). A neighbourhood is n(n-1) orders for
    n models, so the search is capped rather than run to the end on big pools."""
    base = base or Policy(replicas=conf.run.replicas, early_judging=conf.run.early_judging)
    runs = sorted(((p, forecast(the_plan, conf, inventory, p)) for p in (replace(base, order=o) for o in ORDERS)),
                  key=lambda r: _score(r[1]))
    demands = {c.name: demand(c, conf, inventory) for c in the_plan.cards}
    loads = {c.name: load_seconds(c, demands[c.name]) for c in the_plan.cards}
    first = work_seconds(the_plan, conf, inventory)[0]
    # On CPU the instances of a node take turns, so the order moves little (1 s of 775 s for the smoke
    # pool with 2 samples): runs without GPUs keep the named order.
    budget = [SEARCH_FORECASTS if inventory.gpus else 0]
    best = runs[0]
    for policy, f in runs:
        if not budget[0] or _at_bound(best[1]):
            break
        sequence = tuple(c.name for c in load_order(list(the_plan.cards), demands, first, loads, policy))
        found = _climb(the_plan, conf, inventory, replace(base, order="given", sequence=sequence), f, budget)
        best = min(best, found, key=lambda r: _score(r[1]))
    return best


def _score(f: Forecast) -> tuple[int, int]:
    return round(f.makespan_s), f.loads


def _at_bound(f: Forecast) -> bool:
    return round(f.makespan_s) <= round(f.lower_bound_s)


def _climb(the_plan: SweepPlan, conf: SweepConfig, inventory: Inventory, policy: Policy, f: Forecast,
           budget: list[int]) -> tuple[Policy, Forecast]:
    """First-improvement hill climb from ``policy`` (forecast ``f``) over single moves in its sequence,
    spending ``budget[0]`` forecasts."""
    improved = True
    while improved and budget[0] and not _at_bound(f):
        improved = False
        n = len(policy.sequence)
        for i, j in ((i, j) for i in range(n) for j in range(n) if i != j):
            if not budget[0]:
                break
            budget[0] -= 1
            moved = list(policy.sequence)
            moved.insert(j, moved.pop(i))
            candidate = replace(policy, sequence=tuple(moved))
            g = forecast(the_plan, conf, inventory, candidate)
            if _score(g) < _score(f):
                policy, f, improved = candidate, g, True
                break
    return policy, f


def gpu_utilisation(f: Forecast) -> Optional[float]:
    """Share of GPU-time that is busy (loading included) over the makespan."""
    if not f.makespan_s or not f.gpus:
        return None
    return sum((s.end - s.start) * max(s.demand.gpus, 1) for s in f.spans) / (f.makespan_s * f.gpus)


def local_inventory() -> Inventory:
    """This machine as a CPU node, without starting Ray (GPUs are only seen through Ray)."""
    return Inventory((Node(float(os.cpu_count() or 1), 0, schedulable_memory()),))


def plan_table(the_plan: SweepPlan, conf: SweepConfig, f: Forecast, inventory: Inventory) -> Table:
    """One row per model: its shape, where its instances go, memory, estimated time and loads."""
    table = Table(title=f"plan: {len(the_plan.cards)} models, {len(the_plan.generate)} answers, "
                        f"{len(the_plan.judge)} judgments on {inventory.describe()}",
                  caption=(f"makespan ~{_duration(f.makespan_s)} (lower bound {_duration(f.lower_bound_s)}: "
                           f"GPU-work with the reloads peer judging forces / GPUs, or the longest model, or the "
                           f"last answers' judging; sweep/bound.py), {f.loads} model loads; "
                           "times are roofline estimates (sweep/cost.py)"))
    for col in ("model", "GPUs", "TP x PP", "node", "dtype", "weight GB", "KV GB", "max_model_len", "graphs",
                "est. time", "loads"):
        table.add_column(col, justify="left" if col in ("model", "node", "dtype", "graphs") else "right")
    for card in the_plan.cards:
        spans = [s for s in f.spans if s.model == card.name]
        d = spans[0].demand
        nodes = sorted({n for s in spans for n in s.where.nodes})
        ctx = the_plan.context(card.name)
        if d.endpoint or ctx is None:
            table.add_row(card.name, "0", "api", d.endpoint, "-", "-", "-", "-", "-", _duration(f.model_s[card.name]),
                          "-")
            continue
        settings = engine_args.settings(card, d.shape, spans[0].where, conf, ctx)
        shape = f"{d.shape.tp} x {d.shape.pp}" if d.shape else "cpu"
        weights = d.shape.weight_bytes if d.shape else weight_bytes(card, run_dtype(card, False))
        # The KV cache the engine gets (on GPU estimated: what gpu_memory_utilization leaves), per instance.
        kv = ctx.kv_bytes_per_gpu * max(d.gpus, 1)
        table.add_row(card.name, str(d.gpus), shape, ",".join(map(str, nodes)), settings.dtype, f"{weights / 1e9:.1f}",
                      f"{kv / 1e9:.1f}", f"{settings.max_model_len:,}" + ("*" if ctx.capped else ""),
                      "no (eager)" if settings.enforce_eager else "yes", _duration(f.model_s[card.name]),
                      str(len(spans)))
    capped = [c.warning() for c in the_plan.contexts if c.capped]
    if capped:
        table.caption += "\n" + "\n".join(f"* warning: {w}" for w in capped)
    return table


def _duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def show_plan(conf: SweepConfig) -> Table:
    """``plan=true``: the table for the configured cluster, described or this machine; no Ray."""
    conf = suite_file.resolve(conf)[0]
    inventory = described(conf.cluster) if conf.cluster.nodes else local_inventory()
    the_plan = plan(conf, conf.run.name or "plan", inventory)
    return plan_table(the_plan, conf, best_policy(the_plan, conf, inventory)[1], inventory)
