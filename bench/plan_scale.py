"""Planning at scale: ``plan=true`` for 16 models x 5,000 prompts at K=3 on ``cluster=h100_64``.

Writes a synthetic 5,000-prompt JSONL and a 16-card model group (the study's 8 packaged Qwen cards and a
copy of each with its own name and system prompt) to a temp dir, then times, in this process, each stage
of what ``python -m sweep plan=true ...`` does: compose, suite load (suite_file), plan() (the time its content
keys take inside it, and panel.assign again on its own, on the same inputs), the forecast (best_policy: the
named load orders; the order search is not started at this size) and the table; and the command itself as
a subprocess, end to end (the issue's goal: its table in under 10 s). Driver peak memory: this process's and the subprocess's maximum RSS. Nothing runs a
model and Ray is not imported.

    python -m bench.plan_scale [--prompts N] [--models 16] [--k 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sweep import panel, plan as planner, suite_file
from sweep.core.config import SweepConfig, register
from sweep.forecast import best_policy, plan_table
from sweep.sizing import described

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
T = TypeVar("T")


def write_suite(path: Path, prompts: int) -> None:
    """Prompts of a few hundred bytes, each with a rubric; every text distinct."""
    with path.open("w") as f:
        for i in range(prompts):
            f.write(json.dumps({"id": f"q{i:05d}", "category": f"c{i % 7}",
                                "prompt": f"Question {i}: explain, step by step, why {i} squared is {i * i}. " * 3,
                                "rubric": f"States {i * i}; shows the multiplication; no errors."}) + "\n")


def write_pool(conf_dir: Path, models: int) -> None:
    """conf_dir/model/pool.yaml: the 8 packaged study cards, then copies of them up to ``models``."""
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cards = OmegaConf.to_container(compose(config_name="config", overrides=["model=all"]).model.cards)
    assert isinstance(cards, dict)
    out: dict[str, Any] = {}
    base = list(cards.items())
    for i in range(models):
        key, card = base[i % len(base)]
        if i >= len(base):
            card = copy.deepcopy(card)
            key, card["name"] = f"{key}_v{i // len(base)}", f"{card['name']}-v{i // len(base)}"
            card["system_prompt"] = f"You are variant {i // len(base)}."
        out[key] = card
    (conf_dir / "model").mkdir(parents=True, exist_ok=True)
    (conf_dir / "model" / "pool.yaml").write_text(OmegaConf.to_yaml({"cards": out}))


def timed(stages: dict[str, tuple[float, float]], name: str, fn: Callable[[], T]) -> T:
    """Wall and CPU seconds: on a shared machine the CPU time is the steadier figure."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    stages[name] = (round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3))
    return value


@contextlib.contextmanager
def keys_timed(into: list[float]) -> Iterator[None]:
    """Add the time spent making content keys during plan() to ``into``: sweep.plan's key functions
    (key_template's, or content_key itself in code before it) wrapped by a timer."""
    def timer(fn: Callable[..., str]) -> Callable[..., str]:
        def wrapped(*args: Any) -> str:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args)
            finally:
                into[0] += time.perf_counter() - wall
                into[1] += time.process_time() - cpu
        return wrapped

    saved = {name: getattr(planner, name) for name in ("content_key", "key_template") if hasattr(planner, name)}
    for name, fn in saved.items():
        setattr(planner, name, timer(fn) if name == "content_key" else lambda *a, _f=fn: timer(_f(*a)))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(planner, name, fn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="runs of the subprocess command (the best is kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, conf_dir = Path(tmp) / "prompts.jsonl", Path(tmp) / "conf"
        write_suite(path, args.prompts)
        write_pool(conf_dir, args.models)
        overrides = ["plan=true", "evals=file", f"evals.path={path}", f"judge.judges_per_answer={args.k}",
                     "cluster=h100_64", "model=pool", f"hydra.searchpath=[file://{conf_dir}]"]
        stages: dict[str, tuple[float, float]] = {}

        def composed() -> SweepConfig:
            with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
                return OmegaConf.to_object(compose(config_name="config", overrides=overrides))  # type: ignore

        cfg = timed(stages, "compose", composed)
        conf = timed(stages, "suite load", lambda: suite_file.resolve(cfg)[0])
        inventory = described(conf.cluster)
        keys = [0.0, 0.0]  # wall, CPU seconds inside the key functions during plan()
        with keys_timed(keys):
            the_plan = timed(stages, "plan()", lambda: planner.plan(conf, "bench", inventory))
        stages["  content keys (in plan)"] = (round(keys[0], 3), round(keys[1], 3))
        # Again on their own, on the plan's inputs: the design, and the keys of every answer and judgment.
        cards = the_plan.cards
        timed(stages, "  panel.assign", lambda: panel.assign(
            [(a.model, (a.eval_id, a.sample)) for a in the_plan.generate], planner.eligible_judges(conf.judge, cards),
            {c.name: c.family for c in cards}, conf.judge.judges_per_answer, conf.judge.min_other_families,
            conf.judge.seed))
        forecast = timed(stages, "forecast (best_policy)", lambda: best_policy(the_plan, conf, inventory)[1])
        timed(stages, "table", lambda: plan_table(the_plan, conf, forecast, inventory))
        in_process = tuple(round(sum(v[i] for k, v in stages.items() if not k.startswith(" ")), 3) for i in (0, 1))
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        walls, cpus = [], []
        for _ in range(args.repeat):
            started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run([sys.executable, "-m", "sweep", *overrides], capture_output=True, text=True,
                                 cwd=ROOT)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            walls.append(round(time.perf_counter() - started, 3))
            cpus.append(round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3))
            if out.returncode or "makespan" not in out.stdout:
                raise SystemExit(f"the command failed:\n{out.stderr[-3000:]}")
        child_mib = after.ru_maxrss / 1024
    cells = (len(the_plan.generate), len(the_plan.judge))
    print(f"{args.models} models x {args.prompts} prompts, K={args.k}: {cells[0]:,} answers, {cells[1]:,} judgments")
    print(f"  {'stage':<26} {'wall s':>8} {'CPU s':>8}")
    for name, (wall, cpu) in stages.items():
        print(f"  {name:<26} {wall:8.3f} {cpu:8.3f}")
    print(f"  {'in-process total':<26} {in_process[0]:8.3f} {in_process[1]:8.3f}   peak RSS {peak_mib:,.0f} MiB")
    best = min(range(len(walls)), key=walls.__getitem__)
    print(f"  {'python -m sweep plan=true':<26} {walls[best]:8.3f} {cpus[best]:8.3f}   peak RSS {child_mib:,.0f} MiB "
          f"(best of {len(walls)}; goal < 10 s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = RESULTS / f"plan-scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    result.write_text(json.dumps({"args": vars(args), "machine": platform.platform(), "answers": cells[0],
                                  "judgments": cells[1], "stages_wall_cpu_s": stages,
                                  "in_process_wall_cpu_s": in_process,
                                  "peak_rss_mib": round(peak_mib), "command_wall_s": walls, "command_cpu_s": cpus,
                                  "command_peak_rss_mib": round(child_mib)}, indent=1))
    print(f"raw: {result.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
