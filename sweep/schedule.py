"""Where model instances go and in which order they load: placement and policy for the runner. Pure.

The runner asks ``take`` before it starts an instance and calls ``give_back`` after it
kills one, so it never asks Ray for more than the cluster has (a request Ray can't meet
would wait forever while finished instances hold the room). One scheduling loop
(sweep.scheduler) calls these rules on Ray and on the simulated clock of ``plan=true`` tables
and bench/scheduler_sim.py, so what a plan prints is what the live run does.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Collection, Optional, Sequence, TypeVar

from sweep.core.config import ModelCard, SweepConfig
from sweep.sizing import GiB, Inventory, Shape, budget, choose_shape, cpu_instance_bytes


@dataclass(frozen=True)
class Demand:
    """What one instance of a card holds while loaded."""

    shape: Optional[Shape]
    """TP x PP on GPUs; None for a CPU instance."""
    memory_bytes: int
    """Host memory (CPU instances: weights + KV cache + runtime)."""
    endpoint: Optional[str] = None
    """An API card's base URL: it computes there and holds nothing here."""

    @property
    def gpus(self) -> int:
        return self.shape.gpus if self.shape else 0


@dataclass(frozen=True)
class Placement:
    """Node index (into the inventory) of each pipeline stage; one entry on CPU or when PP = 1."""

    nodes: tuple[int, ...]

    @property
    def spans_nodes(self) -> bool:
        return len(set(self.nodes)) > 1


def lane(d: Demand, where: Placement) -> Optional[str]:
    """What an instance's batches take turns on. CPU instances on one node: two vLLM-CPU
    engines computing at once spin on the same cores and both run ~8x slower (measured here).
    API cards on one endpoint: the endpoint's max_concurrency bounds all of them together.
    GPU instances own their GPUs: no lane."""
    if d.endpoint:
        return f"endpoint {d.endpoint}"
    return f"node {where.nodes[0]}" if d.gpus == 0 else None


def demand(card: ModelCard, cfg: SweepConfig, inventory: Inventory) -> Demand:
    if card.endpoint is not None and card.remote:
        return Demand(None, 0, endpoint=card.endpoint.base_url)
    if inventory.gpus:
        shape = choose_shape(card, inventory.slot(int(cfg.cluster.gpu_memory_gib * GiB)), budget(cfg.engine))
        assert shape is not None, "plan.check_fits refuses cards that fit no slot"
        return Demand(shape, 0)
    memory = int(cfg.cluster.instance_memory_gib * GiB) or cpu_instance_bytes(card, cfg.engine.kv_cache_gib)
    return Demand(None, memory)


class Capacity:
    """Free GPUs and memory per node.

    A GPU instance goes whole onto the node it fills best (the fewest free GPUs that still
    hold it), keeping whole nodes free for the big models; when no node holds it, its
    pipeline stages (TP GPUs each) go onto the nodes they fill best. CPU instances: first fit.
    """

    def __init__(self, inventory: Inventory) -> None:
        self.free = [[n.gpus, n.memory_bytes] for n in inventory.nodes]

    def take(self, d: Demand) -> Optional[Placement]:
        """Reserve room for ``d``; where it goes, or None when the free cluster can't hold it."""
        if d.shape is None:
            for i, (_, memory) in enumerate(self.free):
                if memory >= d.memory_bytes:
                    self.free[i][1] -= d.memory_bytes
                    return Placement((i,))
            return None
        whole = self._best_fit(d.shape.gpus)
        if whole is not None:
            self.free[whole][0] -= d.shape.gpus
            return Placement((whole,) * d.shape.pp)
        stages: list[int] = []
        for _ in range(d.shape.pp):
            node = self._best_fit(d.shape.tp)
            if node is None:
                for n in stages:
                    self.free[n][0] += d.shape.tp
                return None
            self.free[node][0] -= d.shape.tp
            stages.append(node)
        return Placement(tuple(stages))

    def _best_fit(self, gpus: int) -> Optional[int]:
        fitting = [(free, i) for i, (free, _) in enumerate(self.free) if free >= gpus]
        return min(fitting)[1] if fitting else None

    def copy(self) -> Capacity:
        out = Capacity.__new__(Capacity)
        out.free = [list(node) for node in self.free]
        return out

    def give_back(self, where: Placement, d: Demand) -> None:
        if d.shape is None:
            self.free[where.nodes[0]][1] += d.memory_bytes
            return
        for node in where.nodes:
            self.free[node][0] += d.shape.tp

    @property
    def idle_gpus(self) -> int:
        return sum(gpus for gpus, _ in self.free)


