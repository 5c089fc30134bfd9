"""Cells: the units of work a plan is made of, each named by a content key of everything that
determines its output (resume and the warehouse match rows to cells by that key)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

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
    round: int = 1
    """Judging round that asked for it (judge.adaptive: 2, 3, ... for the extra judgments); not in the key, so a
    cell is reused whichever round asks for it."""


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
class Context:
    """One card's context window: what its requests need, what its instance can hold."""

    model: str
    need: int
    """What must fit: its longest answer prompt plus its answer budget, and a judge prompt plus the
    verdict budget."""
    want: int
    """What fits every request: with the re-ask budgets (run.retry_truncated, judge.retries: each
    doubles), and judge prompts holding the longest answers it reads."""
    limit: int
    """The model's context length, or the tokens its KV cache holds if fewer."""
    limited_by: str
    kv_bytes_per_gpu: int
    """KV cache the engine gets: CPU engine.kv_cache_gib; GPU estimated, what gpu_memory_utilization
    leaves after the weights and runtime overhead."""

    @property
    def max_model_len(self) -> int:
        return min(self.want, self.limit)

    @property
    def capped(self) -> bool:
        return self.want > self.limit

    def warning(self) -> str:
        return (f"{self.model}: max_model_len capped at {self.limit:,} tokens ({self.limited_by}); its longest "
                f"requests (re-asks, judging the longest answers it reads) would need {self.want:,}: re-asks grow only "
                "that far, and it can't judge an answer that doesn't fit")



@dataclass(frozen=True)
class EngineSettings:
    """Everything an engine needs beyond the card, resolved by the runner."""

    weights: str
    dtype: str
    """sweep's run dtype (float32, bfloat16, fp8 ...): fp8 means an FP8 checkpoint."""
    max_model_len: int
    kv_cache_bytes: Optional[int]
    """vLLM's kv_cache_memory_bytes; None on GPU: gpu_memory_utilization sizes the KV cache."""
    enforce_eager: bool
    tensor_parallel_size: int
    gpu_memory_utilization: float
    on_gpu: bool
    seed: int
    pipeline_parallel_size: int = 1
    revision: Optional[str] = None
    """Of a Hub checkpoint (``weights`` a repo id); None for local weights."""
    executor: str = "uni"
    """vLLM's distributed_executor_backend: uni (one device), mp (GPUs this process holds on one
    node), ray (workers in the placement group the instance runs in, across nodes)."""
    api_key: Optional[str] = field(default=None, repr=False)
    """An API card's key, read by the driver from the card's api_key_env: workers of a remote
    cluster don't share the driver's environment. Never printed, never stored."""



@dataclass(frozen=True)
class AnswerSizes:
    """One card's answers, summed once by the planner: what the cost model and the context windows
    (sweep.engine_args) read instead of walking the cells."""

    model: str
    answers: int
    prompt_tokens: int
    """Its longest answer prompt, in tokens bounded by UTF-8 bytes (engine_args.message_tokens)."""
    prefill_tokens: int
    """The cost model's prefill estimate over all its answer prompts (``prefill_estimate`` of each, summed,
    so the per-card total equals the sum over its cells in sweep.cost.cell_work)."""
    budget: int
    """max_tokens of its answers: one figure, as a card's sampling doesn't depend on the prompt."""


def prefill_estimate(messages: Sequence[tuple[str, str]]) -> int:
    """Prefill tokens of one prompt for the cost model: ~4 tokens per 3 whitespace-separated words."""
    return sum(len(text.split()) for _, text in messages) * 4 // 3


@dataclass(frozen=True)
class PanelLoad:
    """How many of one respondent's answers one judge scores (the panel, counted once by the planner)."""

    judge: str
    respondent: str
    judgments: int
    verdict_budget: int
    """The judge's max_tokens per verdict."""


@dataclass(frozen=True)
class SharedEngine:
    """One loaded engine and the cards that run on it: their weights and engine settings are the same
    (sweep.plan.shared_engines), only their prompts, sampling and seeds differ, so one load serves them
    all and their requests go to it in one batch; rows still carry each cell's own card."""

    key: str
    """Content key of what the engine is (sweep.plan: checkpoint, dtype, format, sizing facts)."""
    cards: tuple[str, ...]
    """Pool order; the first hosts it: the scheduling loop knows the engine by that card's name."""

    @property
    def host(self) -> str:
        return self.cards[0]

    @property
    def name(self) -> str:
        """Every card it serves, for the plan table and the load log."""
        return " + ".join(self.cards)


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
    contexts: tuple[Context, ...] = ()
    """Each local card's context window (max_model_len) on the planned cluster."""
    sizes: tuple[AnswerSizes, ...] = ()
    """Per card, its answers' sizes (pool order)."""
    loads: tuple[PanelLoad, ...] = ()
    """Per (judge, respondent) with judgments, their count (judge in pool order, then respondent)."""
    engines: tuple[SharedEngine, ...] = ()
    """The loaded engines, in pool order of their hosts; empty: one per card."""

    def card(self, name: str) -> ModelCard:
        return next(c for c in self.cards if c.name == name)

    def shared(self) -> tuple[SharedEngine, ...]:
        """The engines, one per card when the plan names none."""
        return self.engines or tuple(SharedEngine(c.name, (c.name,)) for c in self.cards)

    def hosts(self) -> dict[str, str]:
        """Card name -> the host of its engine (the name the scheduling loop and the queue know it by)."""
        return {name: e.host for e in self.shared() for name in e.cards}

    def engine(self, host: str) -> SharedEngine:
        """The engine a host card names."""
        return next(e for e in self.shared() if e.host == host)

    def engine_context(self, host: str) -> Optional[Context]:
        """The window of the engine ``host`` names: its cards' longest, so every card's requests fit (they
        share the model's context length and KV cache, hence the limit); None for API cards."""
        windows = [c for c in (self.context(n) for n in self.engine(host).cards) if c is not None]
        return max(windows, key=lambda c: c.max_model_len, default=None)

    def context(self, name: str) -> Optional[Context]:
        """None for API cards."""
        return next((c for c in self.contexts if c.model == name), None)


def content_key(*parts: Any) -> str:
    """Stable hash of everything that determines a cell's output."""
    return hashlib.sha256(_ENCODER.encode(parts).encode()).hexdigest()[:20]


HOLE = object()
"""A part of ``key_template`` given per cell."""


def key_template(*parts: Any) -> Callable[..., str]:
    """``content_key(*parts)`` with each ``HOLE`` taken from the call's arguments, in order: the parts
    that don't vary are encoded once. The same bytes are hashed (json.dumps writes a tuple as its items'
    encodings joined by ", "), so the keys are content_key's; a plan's 10^5 cells cost a hash each."""
    glue: list[str] = []  # the text before each hole's value, separators included
    text = "["
    for i, part in enumerate(parts):
        text += ", " if i else ""
        if part is HOLE:
            glue.append(text)
            text = ""
        else:
            text += _ENCODER.encode(part)
    pieces = [p for g in glue for p in (g, "")] + [text + "]"]  # the values go to the odd places
    encode = _ENCODER.encode

    def key(*values: Any) -> str:
        blob = pieces.copy()
        blob[1::2] = map(encode, values)  # a ValueError unless one value per hole
        return hashlib.sha256("".join(blob).encode()).hexdigest()[:20]

    return key


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "value"):  # Enum
        return obj.value
    return asdict(obj)


_ENCODER = json.JSONEncoder(sort_keys=True, default=_jsonable)
"""What json.dumps(..., sort_keys=True, default=_jsonable) encodes with."""


