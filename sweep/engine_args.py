"""The arguments each model instance's engine starts with, decided in one place. Pure.

- Checkpoint and dtype: the card's, or with ``engine.prefer_fp8`` its published FP8 checkpoint
  (``fp8_repo`` at ``fp8_revision``), run with vLLM's ``dtype=auto`` (the checkpoint's quantization
  config says FP8; "fp8" is no vLLM dtype).
- KV cache: on CPU ``engine.kv_cache_gib`` (unset, vLLM-CPU takes 7.5 GiB). On GPU nothing: vLLM
  measures the loaded weights and the activation peak and gives the KV cache the rest of
  ``gpu_memory_utilization`` (Worker.determine_available_memory). ``kv_cache_memory_bytes`` would
  be that figure per GPU, skip the measurement and ignore gpu_memory_utilization
  (vllm/config/cache.py), so a figure from our estimates would either leave memory idle or run
  out when an estimate is low. The plan prints the estimate (``kv_bytes_per_gpu``), and sizing
  guarantees the reservation of ``engine.concurrency`` x ``engine.max_model_len`` tokens fits in it.
- enforce_eager: ``engine.enforce_eager``, or when unset eager on CPU and CUDA graphs on GPU.
- max_model_len: the longest request the instance's cards make (see ``Context``), bounded by
  the model's context length and the KV cache it has.
- Parallelism: TP x PP from the plan's shape; executor ``uni`` on one device, ``mp`` on one
  node, ``ray`` across nodes.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Collection, Mapping, Optional, Sequence

from sweep import sizing
from sweep.core.cells import AnswerSizes, Context, EngineSettings
from sweep.core.config import DType, Engine, ModelCard, Suite, SweepConfig
from sweep.core.errors import SweepError
from sweep.core.prompts import compare_messages, judge_messages
from sweep.schedule import Placement

CHAT_TOKENS = 16
"""Tokens of chat-template markup per message (role header, end of turn), generously."""
READ_MARGIN = 1.1
"""A judge reads answers in its own tokenizer: at most 10% more tokens than the respondent's (the
study's models share Qwen's tokenizer; the CPU pool's differ by less)."""


def as_run(card: ModelCard, engine: Engine) -> ModelCard:
    """The card as this sweep runs it: with ``engine.prefer_fp8``, in FP8 where it publishes an FP8
    checkpoint and leaves ``dtype`` at auto."""
    if engine.prefer_fp8 and card.fp8_repo and card.dtype is DType.auto and not (card.path or card.gguf):
        return replace(card, dtype=DType.fp8)
    return card


def checkpoint(card: ModelCard, dtype: str) -> tuple[Optional[str], Optional[str]]:
    """Hub repo and revision the card loads in ``dtype``; (None, None) for local or packaged weights."""
    if card.path or card.gguf or not card.hf_repo:
        return None, None
    if dtype == "fp8" and card.fp8_repo:
        return card.fp8_repo, card.fp8_revision
    return card.hf_repo, card.revision


def tokens(text: str) -> int:
    """An upper bound on the tokens of ``text`` without its tokenizer: byte-level BPE and byte-fallback
    SentencePiece never make more tokens than UTF-8 bytes."""
    return len(text.encode())


def message_tokens(messages: Sequence[tuple[str, str]]) -> int:
    return sum(tokens(text) + CHAT_TOKENS for _, text in messages)


def kv_bytes_per_gpu(card: ModelCard, shape: Optional[sizing.Shape], slot: Optional[sizing.Slot],
                     cfg: SweepConfig) -> int:
    if shape is None or slot is None:
        return int(cfg.engine.kv_cache_gib * sizing.GiB)
    free = cfg.engine.gpu_memory_utilization * slot.gpu_memory_bytes - shape.weight_bytes_per_gpu - shape.overhead_bytes
    return max(int(free), shape.kv_bytes_per_gpu)


def context(card: ModelCard, sizes: Mapping[str, AnswerSizes], reads: Mapping[str, Collection[tuple[str, ...]]],
            judge_prompt: int, verdict: int, cfg: SweepConfig, shape: Optional[sizing.Shape],
            slot: Optional[sizing.Slot]) -> Context:
    """``sizes``: per card its longest answer prompt and answer budget (the plan's); ``reads``: per
    judge the respondents whose answers one of its prompts holds (two for a pairwise verdict)."""
    prompt, budget = sizes[card.name].prompt_tokens, sizes[card.name].budget
    again = 2 ** card.re_asks(cfg.run.retry_truncated)
    need, want = max(prompt + budget, judge_prompt + verdict if reads.get(card.name) else 0), prompt + budget * again
    for shown in reads.get(card.name, []):
        answers = sum(sizes[r].budget * again for r in shown)
        want = max(want, judge_prompt + math.ceil(READ_MARGIN * answers) + verdict * 2 ** cfg.judge.retries)
    kv = kv_bytes_per_gpu(card, shape, slot, cfg)
    dtype = sizing.run_dtype(card, shape is not None)
    per_token = sizing.kv_bytes_per_token(card, dtype, shape.tp, shape.pp) if shape else sizing.kv_bytes_per_token(
        card, dtype)
    kv_tokens = kv // per_token
    assert card.context_length is not None  # plan.validate: local cards have one
    if kv_tokens < card.context_length:
        return Context(card.name, need, want, kv_tokens, "the tokens its KV cache holds", kv)
    return Context(card.name, need, want, card.context_length, "its context length", kv)


