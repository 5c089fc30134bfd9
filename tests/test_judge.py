"""Judge verdicts: strict parsing into statuses, and the pipeline's own weighted score."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Sequence

import pytest

from jobs.engines.base import Completion, Request
from jobs.judge import judge, parse, weighted_score
from sweep.core.prompts import CUT_OFF_NOTICE, judge_schema as verdict_schema
from sweep.plan import plan
from tests.conftest import compose_config
from tests.test_plan import LAPTOP
from tests.test_rankings import gen

SUITE = compose_config("evals=smoke").evals
GOOD = {"correctness": 7, "completeness": 6, "clarity": 8, "depth": 5, "usefulness": 6, "justification": "Fine."}


def done(text: str, finish: str = "stop", error: str | None = None) -> Completion:
    return Completion(text, None, finish, 100, 20, 0.5, error=error)


def test_a_well_formed_verdict_is_ok_and_scored_by_us() -> None:
    verdict = parse(done(json.dumps({**GOOD, "total": 10})), SUITE)
    assert verdict.status == "ok" and verdict.justification == "Fine."
    assert verdict.criteria == {k: v for k, v in GOOD.items() if k != "justification"}
    # 25/20/20/20/15 %: 0.25*7 + 0.2*6 + 0.2*8 + 0.2*5 + 0.15*6, exactly; the judge's "total" is ignored
    # (the config file's unused 30/20/20/15/15 would give 0.3*7 + 0.2*6 + 0.2*8 + 0.15*5 + 0.15*6 = 6.55)
    assert weighted_score(verdict.criteria, SUITE) == 6.45


@pytest.mark.parametrize(
    "completion, status",
    [
        (done('{"correctness": 7'), "invalid"),
        (done("The answer is good. 8/10"), "invalid"),
        (done(json.dumps({**GOOD, "depth": 11})), "invalid"),
        (done(json.dumps({**GOOD, "depth": 0})), "invalid"),
        (done(json.dumps({**GOOD, "depth": "5"})), "invalid"),
        (done(json.dumps({**GOOD, "depth": True})), "invalid"),
        (done(json.dumps({k: v for k, v in GOOD.items() if k != "clarity"})), "invalid"),
        (done("[1, 2, 3]"), "invalid"),
        (done('{"correctness": 7, "completeness": 6, "clar', "length"), "truncated"),
        (done("", "error", error="engine died"), "error"),
    ],
)
def test_every_other_outcome_is_kept_with_a_status(completion: Completion, status: str) -> None:
    verdict = parse(completion, SUITE)
    assert verdict.status == status
    assert verdict.criteria is None and verdict.error


def test_schema_bounds_scores_and_justification() -> None:
    schema = verdict_schema(SUITE, 120)
    names = [c.name for c in SUITE.criteria]
    assert schema["required"] == [*names, "justification"] and schema["additionalProperties"] is False
    assert all(schema["properties"][n] == {"type": "integer", "minimum": 1, "maximum": 10} for n in names)
    assert schema["properties"]["justification"]["maxLength"] == 120


class Recorder:
    """An engine that keeps every request it is sent and answers each with the GOOD verdict."""

    def __init__(self) -> None:
        self.sent: list[Request] = []

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        self.sent += requests
        return [done(json.dumps(GOOD)) for _ in requests]

    def close(self) -> None:
        pass


@pytest.mark.parametrize("judge_truncated", [True, False])
def test_a_cut_off_answer_is_judged_with_a_notice_and_an_empty_one_never(judge_truncated: bool) -> None:
    """judge.judge_truncated (the default): the judge of a cut-off answer with content is told it was cut off
    at its budget, under the answer; a complete answer's judge is not; an empty answer is not judged. Off:
    the cut-off answer is not judged either."""
    cfg = compose_config("evals=smoke", f"judge.judge_truncated={judge_truncated}")
    p = plan(cfg, "r", LAPTOP)
    judge_card = p.cards[2]
    cells = [c for c in p.judge if c.judge == judge_card.name and c.eval_id == "addition"]
    complete, cut = "17 + 25 = 42.", "To add 17 and 25, first add the tens: 10 + 20 = 30, then the ones: 7"
    for status, text in (("ok", complete), ("truncated", cut), ("empty", "")):
        answers = {c.answer_key: replace(gen("m-alpha", c.eval_id, 0, 0.1, 8), cell_key=c.answer_key, answer=text,
                                         status=status, model=c.respondent) for c in cells}
        engine = Recorder()
        rows = judge(engine, {judge_card.name: judge_card}, p.suite, cfg.judge, cells, answers, "r")
        asked = status == "ok" or (status == "truncated" and judge_truncated)
        assert len(rows) == len(cells) == 2 and len(engine.sent) == (2 if asked else 0), status
        assert [r.status for r in rows] == ["ok" if asked else "no_answer"] * 2, status
        for request in engine.sent:
            ((_, prompt),) = request.messages
            # The answer, then the notice for a cut-off one, then the task.
            if status == "truncated":
                assert f"{text}\n\n{CUT_OFF_NOTICE}\n\n## Your task" in prompt and prompt.count(CUT_OFF_NOTICE) == 1
            else:
                assert f"{text}\n\n## Your task" in prompt and "cut off" not in prompt
