"""Judge panels of K on planted truth: how well K judges per answer recover the true order, and what each costs.

15 peer models with known quality judge each other (never themselves) on 40 prompts; a judge's score is
quality[respondent] + leniency[judge] + prompt difficulty + a model-by-prompt strength + noise. Each
answer is judged by K of its 14 peers chosen by sweep.panel (the planner's design), by every peer
("full"), or, as a control, by the same K peers every time ("fixed": a design that balances nothing).
Reported per design: mean Kendall tau-b to the true order of the raw Avg Score and of the calibrated
(two-way) score, the 90% bootstrap intervals' coverage of the true quality (calibrated), and the
judgments the design costs. Nothing runs a model.

``--adaptive``: adaptive judging (sweep.adaptive: round 1 at K, then up to ROUNDS rounds in all) against uniform
K at the same number of judgments (budget), on the drawn truth above and on TIERS (a pool of which round 1
settles part), with a control that spends the same rounds on answers drawn at random; mean tau and judgments
spent, and the paired gain in calibrated tau over uniform with its standard error.

    python -m bench.panel_k [--panels N]              # default 100 panels per design
    python -m bench.panel_k --adaptive [--panels N]   # adaptive against uniform K at the same budget
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from sweep import adaptive, panel
from sweep.core.stats import ScoreCube, avg_score, calibrated_score, kendall_tau_b, whole
from warehouse.stats import panel_stats

MODELS = 15
PROMPTS = 40
ROUNDS = 4
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Trial:
    raw_tau: float
    calibrated_tau: float
    judgments: int
    coverage: Optional[float] = None
    """Share of models whose 90% calibrated interval holds the true quality (when intervals were asked)."""


@dataclass(frozen=True)
class Planted:
    """A planted truth of one's own instead of the drawn one: each model's quality and the sd of the judges'
    noise on its answers (1 in the drawn truth; larger for answers that are harder to judge)."""

    quality: Sequence[float]
    noise: Sequence[float]


Chosen = dict[tuple[str, int], set[str]]
"""(respondent, prompt) -> its judges."""


def names(models: int) -> list[str]:
    return [f"m{i:02d}" for i in range(models)]


def design(k: Optional[int], kind: str, seed: int, models: int = MODELS, prompts: int = PROMPTS) -> Chosen:
    """Each answer's judges: K of its peers by sweep.panel, every peer (k None), or the same K ("fixed")."""
    pool = names(models)
    eligible = {r: [j for j in pool if j != r] for r in pool}
    if k is None:
        return {(r, e): set(eligible[r]) for r in pool for e in range(prompts)}
    if kind == "fixed":
        return {(r, e): set(eligible[r][:k]) for r in pool for e in range(prompts)}
    answers = [(r, e) for r in pool for e in range(prompts)]
    return {a: set(js) for a, js in panel.assign(answers, eligible, {n: "f" for n in pool}, k, seed=seed).items()}


def counts(chosen: Chosen, models: int, prompts: int) -> np.ndarray:
    """[prompt, judge, respondent] 1 where the judge scores that answer."""
    out = np.zeros((prompts, models, models))
    index = {n: i for i, n in enumerate(names(models))}
    for (r, e), judges in chosen.items():
        for j in judges:
            out[e, index[j], index[r]] = 1.0
    return out


def truth(seed: int, models: int, prompts: int, planted: Optional[Planted] = None) -> tuple[np.ndarray, np.ndarray]:
    """The planted quality [models] (drawn, or ``planted``'s) and every judge's score of every answer
    [prompt, judge, respondent]."""
    rng = np.random.default_rng(seed)  # the same planted truth and noise for every design of a seed
    quality = 6.5 + rng.normal(0, 0.5, models)
    noise = np.ones(models)
    if planted is not None:
        quality, noise = np.array(planted.quality, dtype=float), np.array(planted.noise, dtype=float)
    leniency = rng.normal(0, 0.7, models)
    scores = (quality + leniency[:, None] + rng.normal(0, 0.5, (prompts, 1, 1))
              + rng.normal(0, 0.3, (prompts, 1, models)) + rng.normal(0, 1.0, (prompts, models, models)) * noise)
    return quality, scores


def cube_of(scores: np.ndarray, count: np.ndarray) -> ScoreCube:
    prompts, models = scores.shape[0], scores.shape[1]
    pool = tuple(names(models))
    return ScoreCube(tuple(f"e{i:02d}" for i in range(prompts)), pool, pool, scores * count, count)


def scored(quality: np.ndarray, cube: ScoreCube, seed: int, intervals: bool = False) -> Trial:
    raw, calibrated = avg_score(cube, *whole(cube))[0], calibrated_score(cube, *whole(cube))[0]
    coverage = None
    if intervals:
        ranking = panel_stats(cube, replicates=200, seed=seed).rankings["calibrated"]
        coverage = float(np.mean((ranking.score_lo <= quality) & (quality <= ranking.score_hi)))
    return Trial(kendall_tau_b(raw, quality), kendall_tau_b(calibrated, quality), int(cube.count.sum()), coverage)


def trial(seed: int, k: Optional[int], kind: str = "balanced", intervals: bool = False,
          models: int = MODELS, prompts: int = PROMPTS, planted: Optional[Planted] = None) -> Trial:
    quality, scores = truth(seed, models, prompts, planted)
    return scored(quality, cube_of(scores, counts(design(k, kind, seed, models, prompts), models, prompts)), seed,
                  intervals)


