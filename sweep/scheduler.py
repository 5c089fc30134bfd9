"""The scheduling loop: the policy (sweep.schedule) over the cell queue (sweep.queue), against a
backend that starts instances and computes batches. Pure: the live run drives it on Ray actors
(sweep.ray_backend), ``plan=true`` and bench/scheduler_sim.py on the cost model's clock
(sweep.forecast.Simulated). One loop, so the forecast makes the live run's decisions; ``trace`` lists them.

Answers phase: models load in the policy's order as room frees up (``admit``), each answers its
cells (one job), split over data-parallel replicas on idle GPUs while one more pays off
(``worth_another``, ``share``); CPU instances on a node and API cards on an endpoint take turns
(``lane``: a job holds its lane until its last batch is done). While models still answer, a loaded
judge with nothing to do judges its ready cells (early judging). An instance that answered stays
loaded when it has cells left to judge and no model waits for its room (``keep_loaded``); while one
waits (backfill), only to judge the ready cells whose estimate ends before that model could load
anyway (``room_at``, from the other instances' projected ends ``free_at``: the cost model's estimates on
the backend's clock), then it leaves (``Policy.late_load``: the last model waiting may load later, while
its answers still end before the others'). The answers phase ends when its last answer lands; early
judging still in flight goes on. Judging phase: what is left, judges already loaded first (after the
batches of their early job). With ``Policy.read_ahead`` each model waiting to load has the nodes it may
load on read its weights meanwhile (``Backend.read_ahead``).

Batches: an instance's part of a job goes out as batches of at most ``run.batch_cells`` cells
(``chunks``), ``PIPELINE`` of them in flight per instance, so the engine never waits for the driver
between batches, and each batch's rows are written as it lands (a crash loses only the batches in
flight). The forecast sees the same batches: they are decided here, from the plan, not by timing.

Faults: an instance whose batch fails (the backend says why) is stopped, its other batches in flight
and those not yet sent go back with it, and they are retried ``run.retries`` times on a fresh instance;
after that their cells get error rows (the sink makes them). A failed early batch puts its cells back
for the judging phase, or, once that has begun, retries as the judging phase's own.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Mapping, Optional, Protocol, Sequence, Union

from sweep.core.cells import CompareCell, SweepPlan
from sweep.core.config import ModelCard, SweepConfig
from sweep.core.errors import SweepError
from sweep.core.rows import GenerationRow
from sweep.cost import CellWork, cell_work, load_seconds, seconds, work_of, work_seconds
from sweep.queue import CellQueue
from sweep.schedule import (Capacity, Demand, Placement, Policy, admit, backfill, demand, keep_loaded, lane, load_order,
                            most_instances, read_ahead_nodes, room_at, share)
from sweep.sizing import Inventory

ANSWERS, JUDGMENTS = "answers", "judgments"
PIPELINE = 2
"""Batches in flight per instance: one computing, the next already queued at the instance, so it starts
the moment the first ends instead of after the driver has written it and sent another."""
Part = tuple[int, int]
"""Part i of n of a job's cells (sweep.schedule.share); (0, 1) is all of them."""


@dataclass(frozen=True, eq=False)  # two jobs are the same job only if they are one object
class Job:
    """One model's cells for a batch, before it is split over instances."""

    model: str
    """The engine's host card (SweepPlan.hosts): cards sharing one engine are one model here, their cells
    in its jobs (sweep.queue), each cell naming its own card."""
    kind: str
    """ANSWERS (cells are GenerateCells) or JUDGMENTS (JudgeCells, and pairwise verdicts)."""
    cells: tuple[Any, ...]
    pairs: tuple[CompareCell, ...] = ()
    part: Part = (0, 1)
    early: bool = False
    """Judging while models still answer: a failure puts its cells back for the judging phase."""


