"""Plan -> Ray task graph -> warehouse rows -> report: the driver of one sweep.

One Ray actor per loaded model. Answers first (every model), then judgments (every
judge reads every other model's answers). Instances still loaded when the answers are
done judge first, so a pool that fits the cluster is loaded exactly once.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import ray
from ray.util.placement_group import (NODE_ID_LABEL_KEY, placement_group, placement_group_table,
                                      remove_placement_group)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy
from omegaconf import DictConfig, OmegaConf
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from jobs.models import check_weights
from sweep import engine_args, local_ray, provenance, sizing, suite_file
from sweep.checks import typed
from sweep.core.config import ModelCard, SweepConfig
from sweep.core.errors import SweepError
from sweep.cost import load_seconds, work_seconds
from sweep.endpoints import check_endpoints
from sweep.forecast import best_policy, plan_table
from jobs.generate import failed as generate_failed
from jobs import compare as comparing
from jobs.judge import failed as judge_failed
from jobs.judge import rows as judge_rows
from sweep.instance import Instance
from sweep.resume import Reuse, reconcile
from sweep.core.cells import CompareCell, JudgeCell, SweepPlan, content_key
from sweep.plan import plan, validate
from sweep.queue import CellQueue
from sweep.schedule import (Capacity, Demand, Placement, Policy, admit, demand, keep_loaded, lane, load_order, share,
                            worth_another)
from sweep.core.rows import ComparisonRow, GenerationRow, JudgmentRow, RunRow
from warehouse.report import console as wide_console
from warehouse.store import Store

console = wide_console(stderr=True)  # piped to a file: 160 columns, as the report's tables, not rich's 80

# In-process vLLM inside the actor (no EngineCore/worker subprocesses), all cores used,
# nothing fetched from a hub for local weights.
CPU_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1"}


class TokensPerSecond(ProgressColumn):
    """Output tokens per second of the stage so far (batches land a model at a time)."""

    def render(self, task: Task) -> Text:
        rate = task.fields.get("tokens", 0) / task.elapsed if task.elapsed else 0.0
        return Text(f"{rate:,.0f} tok/s")


@dataclass(frozen=True)
class Landing:
    """Where one GPU instance's placement group was planned and where Ray put it (node ids per bundle)."""

    model: str
    planned: tuple[str, ...]
    landed: tuple[str, ...]


@dataclass(frozen=True)
class RunResult:
    run_id: str
    store: Store
    model_loads: int
    wall_s: float
    landings: tuple[Landing, ...] = ()
    starts: tuple[str, ...] = ()
    """Instances in the order they started (a replica as "<card> #<n>"): the load decisions the plan's
    forecast makes too."""


def to_config(cfg: DictConfig | SweepConfig) -> tuple[SweepConfig, str]:
    """The typed config and its resolved YAML for provenance, secrets redacted."""
    if isinstance(cfg, SweepConfig):
        return cfg, provenance.config_yaml(OmegaConf.structured(cfg))
    return typed(cfg), provenance.config_yaml(cfg)


