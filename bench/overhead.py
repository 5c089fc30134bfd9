"""The pipeline's own cost: `python -m sweep` end to end against plain vLLM doing the same work,
and what rerunning a finished sweep costs (resume).

Both sides run as fresh processes in the same session, on the same plan (cells, prompts,
sampling, seeds, engine settings): the baseline loads each model once with vLLM's `LLM` in
one process, answers, then judges with the same JSON schema, and writes nothing. The
pipeline adds Ray, actors, Parquet, DuckDB and the report. Ratio = pipeline / baseline.
Then the same sweep is run again on its warehouse: resume ratio = rerun / first run.

    python -m bench.overhead [hydra overrides...]          # default: the default sweep
    python -m bench.overhead evals=smoke sampling.max_tokens=64
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def baseline(overrides: list[str]) -> dict:
    """Plain vLLM, one process, every model loaded once and kept for judging."""
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_NUM_OF_RESERVED_CPU="0", HF_HUB_OFFLINE="1")
    started = time.monotonic()
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from sweep.core.prompts import judge_messages as build_messages, judge_schema as verdict_schema, render_plain
    from jobs.models import local_weights
    from sweep.core.config import PromptFormat, register
    from sweep.plan import plan
    from sweep import engine_args
    from sweep.schedule import Placement
    from sweep.sizing import GiB, Inventory, Node

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=overrides))
    p = plan(cfg, "baseline", Inventory((Node(os.cpu_count() or 1, 0, 64 * GiB),)))

    def params(s, schema=None):  # noqa: ANN001, ANN202
        return SamplingParams(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, min_p=s.min_p,
                              presence_penalty=s.presence_penalty, max_tokens=s.max_tokens, seed=s.seed,
                              structured_outputs=StructuredOutputsParams(json=schema) if schema else None)

    def ask(llm, card, messages, sampling):  # noqa: ANN001, ANN202
        if card.prompt_format is PromptFormat.plain:
            return llm.generate([render_plain(m) for m in messages], sampling, use_tqdm=False)
        convs = [[{"role": r, "content": t} for r, t in m] for m in messages]
        return llm.chat(convs, sampling, use_tqdm=False)

    llms, answers, tokens = {}, {}, 0
    for card in p.cards:
        # The figures the sweep's own engine starts with (sweep/engine_args.py), on CPU.
        s = engine_args.settings(card, None, Placement((0,)), cfg, p.context(card.name))
        llms[card.name] = LLM(model=local_weights(card, s.dtype), dtype=s.dtype, enforce_eager=s.enforce_eager,
                              max_model_len=s.max_model_len, seed=s.seed, kv_cache_memory_bytes=s.kv_cache_bytes,
                              distributed_executor_backend="uni")
        cells = [c for c in p.generate if c.model == card.name]
        outs = ask(llms[card.name], card, [c.messages for c in cells], [params(c.sampling) for c in cells])
        answers.update((c.key, o.outputs[0]) for c, o in zip(cells, outs))
        tokens += sum(len(o.outputs[0].token_ids) for o in outs)
    schema = verdict_schema(p.suite, cfg.judge.justification_max_chars)
    for card in p.cards:
        cells = [c for c in p.judge if c.judge == card.name and answers[c.answer_key].text.strip()]
        # A cut-off answer's judge is told so, as the sweep's is (sweep.core.prompts.CUT_OFF_NOTICE).
        msgs = [build_messages(p.suite, c.eval_id, answers[c.answer_key].text, c.label,
                               cfg.judge.justification_max_chars, answers[c.answer_key].finish_reason == "length")
                for c in cells]
        outs = ask(llms[card.name], card, msgs, [params(c.sampling, schema) for c in cells])
        tokens += sum(len(o.outputs[0].token_ids) for o in outs)
    return {"wall_s": time.monotonic() - started, "output_tokens": tokens, "cells": len(p.generate) + len(p.judge)}


def pipeline(overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as wh:
        command = [sys.executable, "-m", "sweep", *overrides, f"warehouse.root={wh}", "run.name=bench",
                   "run.progress=false"]
        started = time.monotonic()
        subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
        wall = time.monotonic() - started
        started = time.monotonic()
        subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
        rerun = time.monotonic() - started
        import duckdb

        con = duckdb.connect()
        q = "select sum(output_tokens), count(*) from read_parquet('{}/{}/**/*.parquet')"
        gen_tokens, gens = con.execute(q.format(wh, "generations")).fetchone()
        judge_tokens, judged = con.execute(q.format(wh, "judgments")).fetchone()
    return {"wall_s": wall, "rerun_wall_s": rerun, "output_tokens": int(gen_tokens + judge_tokens),
            "cells": gens + judged}


# Same work on both sides: no re-asks (the baseline doesn't re-ask), every non-empty answer judged (the default).
SAME_WORK = ["run.retry_truncated=0", "judge.retries=0"]


def main(overrides: list[str]) -> None:
    overrides = [*overrides, *SAME_WORK]
    base_run = subprocess.run([sys.executable, "-m", "bench.overhead", "--baseline", *overrides], cwd=ROOT,
                              capture_output=True, text=True, check=True)
    base = json.loads(base_run.stdout.strip().splitlines()[-1])
    pipe = pipeline(overrides)
    result = {
        "command": "python -m bench.overhead " + " ".join(overrides),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "baseline": base, "pipeline": pipe, "ratio": round(pipe["wall_s"] / base["wall_s"], 3),
        "resume_ratio": round(pipe["rerun_wall_s"] / pipe["wall_s"], 3),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--baseline"]:
        print(json.dumps(baseline(sys.argv[2:])))
    else:
        main(sys.argv[1:])
