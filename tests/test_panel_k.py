"""Judge panels of K (judge.judges_per_answer): the balanced design over 6 cards, fixed in the plan, and
the statistics on the incomplete design it makes, against planted truth (bench/panel_k.py simulates it)."""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.panel_k import trial
from sweep import panel
from sweep.core.config import SweepConfig
from sweep.core.errors import SweepError
from sweep.cost import work
from sweep.plan import SweepPlan, plan
from tests.conftest import compose_config
from tests.test_plan import LAPTOP
from tests.test_stats import alpha_by_pairs, row, units_of, warehouse

FAMILIES = {"a1": "fa", "a2": "fa", "b1": "fb", "b2": "fb", "c1": "fc", "c2": "fc"}


def six_cards(*overrides: str) -> SweepConfig:
    """Six cards in three families of two (copies of the packaged SmolLM2 card), 11 prompts x 2 samples; each
    its own engine, as six models would be (copies of one weights would share one: Shared engines)."""
    cfg = compose_config("evals=hard", "run.samples=2", "run.share_engines=false", *overrides)
    base = next(iter(cfg.model.cards.values()))
    cfg.model.cards = {}
    for name, family in FAMILIES.items():
        card = copy.deepcopy(base)
        card.name, card.family, card.system_prompt = name, family, f"You are {name}."
        cfg.model.cards[name] = card
    return cfg


def panels(p: SweepPlan) -> dict[tuple[str, str, int], set[str]]:
    out: dict[tuple[str, str, int], set[str]] = {(a.model, a.eval_id, a.sample): set() for a in p.generate}
    for c in p.judge:
        out[c.respondent, c.eval_id, c.sample].add(c.judge)
    return out


def spread(counts: Counter) -> int:
    return max(counts.values()) - min(counts.values())


@pytest.mark.parametrize("k, exclude_family, eligible", [(3, False, 5), (2, True, 4), (1, True, 4)])
def test_a_panel_of_k_over_six_cards_is_balanced(k: int, exclude_family: bool, eligible: int) -> None:
    p = plan(six_cards(f"judge.judges_per_answer={k}", f"judge.exclude_same_family={exclude_family}"), "r", LAPTOP)
    chosen = panels(p)
    answers = 11 * 2
    assert len(chosen) == 6 * answers and len(p.judge) == 6 * answers * k
    for (respondent, _, _), judges in chosen.items():
        assert len(judges) == k and respondent not in judges
        if exclude_family:
            assert all(FAMILIES[j] != FAMILIES[respondent] for j in judges)
    # Every judge carries the same load (to within one judgment): 22 answers x 6 x K / 6 judges.
    load = Counter(c.judge for c in p.judge)
    assert len(load) == 6 and spread(load) <= 1 and sum(load.values()) == answers * 6 * k
    # Every respondent is judged by each of its eligible judges equally often, to within one answer.
    for respondent in FAMILIES:
        by_judge = Counter(c.judge for c in p.judge if c.respondent == respondent)
        assert len(by_judge) == eligible and spread(by_judge) <= 1, (respondent, by_judge)
    # ... and so is every (prompt, respondent) pair's judges varied: no judge sits on all of one prompt.
    assert all(len({j for (r, e, _), js in chosen.items() if r == respondent for j in js}) == eligible
               for respondent in FAMILIES)


def test_the_panel_is_fixed_by_the_seed_and_a_subset_of_the_full_panel() -> None:
    k3 = plan(six_cards("judge.judges_per_answer=3"), "r", LAPTOP)
    assert k3 == plan(six_cards("judge.judges_per_answer=3"), "r", LAPTOP)
    reseeded = plan(six_cards("judge.judges_per_answer=3", "judge.seed=1"), "r", LAPTOP)
    assert panels(reseeded) != panels(k3) and len(reseeded.judge) == len(k3.judge)
    full = plan(six_cards(), "r", LAPTOP)
    assert full == plan(six_cards("judge.judges_per_answer=0"), "r", LAPTOP)
    # The same cells, keys and all, as the full panel's (a run at K resumes from a full run, and back).
    assert set(k3.judge) < set(full.judge) and len(full.judge) == 6 * 22 * 5
    # The plan's forecast sees the panel: each judge reads 3/5 of the answers it did.
    k3_work, full_work = work(k3)[1], work(full)[1]
    assert all(k3_work[j].sequences * 5 == full_work[j].sequences * 3 for j in FAMILIES)


def test_min_other_families_puts_judges_of_other_families_on_each_answer() -> None:
    cfg = six_cards("judge.judges_per_answer=3", "judge.min_other_families=3")
    # a1's family has a2: without the rule some of a1's panels hold a2.
    loose = panels(plan(six_cards("judge.judges_per_answer=3"), "r", LAPTOP))
    assert any(FAMILIES[j] == FAMILIES[r] for (r, _, _), js in loose.items() for j in js)
    strict = panels(plan(cfg, "r", LAPTOP))
    assert all(sum(FAMILIES[j] != FAMILIES[r] for j in js) >= 3 for (r, _, _), js in strict.items())
    two = panels(plan(six_cards("judge.judges_per_answer=3", "judge.min_other_families=2"), "r", LAPTOP))
    assert all(sum(FAMILIES[j] != FAMILIES[r] for j in js) >= 2 for (r, _, _), js in two.items())