def run(cfg: DictConfig | SweepConfig) -> RunResult:
    started = time.monotonic()
    conf, config_yaml = to_config(cfg)
    conf, suite_source = suite_file.resolve(conf)
    validate(conf)
    for card in conf.model.cards.values():
        check_weights(card)
    check_endpoints(conf)
    root = conf.warehouse.root
    if "://" not in root:
        root = str(Path(root).expanduser().resolve())
    store = Store(root, dict(conf.warehouse.storage_options))
    store.check_writable()
    run_id = conf.run.name or dt.datetime.now().strftime("%Y%m%d-%H%M%S")

    with ray_cluster(conf) as inventory:
        the_plan = plan(conf, run_id, inventory)
        store.check_names(run_id=[run_id], model=[c.name for c in the_plan.cards])
        console.print(
            f"sweep {run_id}: {len(the_plan.cards)} models x {len(the_plan.suite.prompts)} prompts "
            f"({the_plan.suite.name}) -> {len(the_plan.generate)} answers, {len(the_plan.judge)} judgments"
            + (f", {len(the_plan.compare)} pairwise verdicts" if the_plan.compare else "")
            + f" on {inventory.describe()}"
        )
        policy, expected = best_policy(the_plan, conf, inventory)
        reuse = reusable(store, the_plan, conf.run.resume, conf.judge.retries)
        if reuse.cells < len(the_plan.generate) + len(the_plan.judge) + len(the_plan.compare):
            # The forecast counts every cell of the config: after a partial resume it is an upper bound.
            console.print(plan_table(the_plan, conf, expected, inventory))
        run_row = RunRow(
            run_id=run_id, started_at=dt.datetime.now(dt.timezone.utc), finished_at=None, status="running",
            config_yaml=config_yaml, config_hash=provenance.config_hash(config_yaml),
            git_commit=provenance.git_commit(), packages=provenance.package_versions(),
            hardware=provenance.hardware(inventory), pool=[c.name for c in the_plan.cards],
            suite=the_plan.suite.name, suite_source=suite_source and suite_source.url,
            suite_sha256=suite_source and suite_source.sha256, suite_rows=suite_source and suite_source.rows,
            generate_cells=len(the_plan.generate), judge_cells=len(the_plan.judge),
            model_loads=0, reused_cells=reuse.cells, instance_failures=0, wall_s=None,
        )
        store.write("runs", [run_row], "run.parquet", run_id=run_id)
        executor = Executor(the_plan, conf, store, inventory, reuse, policy)
        status = "failed"
        try:
            executor.execute()
            status = "finished"
        finally:
            wall = time.monotonic() - started
            end = dt.datetime.now(dt.timezone.utc)
            run_row = replace(run_row, finished_at=end, status=status, model_loads=executor.loads,
                              instance_failures=executor.failures, wall_s=wall)
            store.write("runs", [run_row], "run.parquet", run_id=run_id)
    console.print(f"sweep {run_id}: {executor.loads} model loads for {len(the_plan.cards)} models")
    return RunResult(run_id, store, executor.loads, wall, tuple(executor.landings), tuple(executor.starts))


def reusable(store: Store, the_plan: SweepPlan, resume: bool, judge_retries: int) -> Reuse:
    """Cells of this run already in the warehouse; stale and unreadable files are set aside."""
    generations, bad = store.read("generations", the_plan.run_id)
    judgments, bad_judgments = store.read("judgments", the_plan.run_id)
    comparisons, bad_comparisons = store.read("comparisons", the_plan.run_id)
    bad += bad_judgments + bad_comparisons
    # run.resume=false computes every cell again: the old files go to superseded/ like any replaced file.
    found = (reconcile(the_plan, generations, judgments, comparisons, judge_retries) if resume
             else Reuse(stale=tuple(sorted((*generations, *judgments, *comparisons)))))
    for path in bad:
        console.print(f"[yellow]warning:[/] {store.url(path)} is not readable warehouse Parquet (corrupt, truncated or another "
                      "schema); moved to superseded/, its cells are recomputed", soft_wrap=True)  # paths stay whole
    for path in found.stale:
        console.print(f"{store.url(path)} holds cells this run computes again: moved to superseded/", soft_wrap=True)
    kept = {path for _, path, _ in found.keep}
    for table, path, rows in found.keep:  # a stale file's reusable cells replace it, in one commit
        store.write(table, rows, f"kept-{content_key(sorted(r.cell_key for r in rows))}.parquet",
                    replaces=[path], unique=True, run_id=the_plan.run_id)
    for path in (*bad, *(p for p in found.stale if p not in kept)):
        store.supersede(path)
    reuse = found
    total = len(the_plan.generate) + len(the_plan.judge) + len(the_plan.compare)
    if reuse.cells:
        console.print(f"resuming {the_plan.run_id}: reusing {len(reuse.answers)} answers, {len(reuse.judged)} "
                      f"judgments and {len(reuse.compared)} pairwise verdicts; {total - reuse.cells} of {total} "
                      "cells to compute" + ("" if reuse.cells == total else
                                            " (the plan counts them all: its times and loads are an upper bound)"))
    if reuse.cells == total:
        console.print("nothing to compute: every cell of this config is in the warehouse (run.resume=false redoes them)")
    return reuse