@dataclass(frozen=True)
class Policy:
    """The runner's ordering decisions; the defaults are what it does (other values exist for
    bench/scheduler_sim.py to compare against)."""

    order: str = "largest"
    """Load order. largest: most GPUs, then most work first (longest-processing-time first).
    cheap_last_loaded: the models of the largest shape first, then the rest from the cheapest
    to load up, so the costly ones are still loaded when judging starts and only cheap ones
    reload. widest_last / cheap_first_widest_last: every model but those of the largest shape
    first (largest first / cheapest to load first), the widest last: when the widest fills a
    node it then loads once, answers and judges every answer in one residency, and the cheaper
    rest reload to judge its answers. given: ``sequence`` (best_policy's search). pool: the
    pool's order (a baseline)."""
    sequence: tuple[str, ...] = ()
    """The models in load order, for order="given"; models not in it go last, in pool order."""
    fuse: bool = True
    """Keep an instance loaded from answering to judging when no model waits for its room."""
    judge_ready: bool = False
    """Also keep it, while a model waits for room, when answers it has not judged exist: it judges
    them (early judging) before giving the room back, so fewer verdicts wait for its reload. The
    scheduling loop (sweep.scheduler) honours it live and simulated; off by default until measured live."""
    backfill: bool = True
    """While a model waits for room, an instance that has answered judges its ready cells early, but only
    those whose estimate ends before the waiting model could load anyway (``room_at``: when the other
    instances' projected ends free its room), then leaves: the waiting model loads no later, fewer
    verdicts wait for a reload (sweep.scheduler). On by default: it made no row of bench/scheduler_sim.py
    worse. Live the projections are the cost model's on the real clock (Scheduler.free_at)."""
    late_load: bool = False
    """With backfill: when one model is left waiting for room, it may also load later, by as much as its
    answers (its load and answers estimated) still end before the other instances' latest projected end,
    so an instance done answering judges that much longer (sweep.scheduler). Not on for every plan: it
    gives up backfill's promise (the waiting model loads no later) on estimates alone, and made one row of
    bench/scheduler_sim.py slower (397B FP8, 8 x H200, 1 sample: 335 -> 336 s); best_policy tries it beside
    each named order and keeps it where it ends first (issue 15's plan on 2 x 8 H100 at 8 samples: 410 -> 393 s)."""
    replicas: bool = True
    """When a model's batch is submitted and no model of the phase waits for room, start
    data-parallel replicas on idle GPUs while each instance's share stays worth a load
    (``worth_another``); the batch is split evenly among them (``share``)."""
    early_judging: bool = True
    """While models still answer, a loaded judge with nothing to do judges the answers that have landed
    (sweep.scheduler, on Ray and in the simulation alike)."""
    warm_reloads: bool = False
    """A reload on nodes that read the model's weights before finds them in their page cache
    (sweep.cost.PageCache, bounded by the nodes' memory) and takes reload_seconds. Modelled only:
    a live run gets the page cache from the OS when the nodes' memory holds the files, but how
    fast vLLM reads them back is not measured here, so plans don't assume it."""
    read_ahead: bool = False
    """While a model waits to load, the nodes it may load on (``read_ahead_nodes``) read its weight files
    into their page cache, one model after another in load order, so its load reads host memory instead of
    storage (sweep.ray_backend: a task per node; sweep.cost.PageCache models it, and keeps what was read as
    warm_reloads does). ``run.read_ahead``; off by default: not run on a GPU cluster here."""

    @property
    def page_cache(self) -> bool:
        """Whether loads find what their nodes read before (warm_reloads, and read_ahead, which reads into it)."""
        return self.warm_reloads or self.read_ahead


def read_ahead_nodes(d: Demand, inventory: Inventory) -> tuple[int, ...]:
    """The nodes an instance of ``d`` may load on (Capacity.take decides which when there is room): those
    whose GPUs hold it whole, else those that hold one pipeline stage; CPU instances: those with the memory."""
    nodes = inventory.nodes
    if d.endpoint:
        return ()
    if d.shape is None:
        return tuple(i for i, n in enumerate(nodes) if n.memory_bytes >= d.memory_bytes)
    whole = tuple(i for i, n in enumerate(nodes) if n.gpus >= d.shape.gpus)
    return whole or tuple(i for i, n in enumerate(nodes) if n.gpus >= d.shape.tp)


