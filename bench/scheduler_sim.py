"""The scheduler against its lower bound: the runner's scheduling loop (sweep.scheduler) on the
simulated clock of sweep.forecast, for the study's 8 models on 8, 16 and 64 H100s and 8 H200s, with 1
and 8 samples.

Lower bound: sweep/bound.py (the reloads peer judging forces, and when the last answers can be judged,
besides GPU-work / GPUs and the longest model). Ratio = makespan / lower bound (1.0 is optimal).
Rows, same session and cost model:
- old runner: the better of the two load orders the runner had before issue 15 (largest,
  cheap_last_loaded);
- runner: ``best_policy`` today (the named ORDERS, then a capped local search over explicit orders);
- the runner's search with features that are off by default (sweep.schedule.Policy): judge_ready
  (the scheduling loop runs it live and simulated alike, not yet measured live) and warm_reloads
  (modelled only), and read_ahead (run.read_ahead: built, not run on GPUs here); their bound is recomputed
  under the same assumptions (warm reloads make a reload cheaper, read-ahead any load, so the bound drops too);
  and late_load (the last model waiting for room may load later while its answers still end before the
  others', so backfill judges longer: off by default);
- naive: pool order, every model reloaded to judge, no replicas, no early judging.
Throughputs and load times are roofline estimates (sweep/cost.py); nothing here runs a model.

    python -m bench.scheduler_sim [hydra overrides...]     # default: model=all evals=hard, 397B in FP8
"""

from __future__ import annotations

import itertools
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sweep import sizing
from sweep.core.cells import SweepPlan
from sweep.core.config import SweepConfig, register
from sweep.forecast import Forecast, best_policy, forecast, gpu_utilisation
from sweep.plan import plan
from sweep.schedule import Policy
from sweep.sizing import Inventory

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLUSTERS = ("h100_8", "h100_2x8", "h100_64", "h200_8")
SAMPLES = (1, 8)
# One 8 x H100 node can't hold the 397B in BF16 (794 GB): every size runs it in FP8, as the vLLM recipe does.
STUDY = ["model=all", "evals=hard", "model.cards.qwen3_5_397b_a17b.dtype=fp8"]
# Issue 15's acceptance plan: every card with an official FP8 checkpoint runs it.
STUDIES = {"397B FP8": STUDY, "prefer_fp8": ["model=all", "evals=hard", "engine.prefer_fp8=true"]}
OLD_ORDERS = ("largest", "cheap_last_loaded")
Run = Callable[[SweepPlan, SweepConfig, Inventory], tuple[Policy, Forecast]]


def old_runner(the_plan: SweepPlan, cfg: SweepConfig, inventory: Inventory) -> tuple[Policy, Forecast]:
    runs = [(p, forecast(the_plan, cfg, inventory, p))
            for p in (Policy(order=o, replicas=cfg.run.replicas, early_judging=cfg.run.early_judging)
                      for o in OLD_ORDERS)]
    return min(runs, key=lambda r: (round(r[1].makespan_s), r[1].loads))


def searched(**modelled: bool) -> Run:
    def run(the_plan: SweepPlan, cfg: SweepConfig, inventory: Inventory) -> tuple[Policy, Forecast]:
        base = Policy(replicas=cfg.run.replicas, early_judging=cfg.run.early_judging, **modelled)
        return best_policy(the_plan, cfg, inventory, base)
    return run


def naive(the_plan: SweepPlan, cfg: SweepConfig, inventory: Inventory) -> tuple[Policy, Forecast]:
    policy = Policy(order="pool", fuse=False, replicas=False, early_judging=False)
    return policy, forecast(the_plan, cfg, inventory, policy)


POLICIES: dict[str, Run] = {
    "old runner": old_runner,
    "runner": searched(),
    "+ judge_ready (modelled)": searched(judge_ready=True),
    "+ warm reloads (modelled)": searched(warm_reloads=True),
    "+ both (modelled)": searched(judge_ready=True, warm_reloads=True),
    "+ read-ahead (modelled)": searched(read_ahead=True),
    "+ late_load": searched(late_load=True),
    "naive": naive,
}


def config(*overrides: str) -> SweepConfig:
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def gpu_hours(f: Forecast) -> float:
    return sum((s.end - s.start) * s.demand.gpus for s in f.spans) / 3600


def main(extra: list[str]) -> None:
    rows = []
    for (study, overrides), cluster, samples in itertools.product(STUDIES.items(), CLUSTERS, SAMPLES):
        cfg = config(*overrides, f"cluster={cluster}", f"run.samples={samples}", *extra)
        inventory = sizing.described(cfg.cluster)
        the_plan = plan(cfg, "sim", inventory)
        old: Optional[float] = None
        for name, run in POLICIES.items():
            started, cpu = time.perf_counter(), time.process_time()
            policy, f = run(the_plan, cfg, inventory)
            took, cpu = time.perf_counter() - started, time.process_time() - cpu
            old = old or f.makespan_s
            rows.append({
                "study": study, "cluster": cluster, "gpus": inventory.gpus, "samples": samples, "policy": name,
                "order": policy.order, "sequence": list(policy.sequence),
                "makespan_s": round(f.makespan_s, 1), "lower_bound_s": round(f.lower_bound_s, 1),
                "ratio": round(f.makespan_s / f.lower_bound_s, 3), "vs_old": round(f.makespan_s / old, 3),
                "model_loads": f.loads, "gpu_hours": round(gpu_hours(f), 2),
                "gpu_busy": round(gpu_utilisation(f) or 0.0, 3), "policy_ms": round(1000 * took, 1),
                "policy_cpu_ms": round(1000 * cpu, 1),
            })
    print(f"{'study':<10} {'cluster':<9} {'samples':>7} {'policy':<26} {'order':<24} {'makespan':>9} {'bound':>7} "
          f"{'ratio':>6} {'vs old':>6} {'loads':>5} {'GPU-h':>6} {'CPU ms':>6}")
    for r in rows:
        print(f"{r['study']:<10} {r['cluster']:<9} {r['samples']:>7} {r['policy']:<26} {r['order']:<24} "
              f"{r['makespan_s']:>8.0f}s {r['lower_bound_s']:>6.0f}s {r['ratio']:>6.3f} {r['vs_old']:>6.3f} "
              f"{r['model_loads']:>5} {r['gpu_hours']:>6.2f} {r['policy_cpu_ms']:>6.0f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scheduler-sim-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"studies": STUDIES, "overrides": extra, "machine": platform.platform(), "rows": rows},
                              indent=1))
    print(f"raw: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
