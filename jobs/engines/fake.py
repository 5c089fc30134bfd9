"""A deterministic stand-in engine for fast tests of scheduling, bookkeeping and faults.

Never the only test of a feature: the real path is exercised with vLLM. Answers are a
hash of the request; judge requests get schema-valid JSON with hash-derived scores (or picks).
Faults are injected through environment variables, which Ray workers inherit from the
cluster they were started in:

    SWEEP_FAKE_DELAY_S=2          sleep this long per batch (time to kill something mid-batch)
    SWEEP_FAKE_CELL_S=0.005       sleep this long per request of a batch: an engine's time that grows with
                                  its batch (bench/stream.py compares the sweep's wall time with it)
    SWEEP_FAKE_SLOW=NAME:SECONDS[,NAME:SECONDS]  the card named NAME sleeps this long more per batch of answers
    SWEEP_FAKE_FAIL_VERDICTS_ONCE=PATH  the first batch of verdicts anywhere raises (PATH marks it)
    SWEEP_FAKE_HANG_ONCE=PATH     the first batch anywhere hangs (PATH marks that it happened)
    SWEEP_FAKE_NEEDS_TOKENS=100   answers need this many tokens: a smaller max_tokens is cut off
    SWEEP_FAKE_BAD_FIRST_VERDICT=1  a verdict on its first seed is not JSON
    SWEEP_FAKE_CALLS=DIR          each engine call appends what it got (pid, card, every request) to DIR/<pid>.jsonl
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from jobs.engines.base import Completion, EngineSettings, Request, register
from sweep.core.config import ModelCard


class FakeEngine:
    def __init__(self, card: ModelCard, settings: EngineSettings) -> None:
        self.card = card
        self.seed = settings.seed
        self.pid = os.getpid()

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        calls = os.environ.get("SWEEP_FAKE_CALLS")
        if calls:  # what the engine was handed, for tests of what reaches it
            with open(Path(calls) / f"{self.pid}.jsonl", "a") as f:
                f.write(json.dumps({"pid": self.pid, "card": self.card.name, "requests": [
                    {"messages": r.messages, "sampling": asdict(r.sampling), "verdict": r.json_schema is not None,
                     "thinking": r.thinking} for r in requests]}) + "\n")
        hang = os.environ.get("SWEEP_FAKE_HANG_ONCE")
        if hang and not Path(hang).exists():
            Path(hang).touch()
            time.sleep(3600)
        time.sleep(float(os.environ.get("SWEEP_FAKE_DELAY_S", "0"))
                   + float(os.environ.get("SWEEP_FAKE_CELL_S", "0")) * len(requests))
        fail = os.environ.get("SWEEP_FAKE_FAIL_VERDICTS_ONCE")
        if fail and any(r.json_schema for r in requests) and not Path(fail).exists():
            Path(fail).touch()
            raise RuntimeError("injected engine failure")
        slow = dict(item.rpartition(":")[::2] for item in os.environ.get("SWEEP_FAKE_SLOW", "").split(",") if item)
        if self.card.name in slow and any(r.json_schema is None for r in requests):
            time.sleep(float(slow[self.card.name]))
        return [self._one(r) for r in requests]

    def _one(self, r: Request) -> Completion:
        digest = hashlib.sha256(repr((self.card.name, r.messages)).encode()).digest()
        finish = "stop"
        if r.json_schema is None:
            text = f"answer {digest.hex()[:12]} from pid {self.pid}"
            if r.sampling.max_tokens < int(os.environ.get("SWEEP_FAKE_NEEDS_TOKENS", "0")):
                text, finish = text[:10], "length"
        elif os.environ.get("SWEEP_FAKE_BAD_FIRST_VERDICT") and r.sampling.seed == self.seed:
            text = "I rate this answer highly."
        else:
            props = r.json_schema["properties"]
            scores = {
                name: spec["enum"][digest[i] % len(spec["enum"])] if "enum" in spec
                else spec["minimum"] + digest[i] % (spec["maximum"] - spec["minimum"] + 1)
                for i, (name, spec) in enumerate(props.items())
                if spec["type"] == "integer" or "enum" in spec
            }
            text = json.dumps({**scores, "justification": "deterministic fake verdict"})
        tokens = len(text.split())
        return Completion(text, None, finish, prompt_tokens=sum(len(m[1].split()) for m in r.messages),
                          output_tokens=tokens, latency_s=0.001 * tokens, ttft_s=0.0005, queue_s=0.0)

    def close(self) -> None:
        pass


@register("fake")
def create(card: ModelCard, settings: EngineSettings) -> FakeEngine:
    return FakeEngine(card, settings)
