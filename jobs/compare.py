"""The pairwise judging job (judge.pairwise): two answers to one prompt, the better one picked.

A judge sees the question, the rubric and two peers' answers as "Response 1" and "Response 2"
(scrubbed, as in pointwise judging) and answers a JSON schema: which is better, or a tie, and
why. The plan asks every pair in both orders, so the position a judge prefers can be told apart
from the answer it prefers (views position_bias and pairwise_ranking).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Mapping, Sequence

from jobs.engines.base import Completion, Engine, Request, complete_with_retries
from jobs.judge import Verdict, json_object, reask
from sweep.core.cells import CompareCell
from sweep.core.config import Mode, ModelCard, Panel, Suite
from sweep.core.prompts import WINNERS, compare_messages, compare_schema, cut_off, scrub, shown
from sweep.core.rows import ComparisonRow, GenerationRow

def parse(completion: Completion) -> Verdict:
    """Strict: the winner is exactly "1", "2" or "tie", or the verdict is invalid."""
    obj = json_object(completion)
    if isinstance(obj, Verdict):
        return obj
    winner = obj.get("winner")
    if winner not in WINNERS:
        return Verdict("invalid", error=f"winner={winner!r} is not one of {list(WINNERS)}")
    justification = obj.get("justification")
    return Verdict("ok", justification=justification if isinstance(justification, str) else None, winner=winner)


def compare(
    engine: Engine, cards: Mapping[str, ModelCard], suite: Suite, panel: Panel, cells: Sequence[CompareCell],
    answers: Mapping[str, GenerationRow], run_id: str, max_model_len: int = 1 << 30,
) -> list[ComparisonRow]:
    """One ComparisonRow per cell; pairs with an answer judges don't see get status no_answer.

    Invalid and truncated verdicts are asked again, ``panel.retries`` times, as pointwise ones are."""
    schema = compare_schema(panel.justification_max_chars)
    todo = [c for c in cells if shown(c, answers, panel)]
    requests = [
        Request(
            compare_messages(suite, c.eval_id, scrub(answers[c.first_key].answer, c.scrub)[0],
                           scrub(answers[c.second_key].answer, c.scrub)[0], panel.justification_max_chars,
                           (cut_off(answers[c.first_key]), cut_off(answers[c.second_key]))),
            c.sampling, json_schema=schema, thinking=panel.mode is Mode.thinking,
        )
        for c in todo
    ]
    finals, tries = complete_with_retries(engine, requests, reask(lambda c: parse(c).status, max_model_len),
                                          panel.retries)
    done = {c.key: (comp, n) for c, comp, n in zip(todo, finals, tries, strict=True)}
    return rows(cards, cells, answers, run_id, done)


def failed(cards: Mapping[str, ModelCard], cells: Sequence[CompareCell], answers: Mapping[str, GenerationRow],
           run_id: str, error: str, attempts: int) -> list[ComparisonRow]:
    """Rows for verdicts whose judge instance kept failing: kept as errors, never dropped."""
    c = Completion("", None, "error", 0, 0, 0.0, error=error)
    return rows(cards, cells, answers, run_id, {cell.key: (c, attempts) for cell in cells})


def rows(cards: Mapping[str, ModelCard], cells: Sequence[CompareCell], answers: Mapping[str, GenerationRow],
         run_id: str, done: Mapping[str, tuple[Completion, int]]) -> list[ComparisonRow]:
    """One row per cell, of its judge card (``cards`` by name); a cell without a completion had an answer
    judges don't see."""
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for cell in cells:
        card = cards[cell.judge]
        one, two = answers[cell.first_key], answers[cell.second_key]
        comp, attempts = done.get(cell.key, (None, 0))
        verdict = parse(comp) if comp is not None else Verdict(
            "no_answer", error=f"answer statuses {one.status}, {two.status}: nothing to compare")
        found: Counter[str] = Counter()
        for answer in (one, two) if comp else ():
            found.update(json.loads(scrub(answer.answer, cell.scrub)[1] or "{}"))
        out.append(ComparisonRow(
            run_id=run_id, cell_key=cell.key, judge=card.name, judge_family=card.family, eval_id=cell.eval_id,
            sample=cell.sample, first=one.model, second=two.model, first_key=cell.first_key,
            second_key=cell.second_key, first_index=one.pool_index, second_index=two.pool_index,
            verdict=verdict.winner, winner={"1": one.model, "2": two.model}.get(verdict.winner or ""),
            justification=verdict.justification, status=verdict.status, error=verdict.error,
            raw=comp.text if comp else "", finish_reason=comp.finish_reason if comp else "",
            prompt_tokens=comp.prompt_tokens if comp else 0, output_tokens=comp.output_tokens if comp else 0,
            latency_s=comp.latency_s if comp else 0.0, attempts=attempts, created_at=now,
            scrubbed=json.dumps(dict(sorted(found.items())), ensure_ascii=False) if found else None,
            cost_usd=comp.cost_usd if comp else None, requests=comp.requests if comp else None,
        ))
    return out
