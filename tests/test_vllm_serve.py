"""The API engine against a real `vllm serve` of the packaged SmolLM2 on 127.0.0.1 (CPU vLLM),
in one sweep with a local vLLM card: one panel, one warehouse, one row schema, one ranking."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from bench.vllm_server import CPU_ENV, served
from jobs.models import local_weights
from tests.conftest import compose_config, exact_rows, free_port
from warehouse.db import connect
from warehouse.store import Store

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[1]
SERVED, LOCAL = "SmolLM2-135M-served", "SmolLM2-135M"
PRICES = (0.5, 1.5)  # USD per million input / output tokens


def readme_serve_command() -> str:
    """The README's command that serves SmolLM2 (API and served models), continuation lines joined."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "python -m vllm.entrypoints.openai.api_server" in line)
    command = lines[start]
    while command.endswith("\\"):
        start += 1
        command = command[:-1] + lines[start].strip()
    return command


def test_the_readme_serve_command_is_the_served_card_s_server() -> None:
    """Pure: what the served sweep below relies on when it runs the README's command."""
    command = readme_serve_command()
    assert command.startswith("VLLM_CPU_KVCACHE_SPACE=1 python -m vllm") and command.endswith(" &")
    args = shlex.split(command.removesuffix("&"))
    weights = local_weights(compose_config("model=smollm2").model.cards["smollm2"], "float32")
    assert os.path.expanduser(args[args.index("--model") + 1]) == weights
    card = compose_config("model=served_smollm2").model.cards["served_smollm2"]
    assert args[args.index("--served-model-name") + 1] == card.endpoint.model
    assert f"--port {urlsplit(card.endpoint.base_url).port}" in command


@pytest.fixture(scope="module")
def served_sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("served")
    local_weights(compose_config("model=smollm2").model.cards["smollm2"], "float32")  # made by a first sweep
    port = free_port()
    # The README's command as written, but on a free port and in the foreground (the harness stops it);
    # `python` is the venv's, as after activating it. CPU_ENV adds what the harness sets for every server.
    command = readme_serve_command().replace("--port 8000", f"--port {port}").removesuffix("&")
    env = {**os.environ, **CPU_ENV, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    with served(["bash", "-c", command], port, tmp / "serve.log", env) as base_url:
        out = subprocess.run(
            [sys.executable, "-m", "sweep", "model=[served_smollm2,smollm2]", "evals=smoke",
             "sampling.max_tokens=48", f"model.cards.served_smollm2.endpoint.base_url={base_url}",
             f"model.cards.served_smollm2.endpoint.price_input_per_mtok={PRICES[0]}",
             f"model.cards.served_smollm2.endpoint.price_output_per_mtok={PRICES[1]}",
             f"warehouse.root={tmp / 'wh'}", "run.name=served", "run.progress=false"],
            capture_output=True, text=True, timeout=1500, cwd=ROOT,
        )
    assert out.returncode == 0, out.stderr[-4000:]
    yield Store(str(tmp / "wh"))


def test_served_and_local_rows_share_one_schema(served_sweep: Store) -> None:
    con = connect(served_sweep)
    assert exact_rows(served_sweep, "served") == (6, 6, 6, 6)
    engines = dict(con.execute("select model, any_value(engine) from generations group by 1").fetchall())
    assert engines == {SERVED: "openai", LOCAL: "vllm"}
    for table in ("generations", "judgments"):
        assert len({pq.read_schema(f) for f in served_sweep.files(table)}) == 1, table


def test_served_answers_are_real_with_usage_timing_and_cost(served_sweep: Store) -> None:
    con = connect(served_sweep)
    rows = con.execute("select eval_id, answer, status, prompt_tokens, output_tokens, latency_s, ttft_s, requests, "
                       "attempts, cost_usd from generations where model = ?", [SERVED]).fetchall()
    assert len(rows) == 3
    for eval_id, answer, status, prompt, output, latency, ttft, requests, attempts, cost in rows:
        assert status in ("ok", "truncated") and answer.strip(), eval_id
        assert prompt > 0 and 0 < output <= 2 * 48 and 0 < ttft <= latency
        assert requests == attempts  # no transport retries against a healthy local server
        # Every attempt is paid: each one before the last was cut off at its budget (48, then twice that).
        paid_output = sum(48 * 2 ** k for k in range(attempts - 1)) + output
        assert cost == pytest.approx((attempts * prompt * PRICES[0] + paid_output * PRICES[1]) / 1e6), eval_id
    answers = dict(con.execute("select model, answer from generations where eval_id = 'capital-france'").fetchall())
    assert "Paris" in answers[SERVED] and "Paris" in answers[LOCAL]  # the same float32 weights, both ways
    assert con.execute("select count(cost_usd) from generations where model = ?", [LOCAL]).fetchone() == (0,)


def test_served_judge_stays_on_the_schema_and_the_ranking_has_both(served_sweep: Store) -> None:
    con = connect(served_sweep)
    judged = con.execute("select status, raw, attempts from judgments where judge = ? and status <> 'no_answer'",
                         [SERVED]).fetchall()
    assert judged
    for status, raw, attempts in judged:  # constrained by response_format: valid first time, bounded
        verdict = json.loads(raw)
        assert status == "ok" and attempts == 1 and len(verdict["justification"]) <= 300
    ranked = con.execute("select model, valid_judgments from rankings where run_id = 'served'").fetchall()
    assert {m for m, _ in ranked} == {SERVED, LOCAL}
    cost = con.execute("select answer_cost_usd, judge_cost_usd from efficiency where model = ?", [SERVED]).fetchone()
    assert cost[0] > 0 and cost[1] > 0
