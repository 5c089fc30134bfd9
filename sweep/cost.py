"""The cost model: how long one instance takes to load and to compute a batch of cells. Pure.

The policy (sweep.schedule) orders loads and sizes replicas by these numbers in the live run
and in the simulation (sweep.forecast) alike.

Times are estimates from a roofline, not measurements: decoding reads the weights a batch
touches once per step from HBM (memory-bound); prefill is compute-bound. Token counts per
cell are assumptions (below), since answer lengths are only known after the run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from operator import itemgetter
from typing import Iterable

from sweep.core.cells import SweepPlan, prefill_estimate
from sweep.core.config import Mode, ModelCard, SweepConfig
from sweep.schedule import Demand, Placement, demand
from sweep.sizing import BYTES_PER_PARAM, Inventory, params_total, run_dtype, weight_bytes

# Per GPU: HBM bandwidth (GB/s) and dense BF16 tensor throughput (TFLOP/s), vendor datasheets.
GPU_SPECS = {"H100": (3350, 989), "H200": (4800, 989), "B200": (8000, 2250), "A100": (2039, 312),
             "A100-80G": (2039, 312), "A100-40G": (1555, 312), "L40S": (864, 362), "L4": (300, 121)}
DEFAULT_GPU = "H100"
BANDWIDTH_EFFICIENCY = 0.6  # share of peak HBM bandwidth a decode step achieves
COMPUTE_EFFICIENCY = 0.4  # share of peak FLOPs prefill achieves
TP_EFFICIENCY = 0.85  # per doubling of TP: all-reduce costs (PP adds bubbles; same factor per stage)
# A CPU instance (vLLM-CPU, float32, 2 cores): ~23 output tokens/s for SmolLM2-135M, measured here
# (BENCHMARKS.md: 13,842 tokens in 611 s, 3 models in turn); scaled by active parameters.
CPU_TOKENS_PER_S_AT_135M = 23.0
# An API request streams at about this rate (typical of hosted providers); the endpoint serves
# max_concurrency requests at once.
API_TOKENS_PER_S_PER_REQUEST = 50.0
# Loading: weights from local NVMe or page cache at this rate per node, plus engine start-up.
LOAD_GB_PER_S = 2.0
LOAD_FIXED_S = 30.0
# Reloading (Policy.warm_reloads, off by default): a node that has read a model's weights keeps them
# in its page cache while its memory allows, and reads them back at host-memory speed (an assumption,
# not measured here; the engine start-up still counts). The cache gets this share of a node's memory:
# the rest is the engines', Ray's object store's and the OS's.
RELOAD_GB_PER_S = 10.0
PAGE_CACHE_SHARE = 0.5
# Assumed tokens per cell (answers are as long as they turn out; these are typical, capped by max_tokens).
ANSWER_TOKENS = {Mode.non_thinking: 1200, Mode.thinking: 6000}
VERDICT_TOKENS = 150  # a JSON verdict with a <=300-character justification
JUDGE_PROMPT_TOKENS = 600  # brief, rubric, criteria, around the answer


@dataclass(frozen=True)
class Work:
    """Tokens one model computes in one phase."""

    prefill: int
    decode: int
    sequences: int

    def __add__(self, other: Work) -> Work:
        return Work(self.prefill + other.prefill, self.decode + other.decode, self.sequences + other.sequences)


def total(works: Iterable[Work]) -> Work:
    return sum(works, Work(0, 0, 0))


def work(the_plan: SweepPlan) -> tuple[dict[str, Work], dict[str, Work]]:
    """Answers and judging per model, in tokens, from the plan's sizes and panel counts."""
    gen, judging = work_by_respondent(the_plan)
    return gen, {j: total(by.values()) for j, by in judging.items()}


def work_by_respondent(the_plan: SweepPlan) -> tuple[dict[str, Work], dict[str, dict[str, Work]]]:
    """Answers per engine, and judging per judging engine and answering engine, in tokens, from the plan's
    sizes and panel counts (sweep.plan sums them once; no cell is walked). An engine is named by its host
    card (SweepPlan.hosts): cards sharing one add up, as their cells go to it in one batch."""
    answer_len, judged = _per_answer(the_plan)
    host = the_plan.hosts()
    gen: dict[str, Work] = defaultdict(lambda: Work(0, 0, 0))
    for s in the_plan.sizes:
        if s.answers:
            gen[host[s.model]] += Work(s.prefill_tokens, s.answers * answer_len[s.model], s.answers)
    judging: dict[str, dict[str, Work]] = defaultdict(lambda: defaultdict(lambda: Work(0, 0, 0)))
    for load in the_plan.loads:
        n, (prefill, decode) = load.judgments, judged[load.judge, load.respondent]
        judging[host[load.judge]][host[load.respondent]] += Work(n * prefill, n * decode, n)
    return dict(gen), {j: dict(by) for j, by in judging.items()}


