"""The driver of one sweep: config -> plan (cells) -> queue + scheduling loop on Ray -> rows -> report.

Checks the config before anything loads, joins (or starts) Ray, plans, takes the load order whose
forecast ends first, and runs the scheduling loop (sweep.scheduler) on Ray actors (sweep.ray_backend),
the same loop the forecast runs on a simulated clock. Here the loop's results become warehouse rows,
progress and log lines.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import ray
from omegaconf import DictConfig, OmegaConf
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from jobs import compare as comparing
from jobs.generate import failed as generate_failed
from jobs.judge import failed as judge_failed
from jobs.judge import rows as judge_rows
from jobs.models import check_weights
from sweep import local_ray, provenance, sizing, suite_file
from sweep.checks import typed
from sweep.core.cells import CompareCell, JudgeCell, SweepPlan, content_key
from sweep.core.config import ModelCard, SweepConfig
from sweep.core.rows import ComparisonRow, JudgmentRow, RunRow
from sweep.endpoints import check_endpoints
from sweep.forecast import best_policy, plan_table
from sweep.plan import candidates, next_round, plan, validate
from sweep.queue import CellQueue, group
from sweep.ray_backend import Landing, RayBackend, ReadAhead, inventory_from_ray
from sweep.resume import Reuse, reconcile
from sweep.schedule import Policy
from sweep.scheduler import ANSWERS, JUDGMENTS, Batch, Event, Failed, Phase, Scheduler, Split, Started, Submitted
from warehouse.db import connect, store_aggregate
from warehouse.formats import console as wide_console
from warehouse.stats import load_cube
from warehouse.store import Store

console = wide_console(stderr=True)  # piped to a file: 160 columns, as the report's tables, not rich's 80


class TokensPerSecond(ProgressColumn):
    """Output tokens per second of the stage so far (batches land a model at a time)."""

    def render(self, task: Task) -> Text:
        rate = task.fields.get("tokens", 0) / task.elapsed if task.elapsed else 0.0
        return Text(f"{rate:,.0f} tok/s")


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
    trace: tuple[Event, ...] = ()
    """Every decision of the scheduling loop (sweep.scheduler), as the forecast's trace lists them."""
    read_aheads: tuple[ReadAhead, ...] = ()
    """The weight files nodes read ahead (run.read_ahead) that finished before the run did."""


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
        later = candidates(conf, the_plan)
        reuse = reusable(store, the_plan, conf.run.resume, conf.judge.retries, later)
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
        executors = [Executor(the_plan, conf, store, inventory, reuse, policy)]
        status = "failed"
        try:
            executors[0].execute()
            the_plan = judge_rounds(the_plan, conf, store, inventory, policy, later, executors)
            status = "finished"
        finally:
            wall = time.monotonic() - started
            end = dt.datetime.now(dt.timezone.utc)
            run_row = replace(run_row, finished_at=end, status=status, model_loads=sum(e.loads for e in executors),
                              instance_failures=sum(e.failures for e in executors), wall_s=wall,
                              judge_cells=len(the_plan.judge))
            store.write("runs", [run_row], "run.parquet", run_id=run_id)
            store.fold_run(run_id)  # one commit per table for the run, so opening the warehouse stays quick
            if status == "finished":  # its sums, which the rankings read instead of its judgments (until a resume)
                store_aggregate(store, run_id)
    loads = run_row.model_loads
    console.print(f"sweep {run_id}: {loads} model loads for {len(the_plan.cards)} models")
    return RunResult(run_id, store, loads, wall, tuple(x for e in executors for x in e.backend.landings),
                     tuple(x for e in executors for x in e.starts), tuple(x for e in executors for x in e.loop.trace),
                     tuple(x for e in executors for x in e.backend.read_aheads))


