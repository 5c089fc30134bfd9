"""The engine contract: a batch of chat requests in, one completion per request out."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Protocol, Sequence, TypeVar

from sweep.core.cells import EngineSettings, SamplingParams  # noqa: F401  (re-exported: the engine contract)
from sweep.core.config import ModelCard
from sweep.core.errors import SweepError


@dataclass(frozen=True)
class Request:
    messages: tuple[tuple[str, str], ...]
    sampling: SamplingParams
    json_schema: Optional[dict[str, Any]] = None
    """Constrain the output to this JSON schema (structured outputs)."""
    thinking: bool = False
    logprobs: int = 0
    """Return this many most likely tokens per generated position (0: none)."""


@dataclass(frozen=True)
class Completion:
    text: str
    """The answer, with any reasoning removed."""
    reasoning: Optional[str]
    finish_reason: str
    """stop | length | error."""
    prompt_tokens: int
    output_tokens: int
    latency_s: float
    """Arrival to last token."""
    ttft_s: Optional[float] = None
    queue_s: Optional[float] = None
    error: Optional[str] = None
    cost_usd: Optional[float] = None
    """Usage times the card's price (API engines with a price); None otherwise."""
    requests: Optional[int] = None
    """HTTP requests sent, transport retries included (API engines); None otherwise."""
    logprobs: Optional[tuple[tuple[tuple[str, float], ...], ...]] = None
    """When asked for (Request.logprobs) and the engine can: per generated token, (text, logprob)
    of the sampled token first, then of the most likely tokens, best first."""


class Engine(Protocol):
    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """All requests go to the engine together, so it can batch them."""
        ...

    def close(self) -> None: ...


Factory = Callable[[ModelCard, EngineSettings], Engine]
_REGISTRY: dict[str, str] = {"vllm": "jobs.engines.vllm", "openai": "jobs.engines.openai", "fake": "jobs.engines.fake"}
_FACTORIES: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    def deco(factory: Factory) -> Factory:
        _FACTORIES[name] = factory
        return factory

    return deco


def create(card: ModelCard, settings: EngineSettings) -> Engine:
    """Import the card's engine module on first use (vLLM costs ~6 s to import)."""
    if card.engine not in _REGISTRY:
        raise SweepError(f"card {card.name}: unknown engine '{card.engine}'", f"use one of {sorted(_REGISTRY)}")
    importlib.import_module(_REGISTRY[card.engine])
    return _FACTORIES[card.engine](card, settings)


Retry = Callable[[Request, Completion, int], Optional[Request]]
"""Given a request, its last completion and the attempt about to be made: the request to
send again, or None when that completion stands."""


def complete_with_retries(engine: Engine, requests: Sequence[Request], retry: Retry, times: int | Sequence[int],
                          sent: Optional[list[Request]] = None) -> tuple[list[Completion], list[int]]:
    """Complete every request, then re-ask the ones ``retry`` picks, up to ``times`` more
    rounds (per request when a sequence: cards sharing an engine re-ask as each says), each round
    one batch. Returns the final completions and attempts per request; ``sent``, if given, is
    filled with the request each final completion answered."""
    current = list(requests)
    limits = [times] * len(current) if isinstance(times, int) else list(times)
    completions = engine.complete(current) if current else []
    attempts = [1] * len(current)
    for attempt in range(2, max(limits, default=0) + 2):
        again = {i: r for i, r in ((i, retry(current[i], completions[i], attempt)) for i in range(len(current))
                                   if attempt <= limits[i] + 1) if r is not None}
        if not again:
            break
        for i, c in zip(again, engine.complete(list(again.values())), strict=True):
            current[i], completions[i], attempts[i] = again[i], spent(completions[i], c), attempt
    if sent is not None:
        sent[:] = current
    return completions, attempts


def spent(before: Completion, after: Completion) -> Completion:
    """``after`` carrying what every attempt so far cost: a re-ask is paid for too."""
    return replace(after, cost_usd=_total(before.cost_usd, after.cost_usd),
                   requests=_total(before.requests, after.requests))


Number = TypeVar("Number", int, float)


def _total(a: Optional[Number], b: Optional[Number]) -> Optional[Number]:
    return None if a is None or b is None else a + b


def larger_budget(request: Request, last: Completion, max_model_len: int) -> Optional[Request]:
    """The request with twice the output budget, capped by the context window; None if it
    can't grow."""
    budget = min(request.sampling.max_tokens * 2, max_model_len - last.prompt_tokens)
    if budget <= request.sampling.max_tokens:
        return None
    return replace(request, sampling=replace(request.sampling, max_tokens=budget))
