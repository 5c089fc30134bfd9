"""The scheduling loop's live backend (sweep.scheduler.Backend): one Ray actor per model instance.

Each GPU instance gets its own placement group, its bundles pinned to the planned nodes; CPU
instances are pinned to their node; API clients hold nothing. A batch is an actor call with a
deadline (``engine.timeout_s``, counted from when the batch before it on its instance ended: an
instance holds up to sweep.scheduler.PIPELINE batches and runs them in turn): an actor or node lost, an exception in the engine or a missed
deadline comes back as ``Lost``, and the loop decides what follows. Read-ahead (Policy.read_ahead) is a
task pinned to each node a waiting model may load on, reading its weight files into the page cache.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence, Union

import ray
from ray.util.placement_group import (NODE_ID_LABEL_KEY, placement_group, placement_group_table,
                                      remove_placement_group)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from jobs.models import read_through, weight_files
from sweep import engine_args, sizing
from sweep.core.cells import SweepPlan
from sweep.core.config import ModelCard, SweepConfig
from sweep.instance import Instance
from sweep.queue import CellQueue
from sweep.schedule import Demand, Placement
from sweep.scheduler import ANSWERS, Batch, Done, Lost

# In-process vLLM inside the actor (no EngineCore/worker subprocesses), all cores used,
# nothing fetched from a hub for local weights.
CPU_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1"}


@dataclass(frozen=True)
class Landing:
    """Where one GPU instance's placement group was planned and where Ray put it (node ids per bundle)."""

    model: str
    planned: tuple[str, ...]
    landed: tuple[str, ...]


@dataclass(frozen=True)
class ReadAhead:
    """One node's read-ahead of a model's weights (Policy.read_ahead): where it was asked for, where it ran."""

    model: str
    planned: str
    landed: str
    bytes_read: int
    seconds: float


@ray.remote(num_cpus=0)  # waits on storage, not the CPU: it must not queue behind the instances' CPUs
def read_weights(card: ModelCard, dtype: str, repo: Optional[str],
                 revision: Optional[str]) -> tuple[str, int, float, str]:
    """On the node it is pinned to: read ``card``'s weight files into the page cache. Its node, bytes, seconds,
    and why it failed (""): it never raises, since the instance that waits for it must start regardless."""
    started = time.monotonic()
    node = ray.get_runtime_context().get_node_id()
    try:
        return node, read_through(weight_files(card, dtype, repo, revision)), time.monotonic() - started, ""
    except OSError as e:
        return node, 0, time.monotonic() - started, f"{type(e).__name__}: {e}"


@dataclass(frozen=True)
class Actor:
    handle: Any
    group: Any = None
    """The instance's placement group (GPU instances), removed when it stops."""
    planned: tuple[str, ...] = ()
    """The Ray node of each of its bundles, as requested."""
    reads: tuple[tuple[Any, str, str], ...] = ()
    """The read-aheads it waited for: ref, model, node."""


@dataclass
class Call:
    batch: Batch
    ref: Any
    deadline: float
    """Infinite while a batch before it on its instance runs."""


