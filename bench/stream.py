"""A streaming driver at scale: 16 models x 5,000 prompts at K=3 (80,000 answers, 240,000 judgments) on the
fake engine, on a simulated 4-node Ray cluster with logical GPUs (``ray.cluster_utils.Cluster``), the
warehouse on local disk in a temp dir.

The cards are copies of the packaged Qwen3-8B and Qwen3.5-9B cards (one GPU each), each with its own name
and family, on the fake engine; 4 nodes of 4 logical H100s hold all 16 at once, so no model reloads and no
replicas start: what is measured is the driver. The fake engine sleeps ``--cell-s`` per request of a batch
(SWEEP_FAKE_CELL_S): its time grows with the batch as a throughput-bound engine's does. "Engine time" is
what the fake engine alone takes for the batches the run gave each instance (the trace's batches x
``--cell-s``), its maximum over instances: a lower bound on any driver's wall time for those batches
(it ignores that judging waits for answers).

Recorded: wall time of ``sweep.run.run`` (planning and the forecast included), the driver's CPU seconds
(this process: planning, forecast, loop, Parquet writes, Ray's client side) per cell, its peak RSS
(ru_maxrss), the Parquet files written, and the time to open the warehouse and rank the run (a fresh
``warehouse.db.connect`` and the ``rankings`` view). ``--profile`` also writes the driver's cProfile
(top functions by own time) beside the result.

    python -m bench.stream [--prompts 5000] [--models 16] [--k 3] [--cell-s 0.005] [--batch-cells N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.plan_scale import write_suite
from sweep.core.config import SweepConfig, register

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
NODES, GPUS_PER_NODE = 4, 4


def write_pool(conf_dir: Path, models: int) -> None:
    """conf_dir/model/pool.yaml: ``models`` one-GPU cards (Qwen3-8B and Qwen3.5-9B in turn) on the fake engine."""
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cards = OmegaConf.to_container(compose(config_name="config", overrides=["model=all"]).model.cards)
    assert isinstance(cards, dict)
    base = [cards["qwen3_8b"], cards["qwen3_5_9b"]]
    out: dict[str, Any] = {}
    for i in range(models):
        card = dict(base[i % 2])
        name = f"fake{i:02d}-{card['name']}"
        out[f"fake{i:02d}"] = {**card, "name": name, "family": f"family{i:02d}", "engine": "fake", "gguf": None,
                               "hf_repo": f"fake/{name}", "path": None}
    (conf_dir / "model").mkdir(parents=True, exist_ok=True)
    (conf_dir / "model" / "pool.yaml").write_text(OmegaConf.to_yaml({"cards": out}))


def composed(overrides: list[str]) -> SweepConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=overrides))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--cell-s", type=float, default=0.005, help="the fake engine's seconds per request")
    parser.add_argument("--batch-cells", type=int, default=None, help="run.batch_cells (default: the config's)")
    parser.add_argument("--profile", action="store_true", help="cProfile the driver")
    parser.add_argument("--label", default="", help="a name for the result file (e.g. main, branch)")
    args = parser.parse_args()
    os.environ["SWEEP_FAKE_CELL_S"] = str(args.cell_s)  # before the nodes start: their workers inherit it

    import ray
    from ray.cluster_utils import Cluster

    from sweep.run import run
    from warehouse.db import connect
    from warehouse.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        path, conf_dir, wh = Path(tmp) / "prompts.jsonl", Path(tmp) / "conf", Path(tmp) / "wh"
        write_suite(path, args.prompts)
        write_pool(conf_dir, args.models)
        overrides = ["evals=file", f"evals.path={path}", f"judge.judges_per_answer={args.k}", "model=pool",
                     f"hydra.searchpath=[file://{conf_dir}]", f"warehouse.root={wh}", "run.name=stream"]
        if args.batch_cells:
            overrides.append(f"run.batch_cells={args.batch_cells}")
        cfg = composed(overrides)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "memory": 1 << 28})
        for _ in range(NODES):
            cluster.add_node(num_cpus=2 * GPUS_PER_NODE, num_gpus=GPUS_PER_NODE, memory=8 << 30,
                             resources={"accelerator_type:H100": 1})
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        cluster.wait_for_nodes()
        try:
            profile = cProfile.Profile() if args.profile else None
            wall, cpu = time.perf_counter(), time.process_time()
            if profile:
                profile.enable()
            result = run(cfg)
            if profile:
                profile.disable()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        finally:
            ray.shutdown()
            cluster.shutdown()
        opened = time.perf_counter()
        con = connect(Store(str(wh)))
        ranked = con.execute("select model, rank from rankings where run_id = 'stream'").fetchall()
        open_rank_s = time.perf_counter() - opened
        counts = [con.execute(f"select count(*), count(distinct cell_key) from raw_{t}").fetchone()
                  for t in ("generations", "judgments")]
        files = sum(1 for p in wh.rglob("*.parquet") if "superseded" not in p.parts)
    per_instance: dict[str, int] = defaultdict(int)
    batches: dict[str, int] = defaultdict(int)
    for e in result.trace:
        if type(e).__name__ == "Submitted":
            per_instance[e.instance] += len(e.cells)
            batches[e.kind] += 1
    engine_s = max(per_instance.values()) * args.cell_s
    cells = counts[0][0] + counts[1][0]
    out = {
        "args": vars(args), "machine": f"{platform.platform()}, {os.cpu_count()} cores",
        "answers": counts[0], "judgments": counts[1], "ranked_models": len(ranked), "wall_s": round(wall, 1),
        "driver_cpu_s": round(cpu, 1), "driver_cpu_ms_per_cell": round(1000 * cpu / cells, 3),
        "driver_peak_rss_mib": round(peak_mib), "files": files, "open_and_rank_s": round(open_rank_s, 2),
        "batches": dict(batches), "engine_s": round(engine_s, 1), "wall_over_engine": round(wall / engine_s, 2),
        "model_loads": result.model_loads,
    }
    print(json.dumps(out, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"stream-{args.label or 'run'}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=1))
    if profile:
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(40)
        stem.with_suffix(".prof.txt").write_text(text.getvalue())
        print(f"profile: {stem.with_suffix('.prof.txt')}")


if __name__ == "__main__":
    main()