def judge_rounds(the_plan: SweepPlan, conf: SweepConfig, store: Store, inventory: sizing.Inventory, policy: Policy,
                 later: frozenset[str], executors: list[Executor]) -> SweepPlan:
    """judge.adaptive: after round 1, each further round's judgments (sweep.adaptive's rule over the valid scores
    of the rounds so far) run as one more scheduling loop over the landed answers, appended to ``executors``.
    Returns the plan with every round's cells. Each round is planned from the warehouse, so a rerun plans the
    same rounds and reuses every cell it finished."""
    if not conf.judge.adaptive:
        return the_plan
    for round_ in range(1, conf.judge.rounds):
        with connect(store) as con:  # a round's views: the next round's must see this one's verdicts
            cube = load_cube(con, the_plan.run_id, {c.key for c in the_plan.judge})
        cells = next_round(conf, the_plan, cube, round_)
        if not cells:
            console.print(f"adaptive judging: done after round {round_} ({len(the_plan.judge)} judgments)")
            break
        the_plan = replace(the_plan, judge=the_plan.judge + cells)
        console.print(f"adaptive judging, round {round_ + 1}: {len(cells)} more judgments where neighbours' rank "
                      f"intervals overlap ({len(the_plan.judge)} of judge.budget={conf.judge.budget})")
        # Always resumed: the rounds before are this run's (run.resume=false redid them in round 1).
        reuse = reusable(store, the_plan, True, conf.judge.retries, later)
        executors.append(Executor(the_plan, conf, store, inventory, reuse, policy))
        executors[-1].execute()
    return the_plan


