"""Judge panels of K on planted truth: how well K judges per answer recover the true order, and what each costs.

15 peer models with known quality judge each other (never themselves) on 40 prompts; a judge's score is
quality[respondent] + leniency[judge] + prompt difficulty + a model-by-prompt strength + noise. Each
answer is judged by K of its 14 peers chosen by sweep.panel (the planner's design), by every peer
("full"), or, as a control, by the same K peers every time ("fixed": a design that balances nothing).
Reported per design: mean Kendall tau-b to the true order of the raw Avg Score and of the calibrated
(two-way) score, the 90% bootstrap intervals' coverage of the true quality (calibrated), and the
judgments the design costs. Nothing runs a model.

    python -m bench.panel_k [--panels N]        # default 100 panels per design
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from sweep import panel
from sweep.core.stats import ScoreCube, avg_score, calibrated_score, kendall_tau_b, whole
from warehouse.stats import panel_stats

MODELS = 15
PROMPTS = 40
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Trial:
    raw_tau: float
    calibrated_tau: float
    judgments: int
    coverage: Optional[float] = None
    """Share of models whose 90% calibrated interval holds the true quality (when intervals were asked)."""


def judged(k: Optional[int], design: str, seed: int, models: int = MODELS, prompts: int = PROMPTS) -> np.ndarray:
    """[prompt, judge, respondent] 1 where the judge scores that answer; k None = every peer."""
    names = [f"m{i:02d}" for i in range(models)]
    eligible = {r: [j for j in names if j != r] for r in names}
    if k is None:
        chosen = {(r, e): set(eligible[r]) for r in names for e in range(prompts)}
    elif design == "fixed":
        chosen = {(r, e): set(eligible[r][:k]) for r in names for e in range(prompts)}
    else:
        answers = [(r, e) for r in names for e in range(prompts)]
        chosen = panel.assign(answers, eligible, {n: "f" for n in names}, k, seed=seed)
    out = np.zeros((prompts, models, models))
    for (r, e), judges in chosen.items():
        for j in judges:
            out[e, names.index(j), names.index(r)] = 1.0
    return out


def trial(seed: int, k: Optional[int], design: str = "balanced", intervals: bool = False,
          models: int = MODELS, prompts: int = PROMPTS) -> Trial:
    rng = np.random.default_rng(seed)  # the same planted truth and noise for every design of a seed
    quality = 6.5 + rng.normal(0, 0.5, models)
    leniency = rng.normal(0, 0.7, models)
    scores = (quality + leniency[:, None] + rng.normal(0, 0.5, (prompts, 1, 1))
              + rng.normal(0, 0.3, (prompts, 1, models)) + rng.normal(0, 1.0, (prompts, models, models)))
    count = judged(k, design, seed, models, prompts)
    names = tuple(f"m{i:02d}" for i in range(models))
    cube = ScoreCube(tuple(f"e{i:02d}" for i in range(prompts)), names, names, scores * count, count)
    raw, calibrated = avg_score(cube, *whole(cube))[0], calibrated_score(cube, *whole(cube))[0]
    coverage = None
    if intervals:
        ranking = panel_stats(cube, replicates=200, seed=seed).rankings["calibrated"]
        coverage = float(np.mean((ranking.score_lo <= quality) & (quality <= ranking.score_hi)))
    return Trial(kendall_tau_b(raw, quality), kendall_tau_b(calibrated, quality), int(count.sum()), coverage)


DESIGNS: list[tuple[str, Optional[int], str]] = [
    ("K=2", 2, "balanced"), ("K=3", 3, "balanced"), ("K=5", 5, "balanced"), ("full (K=14)", None, "balanced"),
    ("K=3 fixed judges (control)", 3, "fixed"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", type=int, default=100)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for label, k, design in DESIGNS:
        trials = [trial(seed, k, design, intervals=True) for seed in range(args.panels)]
        rows.append({"design": label, "judgments": trials[0].judgments,
                     "raw_tau": float(np.mean([t.raw_tau for t in trials])),
                     "calibrated_tau": float(np.mean([t.calibrated_tau for t in trials])),
                     "calibrated_coverage": float(np.mean([t.coverage for t in trials]))})
        print(f"{label:28s} judgments {rows[-1]['judgments']:5d}  tau raw {rows[-1]['raw_tau']:.3f}  "
              f"calibrated {rows[-1]['calibrated_tau']:.3f}  90% coverage {rows[-1]['calibrated_coverage']:.3f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "panel_k.json").write_text(json.dumps({"panels": args.panels, "models": MODELS, "prompts": PROMPTS,
                                                      "rows": rows, "seconds": time.perf_counter() - started},
                                                     indent=1))


if __name__ == "__main__":
    main()
