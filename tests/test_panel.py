"""The panel: who judges whom (self and same-family exclusion), and what judges see (answers scrubbed
of self-identification, the scrub recorded per judgment)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Sequence

import pytest

from jobs import judge as judging
from sweep.core import prompts
from jobs.engines.base import Completion, Request
from sweep.core.errors import SweepError
from sweep.plan import plan
from tests.conftest import compose_config
from tests.test_plan import LAPTOP
from tests.test_rankings import gen


def test_same_family_judges_can_be_excluded() -> None:
    cfg = compose_config("evals=smoke", "judge.exclude_same_family=true")
    p = plan(cfg, "r", LAPTOP)
    family = {c.name: c.family for c in cfg.model.cards.values()}
    pairs = {(c.judge, c.respondent) for c in p.judge}
    assert pairs == {("Gemma3-270M-base", "SmolLM2-135M"), ("Gemma3-270M-base", "SmolLM2-135M-expert"),
                     ("SmolLM2-135M", "Gemma3-270M-base"), ("SmolLM2-135M-expert", "Gemma3-270M-base")}
    assert all(family[j] != family[r] for j, r in pairs)
    assert len(p.judge) == 4 * len(cfg.evals.prompts)
    default = plan(compose_config("evals=smoke"), "r", LAPTOP)  # the switch only drops cells
    assert {c.key for c in p.judge} < {c.key for c in default.judge}


def test_a_model_left_without_judges_is_refused() -> None:
    with pytest.raises(SweepError) as e:
        plan(compose_config("model=smol_pair", "judge.exclude_same_family=true"), "r", LAPTOP)
    msg = str(e.value)
    assert "no card may judge SmolLM2-135M (smollm2), SmolLM2-135M-expert (smollm2)" in msg
    assert "judge.exclude_same_family=false" in msg


@pytest.mark.parametrize(
    "answer, shown, record",
    [
        ("I am Qwen, a large language model created by Alibaba Cloud.",
         "I am [redacted], a large language model created by [redacted].", {"Alibaba Cloud": 1, "Qwen": 1}),
        ("As SmolLM2-135M-Instruct from Hugging Face, I say 4. SmolLM says 4.",
         "As [redacted] from [redacted], I say 4. [redacted] says 4.",
         {"Hugging Face": 1, "SmolLM": 1, "SmolLM2-135M-Instruct": 1}),
        ("I'm gemma, built by Google DeepMind; qwen3.5-9b agrees.",
         "I'm [redacted], built by [redacted]; [redacted] agrees.",
         {"Google DeepMind": 1, "gemma": 1, "qwen3.5-9b": 1}),
        ("Paris. Search Google or read the metadata; a smolder is not a model.",
         "Paris. Search Google or read the metadata; a smolder is not a model.", None),
    ],
)
def test_answers_are_scrubbed_of_self_identification(answer: str, shown: str, record: dict | None) -> None:
    cards = [*compose_config().model.cards.values(), *compose_config("model=all").model.cards.values()]
    text, scrubbed = prompts.scrub(answer, prompts.identity_terms(cards))
    assert text == shown
    assert (json.loads(scrubbed) if scrubbed else None) == record


@dataclass
class Recorder:
    """An engine that keeps what judges were shown and returns one fixed valid verdict."""

    seen: list[str] = field(default_factory=list)

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        self.seen += [" ".join(text for _, text in r.messages) for r in requests]
        verdict = json.dumps({"correctness": 7, "completeness": 7, "clarity": 7, "depth": 7, "usefulness": 7,
                              "justification": "Fine."})
        return [Completion(verdict, None, "stop", 10, 10, 0.1) for _ in requests]


def test_judges_see_scrubbed_answers_and_the_scrub_is_recorded() -> None:
    cfg = compose_config("evals=smoke")
    p = plan(cfg, "r", LAPTOP)
    judge = p.card("Gemma3-270M-base")
    cells = [c for c in p.judge if c.judge == judge.name]
    said = {"SmolLM2-135M": "Hello, I am SmolLM2, made by Hugging Face. 42.", "SmolLM2-135M-expert": "42."}
    answers = {
        c.key: replace(gen("m-alpha", c.eval_id, 0, 0.1, 1), cell_key=c.key, model=c.model,
                       family=p.card(c.model).family, answer=said[c.model])
        for c in p.generate if c.model in said
    }
    engine = Recorder()
    rows = judging.judge(engine, {judge.name: judge}, cfg.evals, cfg.judge, cells, answers, "r")
    assert len(engine.seen) == len(cells) == len(rows)
    assert not any("smollm" in text.lower() or "hugging face" in text.lower() for text in engine.seen)
    assert sum("Hello, I am [redacted], made by [redacted]. 42." in text for text in engine.seen) == 3
    scrubbed = {r.respondent: r.scrubbed for r in rows}
    assert json.loads(scrubbed["SmolLM2-135M"]) == {"Hugging Face": 1, "SmolLM2": 1}
    assert scrubbed["SmolLM2-135M-expert"] is None