@pytest.mark.parametrize("overrides, problem, fix", [
    (("judge.judges_per_answer=6",), "judge.judges_per_answer=6 but a1 has only 5 eligible judge(s)",
     "at most 5, or 0 for every eligible peer"),
    (("judge.judges_per_answer=5", "judge.exclude_same_family=true"), "a1 has only 4 eligible judge(s) (b1, b2, c1, c2)",
     "at most 4"),
    (("judge.judges_per_answer=2", "judge.min_other_families=3"), "judge.min_other_families=3 is more than "
     "judge.judges_per_answer=2", "at most 2"),
    (("judge.min_other_families=5",), "judge.min_other_families=5 but a1 (fa) has 4 eligible judge(s) of other "
     "families", "at most 4"),
    (("judge.judges_per_answer=-1",), "must not be negative", "judges_per_answer=0: every eligible peer"),
])
def test_a_panel_the_pool_cant_give_is_refused(overrides: tuple[str, ...], problem: str, fix: str) -> None:
    with pytest.raises(SweepError) as e:
        plan(six_cards(*overrides), "r", LAPTOP)
    assert problem in e.value.problem and fix in e.value.fix


def test_the_design_on_its_own_balances_uneven_families() -> None:
    """Families of 3, 2 and 1 with exclude_same_family: eligibility differs (3, 4 or 5 judges), so pair balance
    holds per respondent, and a judge's load follows the answers it may judge."""
    fam = {"a1": "fa", "a2": "fa", "a3": "fa", "b1": "fb", "b2": "fb", "c1": "fc"}
    eligible = {r: [j for j in fam if fam[j] != fam[r]] for r in fam}
    answers = [(r, e) for r in fam for e in range(30)]
    chosen = panel.assign(answers, eligible, fam, 2, seed=5)
    assert chosen == panel.assign(answers[::-1], eligible, fam, 2, seed=5)  # the plan's order doesn't matter
    for r in fam:
        per = Counter(j for (resp, _), js in chosen.items() if resp == r for j in js)
        assert set(per) == set(eligible[r]) and spread(per) <= 1
    load = Counter(j for js in chosen.values() for j in js)
    assert sum(load.values()) == 6 * 30 * 2
    # c1 may judge 5 respondents, an a-card 3 (measured: c1 90, b-cards 72, a-cards 42 of 360).
    assert load["c1"] > load["a1"]


def test_k_judges_recover_the_planted_order_nearly_as_well_as_the_full_panel() -> None:
    """15 models, 40 prompts, 40 planted panels (bench/panel_k.py): K=3 costs 3/14 of the full panel's
    judgments and loses little Kendall tau to the true order. The control, a design that gives each
    respondent the same 3 judges on every prompt, is caught: its raw order carries those judges' leniency.

    Measured (40 panels): tau calibrated 0.868 (K=3) vs 0.922 (full), raw 0.854 vs 0.890; fixed judges
    raw 0.807. Tolerances: the means' standard error is about 0.012 each, paired differences less."""
    seeds = range(40)
    full = [trial(s, None) for s in seeds]
    k3 = [trial(s, 3) for s in seeds]
    fixed = [trial(s, 3, "fixed") for s in seeds]
    mean = lambda trials, attr: float(np.mean([getattr(t, attr) for t in trials]))  # noqa: E731
    assert (k3[0].judgments, full[0].judgments) == (15 * 40 * 3, 15 * 40 * 14)
    assert mean(k3, "calibrated_tau") >= mean(full, "calibrated_tau") - 0.08
    assert mean(k3, "raw_tau") >= mean(full, "raw_tau") - 0.06
    assert mean(k3, "raw_tau") >= mean(fixed, "raw_tau") + 0.025


def test_intervals_and_agreement_on_the_incomplete_design(tmp_path: Path) -> None:
    """At K=3 of 14 the bootstrap (evals and judges redrawn) still covers the true quality near its level,
    and judge_agreement (Krippendorff's alpha: any number of judges per answer) equals its definition."""
    coverage = [trial(s, 3, intervals=True).coverage for s in range(20)]
    assert 0.80 <= float(np.mean(coverage)) <= 0.95, coverage
    models = [f"m{i}" for i in range(8)]
    eligible = {r: [j for j in models if j != r] for r in models}
    chosen = panel.assign([(r, e) for r in models for e in range(6)], eligible, {m: "f" for m in models}, 3)
    rng = np.random.default_rng(0)
    rows = [row(j, r, f"e{e}", float(rng.integers(2, 10)), pool=models) for (r, e), js in chosen.items() for j in js]
    (alpha, units, judges) = warehouse(tmp_path, rows).execute(
        "select alpha, units, judges from judge_agreement").fetchone()
    assert (units, judges) == (8 * 6, 8)
    assert alpha == pytest.approx(alpha_by_pairs(units_of(rows)), abs=1e-12)
    assert all(len(v) == 3 for v in units_of(rows).values())
    assert len(list(itertools.chain(*chosen.values()))) == 8 * 6 * 3