def contexts(cards: Sequence[ModelCard], sizes: Mapping[str, AnswerSizes],
             reads: Mapping[str, Collection[tuple[str, ...]]],
             suite: Suite, verdicts: Mapping[str, int], cfg: SweepConfig, inventory: sizing.Inventory,
             ) -> dict[str, Context]:
    """Every local card's context; refuses (one SweepError for all) cards whose first request can't fit."""
    slot = inventory.slot(int(cfg.cluster.gpu_memory_gib * sizing.GiB)) if inventory.gpus else None
    budget = sizing.budget(cfg.engine)
    max_chars, cut = cfg.judge.justification_max_chars, cfg.judge.judge_truncated  # with the cut-off notice
    # Each prompt in a suite of its own: the templates look their prompt up by id (linear in the suite).
    alone = (replace(suite, prompts=[p]) for p in suite.prompts)
    judge_prompt = max(
        max(message_tokens(judge_messages(one, one.prompts[0].id, "", "Response A", max_chars, cut)),
            message_tokens(compare_messages(one, one.prompts[0].id, "", "", max_chars, (cut, cut))))
        for one in alone)
    out = {}
    for card in cards:
        if card.remote:
            continue
        shape = sizing.choose_shape(card, slot, budget) if slot else None
        out[card.name] = context(card, sizes, reads, judge_prompt, verdicts.get(card.name, 0), cfg,
                                 shape, slot)
    short = [c for c in out.values() if c.need > c.limit]
    if short:
        lines = "\n  ".join(f"{c.model}: its prompts and output budget need {c.need:,} tokens, "
                            f"{c.limited_by} is {c.limit:,}" for c in short)
        raise SweepError(f"{len(short)} card(s) can't fit their output budget in their context:\n  {lines}",
                         "lower the budget (sampling.max_tokens=..., model.cards.<key>.sampling.<mode>.max_tokens "
                         "or judge.sampling.max_tokens), or give a CPU card more KV (engine.kv_cache_gib)")
    return out


def executor_backend(shape: Optional[sizing.Shape], spans_nodes: bool) -> str:
    """vLLM's executor for a shape: in-process on one device, mp on one node, Ray across nodes."""
    if shape is None or shape.gpus == 1:
        return "uni"
    return "ray" if spans_nodes else "mp"


def settings(card: ModelCard, shape: Optional[sizing.Shape], where: Placement, cfg: SweepConfig,
             ctx: Optional[Context], api_key: Optional[str] = None) -> EngineSettings:
    """What one instance of ``card`` (already ``as_run``), placed at ``where``, starts with; ``ctx`` is None
    for API cards."""
    on_gpu = shape is not None
    dtype = sizing.run_dtype(card, on_gpu)
    repo, revision = checkpoint(card, dtype)
    eager = cfg.engine.enforce_eager
    return EngineSettings(
        weights=repo or "", revision=revision, dtype=dtype,
        max_model_len=ctx.max_model_len if ctx else card.context_length or cfg.engine.max_model_len,
        kv_cache_bytes=None if on_gpu else int(cfg.engine.kv_cache_gib * sizing.GiB),
        enforce_eager=(not on_gpu) if eager is None else eager,
        tensor_parallel_size=shape.tp if shape else 1, pipeline_parallel_size=shape.pp if shape else 1,
        executor=executor_backend(shape, where.spans_nodes), gpu_memory_utilization=cfg.engine.gpu_memory_utilization,
        on_gpu=on_gpu, seed=cfg.run.seed, api_key=api_key,
    )


def describe(s: EngineSettings, ctx: Optional[Context]) -> str:
    """The load log line: the figures the engine starts with."""
    if ctx is None:
        return "API client"
    where = f"{s.weights}@{s.revision}" if s.weights else "local weights"
    kv = (f"KV {s.kv_cache_bytes / sizing.GiB:.1f} GiB" if s.kv_cache_bytes is not None else
          f"KV from gpu_memory_utilization={s.gpu_memory_utilization:g} (~{ctx.kv_bytes_per_gpu / 1e9:.1f} GB per GPU "
          "estimated)")
    return (f"{where} {s.dtype}, TP {s.tensor_parallel_size} x PP {s.pipeline_parallel_size} ({s.executor}), "
            f"max_model_len {s.max_model_len:,}, {kv}, {'eager' if s.enforce_eager else 'CUDA graphs'}")