def _per_answer(the_plan: SweepPlan) -> tuple[dict[str, int], dict[tuple[str, str], tuple[int, int]]]:
    """The tokens of one answer per card, and of one judgment per (judge, respondent): every answer of a
    card has the card's budget, every verdict of a judge its own (the plan's sizes and panel counts)."""
    modes = {c.name: c.mode for c in the_plan.cards}
    answer_len = {s.model: min(s.budget, ANSWER_TOKENS[modes[s.model]]) for s in the_plan.sizes}
    judged = {(load.judge, load.respondent): (JUDGE_PROMPT_TOKENS + answer_len[load.respondent],
                                               min(load.verdict_budget, VERDICT_TOKENS)) for load in the_plan.loads}
    return answer_len, judged


CellWork = dict[str, tuple[int, int]]
"""Prefill and decode tokens of each answer and judgment cell, by key (one sequence each)."""


def cell_work(the_plan: SweepPlan) -> CellWork:
    """Tokens of each answer and judgment cell (pairwise verdicts are not counted): the figures of
    ``work_by_respondent`` per cell, each answer with its own prompt."""
    answer_len, judged = _per_answer(the_plan)
    prefill: dict[tuple[tuple[str, str], ...], int] = {}  # per prompt: cards and samples share prompts
    out: CellWork = {}
    for c in the_plan.generate:
        if c.messages not in prefill:
            prefill[c.messages] = prefill_estimate(c.messages)
        out[c.key] = (prefill[c.messages], answer_len[c.model])
    out.update((j.key, judged[j.judge, j.respondent]) for j in the_plan.judge)
    return out


def work_of(per: CellWork, keys: Iterable[str]) -> Work:
    """The tokens of the cells with these keys (a forecast sums every batch of the plan: kept to C loops)."""
    cells = list(map(per.__getitem__, keys))
    return Work(sum(map(itemgetter(0), cells)), sum(map(itemgetter(1), cells)), len(cells))


def seconds(card: ModelCard, d: Demand, w: Work, inventory: Inventory, batch: int) -> float:
    """Time one instance of ``card`` needs for ``w``."""
    if d.endpoint:
        assert card.endpoint is not None
        waves = math.ceil(w.sequences / card.endpoint.max_concurrency)
        return waves * (w.decode / max(w.sequences, 1)) / API_TOKENS_PER_S_PER_REQUEST
    if d.shape is None:
        rate = CPU_TOKENS_PER_S_AT_135M * 0.135 / card.params_active_b
        return (w.decode + w.prefill / 20) / rate  # prefill ~20x faster than decode on CPU
    kind = next((n.gpu_type for n in inventory.gpu_nodes if n.gpu_type in GPU_SPECS), DEFAULT_GPU)
    bandwidth, flops = GPU_SPECS[kind]
    scale = d.shape.gpus * TP_EFFICIENCY ** math.log2(d.shape.gpus)
    per_param = BYTES_PER_PARAM[run_dtype(card, True)]
    arch = card.architecture
    touched = 1.0
    if arch.num_experts:
        # Experts a decode step's batch routes to, per layer: the rest of the weights stay unread. The
        # batch is the sequences decoding together, at most ``batch`` (11 answers: 11, not 64).
        running = min(batch, max(w.sequences, 1))
        touched = 1 - (1 - arch.experts_per_token / arch.num_experts) ** running
    active = card.params_active_b * 1e9
    read = (active + (params_total(card) - active) * touched) * per_param
    step = read / (bandwidth * 1e9 * BANDWIDTH_EFFICIENCY * scale)
    steps = math.ceil(w.sequences / batch) * (w.decode / max(w.sequences, 1))
    prefill = 2 * active * w.prefill / (flops * 1e12 * COMPUTE_EFFICIENCY * scale)
    return steps * step + prefill