@pytest.mark.parametrize("k, exclude_family", [(2, False), (2, True), (1, False)])
def test_pairwise_verdicts_at_k_get_k_judges_of_both_answers_by_the_same_design(k: int, exclude_family: bool) -> None:
    """judge.pairwise with judges_per_answer=K: each pair of answers to a prompt gets K of the judges that may
    judge both (never one of the two, nor their families with exclude_same_family), each in both orders; loads
    and (pair, judge) counts balanced to within one; a subset of the full panel's cells."""
    overrides = (f"judge.exclude_same_family={exclude_family}", "judge.pairwise=true")
    p = plan(six_cards(f"judge.judges_per_answer={k}", *overrides), "r", LAPTOP)
    full = plan(six_cards(*overrides), "r", LAPTOP)
    verdicts: dict[tuple[str, str, str, int], Counter] = {}
    for c in p.compare:
        verdicts.setdefault((*sorted((c.first, c.second)), c.eval_id, c.sample), Counter())[c.judge] += 1
    # 15 pairs of 6 cards; with exclude_same_family the 3 same-family pairs are judged too (by the other families).
    assert len(verdicts) == 15 * 11 * 2
    for (a, b, _, _), by_judge in verdicts.items():
        assert len(by_judge) == k and set(by_judge.values()) == {2}  # K judges, each in both orders
        assert not {a, b} & set(by_judge)
        if exclude_family:
            assert all(FAMILIES[j] not in (FAMILIES[a], FAMILIES[b]) for j in by_judge)
    load = Counter(c.judge for c in p.compare)
    assert len(load) == 6 and spread(load) <= 2 and sum(load.values()) == 15 * 22 * k * 2  # 2 cells per verdict pair
    for a, b in itertools.combinations(FAMILIES, 2):
        per = Counter(j for (x, y, _, _), js in verdicts.items() if (x, y) == (a, b) for j in js)
        eligible = [j for j in FAMILIES if j not in (a, b)
                    and not (exclude_family and FAMILIES[j] in (FAMILIES[a], FAMILIES[b]))]
        assert set(per) == set(eligible) and spread(per) <= 1, (a, b, per)
    assert set(p.compare) < set(full.compare)


def test_the_pairwise_panel_is_fixed_by_the_seed() -> None:
    p = plan(six_cards("judge.judges_per_answer=2", "judge.pairwise=true"), "r", LAPTOP)
    assert p == plan(six_cards("judge.judges_per_answer=2", "judge.pairwise=true"), "r", LAPTOP)
    reseeded = plan(six_cards("judge.judges_per_answer=2", "judge.pairwise=true", "judge.seed=3"), "r", LAPTOP)
    assert reseeded.compare != p.compare and len(reseeded.compare) == len(p.compare)


def test_pairwise_at_a_k_some_pair_cant_get_is_refused() -> None:
    """Three cards: each answer has 2 peers, but a pair of answers only the third card (judges_per_answer=2)."""
    with pytest.raises(SweepError) as e:
        plan(compose_config("evals=smoke", "judge.judges_per_answer=2", "judge.pairwise=true"), "r", LAPTOP)
    assert "judge.judges_per_answer=2 but the pair SmolLM2-135M (smollm2) and SmolLM2-135M-expert (smollm2) has " \
           "only 1 eligible judge(s) (Gemma3-270M-base)" in e.value.problem
    assert "at most 1" in e.value.fix and "judge.pairwise=false" in e.value.fix
    assert len(plan(compose_config("evals=smoke", "judge.judges_per_answer=1", "judge.pairwise=true"), "r",
                    LAPTOP).compare) == 3 * 3 * 2


def test_pairwise_min_other_families_counts_judges_of_neither_answers_family() -> None:
    """For a pair, "another family" is neither card's: with min_other_families=2 every pair of answers gets 2 judges
    whose family is neither of the pair's (without the rule some pairs get a judge of a respondent's family)."""
    def families_apart(*overrides: str) -> Counter:
        p = plan(six_cards("judge.pairwise=true", "judge.judges_per_answer=2", *overrides), "r", LAPTOP)
        verdicts: dict[tuple[str, str, int], set[str]] = {}
        for c in p.compare:
            verdicts.setdefault((frozenset((c.first, c.second)), c.eval_id, c.sample), set()).add(c.judge)
        return Counter(sum(FAMILIES[j] not in {FAMILIES[r] for r in pair} for j in js)
                       for (pair, _, _), js in verdicts.items())
    assert set(families_apart("judge.min_other_families=2")) == {2}
    assert families_apart()[1] > 0
