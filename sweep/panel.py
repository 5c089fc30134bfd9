"""Judge panels of K: which of an answer's eligible peers judge it (``judge.judges_per_answer``). Pure.

The design is fixed in the plan, so resume and the forecast see the same panel, and it is balanced:

- pairs first: each respondent's answers go to its eligible judges in turn, the judge that has judged
  that respondent least so far first, so over a respondent's answers every eligible judge judges it
  equally often, to within one answer;
- loads second: among judges tied on the pair count, the one with the fewest judgments so far, so
  every judge carries about the same load (exactly so when every judge is eligible for as many
  respondents: the plain peer panel, or families of equal size with exclude_same_family); a judge
  eligible for fewer respondents carries less;
- answers are dealt prompt by prompt, the prompts and the respondents of a prompt in a seeded order, and remaining
  ties go to a seeded hash, so the same seed gives the same panel and no judge is favoured by its
  place in the pool.

``min_other_families`` = M: the first M judges of an answer are picked (by the same rule) among the
eligible judges of another family, the rest among all.

A respondent may also be a pair of cards (pairwise verdicts at K): the pair's K judges are drawn by the
same design from the judges eligible for both, "another family" meaning neither card's.

``more`` continues the design over a panel already drawn (adaptive judging's later rounds, sweep/adaptive.py):
each extra judge of an answer is, among its eligible judges not yet on it, the one that has judged its respondent
least, then the least loaded, then a seeded hash; so the extra judgments keep the pair counts and loads balanced.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Collection, Hashable, Mapping, Sequence, Union

from sweep.core.errors import SweepError

Slot = Hashable
"""What a respondent answered: (eval_id, sample) in the planner."""
Respondent = Union[str, tuple[str, ...]]
"""A card, or the cards whose answers one pairwise verdict compares."""


def _families(family: Mapping[str, str], respondent: Respondent) -> frozenset[str]:
    return frozenset(family[n] for n in (respondent if isinstance(respondent, tuple) else (respondent,)))


def _named(family: Mapping[str, str], respondent: Respondent) -> str:
    return " and ".join(f"{n} ({family[n]})" for n in (respondent if isinstance(respondent, tuple) else (respondent,)))


def rank_key(seed: int, *parts: object) -> str:
    """A seeded hash that orders ties: the same parts and seed, the same place."""
    return hashlib.sha256(repr((seed, *parts)).encode()).hexdigest()


def check(eligible: Mapping[Respondent, Sequence[str]], family: Mapping[str, str], k: int, min_other: int) -> None:
    """Refuse a K or M the pool can't give every respondent, before anything runs."""
    if k < 0 or min_other < 0:
        raise SweepError(f"judge.judges_per_answer={k}, judge.min_other_families={min_other} must not be negative",
                         "set them to 0 or more (judges_per_answer=0: every eligible peer)")
    if k and min_other > k:
        raise SweepError(f"judge.min_other_families={min_other} is more than judge.judges_per_answer={k}",
                         f"set judge.min_other_families to at most {k}")
    for respondent, judges in eligible.items():
        pair = isinstance(respondent, tuple)
        if k > len(judges):
            who = f"the pair {_named(family, respondent)}" if pair else respondent
            raise SweepError(f"judge.judges_per_answer={k} but {who} has only {len(judges)} eligible judge(s) "
                             f"({', '.join(judges)})", f"set judge.judges_per_answer to at most {len(judges)}, or 0 for "
                             "every eligible peer" + (" (pairwise verdicts), or judge.pairwise=false" if pair else ""))
        kin = _families(family, respondent)
        others = [j for j in judges if family[j] not in kin]
        if min_other > len(others):
            raise SweepError(f"judge.min_other_families={min_other} but {'the pair ' * pair}"
                             f"{_named(family, respondent)} has {len(others)} eligible judge(s) of other families",
                             f"set judge.min_other_families to at most {len(others)}, or add cards of other families")


