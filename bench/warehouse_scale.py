"""The warehouse at ten million judgments: a synthetic warehouse written through sweep's own write path
(Store.write, one file per batch, vouched unique, as the runner writes them), and the timings issue 13 sets goals for.

Shape (default): 10 runs x 10 models x 10,000 prompts x 1 sample, each model judged by the 9 others:
1,000,000 answers and 9,000,000 judgments, plus one run of 10 models x 1,112 prompts (100,080
judgments) for the report. A batch is 10,000 rows (a model's answers, or a judge's verdicts on
10,000 answers), as a large sweep's batches are.

    python -m bench.warehouse_scale generate ROOT            # ~10M rows
    python -m bench.warehouse_scale measure ROOT             # before compaction
    python -m warehouse --root ROOT compact                  # every run
    python -m bench.warehouse_scale measure ROOT --baseline  # after, with the plain GROUP BY baseline

    python -m bench.warehouse_scale generate ROOT --runs 0   # the public-data shape instead (PUBLIC)
    python -m bench.warehouse_scale measure ROOT --steps connect,rankings --baseline

Each figure is measured in a fresh process (its wall time, CPU time and peak RSS), so one does not warm the
next. ``--against CHECKOUT`` (e.g. ``git archive main | tar -x -C /tmp/base``) runs every step with that
checkout's code too, alternating, and prints main / this ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from sweep.core.rows import SCHEMAS, RunRow
from warehouse.store import Store

BATCH = 10_000
REPORT_RUN = "r100k"
WORDS = np.array("the answer is correct clear and complete but misses a step in the proof of it".split())


def _column(table: str, values: dict[str, object], n: int) -> pa.Table:
    """A table of the warehouse schema: the given columns, nulls for the optional rest."""
    schema = SCHEMAS[table]
    def col(f: pa.Field) -> pa.Array:
        value = values.get(f.name)
        return value if isinstance(value, pa.Array) else pa.nulls(n, f.type) if value is None else pa.array(value, f.type)
    return pa.table({f.name: col(f) for f in schema}, schema=schema)


def _text(rng: np.random.Generator, n: int, words: int) -> list[str]:
    picks = rng.integers(0, len(WORDS), size=(n, words))
    return [" ".join(row) for row in WORDS[picks]]


def write_run(store: Store, run_id: str, models: int, prompts: int, seed: int, batch: int = BATCH,
              samples: int = 1) -> int:
    """One run written as the runner writes it: per batch of prompts, one file of each model's answers and
    one of each judge's verdicts on each other model's answers (``samples`` answers per prompt)."""
    rng = np.random.default_rng(seed)
    names = [f"org/model-{i}" for i in range(models)]  # a '/' as hub names have
    quality = rng.normal(7, 1, models)
    leniency = rng.normal(0, 0.5, models)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = 0
    for lo in range(0, prompts, batch):
        prompt = np.arange(lo, min(lo + batch, prompts))
        ids = np.repeat(prompt, samples)  # a prompt's samples side by side
        draw = np.tile(np.arange(samples), len(prompt))
        n = len(ids)
        evals = [f"suite/p{i:05d}" for i in ids]
        keys = [f"{i}-{k}" for i, k in zip(ids, draw)]
        for m, model in enumerate(names):
            store.write("generations", _column("generations", {
                "run_id": [run_id] * n, "cell_key": [f"{run_id}-g{m}-{k}" for k in keys], "model": [model] * n,
                "family": [f"fam{m % 3}"] * n,
                "pool_index": [m] * n, "eval_id": evals, "category": [f"cat{i % 7}" for i in ids], "sample": draw,
                "prompt": _text(rng, n, 12), "answer": _text(rng, n, 40), "status": ["ok"] * n,
                "finish_reason": ["stop"] * n, "prompt_tokens": rng.integers(20, 200, n),
                "output_tokens": rng.integers(20, 500, n), "latency_s": rng.gamma(2, 1.5, n),
                "sampling": ['{"temperature": 0.7}'] * n, "engine": ["vllm"] * n, "attempts": [1] * n,
                "created_at": [now] * n,
            }, n), f"part-{lo}.parquet", unique=True, run_id=run_id, model=model)
            rows += n
        for j, judge in enumerate(names):
            for m, model in enumerate(names):
                if m == j:
                    continue
                score = np.clip(np.round(quality[m] + leniency[j] + rng.normal(0, 1, n), 1), 1, 10)
                ok = rng.random(n) > 0.02
                crit = np.clip(np.round(score), 1, 10).astype(int)
                store.write("judgments", _column("judgments", {
                    "run_id": [run_id] * n, "cell_key": [f"{run_id}-j{j}-{m}-{k}" for k in keys],
                    "answer_key": [f"{run_id}-g{m}-{k}" for k in keys], "judge": [judge] * n,
                    "judge_family": [f"fam{j % 3}"] * n, "respondent": [model] * n,
                    "respondent_family": [f"fam{m % 3}"] * n, "pool_index": [m] * n, "eval_id": evals,
                    "sample": draw, "label": [f"Response {chr(65 + m)}"] * n,
                    "criteria": [[("correctness", int(c)), ("clarity", int(c))] if k else None for c, k in zip(crit, ok)],
                    "score": pa.array(score, pa.float64(), mask=~ok), "scale_max": [10] * n,
                    "justification": _text(rng, n, 25), "status": np.where(ok, "ok", "invalid"),
                    "raw": _text(rng, n, 30), "finish_reason": ["stop"] * n,
                    "prompt_tokens": rng.integers(200, 900, n), "output_tokens": rng.integers(40, 120, n),
                    "latency_s": rng.gamma(2, 0.5, n), "attempts": [1] * n, "created_at": [now] * n,
                }, n), f"part-{lo}-{m}.parquet", unique=True, run_id=run_id, judge=judge)
                rows += n
    store.write("runs", [RunRow(
        run_id=run_id, started_at=now, finished_at=now, status="finished", config_yaml="synthetic: true",
        config_hash="0" * 64, git_commit=None, packages={}, hardware="{}", pool=names, suite="synthetic",
        generate_cells=models * prompts * samples, judge_cells=models * (models - 1) * prompts * samples,
        model_loads=models,
        reused_cells=0, instance_failures=0, wall_s=0.0)], "run.parquet", run_id=run_id)
    store.fold_run(run_id)  # as the runner does when a run ends
    return rows


def generate(root: str, runs: int, models: int, prompts: int) -> None:
    store = Store(root)
    started = time.monotonic()
    if runs == 0:
        return generate_public(store)
    for r in range(runs):
        rows = write_run(store, f"run{r:02d}", models, prompts, seed=r)
        print(f"run{r:02d}: {rows} rows, {time.monotonic() - started:.0f} s", flush=True)
    write_run(store, REPORT_RUN, models, 1112, seed=99)
    print(f"{REPORT_RUN}: done, {time.monotonic() - started:.0f} s", flush=True)


PUBLIC = dict(runs=21, models=5, prompts=11, samples=5)
"""The public peer-judging study's shape as issue 13 measured it (21 runs, ~25k judgments, ~5,700 files):
21 runs of 5 models x 11 prompts x 5 samples, one file per model and prompt (answers) and per (judge, model,
prompt) (verdicts): 23,100 judgments, 5,796 files.
"""


def generate_public(store: Store) -> None:
    for r in range(PUBLIC["runs"]):
        write_run(store, f"pub{r:02d}", PUBLIC["models"], PUBLIC["prompts"], seed=r, batch=1, samples=PUBLIC["samples"])


# What each measurement runs, in a fresh process; {root} and {run} are filled in. Queries run under a 3 GB
# DuckDB memory limit (spilling past it) so a measurement can't starve a shared machine. The clock restarts
# once the warehouse is open: opening is the connect figure, the others are the work after it.
LIMIT = ("con = connect(Store({root!r})); con.execute(\"set memory_limit = '3GB'\"); "
         "t, c = time.perf_counter(), cpu(); ")
STEPS = {
    "connect": "from warehouse.db import connect; from warehouse.store import Store; connect(Store({root!r}))",
    "rankings": "from warehouse.db import connect; from warehouse.store import Store; "
                + LIMIT + "con.sql('select * from rankings').fetchall()",
    "efficiency": "from warehouse.db import connect; from warehouse.store import Store; "
                  + LIMIT + "con.sql('select * from efficiency').fetchall()",
    "report": "import io; from rich.console import Console; from warehouse.db import connect; "
              "from warehouse.report import print_report; from warehouse.store import Store; s = Store({root!r}); "
              + LIMIT + "print_report(con, s, {run!r}, Console(file=io.StringIO(), width=160))",
    "page": "from pathlib import Path; from warehouse.db import connect; from warehouse.html import run_page; "
            "from warehouse.store import Store; " + LIMIT + "Path({out!r}).write_text(run_page(con, {run!r}))",
    # The baseline: the same per-(run, model, eval) means and per-(run, model) averages as rankings, as one
    # plain GROUP BY over one compacted copy of the judgments (no staging view, no exact rounding, no ranks).
    "group_by": "import duckdb; duckdb.sql(\"select run_id, respondent, avg(s) from (select run_id, respondent, "
                "eval_id, avg(score) as s from read_parquet({copy!r}) where status = 'ok' and score > 0 "
                "group by all) group by all\").fetchall()",
}


def measure(step: str, checkout: str | None = None, **fill: str) -> tuple[float, float, float]:
    """Wall seconds of the step (imports excluded), its CPU seconds (all threads: on a shared machine the
    figure the load doesn't inflate) and the process's peak RSS in GiB; ``checkout``: one whose warehouse
    code runs the step instead of this one (the baseline)."""
    code = ("import time, resource, json; cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2]); "
            "t, c = time.perf_counter(), cpu(); " + STEPS[step].format(**fill) +
            "; print(json.dumps([time.perf_counter() - t, cpu() - c, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))")
    # Imports first so the clock starts after them: the same import line, run before the timed part.
    warm = "import duckdb, pyarrow, numpy, rich; import warehouse.db, warehouse.report, warehouse.html; "
    env = {**os.environ, "PYTHONPATH": checkout or str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", warm + code], capture_output=True, text=True, check=True, env=env)
    seconds, cpu, rss_kib = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds, cpu, rss_kib / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("root")
    g.add_argument("--runs", type=int, default=10, help="0: the public-data shape (PUBLIC) instead")
    g.add_argument("--models", type=int, default=10)
    g.add_argument("--prompts", type=int, default=10_000)
    m = sub.add_parser("measure")
    m.add_argument("root")
    m.add_argument("--baseline", action="store_true", help="also the plain GROUP BY over one compacted copy")
    m.add_argument("--steps", default="connect,rankings,efficiency,report,page", help="comma-separated")
    m.add_argument("--against", metavar="CHECKOUT", help="also run each step with the warehouse code of this "
                   "checkout (e.g. an export of main), alternating with this one, and print the ratio")
    m.add_argument("--repeat", type=int, default=1, help="run each step this many times (fresh processes, "
                   "alternating with the baseline); the fastest counts, as the load of a shared machine only adds")
    args = p.parse_args()
    if args.cmd == "generate":
        generate(args.root, args.runs, args.models, args.prompts)
        return
    root = str(Path(args.root).resolve())
    files = sum(1 for _ in Path(root).glob("[gjcr]*/**/*.parquet"))
    print(f"{root}: {files} live-folder Parquet files")
    page = str(Path(root).parent / "bench-page.html")
    sizes: dict[str, float] = {}
    best: dict[tuple[str, str], tuple[float, float, float, str]] = {}
    steps = [*args.steps.split(","), *(["group_by"] if args.baseline else [])]
    codes = {"new": None, **({"base": str(Path(args.against).resolve())} if args.against else {})}
    for _ in range(args.repeat):
        for step in steps:
            for name, checkout in codes.items():
                if step == "group_by" and name == "base":
                    continue  # plain DuckDB: no warehouse code
                got = measure(step, checkout, root=root, run=REPORT_RUN, out=page,
                              copy=f"{root}/judgments/**/*.parquet")
                if (step, name) not in best or got[0] < best[step, name][0]:
                    best[step, name] = (*got, _load())
                if step == "page":
                    sizes[name] = Path(page).stat().st_size / 1e6
    for (step, name), (seconds, cpu, peak, load) in best.items():
        extra = f", page {sizes[name]:.2f} MB" if step == "page" else ""
        note = "  (plain DuckDB over the judgment files)" if step == "group_by" else ""
        ratio = ""
        if name == "new" and (step, "base") in best:
            base = best[step, "base"]
            ratio = f"  base/new: wall {base[0] / seconds:.1f}x, cpu {base[1] / cpu:.1f}x"
        print(f"{step:10s} {name:4s} {seconds:7.2f} s  cpu {cpu:7.2f} s  peak {peak:5.2f} GiB{extra}  load {load}"
              f"{note}{ratio}", flush=True)


def _load() -> str:
    """The 1-minute load average: what else the machine ran meanwhile."""
    return Path("/proc/loadavg").read_text().split()[0]


if __name__ == "__main__":
    main()
