"""One plan on both scheduling backends: the live run on a real multi-node Ray cluster (fake engine,
logical GPUs) and the forecast's simulated clock make the same decisions (sweep.scheduler's trace)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytest

from sweep.forecast import best_policy
from sweep.plan import plan
from sweep.ray_backend import inventory_from_ray
from sweep.run import run
from sweep.scheduler import Event, Phase, Started, Stopped, Submitted
from tests.conftest import exact_rows, fake_pool

pytestmark = pytest.mark.ray

Life = tuple[str, int]
"""An instance key and which of its starts (the 397B loads twice)."""


def decisions(trace: Sequence[Event]) -> tuple[list[tuple[str, tuple[int, ...]]], dict[Life, list[tuple]]]:
    """The load order (instance and nodes per start), and per instance life what it was given, in
    order: the phase and kind of each batch, whether it judged early, the cells it carried; then its stop.
    Lives of different instances run side by side; their interleaving is not a decision."""
    starts, lives, current, phase = [], {}, {}, ""
    for e in trace:
        if isinstance(e, Phase):
            phase = e.kind
        elif isinstance(e, Started):
            starts.append((e.instance, e.nodes))
            current[e.instance] = (e.instance, sum(s[0] == e.instance for s in starts))
            lives[current[e.instance]] = []
        elif isinstance(e, Submitted):
            lives[current[e.instance]].append((phase, e.kind, e.early, tuple(sorted(e.cells))))
        elif isinstance(e, Stopped):
            lives[current[e.instance]].append(("stopped",))
    return starts, lives


def test_the_live_run_makes_the_forecasts_decisions(ray_nodes, tmp_path: Path) -> None:  # noqa: ANN001
    """The 397B in BF16 takes both nodes' 16 GPUs (TP 8 x PP 2). The load order the forecast picks
    (widest_last: sweep.schedule) loads it once, last: the two small models answer first and stop, as
    it waits for their room; it answers and judges both of them in one residency; they load again to
    judge its answers. Qwen3-8B, done answering while the 9B still answers, first judges the 9B's first
    batch of answers (Policy.backfill: it ends before the 9B's projected end, which the 397B waits for
    anyway). Deterministic because nothing the loop decides here depends on how long a batch takes,
    except orderings that both backends share by a wide margin. The cost model has the 9B answer after
    Qwen3-8B (18.0 GB of weights read per step against 16.4 GB) but its first batch land before the 8B's
    second; the fake engines sleep 8 s (8B) and 12 s (9B) per batch of answers (SWEEP_FAKE_SLOW), so
    live the 9B's first batch lands 4 s before the 8B's second, and the 8B's early verdicts 8 s before
    the 9B's second batch; the live slack (the 9B's projected end: the cost model's load and answers
    from its start) is tens of seconds. The order in which independent batches end is not compared
    (``decisions``). No replicas: the smoke suite's work is worth no extra load. Batches of
    run.batch_cells=2: every answer job is two batches and every judging job of six verdicts three, on
    both backends alike."""
    cfg = fake_pool("model=[qwen3_5_397b_a17b,qwen3_8b,qwen3_5_9b]", "engine.concurrency=8",
                    f"warehouse.root={tmp_path}", "run.name=trace", "run.batch_cells=2")
    ray_nodes(workers=2, gpus=8, cpus=8, SWEEP_FAKE_SLOW="Qwen3-8B:8,Qwen3.5-9B:12")
    inventory = inventory_from_ray(cfg)
    _, forecast = best_policy(plan(cfg, "trace", inventory), cfg, inventory)
    result = run(cfg)
    assert exact_rows(result.store, "trace") == (9, 9, 18, 18)
    live, simulated = decisions(result.trace), decisions(forecast.trace)
    head = next(i for i, n in enumerate(inventory.nodes) if not n.gpus)
    both = tuple(i for i in range(3) if i != head)
    assert [name for name, _ in live[0]] == ["Qwen3.5-9B", "Qwen3-8B", "Qwen3.5-397B-A17B", "Qwen3.5-9B", "Qwen3-8B"]
    assert live[0][2][1] == both  # one pipeline stage on each GPU node
    assert live == simulated
    shape = {life: [(b[0], b[1], b[2], len(b[3])) if len(b) > 1 else b for b in batches]
             for life, batches in live[1].items()}
    answered = [("answers", "answers", False, 2), ("answers", "answers", False, 1), ("stopped",)]
    judged = [("judgments", "judgments", False, 2)] * 3 + [("stopped",)]
    backfilled = [*answered[:2], ("answers", "judgments", True, 2), ("stopped",)]  # 2 of the 9B's answers
    assert shape == {("Qwen3.5-9B", 1): answered, ("Qwen3-8B", 1): backfilled,
                     ("Qwen3.5-397B-A17B", 1): [*answered[:2], *judged],  # one residency: its answers, then 2 x 3
                     ("Qwen3.5-9B", 2): judged,  # the 397B's 3 and the 8B's 3
                     ("Qwen3-8B", 2): judged[1:]}  # the 397B's 3 and the 9B's last