def reusable(store: Store, the_plan: SweepPlan, resume: bool, judge_retries: int,
             later: frozenset[str] = frozenset()) -> Reuse:
    """Cells of this run already in the warehouse; stale and unreadable files are set aside (but those holding
    only cells ``later`` adaptive rounds may ask for)."""
    generations, bad = store.read("generations", the_plan.run_id)
    judgments, bad_judgments = store.read("judgments", the_plan.run_id)
    comparisons, bad_comparisons = store.read("comparisons", the_plan.run_id)
    bad += bad_judgments + bad_comparisons
    # run.resume=false computes every cell again: the old files go to superseded/ like any replaced file.
    found = (reconcile(the_plan, generations, judgments, comparisons, judge_retries, later) if resume
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


class Executor:
    """The driver's side of the scheduling loop (sweep.scheduler) on Ray actors (sweep.ray_backend):
    writes each batch's rows to the warehouse as it lands, shows progress and logs what the loop does.

    Faults: an instance that dies (actor or node lost), raises, or misses its deadline is
    killed and replaced, and its batch resubmitted, ``run.retries`` times; after that its
    cells are written as errors. Finished batches are already in the warehouse, so nothing
    done is redone.
    """

    def __init__(self, the_plan: SweepPlan, conf: SweepConfig, store: Store, inventory: sizing.Inventory,
                 reuse: Reuse, policy: Policy = Policy()) -> None:
        self.plan, self.conf, self.store, self.reuse = the_plan, conf, store, reuse
        self.queue = CellQueue(the_plan, conf.judge, reuse.answers, reuse.judged, reuse.compared)
        self.backend = RayBackend(the_plan, conf, inventory, self.queue, console.log)
        self.loop = Scheduler(the_plan, conf, inventory, policy, self.backend, self.queue, self)
        self.pool_index = {c.name: i for i, c in enumerate(the_plan.cards)}
        self.cards = {c.name: c for c in the_plan.cards}
        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), TokensPerSecond(), TextColumn("{task.fields[note]}"),
            console=console, disable=not conf.run.progress,
        )
        p = the_plan
        self.answers = self.progress.add_task("answers", total=len(p.generate), note="", tokens=0,
                                              completed=len(reuse.answers))
        self.judgments = self.progress.add_task("judgments", total=len(p.judge), note="", tokens=0, start=False,
                                                completed=len(reuse.judged))
        # Pairwise verdicts count apart: "judgments 36/36" read as 36 judgments when half were verdicts.
        self.pairwise = self.progress.add_task("pairwise", total=len(p.compare), note="", tokens=0, start=False,
                                               completed=len(reuse.compared), visible=bool(p.compare))
        self.task = self.answers  # the progress bar of the current phase

    def execute(self) -> None:
        with self.progress:
            try:
                self.loop.run()
            finally:  # a driver that fails mid-run (a write refused, an interrupt) frees its GPUs at once
                self.backend.close()

    @property
    def loads(self) -> int:
        return self.loop.loads

    @property
    def failures(self) -> int:
        return self.loop.failures

    @property
    def starts(self) -> list[str]:
        """Instances in the order they started."""
        return [e.instance for e in self.loop.trace if isinstance(e, Started)]

    def event(self, e: Event) -> None:
        if isinstance(e, Started):
            self.progress.update(self.task, note=f"loading {e.model}")
        elif isinstance(e, Phase) and e.kind == JUDGMENTS:
            self.progress.update(self.answers, note="")
            self._judging_started()
            self.task = self.judgments
        elif isinstance(e, Submitted) and e.early:
            self._judging_started()
        elif isinstance(e, Split):
            console.log(f"{e.model}: {e.instances - 1} data-parallel replica(s) on idle GPUs share its batch")
        elif isinstance(e, Failed):
            console.log(f"{e.model}: " + {
                "early": f"instance failed while judging early ({e.error}); its cells wait for the judging phase",
                "retry": f"instance failed ({e.error}); restarting ({e.tries}/{self.conf.run.retries})",
                "gave up": f"instance failed {e.tries} times ({e.error}); its cells are recorded as errors"}[e.then])

    def _judging_started(self) -> None:
        self.progress.start_task(self.judgments)
        self.progress.start_task(self.pairwise)

    def landed(self, batch: Batch, rows: Sequence[Any]) -> None:
        """A batch of an engine its cards may share: each card's rows are written and logged as its own."""
        if batch.job.kind == JUDGMENTS:
            for judge, own in group(rows, lambda r: r.judge).items():
                self._saved_judgments(self.cards[judge], own)
            return
        for model, own in group(rows, lambda r: r.model).items():
            self._write("generations", own, model=model)
            self._advance(self.answers, own)
            self._log(self.cards[model], "answers", own)

    def unseen(self, judge: str, cells: Sequence[JudgeCell], pairs: Sequence[CompareCell]) -> None:
        """Verdicts on answers judges don't see (empty, failed, or cut off) need no model."""
        p, q = self.plan, self.queue
        rows: list[JudgmentRow | ComparisonRow] = []
        if cells:
            rows += judge_rows(self.cards, p.suite, cells, q.answers_for(cells), p.run_id, {})
        if pairs:
            rows += comparing.rows(self.cards, pairs, q.answers, p.run_id, {})
        self._saved_judgments(self.cards[judge], rows)

    def _saved_judgments(self, card: ModelCard, rows: Sequence[Any]) -> None:
        self._write("judgments", [r for r in rows if isinstance(r, JudgmentRow)], judge=card.name)
        self._write("comparisons", [r for r in rows if isinstance(r, ComparisonRow)], judge=card.name)
        self._advance(self.judgments, [r for r in rows if isinstance(r, JudgmentRow)])
        self._advance(self.pairwise, [r for r in rows if isinstance(r, ComparisonRow)])
        self._log(card, "judgments", rows)

    def error_rows(self, batch: Batch, error: str, attempts: int) -> list[Any]:
        """Each cell's error row names its own card (an engine may serve several)."""
        p = self.plan
        cells, pairs = batch.carried()
        if batch.job.kind == ANSWERS:
            return generate_failed(self.cards, self.pool_index, p.suite, cells, p.run_id, error, attempts)
        return [*judge_failed(self.cards, p.suite, cells, self.queue.answers_for(cells), p.run_id, error, attempts),
                *comparing.failed(self.cards, pairs, self.queue.answers_for((), pairs), p.run_id, error, attempts)]

    def _advance(self, task: Any, rows: Sequence[Any]) -> None:
        tokens = self.progress.tasks[task].fields["tokens"] + sum(r.output_tokens for r in rows)
        self.progress.update(task, advance=len(rows), tokens=tokens)

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