def load_seconds(card: ModelCard, d: Demand) -> float:
    """Start-up plus reading the weights; pipeline stages sit on separate nodes and read in parallel."""
    if d.endpoint:
        return 0.0
    nodes = d.shape.pp if d.shape else 1
    gb = weight_bytes(card, run_dtype(card, d.shape is not None)) / 1e9
    return LOAD_FIXED_S + gb / (LOAD_GB_PER_S * nodes)


def reload_seconds(card: ModelCard, d: Demand) -> float:
    """Start-up plus reading the weights back from host memory (page cache)."""
    if d.endpoint:
        return 0.0
    nodes = d.shape.pp if d.shape else 1
    return LOAD_FIXED_S + weight_bytes(card, run_dtype(card, d.shape is not None)) / 1e9 / (RELOAD_GB_PER_S * nodes)


class PageCache:
    """The weights each node has read, kept up to PAGE_CACHE_SHARE of its memory (the least
    recently read are dropped first): a load finds them there or reads them from storage.

    Read-ahead (Policy.read_ahead): a node reads a model's weight files before it loads, while its GPUs
    compute, one model at a time at LOAD_GB_PER_S (a node's storage reads one file set at a time; a load
    reading its own files meanwhile is not slowed: storage contention is not modelled)."""

    def __init__(self, inventory: Inventory) -> None:
        self.room = [int(n.memory_bytes * PAGE_CACHE_SHARE) for n in inventory.nodes]
        self.held: list[dict[str, int]] = [{} for _ in inventory.nodes]  # in the order read
        self.ready: list[dict[str, float]] = [{} for _ in inventory.nodes]
        """When a model's files are all in a node's cache (a read-ahead may still be reading them)."""
        self.storage_free = [0.0] * len(inventory.nodes)
        """When each node's storage has read what it was asked to read ahead."""

    def load_seconds(self, card: ModelCard, d: Demand, where: Placement, now: float = 0.0) -> float:
        """How long loading ``card`` on ``where`` at ``now`` takes; the nodes hold its stages' weights afterwards.
        Warm where every node holds them, after the rest of a read-ahead still reading them."""
        if d.endpoint:
            return 0.0
        warm = all(card.name in self.held[n] for n in where.nodes)
        warm_at = max(self.ready[n][card.name] for n in where.nodes) if warm else now
        stage = weight_bytes(card, run_dtype(card, d.shape is not None)) // len(where.nodes)
        for n in set(where.nodes):
            self._hold(n, card.name, stage * where.nodes.count(n), now)
        # A load waits for a read-ahead still reading its files (the live instance starts when it ends).
        return max(warm_at - now, 0.0) + reload_seconds(card, d) if warm else load_seconds(card, d)

    def read_ahead(self, card: ModelCard, d: Demand, node: int, now: float) -> None:
        """Node ``node`` reads all of ``card``'s weight files after what it reads ahead already (a
        pipeline stage may land there: which one is known only when it loads)."""
        if d.endpoint:
            return
        if card.name in self.held[node]:  # read before: now the most recently read
            self._hold(node, card.name, self.held[node][card.name], self.ready[node][card.name])
            return
        size = weight_bytes(card, run_dtype(card, d.shape is not None))
        start = max(now, self.storage_free[node])
        self.storage_free[node] = start + size / 1e9 / LOAD_GB_PER_S
        self._hold(node, card.name, size, self.storage_free[node])

    def _hold(self, node: int, name: str, size: int, ready: float) -> None:
        """``name``'s files are (or will be at ``ready``) the most recently read on ``node``."""
        held = self.held[node]
        held.pop(name, None)
        held[name] = size
        self.ready[node][name] = ready
        while sum(held.values()) > self.room[node]:
            del self.ready[node][next(iter(held))]
            del held[next(iter(held))]


def work_seconds(the_plan: SweepPlan, conf: SweepConfig, inventory: Inventory) -> tuple[dict[str, float], ...]:
    """Estimated seconds of answers and of judging per model, at each model's shape: what the
    load order sorts on, in the runner as in the simulation."""
    demands = {c.name: demand(c, conf, inventory) for c in the_plan.cards}
    return tuple({n: seconds(the_plan.card(n), demands[n], w, inventory, conf.engine.concurrency)
                  for n, w in phase.items()} for phase in work(the_plan))


