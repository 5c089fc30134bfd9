"""Pairwise judging (judge.pairwise): the plan asks every pair in both orders, blind; verdicts are
parsed strictly and re-asked; the views recover a planted quality order and detect a planted
position bias in one judge and not in another; the runner writes the comparisons table.

The planted-truth panels draw verdicts from known qualities (Bradley-Terry: the first answer wins
with probability 1 / (1 + exp(q_second - q_first)), ties 10%), and a biased judge that, with
probability BIAS, picks Response 1 without reading. The SQL is checked against a computation
from the rows written here.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import pytest
from rich.console import Console

from jobs import compare as comparing
from sweep.core import prompts
from jobs.engines.base import Completion, Request
from sweep.plan import plan
from tests.conftest import compose_config, fake_pool
from tests.test_plan import LAPTOP
from tests.test_rankings import gen
from warehouse.db import connect
from warehouse.html import run_page
from warehouse.report import print_pairwise
from sweep.core.rows import ComparisonRow
from warehouse.stats import bradley_terry, pairwise_strengths, position_bias, sign_test
from warehouse.store import Store

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)


# --- the plan --------------------------------------------------------------------------------


def test_every_peer_pair_is_planned_in_both_orders_and_only_when_asked() -> None:
    cfg = compose_config("evals=smoke", "judge.pairwise=true", "run.samples=2")
    p = plan(cfg, "r", LAPTOP)
    # 3 judges, each with 2 peers: 1 unordered pair, 2 orders, per prompt and sample.
    assert len(p.compare) == 3 * 1 * 2 * len(cfg.evals.prompts) * 2
    assert len({c.key for c in p.compare}) == len(p.compare)
    orders = defaultdict(set)
    for c in p.compare:
        assert c.judge not in (c.first, c.second) and c.first != c.second
        orders[c.judge, c.eval_id, c.sample, frozenset((c.first, c.second))].add((c.first, c.second))
        answers = {a.key: a for a in p.generate}
        assert (answers[c.first_key].model, answers[c.first_key].eval_id) == (c.first, c.eval_id)
        assert (answers[c.second_key].model, answers[c.second_key].sample) == (c.second, c.sample)
    assert all(len(o) == 2 for o in orders.values())
    off = plan(compose_config("evals=smoke", "run.samples=2"), "r", LAPTOP)
    assert off.compare == () and [c.key for c in off.judge] == [c.key for c in p.judge]  # scores untouched
    family = plan(compose_config("evals=smoke", "judge.pairwise=true", "judge.exclude_same_family=true"), "r", LAPTOP)
    # The Gemma judge may judge both SmolLM2 cards (one pair); SmolLM2 judges see one peer each: no pair.
    assert {(c.judge, c.first, c.second) for c in family.compare} == {
        ("Gemma3-270M-base", "SmolLM2-135M", "SmolLM2-135M-expert"),
        ("Gemma3-270M-base", "SmolLM2-135M-expert", "SmolLM2-135M")}


def test_the_pairwise_prompt_is_blind_and_scrubbed() -> None:
    cfg = compose_config("evals=smoke", "judge.pairwise=true")
    p = plan(cfg, "r", LAPTOP)
    cell = p.compare[0]
    messages = prompts.compare_messages(cfg.evals, cell.eval_id, "I am SmolLM2. Four.", "Four.", 300)
    text = messages[0][1]
    assert "## Response 1\nI am SmolLM2. Four." in text and "## Response 2\nFour." in text
    for card in cfg.model.cards.values():
        assert card.name.lower() not in text.lower()
    assert '"1", "2" or "tie"' in text


# --- the job: strict parsing, re-asks, no-answer rows ------------------------------------------------


@dataclass
class Scripted:
    """An engine that returns the given texts in turn and records the requests."""

    texts: list[str]
    seen: list[Request] = field(default_factory=list)

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        self.seen += requests
        return [Completion(self.texts.pop(0), None, "stop", 10, 10, 0.1) for _ in requests]


@pytest.mark.parametrize("text, status, winner", [
    ('{"winner": "1", "justification": "Clearer."}', "ok", "1"),
    ('{"winner": "tie", "justification": "Same."}', "ok", "tie"),
    ('{"winner": 2, "justification": "x"}', "invalid", None),
    ('{"winner": "A", "justification": "x"}', "invalid", None),
    ("Response 1 is better.", "invalid", None),
])
def test_verdicts_are_parsed_strictly(text: str, status: str, winner: str | None) -> None:
    v = comparing.parse(Completion(text, None, "stop", 1, 1, 0.1))
    assert (v.status, v.winner) == (status, winner)
    assert comparing.parse(Completion(text, None, "length", 1, 1, 0.1)).status == "truncated"


def test_invalid_verdicts_are_asked_again_and_unanswered_pairs_get_no_model() -> None:
    cfg = compose_config("evals=smoke", "judge.pairwise=true")
    p = plan(cfg, "r", LAPTOP)
    judge = p.card("Gemma3-270M-base")
    cells = [c for c in p.compare if c.judge == judge.name]
    said = {"SmolLM2-135M": "Hello from SmolLM2: 4.", "SmolLM2-135M-expert": "4."}
    answers = {a.key: replace(gen("m-alpha", a.eval_id, 0, 0.1, 1), cell_key=a.key, model=a.model,
                              pool_index=[c.name for c in p.cards].index(a.model), answer=said.get(a.model, ""))
               for a in p.generate}
    empty = cells[0].first_key  # one answer came back empty: both orders of its pair go unasked
    answers[empty] = replace(answers[empty], status="empty")
    asked = [c for c in cells if empty not in (c.first_key, c.second_key)]
    engine = Scripted(["not json"] + ['{"winner": "2", "justification": "ok"}'] * (2 * len(asked)))
    rows = comparing.compare(engine, {judge.name: judge}, cfg.evals, cfg.judge, cells, answers, "r")
    assert len(rows) == len(cells) and len(engine.seen) == len(asked) + 1  # one re-ask
    assert {r.status for r in rows if empty in (r.first_key, r.second_key)} == {"no_answer"}
    ok = [r for r in rows if r.status == "ok"]
    assert len(ok) == len(asked) and all(r.winner == r.second and r.verdict == "2" for r in ok)
    assert sorted(r.attempts for r in ok) == [1] * (len(asked) - 1) + [2]
    assert engine.seen[-1].sampling.seed != engine.seen[0].sampling.seed  # a new draw
    assert not any("smollm" in r.messages[0][1].lower() for r in engine.seen)
    assert all(json.loads(r.scrubbed) == {"SmolLM2": 1} for r in ok)


# --- the views against planted truth ---------------------------------------------------------------

POOL = ["p0", "p1", "p2", "p3", "p4"]
QUALITY = {"p0": 0.0, "p1": 2.0, "p2": -2.0, "p3": 1.0, "p4": -1.0}  # planted order: p1 p3 p0 p4 p2
BIAS = {"fair": 0.0, "biased": 0.4}
EVALS = [f"e{i}" for i in range(12)]


def planted(seed: int) -> list[ComparisonRow]:
    """Both judges compare every pair of the pool on every eval, in both orders; 5% invalid verdicts."""
    rnd = random.Random(seed)
    rows = []
    for judge, bias in BIAS.items():
        for e in EVALS:
            for i, a in enumerate(POOL):
                for b in POOL[i + 1:]:
                    for first, second in ((a, b), (b, a)):
                        if rnd.random() < 0.05:
                            verdict, status = None, "invalid"
                        elif rnd.random() < bias:
                            verdict, status = "1", "ok"
                        elif rnd.random() < 0.1:
                            verdict, status = "tie", "ok"
                        else:
                            p_first = 1 / (1 + math.exp(QUALITY[second] - QUALITY[first]))
                            verdict, status = ("1" if rnd.random() < p_first else "2"), "ok"
                        rows.append(comparison(judge, e, first, second, verdict, status))
    return rows


def comparison(judge: str, eval_id: str, first: str, second: str, verdict: str | None, status: str) -> ComparisonRow:
    return ComparisonRow(
        run_id="r", cell_key=f"c-{judge}-{eval_id}-{first}-{second}", judge=judge, judge_family="f",
        eval_id=eval_id, sample=0, first=first, second=second, first_key=f"g-{first}-{eval_id}",
        second_key=f"g-{second}-{eval_id}", first_index=POOL.index(first), second_index=POOL.index(second),
        verdict=verdict, winner={"1": first, "2": second}.get(verdict or ""), justification=None, status=status,
        error=None, raw="{}", finish_reason="stop", prompt_tokens=1, output_tokens=1, latency_s=0.1, attempts=1,
        created_at=NOW, scrubbed=None,
    )


def warehouse(tmp_path: Path, rows: list[ComparisonRow]) -> Store:
    store = Store(str(tmp_path))
    store.write("comparisons", rows, "part-0.parquet", run_id="r")
    return store


def reference(rows: list[ComparisonRow]) -> tuple[dict[str, Fraction], dict[str, tuple]]:
    """Win rates and per-judge (decided, first wins, consistent pairs, pairs), from the definitions."""
    points, verdicts = defaultdict(Fraction), defaultdict(int)
    judges: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    orders = defaultdict(list)
    for r in rows:
        if r.status != "ok":
            continue
        for side, mine in ((r.first, "1"), (r.second, "2")):
            verdicts[side] += 1
            points[side] += 1 if r.verdict == mine else Fraction(1, 2) if r.verdict == "tie" else 0
        if r.verdict != "tie":
            judges[r.judge][0] += 1
            judges[r.judge][1] += r.verdict == "1"
        orders[r.judge, r.eval_id, frozenset((r.first, r.second))].append(r.winner)
    pairs = defaultdict(lambda: [0, 0])
    for (judge, *_), winners in orders.items():
        if len(winners) == 2:
            pairs[judge][0] += winners[0] == winners[1]
            pairs[judge][1] += 1
    rates = {m: points[m] / verdicts[m] for m in verdicts}
    return rates, {j: (*judges[j], *pairs[j]) for j in judges}


@pytest.mark.parametrize("seed", range(5))
def test_sql_matches_the_definitions_and_recovers_the_planted_order(tmp_path: Path, seed: int) -> None:
    rows = planted(seed)
    con = connect(warehouse(tmp_path, rows))
    rates, judges = reference(rows)
    got = con.execute("select model, rank, win_rate, wins + ties + losses, comparisons from pairwise_ranking "
                      "where run_id = 'r' order by rank").fetchall()
    assert [m for m, *_ in got] == sorted(QUALITY, key=QUALITY.get, reverse=True)  # the planted order
    assert [r for _, r, *_ in got] == [1, 2, 3, 4, 5]
    for model, _, rate, counted, n in got:
        assert rate == pytest.approx(float(rates[model]), abs=1e-12) and counted == n
    bias = con.execute("select judge, decided, first_wins, consistent, pairs, first_rate, consistency "
                       "from position_bias where run_id = 'r'").fetchall()
    for judge, decided, first, consistent, pairs, first_rate, consistency in bias:
        assert (decided, first, consistent, pairs) == judges[judge]
        assert first_rate == pytest.approx(first / decided) and consistency == pytest.approx(consistent / pairs)


def test_a_planted_position_bias_is_detected_in_that_judge_only(tmp_path: Path) -> None:
    flagged = defaultdict(int)
    for seed in range(20):
        con = connect(warehouse(tmp_path / str(seed), planted(seed)))
        by_judge = {b.judge: b for b in position_bias(con, "r")}
        for judge, b in by_judge.items():
            flagged[judge] += b.flagged
            assert b.p_value == sign_test(b.first_wins, b.decided)
        assert by_judge["biased"].first_rate > 0.6 and by_judge["biased"].p_value < 1e-4
        # The bias costs order consistency: a biased judge flips with the order more often.
        assert by_judge["biased"].consistency < by_judge["fair"].consistency
    assert flagged["biased"] == 20
    assert flagged["fair"] <= 3  # the test's level is 5%: about 1 of 20 by chance


def test_the_sign_test_matches_the_binomial_distribution() -> None:
    assert sign_test(8, 10) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert sign_test(2, 10) == sign_test(8, 10) and sign_test(5, 10) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(15, 20) == pytest.approx(0.04138946533203125)  # published value (R binom.test)


def test_bradley_terry_matches_the_closed_form_for_two_models() -> None:
    # 3 wins to 1, plus the prior's virtual tie: odds (3 + 1/2) : (1 + 1/2).
    beta = bradley_terry({("A", "B"): 3, ("B", "A"): 1})
    assert beta["A"] - beta["B"] == pytest.approx(math.log(3.5 / 1.5), abs=1e-9)
    assert beta["A"] + beta["B"] == pytest.approx(0.0, abs=1e-12)
    # A model that never wins still gets a finite strength, below the others.
    never = bradley_terry({("A", "B"): 5, ("C", "B"): 5, ("A", "C"): 2, ("C", "A"): 2})
    assert math.isfinite(never["B"]) and never["B"] < min(never["A"], never["C"])


@pytest.mark.parametrize("seed", range(5))
def test_bradley_terry_recovers_planted_strengths(seed: int) -> None:
    truth = {"m0": -1.0, "m1": -0.4, "m2": 0.0, "m3": 0.5, "m4": 0.9}
    rnd = random.Random(seed)
    wins: dict[tuple[str, str], float] = defaultdict(float)
    for a in truth:
        for b in truth:
            if a < b:
                for _ in range(400):
                    p_a = 1 / (1 + math.exp(truth[b] - truth[a]))
                    wins[(a, b) if rnd.random() < p_a else (b, a)] += 1
    beta = bradley_terry(wins)
    assert sorted(beta, key=beta.get) == list(truth)  # the planted order
    # 400 verdicts a pair: the standard error of a strength is ~0.05; the prior shrinks by < 1%.
    assert max(abs(beta[m] - truth[m]) for m in truth) < 0.25


def test_pairwise_strengths_read_the_valid_verdicts_of_the_warehouse(tmp_path: Path) -> None:
    rows = planted(0)
    wins: dict[tuple[str, str], float] = defaultdict(float)
    for r in rows:
        if r.status == "ok":
            share = {"1": 1.0, "2": 0.0, "tie": 0.5}[r.verdict]
            wins[(r.first, r.second)] += share
            wins[(r.second, r.first)] += 1 - share
    got = pairwise_strengths(connect(warehouse(tmp_path, rows)), "r")
    assert got == pytest.approx(bradley_terry(wins), abs=1e-9)
    assert sorted(got, key=got.get, reverse=True) == sorted(QUALITY, key=QUALITY.get, reverse=True)
    assert pairwise_strengths(connect(Store(str(tmp_path / "none"))), "r") == {}


def test_the_report_shows_the_pairwise_section(tmp_path: Path) -> None:
    con = connect(warehouse(tmp_path, planted(0)))
    out = io.StringIO()
    print_pairwise(con, "r", Console(file=out, width=200))
    text = out.getvalue()
    assert "Pairwise ranking, run r" in text and "Position bias" in text
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 5}
    assert lines["biased"].rstrip(" │").endswith("yes") and lines["fair"].rstrip(" │").endswith("no")
    empty = io.StringIO()
    print_pairwise(connect(Store(str(tmp_path / "none"))), "r", Console(file=empty))
    assert empty.getvalue() == ""  # pairwise off: no section


# --- the runner ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("ray_local")
def test_the_runner_writes_every_planned_comparison_and_resumes_them(tmp_path: Path) -> None:
    from sweep.run import run

    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=pw", "judge.pairwise=true")
    result = run(cfg)
    assert result.model_loads == 3
    con = connect(result.store)
    planned = plan(cfg, "pw", LAPTOP).compare
    got = con.execute("select cell_key, status from comparisons where run_id = 'pw'").fetchall()
    assert sorted(k for k, _ in got) == sorted(c.key for c in planned) and len(got) == 18
    assert {s for _, s in got} == {"ok"}
    assert con.execute("select count(*) from judgments").fetchone() == (18,)
    assert len(result.store.files("comparisons", "pw")) == 3  # one file per judge batch
    assert con.execute("select count(*) from pairwise_ranking where run_id = 'pw'").fetchone() == (3,)
    page = run_page(con, "pw")
    assert 'id="pairwise-section"' in page and "Order consistency" in page
    again = run(fake_pool(f"warehouse.root={tmp_path}", "run.name=pw", "judge.pairwise=true"))
    assert again.model_loads == 0
    assert connect(again.store).execute("select reused_cells from runs").fetchone() == (9 + 18 + 18,)
