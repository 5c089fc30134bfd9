"""The judging job: blind prompts, JSON-constrained verdicts, scores computed here.

A judge sees the question, the rubric and one answer under a neutral label, never the
respondent's name. Its output is constrained to a JSON schema; whatever comes back is
parsed strictly and kept, valid or not, with its raw text.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from jobs.engines.base import Completion, Engine, Request
from sweep.config import Mode, ModelCard, Panel, Suite
from warehouse.schema import GenerationRow, JudgmentRow

if TYPE_CHECKING:
    from sweep.plan import JudgeCell

TEMPLATE = """## Question
{question}

## Grading rubric (for you only)
{rubric}

## {label}
{answer}

## Your task
{brief}
Criteria:
{criteria}

Reply with JSON only: an integer from {lo} to {hi} for each criterion, and a "justification" of \
2-3 sentences (at most {max_chars} characters)."""

ANSWERABLE = ("ok", "truncated")
"""Generation statuses whose text is shown to judges; empty and failed answers are not."""


def build_messages(suite: Suite, eval_id: str, answer: str, label: str, max_chars: int) -> tuple[tuple[str, str], ...]:
    item = next(p for p in suite.prompts if p.id == eval_id)
    criteria = "\n".join(f"- {c.name} ({c.weight:.0%}): {c.description}" for c in suite.criteria)
    text = TEMPLATE.format(
        question=item.prompt.strip(), rubric=item.rubric.strip(), label=label, answer=answer.strip(),
        brief=suite.judge_brief.strip(), criteria=criteria, lo=suite.scale_min, hi=suite.scale_max,
        max_chars=max_chars,
    )
    return (("user", text),)


def verdict_schema(suite: Suite, max_chars: int) -> dict[str, Any]:
    """Scores first, then a length-bounded justification the grammar closes in time."""
    props: dict[str, Any] = {
        c.name: {"type": "integer", "minimum": suite.scale_min, "maximum": suite.scale_max} for c in suite.criteria
    }
    props["justification"] = {"type": "string", "maxLength": max_chars}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


@dataclass(frozen=True)
class Verdict:
    status: str
    criteria: Optional[dict[str, int]] = None
    justification: Optional[str] = None
    error: Optional[str] = None


def parse(completion: Completion, suite: Suite) -> Verdict:
    """Strict: every criterion an integer on the scale, or the verdict is invalid."""
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
    scores: dict[str, int] = {}
    for c in suite.criteria:
        v = obj.get(c.name)
        if isinstance(v, bool) or not isinstance(v, int) or not suite.scale_min <= v <= suite.scale_max:
            return Verdict("invalid", error=f"{c.name}={v!r} is not an integer in [{suite.scale_min}, {suite.scale_max}]")
        scores[c.name] = v
    justification = obj.get("justification")
    return Verdict("ok", scores, justification if isinstance(justification, str) else None)


def weighted_score(criteria: Mapping[str, int], suite: Suite) -> float:
    """The pipeline's own arithmetic; a judge's total, if it gave one, is ignored.

    Summed in decimal so 0.3 * 7 + ... is exactly 5.45, not 5.4499999: ties and
    half-even rounding in the ranking SQL depend on exact values.
    """
    return float(sum(Decimal(str(c.weight)) * criteria[c.name] for c in suite.criteria))


def judge(
    engine: Engine, card: ModelCard, suite: Suite, panel: Panel, cells: Sequence[JudgeCell],
    answers: Mapping[str, GenerationRow], run_id: str,
) -> list[JudgmentRow]:
    """One JudgmentRow per cell; answers that can't be judged get status no_answer."""
    schema = verdict_schema(suite, panel.justification_max_chars)
    todo = [c for c in cells if answers[c.answer_key].status in ANSWERABLE]
    requests = [
        Request(
            build_messages(suite, c.eval_id, answers[c.answer_key].answer, c.label, panel.justification_max_chars),
            c.sampling, json_schema=schema, thinking=panel.mode is Mode.thinking,
        )
        for c in todo
    ]
    completions = dict(zip((c.key for c in todo), engine.complete(requests), strict=True)) if todo else {}
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for cell in cells:
        answer = answers[cell.answer_key]
        comp = completions.get(cell.key)
        verdict = (
            parse(comp, suite) if comp is not None
            else Verdict("no_answer", error=f"answer status {answer.status}: nothing to judge")
        )
        rows.append(
            JudgmentRow(
                run_id=run_id, cell_key=cell.key, answer_key=cell.answer_key, judge=card.name,
                judge_family=card.family, respondent=answer.model, respondent_family=answer.family,
                pool_index=answer.pool_index, eval_id=cell.eval_id, sample=cell.sample, label=cell.label,
                criteria=verdict.criteria,
                score=weighted_score(verdict.criteria, suite) if verdict.criteria else None,
                scale_max=suite.scale_max, justification=verdict.justification, status=verdict.status,
                error=verdict.error, raw=comp.text if comp else "", finish_reason=comp.finish_reason if comp else "",
                prompt_tokens=comp.prompt_tokens if comp else 0, output_tokens=comp.output_tokens if comp else 0,
                latency_s=comp.latency_s if comp else 0.0, created_at=now,
            )
        )
    return rows
