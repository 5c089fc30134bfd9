"""Which model instances can be loaded at once: resource accounting for the runner. Pure.

The runner asks ``take`` before it starts an instance and calls ``give_back`` after it
kills one, so it never asks Ray for more than the cluster has (a request Ray can't meet
would wait forever while finished instances hold the room).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sweep.config import ModelCard, SweepConfig
from sweep.sizing import GiB, Inventory, cpu_instance_bytes, gpus_needed


@dataclass(frozen=True)
class Demand:
    """What one instance of a card holds while loaded."""

    gpus: int
    memory_bytes: int
    """Host memory (CPU instances: weights + KV cache + runtime)."""
    endpoint: Optional[str] = None
    """An API card's base URL: it computes there and holds nothing here."""


def demand(card: ModelCard, cfg: SweepConfig, inventory: Inventory) -> Demand:
    if card.endpoint is not None and card.remote:
        return Demand(gpus=0, memory_bytes=0, endpoint=card.endpoint.base_url)
    if inventory.gpus:
        gpu_bytes = max(n.gpu_memory_bytes for n in inventory.nodes) or int(cfg.cluster.gpu_memory_gib * GiB)
        tp = cfg.engine.tensor_parallel_size or gpus_needed(
            card, gpu_bytes, cfg.engine.gpu_memory_utilization, cfg.engine.max_model_len
        )
        return Demand(gpus=tp, memory_bytes=0)
    memory = int(cfg.cluster.instance_memory_gib * GiB) or cpu_instance_bytes(card, cfg.engine.kv_cache_gib)
    return Demand(gpus=0, memory_bytes=memory)


class Capacity:
    """Free GPUs and memory per node; first fit."""

    def __init__(self, inventory: Inventory) -> None:
        self.free = [[n.gpus, n.memory_bytes] for n in inventory.nodes]

    def take(self, d: Demand) -> int | None:
        """Reserve room for ``d``; the node index, or None when no node has room."""
        for i, (gpus, memory) in enumerate(self.free):
            if gpus >= d.gpus and memory >= d.memory_bytes:
                self.free[i] = [gpus - d.gpus, memory - d.memory_bytes]
                return i
        return None

    def give_back(self, node: int, d: Demand) -> None:
        self.free[node][0] += d.gpus
        self.free[node][1] += d.memory_bytes
