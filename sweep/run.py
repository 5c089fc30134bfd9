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
from typing import Any, Callable, Iterator, Sequence

import ray
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobs.engines import EngineSettings
from jobs.models import check_weights
from sweep import provenance, sizing
from sweep.config import ModelCard, SweepConfig
from sweep.errors import SweepError
from sweep.instance import Instance
from sweep.plan import SweepPlan, content_key, plan, validate
from sweep.schedule import Capacity, Demand, demand
from warehouse.schema import GenerationRow, JudgmentRow, RunRow
from warehouse.store import Store

console = Console(stderr=True)

# In-process vLLM inside the actor (no EngineCore/worker subprocesses), all cores used,
# nothing fetched from a hub for local weights.
CPU_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1"}


@dataclass(frozen=True)
class RunResult:
    run_id: str
    store: Store
    model_loads: int
    wall_s: float


def to_config(cfg: DictConfig | SweepConfig) -> tuple[SweepConfig, str]:
    """The typed config and its resolved YAML (for provenance)."""
    if isinstance(cfg, SweepConfig):
        return cfg, OmegaConf.to_yaml(OmegaConf.structured(cfg))
    try:
        return OmegaConf.to_object(cfg), OmegaConf.to_yaml(cfg, resolve=True)  # type: ignore[return-value]
    except MissingMandatoryValue as e:
        raise SweepError(f"required key {e.full_key} is not set", f"set it: {e.full_key}=...") from None


def run(cfg: DictConfig | SweepConfig) -> RunResult:
    started = time.monotonic()
    conf, config_yaml = to_config(cfg)
    validate(conf)
    for card in conf.model.cards.values():
        check_weights(card)
    root = conf.warehouse.root
    if "://" not in root:
        root = str(Path(root).expanduser().resolve())
    store = Store(root, dict(conf.warehouse.storage_options))
    store.check_writable()
    run_id = conf.run.name or dt.datetime.now().strftime("%Y%m%d-%H%M%S")

    with ray_cluster(conf) as inventory:
        the_plan = plan(conf, run_id, inventory)
        console.print(
            f"sweep {run_id}: {len(the_plan.cards)} models x {len(the_plan.suite.prompts)} prompts "
            f"({the_plan.suite.name}) -> {len(the_plan.generate)} answers, {len(the_plan.judge)} judgments "
            f"on {inventory.describe()}"
        )
        run_row = RunRow(
            run_id=run_id, started_at=dt.datetime.now(dt.timezone.utc), finished_at=None, status="running",
            config_yaml=config_yaml, config_hash=provenance.config_hash(config_yaml),
            git_commit=provenance.git_commit(), packages=provenance.package_versions(),
            hardware=provenance.hardware(inventory), pool=[c.name for c in the_plan.cards],
            suite=the_plan.suite.name, generate_cells=len(the_plan.generate), judge_cells=len(the_plan.judge),
            model_loads=0, wall_s=None,
        )
        store.write("runs", [run_row], "run.parquet", run_id=run_id)
        executor = Executor(the_plan, conf, store, inventory)
        status = "failed"
        try:
            executor.execute()
            status = "finished"
        finally:
            wall = time.monotonic() - started
            end = dt.datetime.now(dt.timezone.utc)
            run_row = replace(run_row, finished_at=end, status=status, model_loads=executor.loads, wall_s=wall)
            store.write("runs", [run_row], "run.parquet", run_id=run_id)
    return RunResult(run_id, store, executor.loads, wall)


@contextmanager
def ray_cluster(conf: SweepConfig) -> Iterator[sizing.Inventory]:
    """Join the configured Ray cluster (or start a local one) and read its inventory."""
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=conf.cluster.address, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING", configure_logging=True)
    try:
        yield inventory_from_ray(conf)
    finally:
        if started_here:
            ray.shutdown()


