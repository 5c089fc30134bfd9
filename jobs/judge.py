"""The judging job: blind prompts, JSON-constrained verdicts, scores computed here.

A judge sees the question, the rubric and one answer under a neutral label, never the
respondent's name. Its output is constrained to a JSON schema; whatever comes back is
parsed strictly and kept, valid or not, with its raw text.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
import re
from collections import defaultdict
from decimal import Decimal
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional, Sequence

from jobs.engines.base import Completion, Engine, Request, Retry, complete_with_retries, larger_budget
from sweep.core.cells import JudgeCell
from sweep.core.config import Mode, ModelCard, Panel, Suite
from sweep.core.prompts import SOFT_TOP_K, answerable, cut_off, judge_messages, judge_schema, scrub
from sweep.core.rows import GenerationRow, JudgmentRow

@dataclass(frozen=True)
class Verdict:
    status: str
    criteria: Optional[dict[str, int]] = None
    justification: Optional[str] = None
    error: Optional[str] = None
    winner: Optional[str] = None
    """Pairwise verdicts: "1", "2" or "tie"."""


def json_object(completion: Completion) -> dict[str, Any] | Verdict:
    """A completed verdict's JSON object, or why there is none (error, truncated, invalid)."""
    if completion.error is not None or completion.finish_reason == "error":
        return Verdict("error", error=completion.error or "engine error")
    if completion.finish_reason == "length":
        return Verdict("truncated", error="judge hit max_tokens before closing its JSON")
    try:
        obj = json.loads(completion.text)
    except json.JSONDecodeError as e:
        return Verdict("invalid", error=f"not JSON: {e}")
    if not isinstance(obj, dict):
        return Verdict("invalid", error="JSON is not an object")
    return obj


def parse(completion: Completion, suite: Suite) -> Verdict:
    """Strict: every criterion an integer on the scale, or the verdict is invalid."""
    obj = json_object(completion)
    if isinstance(obj, Verdict):
        return obj
    scores: dict[str, int] = {}
    for c in suite.criteria:
        v = obj.get(c.name)
        if isinstance(v, bool) or not isinstance(v, int) or not suite.scale_min <= v <= suite.scale_max:
            return Verdict("invalid", error=f"{c.name}={v!r} is not an integer in [{suite.scale_min}, {suite.scale_max}]")
        scores[c.name] = v
    justification = obj.get("justification")
    return Verdict("ok", scores, justification if isinstance(justification, str) else None)


_DIGITS = re.compile(r"\s*([0-9]+)\s*")


def soft_criteria(completion: Completion, suite: Suite) -> Optional[dict[str, float]]:
    """Each criterion's expected score under the judge's own probabilities; None when the completion
    has no logprobs or a score's tokens can't be located in them.

    Definition. Take the token at which the criterion's value starts in the verdict (``"name": 7``).
    Every token among it and its top-k alternatives whose text is digits (surrounding whitespace
    allowed) spells a value: the number it reads, with its probability exp(logprob). Only the sampled
    path can be followed further: for the sampled token, each digit token at the next position
    extends its value (``1`` then ``0`` is 10: P(1) * P(0 | 1)) and the rest of that next position's
    mass keeps the value as it is. Values off the scale are dropped, the rest renormalised, and the
    expected value taken. So values of at most two tokens are covered (SmolLM2 and Gemma 3 write one
    token per digit: 1-10 needs two), and an unsampled first digit counts as the one-digit value (its
    continuation was never computed). The logprobs are vLLM's raw ones after the JSON grammar's mask.
    """
    if not completion.logprobs:
        return None
    tokens = [position[0][0] for position in completion.logprobs]
    starts = [0]
    for token in tokens:
        starts.append(starts[-1] + len(token))
    text = "".join(tokens)
    out: dict[str, float] = {}
    for c in suite.criteria:
        match = re.search(rf'"{re.escape(c.name)}"\s*:\s*(\d+)', text)
        if match is None:
            return None
        at = bisect.bisect_right(starts, match.start(1)) - 1
        if at >= len(tokens) or starts[at] + len(tokens[at]) - len(tokens[at].lstrip()) != match.start(1):
            return None  # the value doesn't start a token: can't read alternatives for it
        mass: dict[int, float] = defaultdict(float)
        for rank, (token, logprob) in enumerate(completion.logprobs[at]):
            digits = _DIGITS.fullmatch(token)
            if digits is None:
                continue
            p, value = math.exp(logprob), digits.group(1)
            nxt = completion.logprobs[at + 1] if rank == 0 and at + 1 < len(tokens) else ()
            more = [(t, math.exp(lp)) for t, lp in nxt if re.fullmatch("[0-9]+", t)]
            for extra, q in more:
                mass[int(value + extra)] += p * q
            mass[int(value)] += p * (1 - sum(q for _, q in more))
        kept = {v: p for v, p in mass.items() if suite.scale_min <= v <= suite.scale_max}
        total = sum(kept.values())
        if total <= 0:
            return None
        out[c.name] = sum(v * p for v, p in kept.items()) / total
    return out


def soft_score(completion: Completion, suite: Suite) -> Optional[float]:
    """The soft criteria weighted as the sampled ones are (weighted_score), in floating point."""
    soft = soft_criteria(completion, suite)
    return sum(c.weight * soft[c.name] for c in suite.criteria) if soft else None


