"""The ranking and efficiency SQL agree with the study's definitions computed in plain Python.

The reference below is written from the definitions in the README, not from the SQL:
exact fractions, half-to-even rounding, ties to the earlier pool position.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pytest

from jobs.judge import weighted_score
from tests.conftest import compose_config
from warehouse.db import connect
from sweep.core.rows import GenerationRow, JudgmentRow
from warehouse.store import Store

SUITE = compose_config("evals=smoke").evals
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)
MODELS = ["m-alpha", "m-beta", "m-gamma", "m-delta"]
EVALS = [f"e{i}" for i in range(7)]


def half_even(x: Fraction, places: int = 2) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return (Decimal(x.numerator) / Decimal(x.denominator)).quantize(Decimal(10) ** -places, ROUND_HALF_EVEN)


def exact(score: float) -> Fraction:
    return Fraction(Decimal(repr(score)))


def gen(model: str, eval_id: str, sample: int, latency: float, tokens: int) -> GenerationRow:
    return GenerationRow(
        run_id="r", cell_key=f"g-{model}-{eval_id}-{sample}", model=model, family="f", pool_index=MODELS.index(model),
        eval_id=eval_id, category="c", sample=sample, prompt="p", system_prompt=None, answer="a", reasoning=None,
        status="ok", finish_reason="stop", prompt_tokens=10, output_tokens=tokens, latency_s=latency, ttft_s=None,
        queue_s=None, sampling="{}", engine="fake", error=None, attempts=1, created_at=NOW,
    )


def judgment(judge: str, resp: str, eval_id: str, sample: int, status: str, criteria: dict | None,
             score: float | None = None) -> JudgmentRow:
    if score is None and criteria is not None:
        score = weighted_score(criteria, SUITE)
    return JudgmentRow(
        run_id="r", cell_key=f"j-{judge}-{resp}-{eval_id}-{sample}", answer_key=f"g-{resp}-{eval_id}-{sample}",
        judge=judge, judge_family="f", respondent=resp, respondent_family="f", pool_index=MODELS.index(resp),
        eval_id=eval_id, sample=sample, label="Response A", criteria=criteria, score=score, scale_max=10, scale_min=1,
        justification=None, status=status, error=None, raw="{}", finish_reason="stop", prompt_tokens=1,
        output_tokens=1, latency_s=0.1, attempts=1, created_at=NOW,
    )


def synthetic(seed: int) -> tuple[list[GenerationRow], list[JudgmentRow]]:
    """Few distinct criterion values, so eval-score ties and .xx5 roundings happen."""
    rnd = random.Random(seed)
    gens = [gen(m, e, s, rnd.choice([0.5, 1.25, 2.0, 3.5]), rnd.randint(10, 400))
            for m in MODELS for e in EVALS for s in range(2)]
    rows = []
    for judge in MODELS:
        for g in gens:
            if g.model == judge:
                continue
            roll = rnd.random()
            criteria = {c.name: rnd.choice([5, 6, 7, 8]) for c in SUITE.criteria}
            if roll < 0.15:
                rows.append(judgment(judge, g.model, g.eval_id, g.sample, "invalid", None))
            elif roll < 0.2:
                rows.append(judgment(judge, g.model, g.eval_id, g.sample, "truncated", None))
            elif roll < 0.23:  # parsed, but a zero score is not valid by definition
                rows.append(judgment(judge, g.model, g.eval_id, g.sample, "ok", criteria, score=0.0))
            else:
                rows.append(judgment(judge, g.model, g.eval_id, g.sample, "ok", criteria))
    # m-delta has no valid score at all on e0: it must not "appear" in that eval.
    rows = [r for r in rows if not (r.respondent == "m-delta" and r.eval_id == "e0" and r.status == "ok")]
    return gens, rows


def reference(gens: list[GenerationRow], rows: list[JudgmentRow]) -> dict[str, dict]:
    """The study's tables from raw rows, one dict per model."""
    models = [m for _, m in sorted({(g.pool_index, g.model) for g in gens})]
    evals_all = sorted({g.eval_id for g in gens})
    valid = [r for r in rows if r.status == "ok" and r.score is not None and 0 < r.score <= r.scale_max]
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in valid:
        scores[(r.respondent, r.eval_id)].append(r.score)
    eval_score = {k: half_even(sum(map(exact, v)) / len(v)) for k, v in scores.items()}
    sigma = {k: round(statistics.stdev(v), 2) if len(v) > 1 else 0.0 for k, v in scores.items()}
    rank: dict[tuple[str, str], int] = {}
    for e in evals_all:
        order = sorted((m for m in models if (m, e) in eval_score), key=lambda m: (-eval_score[(m, e)], models.index(m)))
        rank.update({(m, e): i + 1 for i, m in enumerate(order)})
    latency: dict[tuple[str, str], list[GenerationRow]] = defaultdict(list)
    for g in gens:
        latency[(g.model, g.eval_id)].append(g)
    out = {}
    for m in models:
        evals = [e for e in evals_all if (m, e) in eval_score]
        if not evals:  # no valid score anywhere: listed last, with nothing to average
            out[m] = {"avg_score": None, "mean_score": None, "wins": 0, "top3": 0, "evals": 0, "avg_sigma": None,
                      "valid": 0, "total": sum(r.respondent == m for r in rows)}
            continue
        mean_lat = {e: statistics.fmean(g.latency_s for g in latency[(m, e)]) for e in evals}
        out[m] = {
            "avg_score": half_even(sum(Fraction(eval_score[(m, e)]) for e in evals) / len(evals)),
            "mean_score": sum(Fraction(eval_score[(m, e)]) for e in evals) / len(evals),
            "wins": sum(rank[(m, e)] == 1 for e in evals),
            "top3": sum(rank[(m, e)] <= 3 for e in evals),
            "evals": len(evals),
            "avg_sigma": half_even(sum(exact(sigma[(m, e)]) for e in evals) / len(evals)),
            "valid": sum(r.respondent == m for r in valid),
            "total": sum(r.respondent == m for r in rows),
            "avg_time_s": statistics.fmean(mean_lat.values()),
            "score_per_sec": statistics.fmean(float(eval_score[(m, e)]) / mean_lat[e] for e in evals),
            "tokens_per_s": sum(g.output_tokens for e in evals for g in latency[(m, e)])
            / sum(g.latency_s for e in evals for g in latency[(m, e)]),
        }
    order = sorted(models, key=lambda m: (out[m]["mean_score"] is None, -(out[m]["mean_score"] or 0), models.index(m)))
    for i, m in enumerate(order):
        out[m]["rank"] = i + 1
    return out


