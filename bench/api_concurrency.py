"""Throughput of the API engine against a local `vllm serve` as its concurrency grows.

One server (the packaged SmolLM2 on CPU vLLM, float32) for the whole session; the same batch
of requests (the hard suite's prompts, repeated, greedy, a fixed output budget) is sent through
``jobs.engines.openai.OpenAIEngine`` at each concurrency level. Ratio = throughput / throughput
at concurrency 1, measured in the same session.

    python -m bench.api_concurrency [--requests 64] [--max-tokens 32] [--levels 1,4,16,64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from bench.vllm_server import vllm_serve
from jobs.engines.base import EngineSettings, Request, SamplingParams
from jobs.engines.openai import OpenAIEngine
from sweep.core.prompts import answer_messages as build_messages
from jobs.models import local_weights
from sweep.core.config import Endpoint, ModelCard, register

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--requests", type=int, default=64)
    args.add_argument("--max-tokens", type=int, default=32)
    args.add_argument("--levels", default="1,4,16,64")
    opts = args.parse_args()
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=["model=smollm2", "evals=hard"]))
    prompts = [p.prompt for p in cfg.evals.prompts]
    sampling = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, presence_penalty=0.0,
                              max_tokens=opts.max_tokens, seed=0)
    requests = [Request(build_messages(None, prompts[i % len(prompts)]), sampling) for i in range(opts.requests)]
    settings = EngineSettings(weights="", dtype="float32", max_model_len=2048, kv_cache_bytes=0, enforce_eager=True,
                              tensor_parallel_size=1, gpu_memory_utilization=0.9, on_gpu=False, seed=0)
    weights = local_weights(cfg.model.cards["smollm2"], "float32")
    levels = [int(x) for x in opts.levels.split(",")]
    runs = []
    from tests.conftest import free_port

    with tempfile.TemporaryDirectory() as tmp, vllm_serve(weights, "smollm2", free_port(), Path(tmp) / "serve.log") as url:
        def engine(concurrency: int) -> OpenAIEngine:
            ep = Endpoint(base_url=url, model="smollm2", max_concurrency=concurrency, timeout_s=600)
            return OpenAIEngine(ModelCard(name="served", family="smollm2", engine="openai", endpoint=ep), settings)

        engine(4).complete(requests[:4])  # warm-up: first-request costs are not throughput
        for level in levels:
            started = time.monotonic()
            done = engine(level).complete(requests)
            wall = time.monotonic() - started
            errors = sum(c.finish_reason == "error" for c in done)
            tokens = sum(c.output_tokens for c in done)
            runs.append({"concurrency": level, "wall_s": round(wall, 2), "requests_per_s": round(len(done) / wall, 3),
                         "output_tokens": tokens, "output_tokens_per_s": round(tokens / wall, 1), "errors": errors,
                         "mean_latency_s": round(sum(c.latency_s for c in done) / len(done), 2)})
            print(json.dumps(runs[-1]), flush=True)
    base = runs[0]["output_tokens_per_s"] if runs and runs[0]["concurrency"] == 1 else None
    for r in runs:
        r["ratio_vs_1"] = round(r["output_tokens_per_s"] / base, 2) if base else None
    result = {
        "command": "python -m bench.api_concurrency " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(opts).items()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_at_end": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M"), "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"api-concurrency-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