class RayBackend:
    """Instances as Ray actors; ``log`` gets one line per load."""

    def __init__(self, the_plan: SweepPlan, conf: SweepConfig, inventory: sizing.Inventory, queue: CellQueue,
                 log: Callable[[str], None]) -> None:
        self.plan, self.conf, self.queue, self.log = the_plan, conf, queue, log
        self._inventory = inventory
        self.remote = ray.remote(Instance)
        self.actors: dict[str, Actor] = {}
        self.calls: list[Call] = []
        self.started = 0
        """Instances started (their actor names count them)."""
        self.landings: list[Landing] = []
        self.reading: dict[Any, tuple[str, str]] = {}
        """Read-aheads in flight: their model and node, by object ref."""
        self.read_aheads: list[ReadAhead] = []
        self.pool_index = {c.name: i for i, c in enumerate(the_plan.cards)}
        self.prompts = {item.id: item for item in the_plan.suite.prompts}

    def start(self, card: ModelCard, key: str, d: Demand, where: Placement) -> None:
        key_env = card.endpoint.api_key_env if card.endpoint else None
        ctx = self.plan.engine_context(card.name)
        settings = engine_args.settings(card, d.shape, where, self.conf, ctx,
                                        os.environ.get(key_env) if key_env else None)
        shared = self.plan.engine(card.name)  # ``card`` hosts it; every card of it runs there
        serves = f" for {shared.name}" if len(shared.cards) > 1 else ""
        self.log(f"{key}: loading {engine_args.describe(settings, ctx)}{serves}")
        group, planned, nodes = None, (), tuple(self._inventory.nodes[n].node_id for n in where.nodes)
        if d.endpoint:  # an API client: waits on the network, holds nothing
            options: dict[str, Any] = {"num_cpus": 0}
        elif d.shape is not None:
            planned = bundle_node_ids(d.shape, where, self._inventory)
            group, options = self._gpu_options(d.shape, where, planned)
        else:
            options = self._cpu_options(d, where)
        self.started += 1
        name = f"sweep/{self.plan.run_id}/{card.name}/{self.started}"
        cards = [self.plan.card(n) for n in shared.cards]
        # Its read-aheads in flight on its nodes: Ray starts it when they end, as the forecast has it (sweep.cost).
        reads = tuple((ref, m, n) for ref, (m, n) in self.reading.items() if m == card.name and n in nodes)
        for ref, _, _ in reads:
            del self.reading[ref]
        handle = self.remote.options(name=name, **options).remote(cards, settings, *(ref for ref, _, _ in reads))
        self.actors[key] = Actor(handle, group, planned, reads)

    def _cpu_options(self, d: Demand, where: Placement) -> dict[str, Any]:
        """CPU instances share the cores (num_cpus=0); Ray still accounts their memory."""
        node = self._inventory.nodes[where.nodes[0]]
        threads = str(int(node.cpus) or os.cpu_count() or 1)
        options = {"num_cpus": 0, "memory": d.memory_bytes,
                   "runtime_env": {"env_vars": {**CPU_ENV, "OMP_NUM_THREADS": threads}}}
        if node.node_id:  # where the room was counted, so turn-taking per node holds
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        return options

    def _gpu_options(self, shape: sizing.Shape, where: Placement, ids: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
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
        selector = [{NODE_ID_LABEL_KEY: i} for i in ids] if all(ids) else None  # no ids: Ray chooses
        group = placement_group(bundles, strategy="STRICT_PACK" if not where.spans_nodes else "PACK",
                                bundle_label_selector=selector)
        strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0,
                                                    placement_group_capture_child_tasks=where.spans_nodes)
        return group, {**actor, "scheduling_strategy": strategy}

    def read_ahead(self, card: ModelCard, d: Demand, nodes: tuple[int, ...]) -> None:
        """A task per node reads the weight files the load will read (jobs.models.weight_files): the node's
        Hub cache, the card's folder or its converted GGUF; what the node lacks it doesn't fetch."""
        dtype = sizing.run_dtype(card, d.shape is not None)
        repo, revision = engine_args.checkpoint(card, dtype)
        for n in nodes:
            node = self._inventory.nodes[n].node_id
            if (card.name, node) in self.reading.values():
                continue
            pinned = NodeAffinitySchedulingStrategy(node, soft=False)
            self.reading[read_weights.options(scheduling_strategy=pinned).remote(card, dtype, repo, revision)] = (
                card.name, node)

    def _read(self, reads: Sequence[tuple[Any, str, str]]) -> None:
        """Log those of ``reads`` that have finished (the rest are dropped: nothing waits for them)."""
        done, _ = ray.wait([ref for ref, _, _ in reads], num_returns=len(reads), timeout=0) if reads else ([], [])
        for ref, model, node in reads:
            if ref not in done:
                continue
            landed, read, took, error = ray.get(ref)
            if error:
                self.log(f"{model}: reading its weights ahead on node {node[:8]} failed ({error}); it loads cold")
                continue
            self.read_aheads.append(ReadAhead(model, node, landed, read, took))
            self.log(f"{model}: read {read / 1e9:.2f} GB of weights ahead on node {node[:8]} in {took:.1f} s" if read
                     else f"{model}: no weight files on node {node[:8]} to read ahead (not in its Hub cache yet)")

    def submit(self, batch: Batch) -> None:
        actor = self.actors[batch.instance].handle
        cells, pairs = batch.carried()
        p = self.plan
        # Only what the batch needs: its prompts of the suite, and (judging) the answers it reads.
        suite = replace(p.suite, prompts=[self.prompts[i] for i in dict.fromkeys(c.eval_id for c in (*cells, *pairs))])
        if batch.job.kind == ANSWERS:
            ref = actor.generate.remote(self.pool_index, suite, cells, p.run_id, self.conf.run.retry_truncated)
        else:
            ref = actor.judge.remote(suite, self.conf.judge, cells, self.queue.answers_for(cells, pairs), p.run_id,
                                     pairs)
        queued = any(c.batch.instance == batch.instance for c in self.calls)
        self.calls.append(Call(batch, ref, math.inf if queued else time.monotonic() + self.conf.engine.timeout_s))

    def _done(self, call: Call) -> None:
        """``call`` is over: the next batch on its instance starts now, and its deadline with it."""
        self.calls.remove(call)
        after = next((c for c in self.calls if c.batch.instance == call.batch.instance), None)
        if after is not None:
            after.deadline = time.monotonic() + self.conf.engine.timeout_s

    def wait(self) -> Union[Done, Lost]:
        timeout = max(0.0, min(c.deadline for c in self.calls) - time.monotonic())
        done, _ = ray.wait([c.ref for c in self.calls], num_returns=1, timeout=timeout)
        if not done:
            call = min(self.calls, key=lambda c: c.deadline)
            self._done(call)
            return Lost(call.batch, f"no result within engine.timeout_s={self.conf.engine.timeout_s:g} s (hung engine)")
        call = next(c for c in self.calls if c.ref == done[0])
        self._done(call)
        try:
            rows = ray.get(call.ref)
        except (ray.exceptions.RayError, ray.exceptions.RayTaskError) as e:
            return Lost(call.batch, failure(e))
        answers = {r.cell_key: r for r in rows} if call.batch.job.kind == ANSWERS else {}
        return Done(call.batch, rows, answers)

    def stop(self, key: str) -> None:
        """Process exit is the only reliable way to free vLLM's memory."""
        actor = self.actors.pop(key)
        self.calls = [c for c in self.calls if c.batch.instance != key]
        self._read(actor.reads)
        ray.kill(actor.handle)
        if actor.group is not None:
            landed = placement_group_table(actor.group).get("bundles_to_node_id", {})
            self.landings.append(Landing(key, actor.planned, tuple(landed.get(i, "") for i in range(len(actor.planned)))))
            remove_placement_group(actor.group)

    def close(self) -> None:
        """Stop every instance, and cancel the read-aheads no instance waited for: the run needs them no
        more, and a read of a large checkpoint would keep its node's storage busy after the run."""
        for key in list(self.actors):
            self.stop(key)
        for ref in self.reading:
            ray.cancel(ref, force=True)  # force: a task blocked in a read only stops with its worker
        self.reading.clear()

    def inventory(self) -> sizing.Inventory:
        self._inventory = inventory_from_ray(self.conf)
        return self._inventory

    def now(self) -> float:
        return time.monotonic()


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
    """The Ray node of each bundle of an instance's placement group (see RayBackend._gpu_options)."""
    if not where.spans_nodes:
        return (inventory.nodes[where.nodes[0]].node_id,)
    return tuple(inventory.nodes[n].node_id for n in where.nodes for _ in range(shape.tp))
