"""Fault tolerance, resume and re-asks on the real engine: the packaged SmolLM2 (float32) in CPU
vLLM, in-process inside its Ray actor, as ``python -m sweep`` runs it (tests/real_sweep.py, one sweep
for every check here and for the page in tests/test_html.py). tests/test_faults.py and
tests/test_reask.py test the same features at scale on the fake engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.models import local_weights
from sweep.core.prompts import judge_messages, scrub
from sweep.plan import plan
from tests.conftest import compose_config, exact_rows
from tests.real_sweep import BUDGET, CONFIG, GENERATING, RUN, Resumed
from tests.test_plan import LAPTOP
from warehouse.db import connect

pytestmark = pytest.mark.vllm


def test_a_real_sweep_killed_mid_run_finishes_on_rerun_without_redoing_cells(resumed_sweep: Resumed) -> None:
    r = resumed_sweep
    con = connect(r.store)
    def landed(table: str) -> int:  # a batch file holds one model's answers, or one judge's verdicts
        return sum(pq.read_metadata(f).num_rows for f in r.landed if f"/{table}/" in f)

    answered, judged = landed("generations"), landed("judgments")
    assert r.status_at_kill == "running" and 0 < answered < 6 and judged <= answered, (r.status_at_kill, answered)
    assert exact_rows(r.store, RUN) == (6, 6, 6, 6)  # 2 models x 3 prompts; 2 judges x 1 peer x 3 prompts
    assert con.execute("select status, reused_cells from runs").fetchone() == ("finished", answered + judged)
    assert f"reusing {answered} answers, {judged} judgments" in r.rerun.stderr
    # Finished cells are not recomputed: the files that had landed are still there, byte for byte.
    assert {f: Path(f).read_bytes() for f in r.landed} == r.landed
    aside = Path(r.store.root) / "superseded"  # nothing set aside but the run's own row, rewritten at each start
    assert not [p for t in ("generations", "judgments") for p in (aside / t).glob("**/*.parquet")]
    assert not list(Path(r.store.root).glob("**/.*.tmp"))


def test_a_real_engine_killed_while_generating_is_replaced(resumed_sweep: Resumed) -> None:
    r = resumed_sweep
    con = connect(r.store)
    assert r.killed.startswith(GENERATING)  # it was killed inside a batch of answers
    assert "instance failed (ActorDiedError" in r.rerun.stderr and "restarting (1/2)" in r.rerun.stderr
    # Both models load to judge, and the killed one once more: exactly one failure, no error rows.
    assert con.execute("select model_loads, instance_failures from runs").fetchone() == (3, 1)
    assert exact_rows(r.store, RUN) == (6, 6, 6, 6)
    # Every cell ended as the model made it (cut-off answers are checked below), none as an error.
    answers, verdicts = con.execute("select (select list(distinct status order by status) from raw_generations), "
                                    "(select list(distinct status order by status) from raw_judgments)").fetchone()
    assert set(answers) <= {"ok", "truncated"} and set(verdicts) <= {"ok", "no_answer"}, (answers, verdicts)
    assert con.execute("select count(error) from raw_generations").fetchone() == (0,)


def test_a_real_cut_off_answer_is_asked_again_with_twice_the_budget(resumed_sweep: Resumed) -> None:
    con = connect(resumed_sweep.store)
    rows = con.execute("select model, eval_id, status, finish_reason, attempts, output_tokens, sampling "
                       "from raw_generations").fetchall()
    assert len(rows) == 6
    for model, eval_id, status, finish, attempts, tokens, sampling in rows:
        asked = json.loads(sampling)["max_tokens"]
        if attempts == 1:  # finished inside the first budget
            assert (status, finish, asked) == ("ok", "stop", BUDGET) and tokens <= BUDGET, (model, eval_id)
        else:  # cut off at 8, asked again with 16: it went past the first budget
            assert attempts == 2 and asked == 2 * BUDGET and BUDGET < tokens <= 2 * BUDGET, (model, eval_id)
            assert status == ("truncated" if finish == "length" else "ok"), (model, eval_id)
            assert finish == "stop" or tokens == 2 * BUDGET, (model, eval_id)
    # Greedy float32 SmolLM2 is deterministic: "The capital of France is Paris." fits in 8 tokens,
    # its sum ("17 + 25 = 32.") and its pen answer don't, and fit in 16.
    greedy = {e: (s, a) for m, e, s, _, a, _, _ in rows if m == "SmolLM2-135M"}
    assert greedy == {"capital-france": ("ok", 1), "addition": ("ok", 2), "pen-price": ("ok", 2)}
    # Every answer has content and is judged, one still cut off after its re-ask too (the sampled expert
    # runs past 16 tokens), its judge told so: the prompt vLLM read is exactly the judge prompt with the
    # cut-off notice, counted by the judge's own tokenizer, and a complete answer's has none.
    verdicts = con.execute("select g.status, j.status, j.cell_key, j.prompt_tokens, g.answer from raw_judgments j "
                           "join raw_generations g on g.cell_key = j.answer_key").fetchall()
    assert len(verdicts) == 6 and {j for _, j, *_ in verdicts} == {"ok"}, verdicts
    assert "truncated" in {g for g, *_ in verdicts}, verdicts
    from transformers import AutoTokenizer  # here: only this vllm-marked test needs it

    planned = plan(compose_config(*CONFIG), RUN, LAPTOP)
    cells = {c.key: c for c in planned.judge}
    tokenizer = AutoTokenizer.from_pretrained(local_weights(planned.cards[0], "float32"))  # both judges' weights

    def prompt_tokens(key: str, answer: str, notice: bool) -> int:
        c = cells[key]
        messages = judge_messages(planned.suite, c.eval_id, scrub(answer, c.scrub)[0], c.label, 60, notice)
        return len(tokenizer.apply_chat_template([{"role": r, "content": t} for r, t in messages],
                                                 add_generation_prompt=True, tokenize=True)["input_ids"])

    for status, _, key, tokens, answer in verdicts:
        cut = status == "truncated"
        assert tokens == prompt_tokens(key, answer, cut) != prompt_tokens(key, answer, not cut), (status, key)