@contextmanager
def ray_cluster(conf: SweepConfig) -> Iterator[sizing.Inventory]:
    """Join the configured Ray cluster (or start a local one) and read its inventory."""
    started_here = not ray.is_initialized()
    watchdog = local_ray.start(conf.cluster.address) if started_here else None
    try:
        yield inventory_from_ray(conf)
    finally:
        if started_here:
            ray.shutdown()
        if watchdog:
            watchdog.close()


def inventory_from_ray(conf: SweepConfig) -> sizing.Inventory:
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n["Resources"]
        gpus = int(res.get("GPU", 0))
        accel = next((k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")), "")
        gib = sizing.GPU_MEMORY_GIB.get(accel, conf.cluster.gpu_memory_gib) if gpus else 0
        nodes.append(sizing.Node(res.get("CPU", 0.0), gpus, int(res.get("memory", 0)), int(gib * sizing.GiB),
                                 accel if gpus else "", n["NodeID"]))
    return sizing.Inventory(tuple(nodes))


@dataclass
class Live:
    actor: Any
    where: Placement
    demand: Demand
    group: Any = None
    """The instance's placement group (GPU instances), removed when it stops."""

    @property
    def lane(self) -> Optional[str]:
        return lane(self.demand, self.where)


Part = tuple[int, int]
"""Part i of n of a model's cells in a phase (sweep.schedule.share); (0, 1) is all of them."""


@dataclass
class Batch:
    """One part of a model's cells for a phase, as submitted to one of its instances."""

    card: ModelCard
    part: Part
    instance: str
    """Its key in Executor.alive: the card's name, or a replica's."""
    ref: Any
    deadline: float
    lane: Optional[str]
    """Batches on one lane take turns (see ``lane``)."""
    early: Optional[Callable[[], None]] = None
    """Judging submitted while models still answer: puts its cells back for the judging phase if it
    fails (the phase's retries apply there). None: a batch of the phase itself."""


class Executor:
    """Runs a plan's cells on model-instance actors and writes each batch as it lands.

    Faults: an instance that dies (actor or node lost), raises, or misses its deadline is
    killed and replaced, and its batch resubmitted, ``run.retries`` times; after that its
    cells are written as errors. Finished batches are already in the warehouse, so nothing
    done is redone.

    Replicas: when a model's batch is submitted and no model of the phase waits for room,
    more instances of it start on idle GPUs while each pays off (schedule.worth_another), and
    the batch is split among them; a replica stops when its part is done.

    Early judging: while models still answer, a loaded judge with nothing to do judges the
    answers that have landed; the judging phase does the rest.
    """

    def __init__(self, the_plan: SweepPlan, conf: SweepConfig, store: Store, inventory: sizing.Inventory,
                 reuse: Reuse, policy: Policy = Policy()) -> None:
        self.plan, self.conf, self.store, self.inventory, self.reuse = the_plan, conf, store, inventory, reuse
        self.policy = policy
        self.remote = ray.remote(Instance)
        self.capacity = Capacity(inventory)
        self.alive: dict[str, Live] = {}
        self.started = 0
        """Instances started (their actor names count them)."""
        self.loads = 0
        """Instances that loaded weights (API clients load none)."""
        self.failures = 0
        self.landings: list[Landing] = []
        self.starts: list[str] = []
        self.queue = CellQueue(the_plan, conf.judge, reuse.answers, reuse.judged, reuse.compared)
        self.task: Any = None  # the progress bar of the current phase
        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), TokensPerSecond(), TextColumn("{task.fields[note]}"),
            console=console, disable=not conf.run.progress,
        )

    def execute(self) -> None:
        p, retry, q = self.plan, self.conf.run.retry_truncated, self.queue
        pool_index = {c.name: i for i, c in enumerate(p.cards)}
        with self.progress:
            gen_task = self.progress.add_task("answers", total=len(p.generate), note="", tokens=0,
                                              completed=len(self.reuse.answers))
            judge_task = self.progress.add_task("judgments", total=len(p.judge), note="", tokens=0, start=False,
                                                completed=len(self.reuse.judged))
            # Pairwise verdicts count apart: "judgments 36/36" read as 36 judgments when half were verdicts.
            pair_task = self.progress.add_task("pairwise", total=len(p.compare), note="", tokens=0, start=False,
                                               completed=len(self.reuse.compared), visible=bool(p.compare))
            self.task = gen_task

            def saved_judgments(card: ModelCard, rows: list[JudgmentRow | ComparisonRow]) -> None:
                self._write("judgments", [r for r in rows if isinstance(r, JudgmentRow)], judge=card.name)
                self._write("comparisons", [r for r in rows if isinstance(r, ComparisonRow)], judge=card.name)
                self._advance(judge_task, [r for r in rows if isinstance(r, JudgmentRow)])
                self._advance(pair_task, [r for r in rows if isinstance(r, ComparisonRow)])
                self._log(card, "judgments", rows)

            def write_unseen() -> None:
                """Verdicts on answers judges don't see (empty, failed, or cut off) need no model."""
                for name, (cells, pairs) in q.unseen().items():
                    card = p.card(name)
                    rows: list[JudgmentRow | ComparisonRow] = []
                    if cells:
                        rows += judge_rows(card, p.suite, cells, q.answers_for(cells), p.run_id, {})
                    if pairs:
                        rows += comparing.rows(card, pairs, q.answers, p.run_id, {})
                    saved_judgments(card, rows)

            def answer(live: Live, card: ModelCard, part: Part) -> Any:
                cells = share(q.generate[card.name], part)
                return live.actor.generate.remote(pool_index[card.name], p.suite, cells, p.run_id, retry)

            def saved_answers(card: ModelCard, rows: list[GenerationRow]) -> None:
                self._write("generations", rows, model=card.name)
                q.land(rows)
                self._advance(gen_task, rows)
                self._log(card, "answers", rows)
                write_unseen()

            def failed_answers(card: ModelCard, part: Part, error: str) -> list[GenerationRow]:
                return generate_failed(card, pool_index[card.name], p.suite, share(q.generate[card.name], part),
                                       p.run_id, error, self.conf.run.retries + 1)

            def judge_batch(live: Live, cells: list[JudgeCell], pairs: list[CompareCell]) -> Any:
                return live.actor.judge.remote(p.suite, self.conf.judge, cells, q.answers_for(cells, pairs),
                                               p.run_id, pairs)

            def early(running: list[Batch], busy: set[Optional[str]]) -> list[Batch]:
                """Loaded judges with nothing to do judge the ready cells while others answer."""
                out = []
                for name, live in list(self.alive.items()):
                    idle = not any(b.instance == name for b in running)
                    if not idle or (live.lane and live.lane in busy):
                        continue
                    cells, pairs = q.ready(name)
                    if not cells and not pairs:
                        continue
                    q.take(name, cells, pairs)

                    def put_back(name: str = name, cells: list = cells, pairs: list = pairs) -> None:
                        q.put_back(name, cells, pairs)

                    if live.lane:
                        busy.add(live.lane)
                    self.progress.start_task(judge_task)
                    self.progress.start_task(pair_task)
                    deadline = time.monotonic() + self.conf.engine.timeout_s
                    out.append(Batch(p.card(name), (0, 1), name, judge_batch(live, cells, pairs), deadline, live.lane,
                                     put_back))
                return out

            write_unseen()  # verdicts on reused answers judges don't see
            demands = {c.name: demand(c, self.conf, self.inventory) for c in p.cards}
            gen_s, judge_s = work_seconds(p, self.conf, self.inventory)
            loads = {c.name: load_seconds(c, demands[c.name]) for c in p.cards}
            gen_order = load_order([c for c in p.cards if c.name in q.generate], demands, gen_s, loads, self.policy)
            self._phase(gen_order, gen_s, answer, saved_answers, failed_answers, q.needs_model,
                        early if self.policy.early_judging else None, saved_judgments)

            def judgment(live: Live, card: ModelCard, part: Part) -> Any:
                cells, pairs = q.left(card.name)
                return judge_batch(live, share(cells, part), share(pairs, part))

            def failed_judgments(card: ModelCard, part: Part, error: str) -> list[JudgmentRow | ComparisonRow]:
                cells, pairs = (share(left, part) for left in q.left(card.name))
                attempts = self.conf.run.retries + 1
                return [*judge_failed(card, p.suite, cells, q.answers_for(cells), p.run_id, error, attempts),
                        *comparing.failed(card, pairs, q.answers_for((), pairs), p.run_id, error, attempts)]

            # Judges already loaded go first; the rest load as room frees up.
            self.progress.update(gen_task, note="")
            self.progress.start_task(judge_task)
            self.progress.start_task(pair_task)
            self.task = judge_task
            judges = [c for c in p.cards if c.name in q.judges()]
            judge_order = load_order(judges, demands, judge_s, loads, self.policy)
            judge_order.sort(key=lambda c: c.name not in self.alive)
            self._phase(judge_order, judge_s, judgment, saved_judgments, failed_judgments, keep=lambda _: False)
            for name in list(self.alive):  # loaded for answers, nothing left to judge
                self._stop(name)

    def _phase(
        self, cards: list[ModelCard], work_s: dict[str, float], submit: Callable[[Live, ModelCard, Part], Any],
        collect: Callable[[ModelCard, Any], None], failed: Callable[[ModelCard, Part, str], list[Any]],
        keep: Callable[[str], bool],
        early: Optional[Callable[[list[Batch], set[Optional[str]]], list[Batch]]] = None,
        collect_early: Optional[Callable[[ModelCard, Any], None]] = None,
    ) -> None:
        """Run one batch per card (split over replicas where they pay off, see ``_replicas``);
        ``keep`` says which cards stay loaded for the next phase (sweep.queue: cells a model must compute). While batches of this phase
        are pending or running, ``early`` may add batches of the next one on idle instances
        (written by ``collect_early``)."""
        pending: list[tuple[ModelCard, Part]] = [(c, (0, 1)) for c in cards]
        running: list[Batch] = []
        tries: dict[str, int] = defaultdict(int)
        while pending or running:
            admit([c for c, _ in pending], self.alive, self._start)
            busy = {b.lane for b in running if b.lane}
            for card, part in [j for j in pending if j[0].name in self.alive]:
                live = self.alive[card.name]
                if live.lane in busy:
                    continue
                if live.lane:
                    busy.add(live.lane)
                pending.remove((card, part))
                deadline = time.monotonic() + self.conf.engine.timeout_s
                waiting = any(c.name not in self.alive for c, _ in pending)
                instances = self._replicas(card, work_s.get(card.name, 0.0)) if part == (0, 1) and not waiting else []
                for i, key in enumerate([card.name, *instances]):
                    piece = (i, len(instances) + 1) if instances else part
                    running.append(Batch(card, piece, key, submit(self.alive[key], card, piece), deadline, live.lane))
            if early and (pending or any(b.early is None for b in running)):
                running += early(running, busy)
            if not running:
                raise SweepError(f"{pending[0][0].name} does not fit in the free cluster", "use a larger cluster")
            timeout = max(0.0, min(b.deadline for b in running) - time.monotonic())
            done, _ = ray.wait([b.ref for b in running], num_returns=1, timeout=timeout)
            if done:
                batch = next(b for b in running if b.ref == done[0])
                error = None
                try:
                    rows = ray.get(batch.ref)
                except (ray.exceptions.RayError, ray.exceptions.RayTaskError) as e:
                    error = failure(e)
            else:
                batch = min(running, key=lambda b: b.deadline)
                error = f"no result within engine.timeout_s={self.conf.engine.timeout_s:g} s (hung engine)"
            running.remove(batch)
            card = batch.card
            if error is None:
                (collect_early if batch.early else collect)(card, rows)
                if batch.instance != card.name or not keep_loaded(keep(card.name), [c for c, _ in pending], self.alive,
                                                                   self.policy):
                    if not any(b.instance == batch.instance for b in running):
                        self._stop(batch.instance)
                continue
            self.failures += 1
            self._stop(batch.instance)  # a replacement loads fresh: a failed engine is not reused
            for lost in [b for b in running if b.instance == batch.instance]:  # queued behind the failed batch
                running.remove(lost)
                if lost.early:
                    lost.early()
                else:
                    pending.insert(0, (lost.card, lost.part))
            self._recount()  # the failure may have taken a node with it
            if batch.early:
                console.log(f"{card.name}: instance failed while judging early ({error}); its cells wait for the "
                            "judging phase")
                batch.early()
                continue
            tries[card.name] += 1
            if tries[card.name] <= self.conf.run.retries:
                console.log(f"{card.name}: instance failed ({error}); restarting ({tries[card.name]}/{self.conf.run.retries})")
                pending.insert(0, (card, batch.part))
            else:
                console.log(f"{card.name}: instance failed {tries[card.name]} times ({error}); its cells are recorded as errors")
                collect(card, failed(card, batch.part, error))

    def _replicas(self, card: ModelCard, work_s: float) -> list[str]:
        """Start data-parallel replicas of a GPU model on idle GPUs while one more pays off
        (same rule as the simulation in sweep/forecast.py); their keys in ``alive``."""
        live = self.alive[card.name]
        if not self.policy.replicas or live.demand.shape is None:
            return []
        keys: list[str] = []
        load = load_seconds(card, live.demand)
        while worth_another(work_s, load, len(keys) + 1):
            key = f"{card.name} #{len(keys) + 2}"
            if not self._start(card, key):
                break
            keys.append(key)
        if keys:
            console.log(f"{card.name}: {len(keys)} data-parallel replica(s) on idle GPUs share its batch")
        return keys

    def _start(self, card: ModelCard, key: Optional[str] = None) -> bool:
        """Load an instance of ``card`` as ``alive[key]`` (default: the card's name) if there is room."""
        d = demand(card, self.conf, self.inventory)
        where = self.capacity.take(d)
        if where is None:
            return False
        shape = d.shape
        key_env = card.endpoint.api_key_env if card.endpoint else None
        ctx = self.plan.context(card.name)
        settings = engine_args.settings(card, shape, where, self.conf, ctx, os.environ.get(key_env) if key_env else None)
        console.log(f"{key or card.name}: loading {engine_args.describe(settings, ctx)}")
        group = None
        if d.endpoint:  # an API client: waits on the network, holds nothing
            options: dict[str, Any] = {"num_cpus": 0}
        elif shape is not None:
            group, options = self._gpu_options(shape, where)
        else:
            node = self.inventory.nodes[where.nodes[0]]
            threads = str(int(node.cpus) or os.cpu_count() or 1)
            # CPU instances share the cores (num_cpus=0); Ray still accounts their memory.
            options = {"num_cpus": 0, "memory": d.memory_bytes,
                       "runtime_env": {"env_vars": {**CPU_ENV, "OMP_NUM_THREADS": threads}}}
            if node.node_id:  # where the room was counted, so turn-taking per node holds
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        self.progress.update(self.task, note=f"loading {card.name}")
        self.started += 1
        self.starts.append(key or card.name)
        self.loads += not d.endpoint
        name = f"sweep/{self.plan.run_id}/{card.name}/{self.started}"
        self.alive[key or card.name] = Live(self.remote.options(name=name, **options).remote(card, settings), where, d,
                                            group)
        return True

    def _gpu_options(self, shape: sizing.Shape, where: Placement) -> tuple[Any, dict[str, Any]]:
        """One placement group per instance, its bundles pinned to the planned nodes.

        On one node (pattern A): a single bundle of all its GPUs, which the actor takes, so
        vLLM's mp executor inside it sees them (with num_gpus=0 Ray hides the GPUs). Across
        nodes (pattern B): a {GPU: 1, CPU: 1} bundle per vLLM worker, each on its stage's
        node; the actor sits in bundle 0 holding nothing and captures its children, so vLLM's
        Ray executor starts the workers in this group.
        """
        if not where.spans_nodes:
            bundles = [{"GPU": float(shape.gpus), "CPU": 1.0}]
            actor = {"num_gpus": shape.gpus, "num_cpus": 1}
        else:
            bundles = [{"GPU": 1.0, "CPU": 1.0}] * shape.gpus
            actor = {"num_gpus": 0, "num_cpus": 0}
        ids = bundle_node_ids(shape, where, self.inventory)
        selector = [{NODE_ID_LABEL_KEY: i} for i in ids] if all(ids) else None  # no ids: Ray chooses
        group = placement_group(bundles, strategy="STRICT_PACK" if not where.spans_nodes else "PACK",
                                bundle_label_selector=selector)
        strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0,
                                                    placement_group_capture_child_tasks=where.spans_nodes)
        return group, {**actor, "scheduling_strategy": strategy}

    def _advance(self, task: Any, rows: Sequence[Any]) -> None:
        tokens = self.progress.tasks[task].fields["tokens"] + sum(r.output_tokens for r in rows)
        self.progress.update(task, advance=len(rows), tokens=tokens)

    def _recount(self) -> None:
        """Rebuild the room accounting from the nodes Ray sees now."""
        self.inventory = inventory_from_ray(self.conf)
        self.capacity = Capacity(self.inventory)
        for live in self.alive.values():
            live.where = self.capacity.take(live.demand) or live.where

    def _stop(self, name: str) -> None:
        """Process exit is the only reliable way to free vLLM's memory."""
        live = self.alive.pop(name)
        ray.kill(live.actor)
        if live.group is not None:
            landed = placement_group_table(live.group).get("bundles_to_node_id", {})
            assert live.demand.shape is not None
            planned = bundle_node_ids(live.demand.shape, live.where, self.inventory)
            self.landings.append(Landing(name, planned, tuple(landed.get(i, "") for i in range(len(planned)))))
            remove_placement_group(live.group)
        self.capacity.give_back(live.where, live.demand)

    def _write(self, table: str, rows: Sequence[Any], **parts: str) -> None:
        """One file per batch of a model or judge: the file count follows the work, not the cells (a rerun
        still reuses or redoes each cell on its own: sweep.resume)."""
        if rows:
            name = f"part-{content_key(sorted(r.cell_key for r in rows))}.parquet"
            # Each cell is computed once per run (reconcile moved any older row aside): no other live file has it.
            self.store.write(table, rows, name, unique=True, run_id=self.plan.run_id, **parts)

    def _log(self, card: ModelCard, what: str, rows: Sequence[Any]) -> None:
        statuses: dict[str, int] = defaultdict(int)
        for r in rows:
            statuses[r.status] += 1
        tokens = sum(r.output_tokens for r in rows)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        console.log(f"{card.name}: {len(rows)} {what} ({counts}), {tokens} output tokens")


def failure(e: Exception) -> str:
    """A failed batch in one line. A task that raised is named by its own exception, not by Ray's
    wrapper (whose first line is only where it ran)."""
    if isinstance(e, ray.exceptions.RayActorError) and e.actor_init_failed:
        # The instance never started: Ray's first line says only where (with terminal colours); the
        # exception it raised (sweep/instance.py: one line) ends the traceback.
        return [line for line in str(e).splitlines() if line.strip()][-1].strip()[:600]
    cause = getattr(e, "cause", None)
    shown = cause if isinstance(cause, BaseException) else e
    first = (str(shown).splitlines() or [""])[0][:300]
    return f"{type(shown).__name__}: {first}"


def bundle_node_ids(shape: sizing.Shape, where: Placement, inventory: sizing.Inventory) -> tuple[str, ...]:
    """The Ray node of each bundle of an instance's placement group (see Executor._gpu_options)."""
    if not where.spans_nodes:
        return (inventory.nodes[where.nodes[0]].node_id,)
    return tuple(inventory.nodes[n].node_id for n in where.nodes for _ in range(shape.tp))


