"""The scheduler against its lower bound: the runner's scheduling loop (sweep.scheduler) on the
simulated clock of sweep.forecast, for the study's 8 models on 8, 16 and 64 H100s.

Lower bound: sweep/bound.py (the reloads peer judging forces, and when the last answers can be judged,
besides GPU-work / GPUs and the longest model); "work bound" is the last two alone, one load per model,
the bound printed before. Ratio = makespan / lower bound (1.0 is optimal). The runner's policy
(largest first, answers and judging fused per model when room allows, data-parallel replicas on
idle GPUs, idle judges judging the answers that exist) is compared with itself without replicas,
without early judging, and with a naive one (pool order, every model reloaded to judge, neither)
on the same simulated cluster.
Throughputs are roofline estimates from active parameters and HBM bandwidth (sweep/cost.py);
nothing here runs a model.

    python -m bench.scheduler_sim [hydra overrides...]     # default: model=all evals=hard
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sweep import sizing
from sweep.core.config import SweepConfig, register
from sweep.forecast import best_policy, forecast, gpu_utilisation
from sweep.plan import plan
from sweep.schedule import Policy

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLUSTERS = {8: "h100_8", 16: "h100_2x8", 64: "h100_64"}
# One 8 x H100 node can't hold the 397B in BF16 (794 GB): every size runs it in FP8, as the vLLM recipe does.
STUDY = ["model=all", "evals=hard", "model.cards.qwen3_5_397b_a17b.dtype=fp8"]
# Each from the runner's choice (the best of the two load orders): the orders themselves, the
# runner without one of its features, and a naive policy.
POLICIES: dict[str, Callable[[Policy], Policy]] = {
    "largest": lambda best: replace(best, order="largest"),
    "cheap_last_loaded": lambda best: replace(best, order="cheap_last_loaded"),
    "runner without DP": lambda best: replace(best, replicas=False),
    "runner without early judging": lambda best: replace(best, early_judging=False),
    "naive": lambda best: Policy(order="pool", fuse=False, replicas=False, early_judging=False),
}


def config(*overrides: str) -> SweepConfig:
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def main(extra: list[str]) -> None:
    rows = []
    for gpus, cluster in CLUSTERS.items():
        cfg = config(*STUDY, f"cluster={cluster}", *extra)
        inventory = sizing.described(cfg.cluster)
        the_plan = plan(cfg, "sim", inventory)
        best, _ = best_policy(the_plan, cfg, inventory)
        for name, derive in POLICIES.items():
            policy = derive(best)
            started = time.perf_counter()
            f = forecast(the_plan, cfg, inventory, policy)
            rows.append({
                "gpus": gpus, "policy": name + (" (runner)" if policy == best else ""),
                "makespan_s": round(f.makespan_s, 1), "lower_bound_s": round(f.lower_bound_s, 1),
                "work_bound_s": round(f.bound.work_s, 1) if f.bound else None,
                "ratio": round(f.makespan_s / f.lower_bound_s, 3), "model_loads": f.loads, "models": len(the_plan.cards),
                "gpu_busy": round(gpu_utilisation(f) or 0.0, 3),
                "sim_ms": round(1000 * (time.perf_counter() - started), 1),
            })
    print(f"{'GPUs':>4} {'policy':<32} {'makespan':>9} {'work bound':>10} {'bound':>8} {'ratio':>6} {'loads':>5} "
          f"{'busy':>5}")
    for r in rows:
        print(f"{r['gpus']:>4} {r['policy']:<32} {r['makespan_s']:>8.0f}s {r['work_bound_s']:>9.0f}s "
              f"{r['lower_bound_s']:>7.0f}s "
              f"{r['ratio']:>6.2f} {r['model_loads']:>5} {r['gpu_busy']:>5.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scheduler-sim-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"overrides": STUDY + extra, "machine": platform.platform(), "rows": rows}, indent=1))
    print(f"raw: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
