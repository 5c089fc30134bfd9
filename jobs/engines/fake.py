"""A deterministic stand-in engine for fast tests of scheduling and bookkeeping.

Never the only test of a feature: the real path is exercised with vLLM. Answers are a
hash of the request; judge requests get schema-valid JSON with hash-derived scores.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

from jobs.engines.base import Completion, EngineSettings, Request, register
from sweep.config import ModelCard


class FakeEngine:
    def __init__(self, card: ModelCard, settings: EngineSettings) -> None:
        self.card = card
        self.pid = os.getpid()

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        return [self._one(r) for r in requests]

    def _one(self, r: Request) -> Completion:
        digest = hashlib.sha256(repr((self.card.name, r.messages)).encode()).digest()
        if r.json_schema is None:
            text = f"answer {digest.hex()[:12]} from pid {self.pid}"
        else:
            props = r.json_schema["properties"]
            scores = {
                name: spec["minimum"] + digest[i] % (spec["maximum"] - spec["minimum"] + 1)
                for i, (name, spec) in enumerate(props.items())
                if spec["type"] == "integer"
            }
            text = json.dumps({**scores, "justification": "deterministic fake verdict"})
        tokens = len(text.split())
        return Completion(text, None, "stop", prompt_tokens=sum(len(m[1].split()) for m in r.messages),
                          output_tokens=tokens, latency_s=0.001 * tokens, ttft_s=0.0005, queue_s=0.0)

    def close(self) -> None:
        pass


@register("fake")
def create(card: ModelCard, settings: EngineSettings) -> FakeEngine:
    return FakeEngine(card, settings)