def assign(answers: Sequence[tuple[Respondent, Slot]], eligible: Mapping[Respondent, Sequence[str]],
           family: Mapping[str, str], k: int, min_other: int = 0, seed: int = 0,
           ) -> dict[tuple[Respondent, Slot], frozenset[str]]:
    """(respondent, slot) -> its judges: K of ``eligible[respondent]`` (all of them when K = 0)."""
    check(eligible, family, k, min_other)
    if k == 0:
        return {(r, s): frozenset(eligible[r]) for r, s in answers}
    slot_rank = {s: rank_key(seed, "slot", s) for s in dict.fromkeys(s for _, s in answers)}
    order = sorted(answers, key=lambda a: (slot_rank[a[1]], rank_key(seed, "order", a[1], a[0])))
    draw = random.Random(seed).random  # drawn in that order, so a pure function of the answers and the seed
    pairs = {r: dict.fromkeys(js, 0) for r, js in eligible.items()}  # respondent -> judge -> answers judged
    load = dict.fromkeys((j for js in eligible.values() for j in js), 0)
    other = {r: [family[j] not in _families(family, r) for j in js] for r, js in eligible.items()}
    out: dict[tuple[Respondent, Slot], frozenset[str]] = {}
    for respondent, slot in order:
        pool, mine = eligible[respondent], pairs[respondent]
        # Fewest judgments of this respondent, then least load, then a seeded draw, then the pool's order.
        ranked = [i for *_, i in sorted(zip(map(mine.__getitem__, pool), map(load.__getitem__, pool),
                                            [draw() for _ in pool], range(len(pool))))]
        if min_other:
            first = [i for i in ranked if other[respondent][i]][:min_other]
            ranked = first + [i for i in ranked if i not in first]
        chosen = [pool[i] for i in ranked[:k]]
        for j in chosen:
            mine[j] += 1
            load[j] += 1
        out[respondent, slot] = frozenset(chosen)
    _even_loads(out, eligible, family, min_other, pairs, load)
    return out


def _even_loads(out: dict[tuple[Respondent, Slot], frozenset[str]], eligible: Mapping[Respondent, Sequence[str]],
                family: Mapping[str, str], min_other: int, pairs: dict[Respondent, dict[str, int]],
                load: dict[str, int]) -> None:
    """Hand answers from the busiest judge to the idlest while their loads differ by 2 or more.

    A move takes an answer of a respondent for which the busy judge holds one of the extra pair counts
    and the idle one doesn't, so the respondent's pair counts stay within one; it keeps the answer's
    judges of other families at min_other or more. Each move lowers the sum of squared loads, so it ends."""
    judges = sorted({j for js in eligible.values() for j in js})
    while True:
        busy = max(judges, key=lambda j: (load[j], j))
        for idle in sorted(judges, key=lambda j: (load[j], j)):
            if load[busy] - load[idle] < 2:
                return
            move = next(((r, s) for (r, s), js in out.items()
                         if busy in js and idle not in js and idle in eligible[r]
                         and pairs[r][busy] > pairs[r][idle]
                         and sum(family[j] not in _families(family, r) for j in js - {busy} | {idle}) >= min_other),
                        None)
            if move is not None:
                r = move[0]
                out[move] = out[move] - {busy} | {idle}
                pairs[r][busy] -= 1
                pairs[r][idle] += 1
                load[busy] -= 1
                load[idle] += 1
                break
        else:
            return


def more(chosen: Mapping[tuple[Respondent, Slot], Collection[str]], wanted: Sequence[tuple[Respondent, Slot]],
         eligible: Mapping[Respondent, Sequence[str]], seed: int = 0) -> list[tuple[Respondent, Slot, str]]:
    """One more judge for each entry of ``wanted``, in order (an answer listed twice gets two), by the design's
    rule continued over ``chosen``, the panel so far: (respondent, slot, judge) per extra judgment. An answer
    whose eligible judges are all on it already gets none."""
    pairs: dict[Respondent, Counter[str]] = {r: Counter() for r in eligible}
    load: Counter[str] = Counter()
    on = {answer: set(judges) for answer, judges in chosen.items()}
    for (respondent, _), judges in chosen.items():
        pairs[respondent].update(judges)
        load.update(judges)
    out = []
    for respondent, slot in wanted:
        taken = on.setdefault((respondent, slot), set())
        free = [j for j in eligible[respondent] if j not in taken]
        if not free:
            continue
        judge = min(free, key=lambda j: (pairs[respondent][j], load[j], rank_key(seed, "more", slot, respondent, j)))
        taken.add(judge)
        pairs[respondent][judge] += 1
        load[judge] += 1
        out.append((respondent, slot, judge))
    return out