def weighted_score(criteria: Mapping[str, int], suite: Suite) -> float:
    """The pipeline's own arithmetic; a judge's total, if it gave one, is ignored.

    Summed in decimal so 0.3 * 7 + ... is exactly 5.45, not 5.4499999: ties and
    half-even rounding in the ranking SQL depend on exact values.
    """
    return float(sum(Decimal(str(c.weight)) * criteria[c.name] for c in suite.criteria))


def judge(
    engine: Engine, cards: Mapping[str, ModelCard], suite: Suite, panel: Panel, cells: Sequence[JudgeCell],
    answers: Mapping[str, GenerationRow], run_id: str, max_model_len: int = 1 << 30,
) -> list[JudgmentRow]:
    """One JudgmentRow per cell, naming the cell's own judge card (``cards``, by name: those sharing the
    engine); answers that can't be judged get status no_answer.

    Invalid and truncated verdicts are asked again, ``panel.retries`` times."""
    schema = judge_schema(suite, panel.justification_max_chars)
    todo = [c for c in cells if answerable(answers[c.answer_key], panel)]
    shown = {c.key: scrub(answers[c.answer_key].answer, c.scrub) for c in todo}  # once: the regex is the cost
    requests = [
        Request(
            judge_messages(suite, c.eval_id, shown[c.key][0], c.label,
                           panel.justification_max_chars, cut_off(answers[c.answer_key])),
            c.sampling, json_schema=schema, thinking=panel.mode is Mode.thinking,
            logprobs=SOFT_TOP_K if panel.soft_scores else 0,
        )
        for c in todo
    ]

    finals, tries = complete_with_retries(engine, requests, reask(lambda c: parse(c, suite).status, max_model_len),
                                          panel.retries)
    done = {c.key: (comp, n) for c, comp, n in zip(todo, finals, tries, strict=True)}
    return rows(cards, suite, cells, answers, run_id, done, {k: found for k, (_, found) in shown.items()})


def reask(status: Callable[[Completion], str], max_model_len: int) -> Retry:
    """Re-ask a verdict whose ``status`` is invalid (a new seed) or truncated (a new seed and twice
    the budget); any other status stands."""
    def again(request: Request, last: Completion, attempt: int) -> Optional[Request]:
        outcome = status(last)
        if outcome not in ("invalid", "truncated"):
            return None
        seed = replace(request.sampling, seed=request.sampling.seed + 7919 * attempt)  # a new draw
        redo = replace(request, sampling=seed)
        return (larger_budget(redo, last, max_model_len) or redo) if outcome == "truncated" else redo

    return again


def failed(cards: Mapping[str, ModelCard], suite: Suite, cells: Sequence[JudgeCell],
           answers: Mapping[str, GenerationRow], run_id: str, error: str, attempts: int) -> list[JudgmentRow]:
    """Rows for judgments whose judge instance kept failing: kept as errors, counted, never dropped."""
    c = Completion("", None, "error", 0, 0, 0.0, error=error)
    return rows(cards, suite, cells, answers, run_id, {cell.key: (c, attempts) for cell in cells})


def rows(cards: Mapping[str, ModelCard], suite: Suite, cells: Sequence[JudgeCell],
         answers: Mapping[str, GenerationRow], run_id: str, done: Mapping[str, tuple[Completion, int]],
         scrubbed: Optional[Mapping[str, Optional[str]]] = None) -> list[JudgmentRow]:
    """One row per cell, of its judge card (``cards`` by name); a cell without a completion had no answer
    to judge. ``scrubbed``: what ``scrub`` found in each judged answer, if known."""
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for cell in cells:
        card = cards[cell.judge]
        answer = answers[cell.answer_key]
        comp, attempts = done.get(cell.key, (None, 0))
        verdict = (
            parse(comp, suite) if comp is not None
            else Verdict("no_answer", error=f"answer status {answer.status}: nothing to judge")
        )
        out.append(
            JudgmentRow(
                run_id=run_id, cell_key=cell.key, answer_key=cell.answer_key, judge=card.name,
                judge_family=card.family, respondent=answer.model, respondent_family=answer.family,
                pool_index=answer.pool_index, eval_id=cell.eval_id, sample=cell.sample, label=cell.label,
                criteria=verdict.criteria,
                score=weighted_score(verdict.criteria, suite) if verdict.criteria else None,
                scale_max=suite.scale_max, scale_min=suite.scale_min, justification=verdict.justification, status=verdict.status,
                error=verdict.error, raw=comp.text if comp else "", finish_reason=comp.finish_reason if comp else "",
                prompt_tokens=comp.prompt_tokens if comp else 0, output_tokens=comp.output_tokens if comp else 0,
                latency_s=comp.latency_s if comp else 0.0, attempts=attempts, created_at=now,
                scrubbed=None if not comp else scrubbed[cell.key] if scrubbed is not None and cell.key in scrubbed
                else scrub(answer.answer, cell.scrub)[1],
                cost_usd=comp.cost_usd if comp else None, requests=comp.requests if comp else None,
                soft_score=soft_score(comp, suite) if comp is not None and verdict.criteria else None,
                round=cell.round,
            )
        )
    return out
