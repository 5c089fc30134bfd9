"""Cells: the units of work a plan is made of, each named by a content key of everything that
determines its output (resume and the warehouse match rows to cells by that key)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from sweep.core.config import ModelCard, Suite


@dataclass(frozen=True)
class SamplingParams:
    """Sampling after inheritance is resolved: what the engine is asked for."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    presence_penalty: float
    max_tokens: int
    seed: int


@dataclass(frozen=True)
class GenerateCell:
    """One answer: a model, a prompt, a sample index."""

    key: str
    model: str
    eval_id: str
    sample: int
    messages: tuple[tuple[str, str], ...]
    """(role, content) pairs; plain-format cards get their prompt rendered by the engine."""
    sampling: SamplingParams


@dataclass(frozen=True)
class JudgeCell:
    """One judgment: a judge reading one answer, blind."""

    key: str
    judge: str
    respondent: str
    eval_id: str
    sample: int
    label: str
    """Neutral name the judge sees instead of the respondent's."""
    answer_key: str
    """Key of the GenerateCell whose answer is judged."""
    sampling: SamplingParams
    scrub: tuple[str, ...] = ()
    """Names replaced in the answer before the judge reads it (sweep.core.prompts.identity_terms)."""


@dataclass(frozen=True)
class CompareCell:
    """One pairwise verdict: a judge reading two answers to the same prompt, blind, in one order."""

    key: str
    judge: str
    eval_id: str
    sample: int
    first: str
    """Respondent whose answer is shown first, as "Response 1"."""
    second: str
    """Respondent shown second, as "Response 2"."""
    first_key: str
    """Key of the GenerateCell shown first."""
    second_key: str
    sampling: SamplingParams
    scrub: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepPlan:
    run_id: str
    cards: tuple[ModelCard, ...]
    """The pool, in answer order (ties in a ranking go to the earlier card)."""
    suite: Suite
    generate: tuple[GenerateCell, ...]
    judge: tuple[JudgeCell, ...]
    compare: tuple[CompareCell, ...] = ()
    """Pairwise verdicts (judge.pairwise): each unordered pair in both orders."""

    def card(self, name: str) -> ModelCard:
        return next(c for c in self.cards if c.name == name)


def content_key(*parts: Any) -> str:
    """Stable hash of everything that determines a cell's output."""
    blob = json.dumps(parts, sort_keys=True, default=_jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "value"):  # Enum
        return obj.value
    return asdict(obj)


