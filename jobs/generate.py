"""The generation job: a model's cells in, one GenerationRow per cell out."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, replace
from typing import Mapping, Optional, Sequence

from jobs.engines.base import Completion, Engine, Request, complete_with_retries, larger_budget
from sweep.core.cells import GenerateCell
from sweep.core.config import Mode, ModelCard, Suite
from sweep.core.rows import GenerationRow


def answer_status(c: Completion) -> str:
    """Truncation and emptiness are statuses of their own: in the study, a model whose
    reasoning ate its whole budget returned empty answers that judges scored as answers."""
    if c.error is not None or c.finish_reason == "error":
        return "error"
    if not c.text.strip():
        return "empty"
    if c.finish_reason == "length":
        return "truncated"
    return "ok"


def generate(
    engine: Engine, cards: Mapping[str, ModelCard], pool_index: Mapping[str, int], suite: Suite,
    cells: Sequence[GenerateCell], run_id: str, retry_truncated: Optional[int] = 0, max_model_len: int = 1 << 30,
) -> list[GenerationRow]:
    """All the requests go to the engine in one call, so it batches them, whichever of the cards
    sharing it (``cards``, by name) each cell is of: each request carries its card's messages, sampling
    and mode. Answers cut off at max_tokens are asked again with a larger budget, ``retry_truncated``
    times (None: each card's own count)."""
    requests = [Request(c.messages, c.sampling, thinking=cards[c.model].mode is Mode.thinking) for c in cells]

    def cut_off(request: Request, last: Completion, attempt: int) -> Optional[Request]:
        return larger_budget(request, last, max_model_len) if last.finish_reason == "length" else None

    sent: list[Request] = []
    limits = [cards[c.model].re_asks(retry_truncated) for c in cells]
    completions, attempts = complete_with_retries(engine, requests, cut_off, limits, sent)
    # The sampling a re-asked answer was last asked with (a larger budget), not the planned one.
    asked = [replace(c, sampling=r.sampling) for c, r in zip(cells, sent, strict=True)]
    return rows(cards, pool_index, suite, asked, run_id, completions, attempts)


def failed(cards: Mapping[str, ModelCard], pool_index: Mapping[str, int], suite: Suite,
           cells: Sequence[GenerateCell], run_id: str, error: str, attempts: int) -> list[GenerationRow]:
    """Rows for cells whose instance kept failing: kept as errors, never silently missing."""
    c = Completion("", None, "error", 0, 0, 0.0, error=error)
    return rows(cards, pool_index, suite, cells, run_id, [c] * len(cells), [attempts] * len(cells))


def rows(cards: Mapping[str, ModelCard], pool_index: Mapping[str, int], suite: Suite, cells: Sequence[GenerateCell],
         run_id: str, completions: Sequence[Completion], attempts: Sequence[int]) -> list[GenerationRow]:
    """One row per cell, of the cell's own card (``cards`` and ``pool_index`` by card name)."""
    items = {i.id: i for i in suite.prompts}
    now = dt.datetime.now(dt.timezone.utc)
    return [
        GenerationRow(
            run_id=run_id, cell_key=cell.key, model=card.name, family=card.family, pool_index=pool_index[card.name],
            eval_id=cell.eval_id, category=items[cell.eval_id].category, sample=cell.sample,
            prompt=items[cell.eval_id].prompt, system_prompt=card.system_prompt, answer=c.text,
            reasoning=c.reasoning, status=answer_status(c), finish_reason=c.finish_reason,
            prompt_tokens=c.prompt_tokens, output_tokens=c.output_tokens, latency_s=c.latency_s, ttft_s=c.ttft_s,
            queue_s=c.queue_s, sampling=json.dumps(asdict(cell.sampling), sort_keys=True), engine=card.engine,
            error=c.error, attempts=n, created_at=now, cost_usd=c.cost_usd, requests=c.requests,
        )
        for cell, c, n in zip(cells, completions, attempts, strict=True)
        for card in (cards[cell.model],)
    ]