def worth_another(work_s: float, load_s: float, instances: int) -> bool:
    """Whether one more instance of a model pays off: splitting its batch over ``instances + 1``
    saves more time than the replica spends loading."""
    return work_s / instances - work_s / (instances + 1) > load_s


def most_instances(work_s: float, load_s: float, room: int) -> int:
    """The instances a job of ``work_s`` seconds is split over at most (the runner starts replicas while
    ``worth_another`` holds and there is room), ``room`` being how many the cluster holds at once."""
    n = 1
    while n < room and worth_another(work_s, load_s, n):
        n += 1
    return n


T = TypeVar("T")


def share(items: Sequence[T], part: tuple[int, int]) -> list[T]:
    """Part ``i`` of ``n`` of a batch's cells (every n-th from i, so each part gets every eval)."""
    i, n = part
    return list(items[i::n])


def load_order(cards: Sequence[ModelCard], demands: dict[str, Demand], work: dict[str, float],
               load: dict[str, float], policy: Policy = Policy()) -> list[ModelCard]:
    """Largest first, so the models that need whole nodes get them before small ones
    fragment the cluster and the long jobs start early; small models fill the gaps. Ties
    keep the pool's order. ``work`` and ``load``: seconds per model from the cost model (sweep.cost)."""
    if policy.order == "pool":
        return list(cards)
    if policy.order == "given":
        return sorted(cards, key=lambda c: policy.sequence.index(c.name) if c.name in policy.sequence else len(cards))
    largest = sorted(cards, key=lambda c: (-demands[c.name].gpus, -work.get(c.name, 0.0)))
    if policy.order == "largest" or not largest:
        return largest
    widest = demands[largest[0].name].gpus
    head = [c for c in largest if demands[c.name].gpus == widest]
    rest = [c for c in cards if demands[c.name].gpus != widest]
    cheap = sorted(rest, key=lambda c: load[c.name])
    orders = {"cheap_last_loaded": head + cheap, "cheap_first_widest_last": cheap + head,
              "widest_last": [c for c in largest if demands[c.name].gpus != widest] + head}
    if policy.order not in orders:
        raise ValueError(f"unknown load order {policy.order!r}")
    return orders[policy.order]


def admit(pending: Sequence[ModelCard], loaded: Collection[str], start: Callable[[ModelCard], bool]) -> None:
    """Load pending models in order while there is room; stop at the first that doesn't fit,
    so a large model waiting for room is not overtaken (and starved) by small ones."""
    for card in pending:
        if card.name not in loaded and not start(card):
            return


def keep_loaded(needed: bool, pending: Sequence[ModelCard], loaded: Collection[str], policy: Policy = Policy(),
                ready: bool = False, fits: bool = False) -> bool:
    """Whether an instance that finished its batch stays loaded for the next phase (fusing
    answers and judging into one load): only if it is ``needed`` there and no model of this
    phase is still waiting for room, or (``Policy.judge_ready``) answers it has not judged exist
    now (``ready``), or (``Policy.backfill``) some of them ``fits`` before the waiting model could
    load anyway: it judges them early, then leaves."""
    # Only early judging gives it those answers.
    early = policy.early_judging and ((policy.judge_ready and ready) or (policy.backfill and fits))
    return policy.fuse and needed and (all(c.name in loaded for c in pending) or early)


def room_at(free: Capacity, d: Demand, now: float, ends: Sequence[tuple[float, Placement, Demand]]) -> Optional[float]:
    """The earliest time ``d`` fits if each loaded instance gives its room back at its projected end
    (``ends``: end, where, demand; ``free``: the room free now, left as it is); None if it never does."""
    room = free.copy()
    if room.copy().take(d) is not None:
        return now
    for end, where, held in sorted(ends, key=lambda e: e[0]):
        room.give_back(where, held)
        if room.copy().take(d) is not None:
            return max(end, now)
    return None


def backfill(estimate: Callable[[int], float], items: int, slack_s: float) -> int:
    """How many of an instance's ready cells (a prefix of ``items``) it judges within ``slack_s``:
    the most whose ``estimate`` (of the first n, one job) fits; 0 when none does."""
    if estimate(items) <= slack_s:  # one estimate when all fit (the common case)
        return items
    # The estimate grows with the cells: the first prefix length that doesn't fit, less one.
    return max(bisect.bisect_right(range(items), slack_s, key=estimate) - 1, 0)