def load(tmp_path: Path, gens: list[GenerationRow], rows: list[JudgmentRow]) -> Store:
    store = Store(str(tmp_path))
    store.write("generations", gens, "part-0.parquet", run_id="r")
    store.write("judgments", rows, "part-0.parquet", run_id="r")
    return store


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_rankings_and_efficiency_match_the_definitions(tmp_path: Path, seed: int) -> None:
    gens, rows = synthetic(seed)
    want = reference(gens, rows)
    con = connect(load(tmp_path, gens, rows))
    got = {r[1]: r for r in con.execute(
        "select rank, model, avg_score, wins, top3, evals, avg_sigma, valid_judgments, total_judgments "
        "from rankings where run_id = 'r'").fetchall()}
    assert set(got) == set(MODELS)
    for m, w in want.items():
        rank, _, avg, wins, top3, evals, sigma, valid, total = got[m]
        assert (rank, wins, top3, evals, valid, total) == (w["rank"], w["wins"], w["top3"], w["evals"],
                                                            w["valid"], w["total"]), m
        assert (Decimal(str(avg)), Decimal(str(sigma))) == (w["avg_score"], w["avg_sigma"]), m
    assert want["m-delta"]["evals"] == len(EVALS) - 1 == got["m-delta"][5]
    eff = {r[0]: r for r in con.execute(
        "select model, avg_time_s, output_tokens_per_s, score_per_sec from efficiency where run_id = 'r'").fetchall()}
    for m, w in want.items():
        _, avg_time, tps, sps = eff[m]
        assert (avg_time, tps, sps) == pytest.approx((w["avg_time_s"], w["tokens_per_s"], w["score_per_sec"]), rel=1e-9)


@pytest.mark.parametrize(
    "scores, expected",
    [
        ([7.45, 7.40], "7.42"),  # 7.425: the tie goes to the even neighbour
        ([1.01, 1.02], "1.02"),  # 1.015 is 1.01499.. in binary; exact half-even says 1.02
        ([2.65, 2.70], "2.68"),  # 2.675
        ([8.35, 8.4, 8.3], "8.35"),
        ([6.55, 6.6], "6.58"),  # 6.575: round(6.575, 2) in Python floats says 6.58 too; half-even on 7 -> 8
    ],
)
def test_eval_score_rounds_half_to_even_exactly(tmp_path: Path, scores: list[float], expected: str) -> None:
    rows = [judgment(f"j{i}", "m-alpha", "e0", 0, "ok", None, score=s) for i, s in enumerate(scores)]
    rows = [JudgmentRow(**{**r.__dict__, "cell_key": f"k{i}"}) for i, r in enumerate(rows)]
    con = connect(load(tmp_path, [gen("m-alpha", "e0", 0, 1.0, 10)], rows))
    (got,) = con.execute("select eval_score from eval_scores").fetchone()
    assert Decimal(str(got)) == Decimal(expected) == half_even(sum(map(exact, scores)) / len(scores))


