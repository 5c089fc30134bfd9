"""Judge verdicts: strict parsing into statuses, and the pipeline's own weighted score."""

from __future__ import annotations

import json

import pytest

from jobs.engines.base import Completion
from jobs.judge import parse, weighted_score
from sweep.core.prompts import judge_schema as verdict_schema
from tests.conftest import compose_config

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
