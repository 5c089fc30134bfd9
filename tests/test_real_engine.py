"""Fault tolerance, resume and re-asks on the real engine: the packaged SmolLM2 (float32) in CPU
vLLM, in-process inside its Ray actor, as ``python -m sweep`` runs it (tests/real_sweep.py, one sweep
for every check here and for the page in tests/test_html.py). tests/test_faults.py and
tests/test_reask.py test the same features at scale on the fake engine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.models import local_weights
from sweep.core.prompts import judge_messages, scrub
from sweep.plan import plan
from tests.conftest import compose_config, exact_rows, superseded
from tests.real_sweep import BUDGET, CONFIG, JUDGING, ROOT, RUN, WIDE, Resumed
from tests.test_plan import LAPTOP
from warehouse.db import connect
from warehouse.store import Store

pytestmark = pytest.mark.vllm


def test_a_real_sweep_killed_mid_run_finishes_on_rerun_without_redoing_cells(resumed_sweep: Resumed) -> None:
    r = resumed_sweep
    con = connect(r.store)
    def landed(table: str) -> int:  # a batch file holds one model's answers, or one judge's verdicts
        return sum(pq.read_metadata(f).num_rows for f in r.landed if f"/{table}/" in f)

    answered, judged = landed("generations"), landed("judgments")
    # Both cards' answers landed (one shared engine answered them in one batch), the verdicts not all.
    assert r.status_at_kill == "running" and answered == 6 and judged < 6, (r.status_at_kill, answered, judged)
    assert exact_rows(r.store, RUN) == (6, 6, 6, 6)  # 2 models x 3 prompts; 2 judges x 1 peer x 3 prompts
    assert con.execute("select status, reused_cells from runs").fetchone() == ("finished", answered + judged)
    assert f"reusing {answered} answers, {judged} judgments" in r.rerun.stderr
    # Finished cells are not recomputed: the files that had landed are still there, byte for byte.
    assert {f: Path(f).read_bytes() for f in r.landed} == r.landed
    assert superseded(r.store.root) == []  # nothing set aside but the run's own row, rewritten at each start
    assert not list(Path(r.store.root).glob("**/.*.tmp"))


def test_a_real_engine_killed_while_judging_is_replaced(resumed_sweep: Resumed) -> None:
    r = resumed_sweep
    con = connect(r.store)
    assert r.killed.startswith(JUDGING)  # it was killed inside a batch of verdicts
    assert "instance failed (ActorDiedError" in r.rerun.stderr and "restarting (1/2)" in r.rerun.stderr
    # The two SmolLM2 cards share one engine: it loads once to judge for both, and once more when killed
    # (one engine per card: 3 loads). Exactly one failure, no error rows.
    assert con.execute("select model_loads, instance_failures from runs").fetchone() == (2, 1)
    serves = "for SmolLM2-135M + SmolLM2-135M-expert"
    for log, loads in ((r.first, 1), (r.rerun.stderr, 2)):  # the killed driver's one load answered both cards
        flat = re.sub(r" (run|ray_backend)\.py:\d+", "", " ".join(log.split()))  # wrapped log lines
        assert flat.count("SmolLM2-135M: loading ") == flat.count(serves) == loads, flat[-3000:]
        assert "SmolLM2-135M-expert: loading" not in flat
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
    # The shared engine answered both cards in one batch, each request as its card says: the greedy card's
    # answers are the greedy ones above, the expert's were sampled (T 0.7, top-p 0.9) under its system prompt,
    # which vLLM read (its prompt tokens are the chat template's count with that system prompt).
    asked = con.execute("select model, eval_id, system_prompt, prompt_tokens, sampling from raw_generations"
                        ).fetchall()
    cards = {c.name: c for c in planned.cards}
    items = {i.id: i.prompt for i in planned.suite.prompts}
    for model, eval_id, system, tokens, sampling in asked:
        card = cards[model]
        said = json.loads(sampling)
        want = card.sampling.non_thinking
        assert (system, said["temperature"], said["top_p"], said["seed"]) == (
            card.system_prompt, want.temperature, want.top_p or 1.0, 0), (model, eval_id)
        turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user",
                                                                                "content": items[eval_id]}]
        assert tokens == len(tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True
                                                           )["input_ids"]), (model, eval_id)
    assert {m for m, _, s, *_ in asked if s} == {"SmolLM2-135M-expert"}


def test_a_weights_folder_that_breaks_inside_the_load_ends_as_error_rows_naming_the_card(tmp_path: Path) -> None:
    """A copy of the packaged SmolLM2 folder whose config.json is cut short passes the checks made before Ray
    starts (a model folder with a config.json; sizing reads only the safetensors headers), and vLLM's LLM(...)
    raises inside the actor. A failed LLM(...) spoils its process, so the retry is a fresh actor; after
    run.retries=1 the card's cells are error rows saying why and what to do. The other card is on the fake
    engine (no load to wait for) and its answers are cut off and, with judge.judge_truncated=false, not judged,
    so nothing needs the broken card as a judge and it is loaded only for its answers: two failed loads, the
    test's whole cost."""
    good = Path(local_weights(compose_config("model=smollm2").model.cards["smollm2"], "float32"))
    broken = tmp_path / "broken-smollm2"
    broken.mkdir()
    for f in good.iterdir():  # the weights themselves are linked, not copied (0.5 GB)
        if f.name != "config.json":
            (broken / f.name).symlink_to(f)
    (broken / "config.json").write_text((good / "config.json").read_text()[:200])  # cut mid-object
    wh = tmp_path / "wh"
    out = subprocess.run(
        [sys.executable, "-m", "sweep", "model=smol_pair", "evals=smoke", "sampling.max_tokens=8", "run.retries=1",
         "judge.judge_truncated=false", "run.retry_truncated=1",
         *[f"model.cards.smollm2.{k}" for k in ("engine=fake", "gguf=null", "hf_repo=fake/smollm2")],
         "model.cards.smollm2_expert.gguf=null", f"model.cards.smollm2_expert.path={broken}",
         f"warehouse.root={wh}", "run.name=broken", "run.progress=false"],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env={**WIDE, "SWEEP_FAKE_NEEDS_TOKENS": "100"})
    assert out.returncode == 0, out.stderr[-4000:]
    log = re.sub(r" run\.py:\d+", "", " ".join(out.stderr.split()))  # long log lines wrap beside their source
    card = "SmolLM2-135M-expert"
    said = f"RuntimeError: {card}: its engine failed to start from {broken} (OSError: "
    assert log.count(f"{card}: instance failed ({said}") == 1 and log.count("restarting (1/1)") == 1, log[-4000:]
    assert log.count(f"{card}: instance failed 2 times ({said}") == 1, log[-4000:]
    assert log.count("its cells are recorded as errors") == 1
    store = Store(str(wh))
    con = connect(store)
    assert exact_rows(store, "broken") == (6, 6, 6, 6)
    assert con.execute("select status, model_loads, instance_failures from runs").fetchone() == ("finished", 3, 2)
    answers = con.execute("select model, status, attempts, count(*) from raw_generations group by all order by 1"
                          ).fetchall()
    assert answers == [("SmolLM2-135M", "truncated", 2, 3), (card, "error", 2, 3)]  # 8 tokens, then 16, of 100
    assert con.execute("select distinct status from raw_judgments").fetchall() == [("no_answer",)]
    # The error rows say which card, which folder, what vLLM found and the fix, in one line without terminal colours.
    errors = {e for (e,) in con.execute("select error from raw_generations where status = 'error'").fetchall()}
    assert len(errors) == 1, errors
    (error,) = errors
    assert error.startswith(said) and "config.json" in error and "fix: " in error and "\x1b" not in error, error