def failure_aware_reference(rows: list[JudgmentRow]) -> dict[str, tuple[int, Decimal, int]]:
    """(rank, avg_score, failed answers) per model, from the README's definition: each judge slot a
    failed answer left empty (no_answer) scores the scale's minimum; otherwise the study's means."""
    scores: dict[tuple[str, str], list[Fraction]] = defaultdict(list)
    failed: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for r in rows:
        if r.status == "no_answer":
            scores[(r.respondent, r.eval_id)].append(Fraction(r.scale_min))
            failed[r.respondent].add((r.eval_id, r.sample))
        elif r.status == "ok" and r.score is not None and 0 < r.score <= r.scale_max:
            scores[(r.respondent, r.eval_id)].append(exact(r.score))
    eval_score = {k: half_even(sum(v) / len(v)) for k, v in scores.items()}
    means = {m: sum(Fraction(s) for (n, _), s in eval_score.items() if n == m)
             / sum(n == m for n, _ in eval_score) for m in MODELS}
    order = sorted(MODELS, key=lambda m: (-means[m], MODELS.index(m)))
    return {m: (order.index(m) + 1, half_even(means[m]), len(failed[m])) for m in MODELS}


def test_a_model_that_fails_half_its_prompts_cannot_win_the_failure_aware_ranking(tmp_path: Path) -> None:
    """The study's flaw, planted: m-alpha answers only e0-e3 but scores 9 there; the others answer all
    seven evals at 7-8. The study's definition ranks m-alpha first (it averages only where it appears);
    the failure-aware one counts its three missing answers at the scale's minimum."""
    rnd = random.Random(7)
    gens, rows = [], []
    for m in MODELS:
        for e in EVALS:
            gens.append(gen(m, e, 0, 1.0, 50))
            for judge in MODELS:
                if judge == m:
                    continue
                if m == "m-alpha" and e >= "e4":
                    rows.append(judgment(judge, m, e, 0, "no_answer", None))
                else:
                    top = 9 if m == "m-alpha" else rnd.choice([7, 8])
                    rows.append(judgment(judge, m, e, 0, "ok", {c.name: top for c in SUITE.criteria}))
    rows.append(judgment("m-beta", "m-gamma", "e0", 1, "invalid", None))  # a judge's failure: not counted
    con = connect(load(tmp_path, gens, rows))
    study = dict(con.execute("select model, rank from rankings where run_id = 'r'").fetchall())
    assert study["m-alpha"] == 1
    got = {m: (rank, Decimal(str(avg)), failed) for rank, m, avg, failed in con.execute(
        "select rank, model, avg_score, failed_answers from failure_aware_ranking where run_id = 'r'").fetchall()}
    assert got == failure_aware_reference(rows)
    # m-alpha: (4 x 9 + 3 x 1) / 7 = 39/7 = 5.571.. -> 5.57, below every model that answered everything
    assert got["m-alpha"] == (4, Decimal("5.57"), 3)
    assert all(got[m][2] == 0 and got[m][0] < 4 for m in MODELS if m != "m-alpha")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_failure_aware_ranking_matches_its_definition(tmp_path: Path, seed: int) -> None:
    """Planted failures mixed into the study's synthetic rows: no_answer for a random third of answers."""
    gens, rows = synthetic(seed)
    rnd = random.Random(seed)
    gone = {(g.model, g.eval_id, g.sample) for g in gens if rnd.random() < 0.33}
    rows = [JudgmentRow(**{**r.__dict__, "status": "no_answer", "criteria": None, "score": None})
            if (r.respondent, r.eval_id, r.sample) in gone else r for r in rows]
    con = connect(load(tmp_path, gens, rows))
    got = {m: (rank, Decimal(str(avg)), failed) for rank, m, avg, failed in con.execute(
        "select rank, model, avg_score, failed_answers from failure_aware_ranking where run_id = 'r'").fetchall()}
    assert got == failure_aware_reference(rows)
    # every planted failure that still has judge slots (synthetic() drops some of m-delta's e0 rows) is counted
    assert sum(f for _, _, f in got.values()) == len(gone & {(r.respondent, r.eval_id, r.sample) for r in rows}) > 0
