"""How long a sweep will take on a cluster, and how often it loads each model: the live run's own
scheduling loop (sweep.scheduler, with the policy of sweep.schedule) on a simulated clock driven by
the cost model (sweep.cost). Pure: ``plan=true`` prints it, bench/scheduler_sim.py measures the
policy with it, and the live run takes the load order whose forecast ends first (``best_policy``).
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import os
from dataclasses import dataclass, field, replace
from typing import Optional

from rich.table import Table

from sweep import engine_args, suite_file
from sweep.bound import Bound, lower_bound
from sweep.core.cells import SweepPlan
from sweep.core.config import ModelCard, SweepConfig
from sweep.cost import PageCache, cell_work, load_seconds, reload_seconds, seconds, total, work_by_respondent
from sweep.plan import plan
from sweep.core.rows import GenerationRow
from sweep.queue import CellQueue
from sweep.schedule import Demand, Placement, Policy, demand, load_order, most_instances
from sweep.scheduler import ANSWERS, Batch, Done, Event, Scheduler
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
    trace: list[Event] = field(default_factory=list)
    """The loop's decisions (sweep.scheduler): what the live run would do."""

    @property
    def loads(self) -> int:
        """Instances that load weights (API cards load none)."""
        return sum(not s.demand.endpoint for s in self.spans)

    @property
    def lower_bound_s(self) -> float:
        if self.bound is not None:
            return self.bound.seconds
        return max(self.gpu_s / self.gpus if self.gpus else 0.0, max(self.model_s.values(), default=0.0))


