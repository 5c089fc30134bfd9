"""An OpenAI-compatible chat endpoint (``vllm serve``, SGLang, Ollama, hosted providers).

A batch goes out as concurrent requests, at most ``endpoint.max_concurrency`` in flight.
Timeouts, retries on 429, 5xx, timeouts and connection errors (exponential backoff with
jitter, Retry-After honoured) are the ``openai`` client's own, configured from the card.
Every request that still fails (retries spent, garbage body, a connection dropped mid-stream)
becomes that cell's error completion, ``ClassName: message``; nothing escapes the batch.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any, Optional, Sequence

import httpx2
import openai

from jobs.engines.base import Completion, EngineSettings, Request, register
from sweep.core.config import Endpoint, ModelCard

# Tags each HTTP request with its place in the batch, so the client's own retries can be
# counted per cell (the client reports retries only on success, not on the error it raises).
REQUEST_HEADER = "x-sweep-request"


class StreamCutOff(Exception):
    """A streamed response that broke off, or ended without its finish_reason."""


def cost_usd(endpoint: Endpoint, prompt_tokens: int, output_tokens: int) -> Optional[float]:
    """Usage times the card's prices (USD per million tokens); None when a price is unknown."""
    if endpoint.price_input_per_mtok is None or endpoint.price_output_per_mtok is None:
        return None
    return (prompt_tokens * endpoint.price_input_per_mtok + output_tokens * endpoint.price_output_per_mtok) / 1e6


def backoff_s(retry: int) -> float:
    """The client's schedule (0.5 s doubling to 8 s, minus up to 25% jitter), for the one case
    it doesn't retry: a stream cut off after its response began."""
    return min(0.5 * 2.0**retry, 8.0) * (1 - 0.25 * random.random())


class OpenAIEngine:
    def __init__(self, card: ModelCard, settings: EngineSettings) -> None:
        assert card.endpoint is not None  # validate() guarantees it
        self.card, self.endpoint = card, card.endpoint
        # Servers that take no key still need a non-empty one in the header.
        self.api_key = settings.api_key or "none"

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        return asyncio.run(self._batch(requests)) if requests else []

    async def _batch(self, requests: Sequence[Request]) -> list[Completion]:
        sent: Counter[str] = Counter()

        async def count(request: httpx2.Request) -> None:
            sent[request.headers.get(REQUEST_HEADER, "")] += 1

        ep = self.endpoint
        # A client per batch: its connection pool belongs to this batch's event loop.
        http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [count]})
        async with openai.AsyncOpenAI(base_url=ep.base_url, api_key=self.api_key, timeout=ep.timeout_s,
                                      max_retries=ep.max_retries, http_client=http) as client:
            gate = asyncio.Semaphore(ep.max_concurrency)
            return list(await asyncio.gather(*(self._one(client, gate, sent, str(i), r)
                                               for i, r in enumerate(requests))))

    async def _one(self, client: openai.AsyncOpenAI, gate: asyncio.Semaphore, sent: Counter[str], tag: str,
                   request: Request) -> Completion:
        queued = time.monotonic()
        async with gate:
            started = time.monotonic()
            while True:
                try:
                    return await self._call(client, request, tag, started, queued, sent)
                except StreamCutOff as e:
                    # The client retries only until a response begins; a stream cut off after
                    # that is retried here, within the same request budget.
                    if sent[tag] > self.endpoint.max_retries:
                        return self._failed(e.__cause__ or e, started, queued, sent[tag])
                    await asyncio.sleep(backoff_s(sent[tag] - 1))
                except Exception as e:  # noqa: BLE001 - any failure is this cell's error row, never the batch's
                    return self._failed(e, started, queued, sent[tag])

    def _failed(self, e: Exception, started: float, queued: float, requests: int) -> Completion:
        message = str(e).splitlines()[0][:300] if str(e) else ""
        return Completion("", None, "error", 0, 0, time.monotonic() - started, queue_s=started - queued,
                          error=f"{type(e).__name__}: {message}", requests=requests)

    def _kwargs(self, request: Request, tag: str) -> dict[str, Any]:
        s, ep = request.sampling, self.endpoint
        kwargs: dict[str, Any] = dict(
            model=ep.model, messages=[{"role": role, "content": text} for role, text in request.messages],
            max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, seed=s.seed,
            presence_penalty=s.presence_penalty, extra_headers={REQUEST_HEADER: tag},
        )
        # vLLM/SGLang extensions, sent only when they change something: strict providers
        # reject parameters they don't know.
        extra: dict[str, Any] = {}
        if s.top_k > 0:
            extra["top_k"] = s.top_k
        if s.min_p > 0:
            extra["min_p"] = s.min_p
        if self.card.reasoning_parser:
            extra["chat_template_kwargs"] = {"enable_thinking": request.thinking}
        if extra:
            kwargs["extra_body"] = extra
        if request.json_schema is not None and ep.json_schema:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": request.json_schema, "strict": True},
            }
        return kwargs

    async def _call(self, client: openai.AsyncOpenAI, request: Request, tag: str, started: float, queued: float,
                    sent: Counter[str]) -> Completion:
        kwargs = self._kwargs(request, tag)
        text: list[str] = []
        reasoning: list[str] = []
        finish: Optional[str] = None
        usage: Any = None
        first: Optional[float] = None
        if self.endpoint.stream:
            stream = await client.chat.completions.create(**kwargs, stream=True,
                                                          stream_options={"include_usage": True})
            try:
                async for chunk in stream:
                    usage = chunk.usage or usage
                    for choice in chunk.choices:
                        piece, thought = choice.delta.content, _reasoning(choice.delta)
                        if first is None and (piece or thought):
                            first = time.monotonic()
                        text.append(piece or "")
                        reasoning.append(thought or "")
                        finish = choice.finish_reason or finish
            except (openai.APIConnectionError, httpx2.TransportError) as e:
                raise StreamCutOff("the connection dropped mid-stream") from e
        else:
            response = await client.chat.completions.create(**kwargs)
            choice = response.choices[0]
            text, reasoning = [choice.message.content or ""], [_reasoning(choice.message) or ""]
            finish, usage = choice.finish_reason, response.usage
        done = time.monotonic()
        if finish is None:
            raise StreamCutOff("the response ended before its finish_reason")
        prompt_tokens = usage.prompt_tokens if usage else 0
        output_tokens = usage.completion_tokens if usage else 0
        return Completion(
            text="".join(text), reasoning="".join(reasoning) or None, finish_reason=finish,
            prompt_tokens=prompt_tokens, output_tokens=output_tokens, latency_s=done - started,
            ttft_s=first - started if first is not None else None, queue_s=started - queued,
            cost_usd=cost_usd(self.endpoint, prompt_tokens, output_tokens) if usage else None,
            requests=sent[tag],
        )

    def close(self) -> None:
        pass


def _reasoning(message: Any) -> Optional[str]:
    """Reasoning split off by the server's reasoning parser: ``reasoning_content`` (vLLM's
    long-standing name) or ``reasoning`` (newer servers); not in the client's types."""
    return getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)


@register("openai")
def create(card: ModelCard, settings: EngineSettings) -> OpenAIEngine:
    return OpenAIEngine(card, settings)
