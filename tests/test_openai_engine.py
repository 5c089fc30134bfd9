"""The OpenAI-compatible engine against a real HTTP server on 127.0.0.1 that misbehaves on
script (tests/openai_stub.py): every fault ends as a retried success or a recorded failure
with its error class, never a crash or a lost cell. Then the same through the real runner."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from jobs.engines.base import Completion, EngineSettings, Request, SamplingParams, complete_with_retries
from jobs.engines.openai import OpenAIEngine, cost_usd
from jobs.generate import answer_status
from jobs.generate import rows as generation_rows
from jobs.judge import judge
from sweep.core.prompts import judge_schema as verdict_schema
from sweep.core.config import Endpoint, ModelCard, Panel
from sweep.plan import plan
from sweep.sizing import Inventory, Node
from sweep.run import run
from tests.conftest import compose_config, exact_rows, fake_pool
from tests.openai_stub import Stub
from warehouse.db import connect
from warehouse.html import run_page
from warehouse.report import efficiency_table

SAMPLING = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, presence_penalty=0.0, max_tokens=32, seed=0)
SETTINGS = EngineSettings(weights="", dtype="float32", max_model_len=2048, kv_cache_bytes=0, enforce_eager=True,
                          tensor_parallel_size=1, gpu_memory_utilization=0.9, on_gpu=False, seed=0)


@pytest.fixture
def stub() -> Iterator[Stub]:
    with Stub() as s:
        yield s


def engine(stub: Stub, **endpoint: object) -> OpenAIEngine:
    ep = Endpoint(base_url=stub.base_url, model="stub", max_retries=2, timeout_s=2.5,
                  price_input_per_mtok=1.0, price_output_per_mtok=2.0)
    for k, v in endpoint.items():
        setattr(ep, k, v)
    return OpenAIEngine(ModelCard(name="API", family="stub", engine="openai", endpoint=ep), SETTINGS)


def ask(e: OpenAIEngine, *scripts: str) -> list[Completion]:
    return e.complete([Request((("user", f"question {i} [fault:{s}]"),), SAMPLING) for i, s in enumerate(scripts)])


@pytest.mark.parametrize("stream", [True, False])
def test_transient_faults_end_as_retried_successes(stub: Stub, stream: bool) -> None:
    scripts = ["429,ok", "500,500,ok", "drop,ok", "slow,ok"] + (["midstream,ok"] if stream else [])
    started = time.monotonic()
    done = ask(engine(stub, stream=stream), *scripts)
    assert [c.finish_reason for c in done] == ["stop"] * len(scripts), [c.error for c in done]
    assert all(c.text.startswith("stub answer") and c.error is None for c in done)
    # Attempt counts: the failed requests plus the one that succeeded.
    assert [c.requests for c in done] == [2, 3, 2, 2] + ([2] if stream else [])
    assert all((c.prompt_tokens, c.output_tokens, c.cost_usd) == (10, 5, 2e-5) for c in done)
    assert done[0].latency_s >= 1.0  # the 429's Retry-After: 1 was honoured
    assert time.monotonic() - started < 30
    if stream:
        assert all(c.ttft_s is not None and 0 < c.ttft_s <= c.latency_s for c in done)


@pytest.mark.parametrize("stream", [True, False])
def test_persistent_faults_are_recorded_on_their_cells(stub: Stub, stream: bool) -> None:
    scripts = ["ok", "garbage", "500", "429,429,429", "drop", "slow"] + (["midstream"] if stream else [])
    done = ask(engine(stub, stream=stream), *scripts)
    assert len(done) == len(scripts)  # no cell lost, in order
    assert done[0].finish_reason == "stop" and done[0].requests == 1
    failed = {s: c for s, c in zip(scripts[1:], done[1:])}
    assert all(c.finish_reason == "error" and c.text == "" and c.cost_usd is None for c in failed.values())
    classes = {s: c.error.split(":")[0] for s, c in failed.items()}
    assert classes["500"] == "InternalServerError" and classes["429,429,429"] == "RateLimitError"
    assert classes["drop"] == "APIConnectionError" and classes["slow"] == "APITimeoutError"
    assert classes["garbage"] in ("JSONDecodeError", "APIResponseValidationError"), failed["garbage"].error
    # 429, 5xx, timeouts and connection errors are retried max_retries=2 times; garbage is not.
    assert {s: c.requests for s, c in failed.items()} == {
        "garbage": 1, "500": 3, "429,429,429": 3, "drop": 3, "slow": 3, **({"midstream": 3} if stream else {})}
    if stream:
        assert classes["midstream"] == "APIConnectionError"


def test_concurrency_is_bounded_per_endpoint(stub: Stub) -> None:
    started = time.monotonic()
    done = ask(engine(stub, max_concurrency=3), *["hold"] * 12)
    assert all(c.finish_reason == "stop" for c in done)
    assert stub.max_in_flight == 3
    assert time.monotonic() - started >= 4 * 0.3  # 12 requests, 3 at a time, 0.3 s each
    assert max(c.queue_s for c in done) > 0.5  # the last ones waited their turn


def test_length_maps_to_truncation_and_re_asks_pay_for_every_attempt(stub: Stub) -> None:
    e = engine(stub)
    request = Request((("user", "long one [fault:length,ok]"),), SAMPLING)

    def bigger(r: Request, last: Completion, attempt: int) -> Request | None:
        return r if last.finish_reason == "length" else None

    (final,), (attempts,) = complete_with_retries(e, [request], bigger, 1)
    assert final.finish_reason == "stop" and attempts == 2
    # Both answers were paid for: one request each, 10 + 5 tokens each.
    assert final.requests == 2 and final.cost_usd == pytest.approx(4e-5)
    (cut,) = e.complete([Request((("user", "long two [fault:length]"),), SAMPLING)])
    assert cut.finish_reason == "length" and answer_status(cut) == "truncated"


@pytest.mark.parametrize("json_schema", [True, False])
def test_judges_use_the_schema_when_the_server_takes_it_else_strict_parse_and_re_ask(
        stub: Stub, json_schema: bool) -> None:
    cfg = compose_config("model=smol_pair", "evals=smoke")
    the_plan = plan(cfg, "r", Inventory((Node(2, 0, 16 << 30),)))
    judge_card, respondent = the_plan.cards
    cells = [c for c in the_plan.judge if c.judge == judge_card.name]
    gen_cells = [c for c in the_plan.generate if c.model == respondent.name]
    said = [Completion("Paris. [fault:prose,ok]", None, "stop", 10, 5, 0.1)] * len(gen_cells)
    answers = {r.cell_key: r for r in generation_rows({respondent.name: respondent}, {respondent.name: 1}, cfg.evals,
                                                      gen_cells, "r", said, [1] * len(said))}
    e = engine(stub, json_schema=json_schema)
    rows = judge(e, {judge_card.name: judge_card}, cfg.evals, Panel(retries=1), cells, answers, "r")
    assert [r.status for r in rows] == ["ok"] * len(cells), [(r.error, r.raw) for r in rows]
    formats = [r.get("response_format") for r in stub.requests]
    if json_schema:  # constrained: the first answer is already a verdict
        assert all(f["json_schema"]["schema"] == verdict_schema(cfg.evals, 300) for f in formats)
        assert [r.attempts for r in rows] == [1] * len(cells)
    else:  # prose first, re-asked with a new seed, then a verdict
        assert formats == [None] * 2 * len(cells)
        assert [r.attempts for r in rows] == [2] * len(cells) and all(r.requests == 2 for r in rows)


def test_cost_is_usage_times_price() -> None:
    ep = Endpoint(base_url="http://x/v1", model="m", price_input_per_mtok=0.15, price_output_per_mtok=0.6)
    assert cost_usd(ep, 2_000_000, 500_000) == pytest.approx(0.3 + 0.3)
    assert cost_usd(ep, 0, 0) == 0
    ep.price_output_per_mtok = None
    assert cost_usd(ep, 1000, 1000) is None  # an unknown price is no price, not zero


def test_api_cards_and_a_local_card_in_one_sweep_through_the_runner(
        ray_local: None, stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = fake_pool(f"warehouse.root={tmp_path}", "run.name=api")
    scripts = {"capital-france": "429,ok", "addition": "garbage", "pen-price": "drop,500,ok"}
    for item in cfg.evals.prompts:
        item.prompt += f" [fault:{scripts[item.id]}]"
    # Set after Ray started, so its workers can't have inherited it: the driver forwards it.
    monkeypatch.setenv("SWEEP_TEST_API_KEY", "sk-test-forwarded")
    api = ("smollm2", "smollm2_expert")  # two API cards on one endpoint; gemma3_270m stays local (fake)
    for key in api:
        card = cfg.model.cards[key]
        card.engine, card.hf_repo = "openai", None
        card.endpoint = Endpoint(base_url=stub.base_url, model=key, api_key_env="SWEEP_TEST_API_KEY", max_retries=2,
                                 timeout_s=10, price_input_per_mtok=1.0, price_output_per_mtok=2.0)
    result = run(cfg)
    con = connect(result.store)
    names = {cfg.model.cards[k].name for k in api}
    assert exact_rows(result.store, "api") == (9, 9, 18, 18)
    assert stub.keys == {"Bearer sk-test-forwarded"}
    rows = con.execute("select model, eval_id, status, error, requests, cost_usd, prompt_tokens, output_tokens, "
                       "engine from generations").fetchall()
    for model, eval_id, status, error, requests, cost, prompt_tokens, output_tokens, engine in rows:
        if model not in names:  # the local card: no HTTP, no cost
            assert (engine, requests, cost) == ("fake", None, None)
            continue
        assert engine == "openai"
        if eval_id == "addition":  # garbage every time: recorded with its class, not retried
            assert status == "error" and error.split(":")[0] in ("JSONDecodeError", "APIResponseValidationError")
            assert requests == 1 and cost is None
        else:
            assert status == "ok" and (prompt_tokens, output_tokens, cost) == (10, 5, 2e-5)
            assert requests == {"capital-france": 2, "pen-price": 3}[eval_id]
    # Answers that failed are not judged; judgments by API judges are paid for, the local one's are not.
    judged = con.execute("select judge, status, cost_usd, requests from judgments").fetchall()
    assert all(c is None for j, s, c, _ in judged if j not in names)
    assert all(c == 2e-5 for j, s, c, _ in judged if j in names and s == "ok")
    assert {s for j, s, *_ in judged} <= {"ok", "no_answer", "error"}
    # One row schema for both kinds of engine, one ranking, costs in the efficiency view.
    schemas = {pq.read_schema(f) for f in result.store.files("generations")}
    assert len(schemas) == 1
    ranked = con.execute("select model from rankings where run_id = 'api' order by rank").fetchall()
    assert len(ranked) == 3
    costs = dict(con.execute("select model, answer_cost_usd from efficiency where run_id = 'api'").fetchall())
    assert {m: c is not None for m, c in costs.items()} == {m: m in names for (m,) in ranked}
    # The report and the page show them: per model, and the run's total.
    console = Console(record=True, width=240)
    console.print(efficiency_table(con, "api"))
    text = console.export_text()
    total = con.execute("select (select sum(cost_usd) from generations) + (select sum(cost_usd) from judgments)").fetchone()[0]
    assert f"API cost, whole run: ${total:.4f}" in text and "$ / point" in text
    assert "Judging $" in run_page(con, "api")