def adaptive_trial(seed: int, k: int, budget: int, rounds: int = ROUNDS, control: bool = False,
                   models: int = MODELS, prompts: int = PROMPTS, planted: Optional[Planted] = None) -> Trial:
    """Round 1 at K by sweep.panel, then sweep.adaptive's rounds until the order separates, the budget (judgments
    in all) is spent or ``rounds`` ran. ``control``: each round the same number of extra judgments on answers
    drawn at random (judges still by sweep.panel.more): what the rule's choice of answers is worth."""
    quality, scores = truth(seed, models, prompts, planted)
    chosen = design(k, "balanced", seed, models, prompts)
    pool = names(models)
    eligible = {r: [j for j in pool if j != r] for r in pool}
    as_slots = lambda c: {(r, (f"e{e:02d}", 0)): js for (r, e), js in c.items()}  # noqa: E731 (the planner's slots)
    draw = np.random.default_rng([seed, 1])
    for round_ in range(1, rounds):
        cube = cube_of(scores, counts(chosen, models, prompts))
        extra = adaptive.next_round(cube, as_slots(chosen), eligible, pool, budget, rounds - round_, seed, round_)
        if control and extra:
            answers = list(as_slots(chosen))
            picks = [answers[i] for i in draw.choice(len(answers), len(extra))]
            extra = panel.more(as_slots(chosen), picks, eligible, seed)
        if not extra:
            break
        for r, (eval_id, _), j in extra:
            chosen[r, int(eval_id[1:])].add(j)
    return scored(quality, cube_of(scores, counts(chosen, models, prompts)), seed)


DESIGNS: list[tuple[str, Optional[int], str]] = [
    ("K=2", 2, "balanced"), ("K=3", 3, "balanced"), ("K=5", 5, "balanced"), ("full (K=14)", None, "balanced"),
    ("K=3 fixed judges (control)", 3, "fixed"),
]


TIERS = Planted((0, 0.5, 1, 1.5, 2, 2.5, 9, 16, 23, 30), (2.0,) * 10)
"""Ten models, six of them 0.5 apart and four far above, judged with noise sd 2 (on 10 prompts): round 1 settles
the four, so adaptive judging can spend the rest on the six."""

ADAPTIVE: list[tuple[str, int, int, int, int, Optional[Planted]]] = [
    # (truth, models, prompts, round 1's K, budget per answer, planted)
    ("drawn", MODELS, PROMPTS, 2, 3, None), ("drawn", MODELS, PROMPTS, 2, 4, None),
    ("drawn", MODELS, PROMPTS, 2, 5, None), ("drawn", MODELS, PROMPTS, 3, 5, None),
    ("tiers", 10, 10, 1, 4, TIERS),
]


def compare_adaptive(panels: int) -> list[dict]:
    """Uniform K = budget per answer against round 1 at K then sweep.adaptive's rounds, and the control (the same
    round sizes on answers drawn at random), on the same planted truths and noise."""
    rows = []
    for name, models, prompts, k, per_answer, planted in ADAPTIVE:
        budget = per_answer * models * prompts
        seeds = range(panels)
        uniform = [trial(s, per_answer, models=models, prompts=prompts, planted=planted) for s in seeds]
        for label, control in (("adaptive", False), ("random answers (control)", True)):
            tried = [adaptive_trial(s, k, budget, control=control, models=models, prompts=prompts, planted=planted)
                     for s in seeds]
            gain = np.array([a.calibrated_tau - u.calibrated_tau for a, u in zip(tried, uniform)])
            rows.append({"truth": name, "models": models, "prompts": prompts, "round1_k": k, "budget": budget,
                         "design": label, "judgments": float(np.mean([t.judgments for t in tried])),
                         "uniform_raw_tau": float(np.mean([t.raw_tau for t in uniform])),
                         "uniform_calibrated_tau": float(np.mean([t.calibrated_tau for t in uniform])),
                         "raw_tau": float(np.mean([t.raw_tau for t in tried])),
                         "calibrated_tau": float(np.mean([t.calibrated_tau for t in tried])),
                         "calibrated_gain": float(gain.mean()), "gain_se": float(gain.std(ddof=1) / np.sqrt(panels))})
            r = rows[-1]
            print(f"{name} {models}x{prompts} budget {budget} ({per_answer}/answer): uniform K={per_answer} tau raw "
                  f"{r['uniform_raw_tau']:.3f} cal {r['uniform_calibrated_tau']:.3f} | {label} from K={k}: "
                  f"{r['judgments']:.0f} judgments, tau raw {r['raw_tau']:.3f} cal {r['calibrated_tau']:.3f}, "
                  f"gain {r['calibrated_gain']:+.4f} +- {r['gain_se']:.4f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", type=int, default=100)
    parser.add_argument("--adaptive", action="store_true", help="adaptive judging against uniform K instead")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.adaptive:
        RESULTS.mkdir(exist_ok=True)
        rows = compare_adaptive(args.panels)
        (RESULTS / "panel_adaptive.json").write_text(json.dumps(
            {"panels": args.panels, "rounds": ROUNDS, "rows": rows, "seconds": time.perf_counter() - started},
            indent=1))
        return
    rows = []
    for label, k, kind in DESIGNS:
        trials = [trial(seed, k, kind, intervals=True) for seed in range(args.panels)]
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
