"""A loaded model: the body of the Ray actor that holds one engine for its whole life.

It answers (generation) and then judges with the same weights, so each model is
loaded once per sweep when the cluster has room for the whole pool. Cards whose weights and
engine settings are the same share it (sweep.plan.shared_engines): their cells come in one
batch, each request with its own card's prompt and sampling, each row naming its own card.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Optional, Sequence

from jobs import engines
from jobs.compare import compare
from jobs.generate import generate
from jobs.judge import judge
from jobs.models import local_weights
from sweep.core.config import ModelCard, Panel, Suite
from sweep.core.cells import CompareCell, GenerateCell, JudgeCell
from sweep.core.rows import ComparisonRow, GenerationRow, JudgmentRow


class Instance:
    def __init__(self, cards: Sequence[ModelCard], settings: engines.EngineSettings, *read_ahead: object) -> None:
        """``cards``: those sharing the engine, its host first (its weights and engine settings are theirs).
        ``read_ahead``: the read-aheads of its weights still running on its nodes (sweep.ray_backend), passed
        so that Ray starts it once they have finished and it loads from the page cache."""
        card = cards[0]
        self.cards = {c.name: c for c in cards}
        self.max_model_len = settings.max_model_len
        if not card.remote and not settings.weights:  # a Hub checkpoint is named already (engine_args)
            settings = replace(settings, weights=local_weights(card, settings.dtype))
        try:
            self.engine = engines.create(card, settings)
        except Exception as e:  # one line for the driver's log and the error rows: card, weights, cause, fix
            cause = (str(e).strip().splitlines() or [""])[0][:300]
            raise RuntimeError(
                f"{' + '.join(self.cards)}: its engine failed to start from {settings.weights or 'its endpoint'} "
                f"({type(e).__name__}: {cause}); fix: make that a whole model folder (config.json, weights, "
                "tokenizer) vLLM loads, or change the card's engine settings") from e

    def generate(
        self, pool_index: Mapping[str, int], suite: Suite, cells: Sequence[GenerateCell], run_id: str,
        retry_truncated: Optional[int],
    ) -> list[GenerationRow]:
        return generate(self.engine, self.cards, pool_index, suite, cells, run_id, retry_truncated,
                        self.max_model_len)

    def judge(
        self, suite: Suite, panel: Panel, cells: Sequence[JudgeCell], answers: Mapping[str, GenerationRow], run_id: str,
        pairs: Sequence[CompareCell] = (),
    ) -> list[JudgmentRow | ComparisonRow]:
        """Scores, then pairwise verdicts (judge.pairwise) with the same loaded weights."""
        rows: list[JudgmentRow | ComparisonRow] = []
        if cells:
            rows += judge(self.engine, self.cards, suite, panel, cells, answers, run_id, self.max_model_len)
        if pairs:
            rows += compare(self.engine, self.cards, suite, panel, pairs, answers, run_id, self.max_model_len)
        return rows