@dataclass(frozen=True, eq=False)
class Batch:
    """Some of a job's cells (at most ``run.batch_cells``) as submitted to one instance."""

    id: int
    instance: str
    """The instance's key: its card's name, or a replica's ("<card> #<n>")."""
    job: Job
    cells: tuple[Any, ...]
    pairs: tuple[CompareCell, ...]
    estimate_s: float
    """The cost model's seconds for this batch on its instance (sweep.cost)."""
    lane: Optional[str]

    def carried(self) -> tuple[list[Any], list[CompareCell]]:
        """The cells this batch computes."""
        return list(self.cells), list(self.pairs)


@dataclass(frozen=True)
class Started:
    instance: str
    model: str
    nodes: tuple[int, ...]
    """Inventory index of each pipeline stage's node (sweep.schedule.Placement)."""


@dataclass(frozen=True)
class Submitted:
    batch: int
    instance: str
    kind: str
    cells: tuple[str, ...]
    """Keys of the cells it carries (answers, or judgments then pairwise verdicts)."""
    early: bool


@dataclass(frozen=True)
class Stopped:
    instance: str


@dataclass(frozen=True)
class Failed:
    instance: str
    model: str
    error: str
    then: str
    """"retry", "gave up" (its cells get error rows) or "early" (its cells wait for the judging phase)."""
    tries: int


@dataclass(frozen=True)
class Phase:
    kind: str


@dataclass(frozen=True)
class Split:
    model: str
    instances: int


Event = Union[Started, Submitted, Stopped, Failed, Phase, Split]


@dataclass(frozen=True)
class Done:
    batch: Batch
    rows: Sequence[Any]
    """What the instance returned (the sink writes it)."""
    answers: Mapping[str, GenerationRow]
    """An answers batch's answers by cell key (the queue lands them)."""


@dataclass(frozen=True)
class Lost:
    batch: Batch
    error: str


class Backend(Protocol):
    """Where instances run: Ray actors (sweep.ray_backend) or the cost model's clock (sweep.forecast)."""

    def start(self, card: ModelCard, key: str, d: Demand, where: Placement) -> None: ...

    def submit(self, batch: Batch) -> None:
        """Queue ``batch`` on its instance (started; batches on one instance run in turn)."""

    def read_ahead(self, card: ModelCard, d: Demand, nodes: tuple[int, ...]) -> None:
        """``card`` loads later on one of ``nodes``: read its weights into their page cache meanwhile
        (Policy.read_ahead: only that model's instance waits for it, and a read that fails costs a cold load)."""

    def wait(self) -> Union[Done, Lost]:
        """The next batch that finished, or failed (its instance died, raised or missed its deadline)."""

    def stop(self, key: str) -> None:
        """Stop the instance and forget its batches."""

    def inventory(self) -> Inventory:
        """The nodes there are now (after a failure, one may be gone)."""

    def now(self) -> float:
        """Seconds on the backend's clock (any origin): real time live, simulated time in the forecast."""


class Sink(Protocol):
    """What the driver does with the loop's results: write rows, show progress, log."""

    def event(self, e: Event) -> None: ...

    def landed(self, batch: Batch, rows: Sequence[Any]) -> None: ...

    def unseen(self, judge: str, cells: Sequence[Any], pairs: Sequence[CompareCell]) -> None:
        """Verdicts on answers no judge sees: written at once, no model."""

    def error_rows(self, batch: Batch, error: str, attempts: int) -> list[Any]:
        """The rows of a batch given up on."""


class NullSink:
    """The simulation's: nothing is written, nothing fails."""

    def event(self, e: Event) -> None:
        pass

    def landed(self, batch: Batch, rows: Sequence[Any]) -> None:
        pass

    def unseen(self, judge: str, cells: Sequence[Any], pairs: Sequence[CompareCell]) -> None:
        pass

    def error_rows(self, batch: Batch, error: str, attempts: int) -> list[Any]:
        raise AssertionError(f"simulated batches don't fail ({error})")


@dataclass(frozen=True)
class Loaded:
    model: str
    demand: Demand
    where: Placement

    @property
    def lane(self) -> Optional[str]:
        return lane(self.demand, self.where)