class Basis:
    """What a plan's forecast needs that no policy changes, computed once: the cost model's figures per
    model (from the plan's sizes and panel counts), its tokens per cell, the lower bound, and the cell
    queue before anything has run. best_policy forecasts one plan under hundreds of policies; each runs
    the scheduling loop on a copy of that queue."""

    def __init__(self, the_plan: SweepPlan, conf: SweepConfig, inventory: Inventory) -> None:
        self.plan, self.conf, self.inventory = the_plan, conf, inventory
        self.work = cell_work(the_plan)
        gen, by_respondent = work_by_respondent(the_plan)
        judge = {j: total(by.values()) for j, by in by_respondent.items()}
        cards = [the_plan.card(e.host) for e in the_plan.shared()]  # one per loaded engine
        self.hosts = cards
        self.demands = {c.name: demand(c, conf, inventory) for c in cards}
        self.load_s = {c.name: load_seconds(c, self.demands[c.name]) for c in cards}
        batch = conf.engine.concurrency
        self.gen_s = {c.name: seconds(c, self.demands[c.name], gen[c.name], inventory, batch)
                      for c in cards if c.name in gen}
        self.busy_s = {c.name: sum(seconds(c, self.demands[c.name], w[c.name], inventory, batch)
                                   for w in (gen, judge) if c.name in w) for c in cards}
        self.model_s = {c.name: self.load_s[c.name] + self.busy_s[c.name] for c in cards}
        """Per model: load + answers + judging at its shape, one instance (the longest-model bound)."""
        # A load holds its GPUs; CPU instances load while another one computes; API cards compute elsewhere.
        self.gpu_s = sum(self.model_s[n] * d.gpus if d.gpus else 0.0 if d.endpoint else self.busy_s[n]
                         for n, d in self.demands.items())
        self.judge_s = {j: {r: seconds(the_plan.card(j), self.demands[j], w, inventory, batch) for r, w in by.items()}
                        for j, by in by_respondent.items()}
        self._bounds: dict[tuple[bool, bool, bool], Bound] = {}
        self.queue = CellQueue(the_plan, conf.judge, {})

    def bound(self, policy: Policy) -> Optional[Bound]:
        """The tight lower bound (sweep/bound.py), None without GPUs. Under Policy.warm_reloads reloads cost
        reload_seconds; under Policy.read_ahead a first load may hold its GPUs only that long too; under
        Policy.replicas a model's answers and its judging split over as many instances as the loop would."""
        if not self.inventory.gpus:
            return None
        key = (policy.page_cache, policy.read_ahead, policy.replicas)
        if key not in self._bounds:
            warm, ahead, replicas = key
            again = {c.name: reload_seconds(c, self.demands[c.name]) for c in self.hosts}
            self._bounds[key] = lower_bound(self.demands, self.load_s, self.gen_s, self.busy_s, self.judge_s,
                                            self.inventory, again if warm else None, again if ahead else None,
                                            self._split() if replicas else None)
        return self._bounds[key]

    def _split(self) -> dict[str, tuple[int, int]]:
        """The most instances each GPU model's answers and its judging run on (sweep.schedule.most_instances)."""
        gpus = self.inventory.gpus
        return {n: (most_instances(self.gen_s.get(n, 0.0), self.load_s[n], gpus // d.gpus),
                    most_instances(self.busy_s[n] - self.gen_s.get(n, 0.0), self.load_s[n], gpus // d.gpus))
                for n, d in self.demands.items() if d.gpus}

    def forecast(self, policy: Policy = Policy()) -> Forecast:
        """The scheduling loop of the live run (sweep.scheduler) on the cost model's clock: every answer
        and judgment of the plan under ``policy``."""
        inventory = self.inventory
        # Without GPUs, CPU instances take turns per node: a node is one "GPU".
        out = Forecast(model_s=dict(self.model_s), gpu_s=self.gpu_s, gpus=inventory.gpus or len(inventory.nodes),
                       bound=self.bound(policy))
        clock = Simulated(inventory, PageCache(inventory) if policy.page_cache else None)
        loop = Scheduler(self.plan, self.conf, inventory, policy, clock, self.queue.copy(), work=self.work)
        loop.run()
        out.spans, out.makespan_s, out.trace = clock.spans, clock.now(), loop.trace
        return out


def forecast(the_plan: SweepPlan, conf: SweepConfig, inventory: Inventory, policy: Policy = Policy()) -> Forecast:
    """One policy's forecast of the plan on ``inventory`` (Basis.forecast: several policies share one Basis)."""
    return Basis(the_plan, conf, inventory).forecast(policy)


SIMULATED = GenerationRow(
    run_id="", cell_key="", model="", family="", pool_index=0, eval_id="", category="", sample=0, prompt="",
    system_prompt=None, answer="", reasoning=None, status="ok", finish_reason="stop", prompt_tokens=0,
    output_tokens=0, latency_s=0.0, ttft_s=None, queue_s=None, sampling="", engine="simulated", error=None,
    attempts=1, created_at=dt.datetime.fromtimestamp(0, dt.timezone.utc))
"""The answer the simulation lands for every answer cell: judges see it (the cost model counts every judgment)."""


class Simulated:
    """The cost model's clock as a scheduling backend (sweep.scheduler.Backend): an instance is ready
    ``load_seconds`` after it starts, its batches run in turn, each for its estimate (the cost model's
    seconds for its cells). Nothing fails. With a
    ``cache`` (Policy.warm_reloads, modelled only) a reload on nodes that read the weights before is warm, and
    (Policy.read_ahead) a load whose files its nodes read ahead."""

    def __init__(self, inventory: Inventory, cache: Optional[PageCache] = None) -> None:
        self._inventory = inventory
        self._cache = cache
        self.clock = 0.0
        self.spans: list[Span] = []
        self._alive: dict[str, Span] = {}
        self._free_at: dict[str, float] = {}
        self._ends: list[tuple[float, int, Batch]] = []
        """Running batches by end, then by submission (ties end in the order they were submitted)."""

    def start(self, card: ModelCard, key: str, d: Demand, where: Placement) -> None:
        load = self._cache.load_seconds(card, d, where, self.clock) if self._cache else load_seconds(card, d)
        span = Span(card.name, d, where, self.clock, self.clock + load)
        self._alive[key] = span
        self._free_at[key] = span.ready
        self.spans.append(span)

    def submit(self, batch: Batch) -> None:
        took = batch.estimate_s
        self._alive[batch.instance].busy_s += took
        end = self._free_at[batch.instance] = max(self.clock, self._free_at[batch.instance]) + took
        heapq.heappush(self._ends, (end, batch.id, batch))

    def read_ahead(self, card: ModelCard, d: Demand, nodes: tuple[int, ...]) -> None:
        if self._cache:
            for n in nodes:
                self._cache.read_ahead(card, d, n, self.clock)

    def wait(self) -> Done:
        self.clock, _, batch = heapq.heappop(self._ends)
        cells, _ = batch.carried()
        return Done(batch, (), dict.fromkeys((c.key for c in cells), SIMULATED) if batch.job.kind == ANSWERS else {})

    def stop(self, key: str) -> None:
        self._alive.pop(key).end = self.clock

    def inventory(self) -> Inventory:
        return self._inventory

    def now(self) -> float:
        return self.clock


ORDERS = ("largest", "cheap_last_loaded", "widest_last", "cheap_first_widest_last")
SEARCH_FORECASTS = 400
SEARCH_CELLS = 2_500_000
"""best_policy's search spends at most SEARCH_FORECASTS forecasts, and at most SEARCH_CELLS cells over
all of them (a forecast runs the scheduling loop over every cell, ~1.5-3 us each: the study's 5,632 cells
at 8 samples get all 400 forecasts, ~1.5-3.5 s of CPU). A search that can't afford one neighbourhood of moves
((n-1)^2 for n models: 16 models x 5,000 prompts at K=3 would get 7 of 225) is not started: the plan
keeps its best named order. A count, not a time limit, so one plan always gets the same policy."""


def best_policy(the_plan: SweepPlan, conf: SweepConfig, inventory: Inventory,
                base: Optional[Policy] = None) -> tuple[Policy, Forecast]:
    """The load order whose forecast ends first (then: fewer loads), with the configured replicas
    and early judging (or ``base``'s other fields: bench/scheduler_sim.py); the live run uses it.

    First the named ORDERS (where the search below runs, each also with Policy.late_load); then a local
    search over explicit orders (order="given") from each of them, the best first: move one model to
    another position, keep the move when the forecast ends sooner, until no move helps or the forecast
    meets its lower bound; the search stops when SEARCH_FORECASTS forecasts (or SEARCH_CELLS cells) are
    spent (GPU clusters only). A neighbourhood is (n-1)^2 orders for n models, so the search is capped
    rather than run to the end on big pools."""
    base = base or Policy(replicas=conf.run.replicas, early_judging=conf.run.early_judging,
                          backfill=conf.run.backfill, read_ahead=conf.run.read_ahead)
    basis = Basis(the_plan, conf, inventory)
    # On CPU the instances of a node take turns, so the order moves little (1 s of 775 s for the smoke
    # pool with 2 samples): runs without GPUs keep the named order.
    budget = min(SEARCH_FORECASTS, SEARCH_CELLS // max(len(basis.work), 1)) if inventory.gpus else 0
    if budget < (len(basis.hosts) - 1) ** 2:  # not one neighbourhood: keep the named order
        budget = 0
    named = [replace(base, order=o) for o in ORDERS]
    if budget and base.backfill and not base.late_load:  # where the plan searches, it tries late_load too
        named += [replace(p, late_load=True) for p in named]
    runs = sorted(((p, basis.forecast(p)) for p in named), key=lambda r: _score(r[1]))
    best = runs[0]
    for policy, f in runs:
        if not budget or _at_bound(best[1]):
            break
        # The loop loads engines, by their hosts.
        order = load_order(list(basis.hosts), basis.demands, basis.gen_s, basis.load_s, policy)
        found, budget = _climb(basis, replace(policy, order="given", sequence=tuple(c.name for c in order)), f,
                               budget)
        best = min(best, found, key=lambda r: _score(r[1]))
    return best


def _score(f: Forecast) -> tuple[int, int]:
    return round(f.makespan_s), f.loads


def _at_bound(f: Forecast) -> bool:
    return round(f.makespan_s) <= round(f.lower_bound_s)


def _climb(basis: Basis, policy: Policy, f: Forecast, budget: int) -> tuple[tuple[Policy, Forecast], int]:
    """First-improvement hill climb from ``policy`` (forecast ``f``) over single moves in its sequence,
    spending at most ``budget`` forecasts; the best found and the budget left."""
    improved = True
    while improved and budget and not _at_bound(f):
        improved = False
        n = len(policy.sequence)
        # Moving model i to j = i + 1 and model i + 1 to i give the same order: each once.
        for i, j in ((i, j) for i in range(n) for j in range(n) if j not in (i, i - 1)):
            if not budget:
                break
            budget -= 1
            moved = list(policy.sequence)
            moved.insert(j, moved.pop(i))
            candidate = replace(policy, sequence=tuple(moved))
            g = basis.forecast(candidate)
            if _score(g) < _score(f):
                policy, f, improved = candidate, g, True
                break
    return (policy, f), budget


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
    for engine in the_plan.shared():  # one row per loaded engine, naming every card it serves
        card = the_plan.card(engine.host)
        spans = [s for s in f.spans if s.model == card.name]
        d = spans[0].demand
        nodes = sorted({n for s in spans for n in s.where.nodes})
        ctx = the_plan.engine_context(card.name)
        if d.endpoint or ctx is None:
            table.add_row(engine.name, "0", "api", d.endpoint, "-", "-", "-", "-", "-",
                          _duration(f.model_s[card.name]), "-")
            continue
        settings = engine_args.settings(card, d.shape, spans[0].where, conf, ctx)
        shape = f"{d.shape.tp} x {d.shape.pp}" if d.shape else "cpu"
        weights = d.shape.weight_bytes if d.shape else weight_bytes(card, run_dtype(card, False))
        # The KV cache the engine gets (on GPU estimated: what gpu_memory_utilization leaves), per instance.
        kv = ctx.kv_bytes_per_gpu * max(d.gpus, 1)
        window = f"{settings.max_model_len:,}" + ("*" if ctx.capped else "")
        table.add_row(engine.name, str(d.gpus), shape, ",".join(map(str, nodes)), settings.dtype,
                      f"{weights / 1e9:.1f}", f"{kv / 1e9:.1f}", window,
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