def inventory_from_ray(conf: SweepConfig) -> sizing.Inventory:
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n["Resources"]
        gpus = int(res.get("GPU", 0))
        accel = next((k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")), None)
        gib = sizing.GPU_MEMORY_GIB.get(accel or "", conf.cluster.gpu_memory_gib) if gpus else 0
        nodes.append(sizing.Node(res.get("CPU", 0.0), gpus, int(res.get("memory", 0)), int(gib * sizing.GiB)))
    return sizing.Inventory(tuple(nodes))


@dataclass
class Live:
    actor: Any
    node: int
    demand: Demand


class Executor:
    """Runs a plan's cells on model-instance actors and writes each batch as it lands."""

    def __init__(self, the_plan: SweepPlan, conf: SweepConfig, store: Store, inventory: sizing.Inventory) -> None:
        self.plan, self.conf, self.store, self.inventory = the_plan, conf, store, inventory
        self.remote = ray.remote(Instance)
        self.capacity = Capacity(inventory)
        self.alive: dict[str, Live] = {}
        self.loads = 0
        self.answers: dict[str, GenerationRow] = {}
        self.task: Any = None  # the progress bar of the current phase
        self.progress = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"), console=console, disable=not conf.run.progress,
        )

    def execute(self) -> None:
        p = self.plan
        gen_cells = _group(p.generate, lambda c: c.model)
        judge_cells = _group(p.judge, lambda c: c.judge)
        pool_index = {c.name: i for i, c in enumerate(p.cards)}
        with self.progress:
            gen_task = self.progress.add_task("answers", total=len(p.generate), note="")
            judge_task = self.progress.add_task("judgments", total=len(p.judge), note="", start=False)
            self.task = gen_task

            def answer(live: Live, card: ModelCard) -> Any:
                return live.actor.generate.remote(pool_index[card.name], p.suite, gen_cells[card.name], p.run_id)

            def saved_answers(card: ModelCard, rows: list[GenerationRow]) -> None:
                self._write("generations", rows, model=card.name)
                self.answers.update((r.cell_key, r) for r in rows)
                self.progress.advance(gen_task, len(rows))
                self._log(card, "answers", rows)

            self._phase(list(p.cards), answer, saved_answers, keep_when_done=True)

            def judgment(live: Live, card: ModelCard) -> Any:
                cells = judge_cells.get(card.name, [])
                answers = {c.answer_key: self.answers[c.answer_key] for c in cells}
                return live.actor.judge.remote(p.suite, self.conf.judge, cells, answers, p.run_id)

            def saved_judgments(card: ModelCard, rows: list[JudgmentRow]) -> None:
                self._write("judgments", rows, judge=card.name)
                self.progress.advance(judge_task, len(rows))
                self._log(card, "judgments", rows)

            # Judges already loaded go first; the rest load as room frees up.
            self.progress.update(gen_task, note="")
            self.progress.start_task(judge_task)
            self.task = judge_task
            order = sorted(p.cards, key=lambda c: c.name not in self.alive)
            self._phase(order, judgment, saved_judgments, keep_when_done=False)

    def _phase(
        self, cards: list[ModelCard], submit: Callable[[Live, ModelCard], Any],
        collect: Callable[[ModelCard, Any], None], keep_when_done: bool,
    ) -> None:
        pending = list(cards)
        running: dict[Any, ModelCard] = {}
        busy: set[int] = set()  # CPU nodes computing a batch
        while pending or running:
            for card in pending:  # load in order while there is room
                if card.name not in self.alive and not self._start(card):
                    break
            for card in [c for c in pending if c.name in self.alive]:
                live = self.alive[card.name]
                # CPU instances on one node take turns: two vLLM-CPU engines computing at once
                # spin on the same cores and both run ~8x slower (measured here).
                if live.demand.gpus == 0 and live.node in busy:
                    continue
                if live.demand.gpus == 0:
                    busy.add(live.node)
                pending.remove(card)
                running[submit(live, card)] = card
            if not running:
                raise SweepError(f"{pending[0].name} does not fit in the free cluster", "use a larger cluster")
            done, _ = ray.wait(list(running), num_returns=1, timeout=self.conf.engine.timeout_s)
            if not done:
                names = ", ".join(c.name for c in running.values())
                raise SweepError(
                    f"no batch finished within engine.timeout_s={self.conf.engine.timeout_s:g} s (running: {names})",
                    "raise engine.timeout_s, or lower sampling.max_tokens",
                )
            card = running.pop(done[0])
            busy.discard(self.alive[card.name].node)
            collect(card, ray.get(done[0]))
            # Keep it for judging unless a model is waiting for its room.
            if not keep_when_done or any(c.name not in self.alive for c in pending):
                self._stop(card.name)

    def _start(self, card: ModelCard) -> bool:
        d = demand(card, self.conf, self.inventory)
        node = self.capacity.take(d)
        if node is None:
            return False
        on_gpu = d.gpus > 0
        settings = EngineSettings(
            weights="", dtype=sizing.run_dtype(card, on_gpu),
            max_model_len=min(self.conf.engine.max_model_len, card.context_length),
            kv_cache_bytes=int(self.conf.engine.kv_cache_gib * sizing.GiB), enforce_eager=self.conf.engine.enforce_eager,
            tensor_parallel_size=max(d.gpus, 1), gpu_memory_utilization=self.conf.engine.gpu_memory_utilization,
            on_gpu=on_gpu, seed=self.conf.run.seed,
        )
        if on_gpu:
            options: dict[str, Any] = {"num_gpus": d.gpus, "num_cpus": 1}
        else:
            threads = str(int(self.inventory.nodes[node].cpus) or os.cpu_count() or 1)
            # CPU instances share the cores (num_cpus=0); Ray still accounts their memory.
            options = {"num_cpus": 0, "memory": d.memory_bytes,
                       "runtime_env": {"env_vars": {**CPU_ENV, "OMP_NUM_THREADS": threads}}}
        self.progress.update(self.task, note=f"loading {card.name}")
        self.alive[card.name] = Live(self.remote.options(**options).remote(card, settings), node, d)
        self.loads += 1
        return True

    def _stop(self, name: str) -> None:
        """Process exit is the only reliable way to free vLLM's memory."""
        live = self.alive.pop(name)
        ray.kill(live.actor)
        self.capacity.give_back(live.node, live.demand)

    def _write(self, table: str, rows: Sequence[Any], **parts: str) -> None:
        """One file per (model or judge, eval): the unit a rerun can skip or redo."""
        for eval_id, group in _group(rows, lambda r: r.eval_id).items():
            name = f"part-{content_key(sorted(r.cell_key for r in group))}.parquet"
            self.store.write(table, group, name, run_id=self.plan.run_id, **parts, eval_id=eval_id)

    def _log(self, card: ModelCard, what: str, rows: Sequence[Any]) -> None:
        statuses: dict[str, int] = defaultdict(int)
        for r in rows:
            statuses[r.status] += 1
        tokens = sum(r.output_tokens for r in rows)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        console.log(f"{card.name}: {len(rows)} {what} ({counts}), {tokens} output tokens")


def _group(items: Sequence[Any], key: Callable[[Any], str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return dict(out)
