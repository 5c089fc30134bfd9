"""The cell queue's dependency rules (sweep.queue), on a real plan: a judgment is ready when its
answer has landed, a pairwise verdict when both have, and a verdict on an answer judges don't see
needs no model."""

from __future__ import annotations

from dataclasses import replace

from sweep.core.rows import GenerationRow
from sweep.plan import plan
from sweep.queue import CellQueue
from tests.conftest import compose_config
from tests.test_plan import LAPTOP
from tests.test_rankings import gen


def test_cells_become_ready_as_their_answers_land_and_unseen_ones_need_no_model() -> None:
    # One engine per card, so each card's cells are held apart (tests/test_shared_engines.py: shared ones).
    cfg = compose_config("evals=smoke", "judge.pairwise=true", "run.share_engines=false")
    p = plan(cfg, "r", LAPTOP)
    q = CellQueue(p, cfg.judge, {})
    judge = "Gemma3-270M-base"
    smol, expert = "SmolLM2-135M", "SmolLM2-135M-expert"

    def landed(model: str, status: str = "ok") -> list[GenerationRow]:
        return [replace(gen("m-alpha", a.eval_id, a.sample, 0.1, 1), cell_key=a.key, model=model, status=status)
                for a in p.generate if a.model == model]

    assert {len(q.generate[c.name]) for c in p.cards} == {len(cfg.evals.prompts)}  # answers: ready at once
    assert q.ready(judge) == ([], []) and q.needs_model(judge)  # nothing landed: it waits
    q.land(landed(smol))
    cells, pairs = q.ready(judge)
    assert {c.respondent for c in cells} == {smol} and len(cells) == len(cfg.evals.prompts)
    assert pairs == []  # a pair needs both its answers
    q.take(judge, cells, pairs)
    assert q.ready(judge) == ([], []) and q.needs_model(judge)  # the expert's cells still wait
    q.land(landed(expert, status="empty"))  # judges don't see empty answers
    unseen = q.unseen()
    assert set(unseen) == {judge, smol}  # the expert judges no empty answer
    cells, pairs = unseen[judge]
    assert {c.respondent for c in cells} == {expert} and len(cells) == len(cfg.evals.prompts)
    assert len(pairs) == 2 * len(cfg.evals.prompts)  # both orders of its one pair, which shows the empty answer
    assert unseen[smol] == ([c for c in p.judge if c.judge == smol and c.respondent == expert], [])
    assert q.unseen() == {}  # handed out once
    assert not q.needs_model(judge) and q.left(judge) == ([], [])
    assert q.ready(expert) == ([c for c in p.judge if c.judge == expert and c.respondent == smol], [])
    answered = [c for c in p.judge if c.judge == judge and c.respondent == smol]
    q.put_back(judge, answered, [])  # a failed batch's cells come back, ready
    assert q.ready(judge) == (answered, []) and q.needs_model(judge)


def test_cut_off_answers_with_content_go_to_judges_and_empty_ones_never() -> None:
    """The cut-off rule (judge.judge_truncated, on by default): an answer cut off at its budget that has
    content is handed to its judges; an empty one is withheld (written as no_answer without a model);
    with the rule off, the cut-off one is withheld too."""
    judge, cut, empty = "Gemma3-270M-base", "SmolLM2-135M", "SmolLM2-135M-expert"
    for judge_truncated in (True, False):
        cfg = compose_config("evals=smoke", "judge.pairwise=true", f"judge.judge_truncated={judge_truncated}")
        p = plan(cfg, "r", LAPTOP)
        q = CellQueue(p, cfg.judge, {})
        q.land([replace(gen("m-alpha", a.eval_id, a.sample, 0.1, 384), cell_key=a.key, model=a.model,
                        answer="A long answer that was" if a.model == cut else "", finish_reason="length",
                        status="truncated" if a.model == cut else "empty")
                for a in p.generate if a.model in (cut, empty)])
        on_cut = [c for c in p.judge if c.judge == judge and c.respondent == cut]
        on_empty = [c for c in p.judge if c.judge == judge and c.respondent == empty]
        assert len(on_cut) == len(on_empty) == len(cfg.evals.prompts)
        cells, pairs = q.ready(judge)
        assert cells == (on_cut if judge_truncated else []) and pairs == []  # the one pair shows the empty answer
        unseen = q.unseen()
        assert unseen[judge][0] == (on_empty if judge_truncated else on_cut + on_empty)
        assert len(unseen[judge][1]) == 2 * len(cfg.evals.prompts)
        assert q.needs_model(judge) is judge_truncated and q.left(judge) == (cells, [])