class Scheduler:
    """Runs a plan's cells (those ``queue`` holds) on ``backend``; ``run`` returns when every cell has a row."""

    def __init__(self, the_plan: SweepPlan, conf: SweepConfig, inventory: Inventory, policy: Policy,
                 backend: Backend, queue: CellQueue, sink: Sink = NullSink(), work: Optional[CellWork] = None) -> None:
        self.plan, self.conf, self.inventory, self.policy = the_plan, conf, inventory, policy
        self.backend, self.queue, self.sink = backend, queue, sink
        self.cards = {c.name: c for c in the_plan.cards}
        self.demands = {c.name: demand(c, conf, inventory) for c in the_plan.cards}
        self.load_s = {c.name: load_seconds(c, self.demands[c.name]) for c in the_plan.cards}
        self.work = cell_work(the_plan) if work is None else work
        """The cost model's tokens per cell (sweep.cost.cell_work)."""
        self.capacity = Capacity(inventory)
        self.alive: dict[str, Loaded] = {}
        self.pending: list[Job] = []
        self.running: dict[int, Batch] = {}
        self.backlog: dict[str, deque[tuple[Job, tuple[Any, ...], tuple[CompareCell, ...]]]] = {}
        """Per instance, the batches of its job not sent yet (``_feed`` keeps PIPELINE in flight)."""
        self.free_at: dict[str, float] = {}
        """Per instance, when it should be done with what it was sent (backend clock): its load, then each
        batch's estimate after the one before; now, once it is idle. Live these are the cost model's
        estimates anchored to real time: where instances run slower than estimated, their projected ends
        pass and Policy.backfill sees no slack (nothing is backfilled); where they run faster, one still
        busy is projected to end later than it will, and a backfilled job can delay the waiting model by
        up to that error."""
        self.tries: dict[str, int] = defaultdict(int)
        self.trace: list[Event] = []
        self.loads = 0
        """Instances that loaded weights (API clients load none)."""
        self.failures = 0
        self.phase = ANSWERS
        self._ids = itertools.count()

    def run(self) -> None:
        gen_s, judge_s = work_seconds(self.plan, self.conf, self.inventory)
        self._write_unseen()  # verdicts on reused answers judges don't see
        answering = [c for c in self.plan.cards if c.name in self.queue.generate]
        self._phase(ANSWERS, [Job(c.name, ANSWERS, tuple(self.queue.generate[c.name]))
                              for c in load_order(answering, self.demands, gen_s, self.load_s, self.policy)])
        judges = [c for c in self.plan.cards if c.name in self.queue.judges()]
        order = load_order(judges, self.demands, judge_s, self.load_s, self.policy)
        order.sort(key=lambda c: c.name not in self.alive)  # judges already loaded go first
        self._phase(JUDGMENTS, [self._judging(c.name) for c in order])
        for key in list(self.alive):  # loaded for answers, nothing left to judge
            self._stop(key)

    def _judging(self, judge: str) -> Job:
        cells, pairs = self.queue.left(judge)
        self.queue.take(judge, cells, pairs)
        return Job(judge, JUDGMENTS, tuple(cells), tuple(pairs))

    def _phase(self, kind: str, jobs: list[Job]) -> None:
        self._event(Phase(kind))
        self.phase = kind
        self.pending = jobs
        keep: Callable[[str], bool] = self.queue.needs_model if kind == ANSWERS else (lambda _: False)
        asked: set[str] = set()  # models whose weights this phase has read ahead
        # The answers phase ends when its last answer lands: early judging still in flight goes on into
        # the judging phase, so judges without early work don't wait for it (bench/stream.py).
        while self.pending or any(kind == JUDGMENTS or not b.job.early for b in self.running.values()):
            admit([self.cards[j.model] for j in self.pending], self.alive, self._start)
            if self.policy.read_ahead:
                self._read_ahead(asked)
            busy = {b.lane for b in self.running.values() if b.lane}
            self._submit_pending(busy)
            if kind == ANSWERS and self.policy.early_judging and (
                    self.pending or any(not b.job.early for b in self.running.values())):
                self._judge_early(busy)
            if not self.running:
                raise SweepError(f"{self.pending[0].model} does not fit in the free cluster", "use a larger cluster")
            self._settle(self.backend.wait(), keep)

    def _read_ahead(self, asked: set[str]) -> None:
        """Policy.read_ahead: the nodes each model waiting to load may load on read its weights, in load order."""
        for job in self.pending:
            if job.model not in self.alive and job.model not in asked:
                asked.add(job.model)
                d = self.demands[job.model]
                self.backend.read_ahead(self.cards[job.model], d, read_ahead_nodes(d, self.inventory))

    def _submit_pending(self, busy: set[Optional[str]]) -> None:
        """Submit each pending job whose model is loaded and whose lane is free, split over replicas
        when no model of the phase waits for room."""
        for job in [j for j in self.pending if j.model in self.alive]:
            turn = self.alive[job.model].lane
            if turn in busy:
                continue
            if turn:
                busy.add(turn)
            self.pending = [j for j in self.pending if j is not job]
            waiting = any(j.model not in self.alive for j in self.pending)
            replicas = self._replicas(job) if job.part == (0, 1) and not waiting else []
            n = len(replicas) + 1
            for i, key in enumerate([job.model, *replicas]):
                part = replace(job, cells=tuple(share(job.cells, (i, n))), pairs=tuple(share(job.pairs, (i, n))),
                               part=(i, n)) if replicas else job
                self._assign(key, part, turn)

    def _replicas(self, job: Job) -> list[str]:
        """Start data-parallel replicas of a GPU model on idle GPUs while one more pays off; their keys."""
        model = job.model
        if not self.policy.replicas or self.demands[model].shape is None:
            return []
        most = most_instances(self._seconds(model, job.cells), self.load_s[model], self.inventory.gpus)
        keys: list[str] = []
        while len(keys) + 1 < most:
            key = f"{model} #{len(keys) + 2}"
            if not self._start(self.cards[model], key):
                break
            keys.append(key)
        if keys:
            self._event(Split(model, len(keys) + 1))
        return keys

    def _judge_early(self, busy: set[Optional[str]]) -> None:
        """Loaded judges with nothing to do judge their ready cells while others answer."""
        for key, live in list(self.alive.items()):
            # A replica is never idle: it stops once its part is done.
            idle = key == live.model and not any(b.instance == key for b in self.running.values())
            if not idle or (live.lane and live.lane in busy):
                continue
            cells, pairs = self.queue.ready(key)
            if not cells and not pairs:
                continue
            if live.lane:
                busy.add(live.lane)
            self._judge_these_early(key, cells, pairs)

    def _judge_these_early(self, key: str, cells: Sequence[Any], pairs: Sequence[CompareCell]) -> None:
        """Take these ready cells from the queue and give them to instance ``key`` as an early judging job."""
        self.queue.take(key, cells, pairs)
        self._assign(key, Job(key, JUDGMENTS, tuple(cells), tuple(pairs), early=True), self.alive[key].lane)

    def _assign(self, key: str, job: Job, turn: Optional[str]) -> None:
        """Give instance ``key`` the cells of ``job`` (its part of one), as batches of ``run.batch_cells``."""
        # extend: an early judging job may still be sending its batches when the judging phase assigns
        self.backlog.setdefault(key, deque()).extend(
            (job, cells, pairs) for cells, pairs in chunks(job.cells, job.pairs, self.conf.run.batch_cells))
        self._feed(key, turn)

    def _feed(self, key: str, turn: Optional[str]) -> None:
        """Send instance ``key`` its next batches while fewer than PIPELINE are in flight."""
        queued = self.backlog[key]
        in_flight = sum(b.instance == key for b in self.running.values())
        while queued and in_flight < PIPELINE:
            job, cells, pairs = queued.popleft()
            self._submit(key, job, cells, pairs, turn)
            in_flight += 1
        if not queued:
            del self.backlog[key]

    def _submit(self, key: str, job: Job, cells: tuple[Any, ...], pairs: tuple[CompareCell, ...],
                turn: Optional[str]) -> None:
        batch = Batch(next(self._ids), key, job, cells, pairs, self._seconds(job.model, cells), turn)
        self.running[batch.id] = batch
        self.free_at[key] = max(self.backend.now(), self.free_at[key]) + batch.estimate_s
        self.backend.submit(batch)
        self._event(Submitted(batch.id, key, job.kind, tuple(c.key for c in (*cells, *pairs)), job.early))

    def _seconds(self, model: str, cells: Sequence[Any]) -> float:
        """The cost model's estimate for ``cells`` on one instance of ``model``."""
        w = work_of(self.work, (c.key for c in cells))  # pairwise verdicts are not counted (sweep.cost)
        return seconds(self.cards[model], self.demands[model], w, self.inventory, self.conf.engine.concurrency)

    def _settle(self, outcome: Union[Done, Lost], keep: Callable[[str], bool]) -> None:
        batch = outcome.batch
        del self.running[batch.id]
        if isinstance(outcome, Lost):
            self._failed(batch, outcome.error)
            return
        self._collect(batch, outcome.rows, outcome.answers)
        if batch.instance in self.backlog:  # more of its job to send
            self._feed(batch.instance, batch.lane)
            return
        if any(b.instance == batch.instance for b in self.running.values()):  # its last batches are in flight
            return
        self.free_at[batch.instance] = self.backend.now()  # idle now, even if it ran faster than estimated
        model = batch.job.model
        if batch.instance == model and any(j.model == model for j in self.pending):  # its own job is next
            return
        pending = [self.cards[j.model] for j in self.pending]
        # Policy.judge_ready: answers it hasn't judged exist now (asked only when the policy would use it).
        ready = self.policy.judge_ready and any(self.queue.ready(model))
        cells, pairs = self._backfill(model) if batch.instance == model and not ready else ([], [])
        if batch.instance != model or not keep_loaded(keep(model), pending, self.alive, self.policy, ready,
                                                      bool(cells or pairs)):
            self._stop(batch.instance)
        elif cells or pairs:  # assigned now: an idle instance kept for it would get every ready cell
            self._judge_these_early(model, cells, pairs)

    def _backfill(self, key: str) -> tuple[list[Any], list[CompareCell]]:
        """Policy.backfill: the ready cells GPU instance ``key`` (done with its answers) judges early while a
        model waits for room, those whose estimate ends before the room that model waits for frees anyway
        (the other instances' projected ends, this one gone now); none when nothing waits."""
        live = self.alive[key]
        blocked = next((j.model for j in self.pending if j.model not in self.alive), None)
        if not self.policy.backfill or self.phase != ANSWERS or blocked is None or live.lane:
            return [], []
        now = self.backend.now()
        room = self.capacity.copy()
        room.give_back(live.where, live.demand)
        ends = [(self.free_at[k], other.where, other.demand) for k, other in self.alive.items() if k != key]
        at = room_at(room, self.demands[blocked], now, ends)
        cells, pairs = self.queue.ready(key)
        if at is None or not (cells or pairs):
            return [], []
        slack = at - now + (self._later(key, at) if self.policy.late_load else 0.0)
        n = backfill(lambda n: self._seconds(key, cells[:n]), len(cells) + len(pairs), slack)
        return cells[:n], pairs[:max(n - len(cells), 0)]

    def _later(self, key: str, at: float) -> float:
        """Policy.late_load: how much later than ``at`` the last model waiting for room may load and still
        end its answers (load and answers estimated, one instance) by the latest projected end of the
        other instances (``key``'s excepted)."""
        waiting = [j for j in self.pending if j.model not in self.alive]
        if len(waiting) != 1:  # a later model would wait longer too
            return 0.0
        job = waiting[0]
        ends = at + self.load_s[job.model] + self._seconds(job.model, job.cells)
        return max(0.0, max((t for k, t in self.free_at.items() if k != key), default=at) - ends)

    def _collect(self, batch: Batch, rows: Sequence[Any], answers: Mapping[str, GenerationRow]) -> None:
        self.sink.landed(batch, rows)
        if batch.job.kind == ANSWERS:
            self.queue.land_answers(answers)
            self._write_unseen()
        else:
            self.queue.done((*batch.cells, *batch.pairs))

    def _write_unseen(self) -> None:
        for judge, (cells, pairs) in self.queue.unseen().items():
            self.sink.unseen(judge, cells, pairs)
            self.queue.done((*cells, *pairs))

    def _failed(self, batch: Batch, error: str) -> None:
        """A replacement loads fresh: a failed engine is not reused. The instance's other batches (in
        flight or not sent yet: the same job's) share the failed one's fate."""
        self.failures += 1
        behind = [b for b in self.running.values() if b.instance == batch.instance]
        for b in behind:
            del self.running[b.id]
        unsent = self.backlog.pop(batch.instance, ())
        self._stop(batch.instance)
        self._recount()  # the failure may have taken a node with it
        cells = (*batch.cells, *(c for b in behind for c in b.cells), *(c for _, cs, _ in unsent for c in cs))
        pairs = (*batch.pairs, *(c for b in behind for c in b.pairs), *(c for _, _, ps in unsent for c in ps))
        # Early cells go back for the judging phase; once it has begun (its jobs are made), they retry as its own.
        job = replace(batch.job, cells=cells, pairs=pairs, early=batch.job.early and self.phase == ANSWERS)
        if job.early:
            self._event(Failed(batch.instance, job.model, error, "early", 0))
            self.queue.put_back(job.model, list(cells), list(pairs))
            return
        self.tries[job.model] += 1
        tries = self.tries[job.model]
        if tries <= self.conf.run.retries:
            self._event(Failed(batch.instance, job.model, error, "retry", tries))
            self.pending.insert(0, job)
            return
        self._event(Failed(batch.instance, job.model, error, "gave up", tries))
        lost = replace(batch, job=job, cells=cells, pairs=pairs)
        rows = self.sink.error_rows(lost, error, self.conf.run.retries + 1)
        self._collect(lost, rows, {r.cell_key: r for r in rows} if job.kind == ANSWERS else {})

    def _recount(self) -> None:
        """Rebuild the room accounting from the nodes there are now."""
        self.inventory = self.backend.inventory()
        self.capacity = Capacity(self.inventory)
        for key, live in self.alive.items():
            self.alive[key] = replace(live, where=self.capacity.take(live.demand) or live.where)

    def _start(self, card: ModelCard, key: Optional[str] = None) -> bool:
        """Load an instance of ``card`` as ``alive[key]`` (default: the card's name) if there is room."""
        d = self.demands[card.name]
        where = self.capacity.take(d)
        if where is None:
            return False
        key = key or card.name
        self.backend.start(card, key, d, where)
        self.alive[key] = Loaded(card.name, d, where)
        self.free_at[key] = self.backend.now() + self.load_s[card.name]
        self.loads += not d.endpoint
        self._event(Started(key, card.name, where.nodes))
        return True

    def _stop(self, key: str) -> None:
        live = self.alive.pop(key)
        del self.free_at[key]
        self.backend.stop(key)
        self.capacity.give_back(live.where, live.demand)
        self._event(Stopped(key))

    def _event(self, e: Event) -> None:
        self.trace.append(e)
        self.sink.event(e)


def chunks(cells: Sequence[Any], pairs: Sequence[CompareCell],
           size: int) -> Iterator[tuple[tuple[Any, ...], tuple[CompareCell, ...]]]:
    """``cells`` then ``pairs`` in batches of at most ``size`` (0: one batch); always at least one."""
    items = len(cells) + len(pairs)
    size = size or max(items, 1)
    for lo in range(0, max(items, 1), size):
        hi = lo + size
        yield tuple(cells[lo:hi]), tuple(pairs[max(lo - len(cells), 0):max(hi - len(cells), 0)])
