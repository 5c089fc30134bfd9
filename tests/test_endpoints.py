"""An API endpoint that doesn't answer stops the sweep before any model loads, naming the URL; a model
with no valid score is not ranked, and the report says why."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from tests.conftest import fake_cli, free_port
from tests.openai_stub import Stub
from tests.test_rankings import SUITE, gen, judgment, load
from warehouse.db import connect
from warehouse.report import ranking_table

ROOT = Path(__file__).resolve().parents[1]


def test_an_unreachable_endpoint_is_refused_before_anything_loads(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    served = "model.cards.served_smollm2.endpoint.base_url"
    out = subprocess.run(fake_cli(tmp_path / "wh", "model=[smollm2,smollm2_expert,gemma3_270m,served_smollm2]", f"{served}={url}"),
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 2, out.stderr[-3000:]
    assert lines[0].startswith(f"error: SmolLM2-135M-served: the endpoint {url} does not answer"), lines[0]
    assert lines[1] == (f"fix: start the server (README: API and served models) or fix "
                        "model.cards.served_smollm2.endpoint.base_url")
    assert not (tmp_path / "wh").exists()  # refused before the warehouse, Ray or any model


def test_an_endpoint_that_answers_passes_the_check(tmp_path: Path) -> None:
    from sweep.endpoints import check_endpoints
    from tests.conftest import compose_config

    cfg = compose_config("model=[smollm2,served_smollm2]")
    with Stub() as api:  # it answers GET /models with 501: a server, just without the listing
        cfg.model.cards["served_smollm2"].endpoint.base_url = api.base_url
        check_endpoints(cfg)
    assert api.requests == []  # the check asks no completion


def test_a_model_with_no_valid_score_is_unranked_with_its_reason(tmp_path: Path) -> None:
    a, b, c = "m-alpha", "m-beta", "m-gamma"
    high = {x.name: 8 for x in SUITE.criteria}
    low = {x.name: 6 for x in SUITE.criteria}
    gens = [gen(a, "e1", 0, 1.0, 5), gen(b, "e1", 0, 1.0, 5),
            replace(gen(c, "e1", 0, 1.0, 0), status="error", answer="", error="APIConnectionError: Connection error.")]
    rows = [judgment(b, a, "e1", 0, "ok", low), judgment(a, b, "e1", 0, "ok", high),
            judgment(a, c, "e1", 0, "no_answer", None), judgment(b, c, "e1", 0, "no_answer", None)]
    con = connect(load(tmp_path, gens, rows))
    ranked = con.execute("select rank, model, avg_score, unranked from rankings where run_id = 'r'").fetchall()
    assert ranked == [(1, b, 8.0, None), (2, a, 6.0, None),
                      (None, c, None, "no valid score; answers: error 1; judgments: no_answer 2")]
    out = Console(record=True, width=160)
    out.print(ranking_table(con, "r"))
    text = out.export_text()
    assert "│ unranked │ m-gamma │" in text, text
    caption = " ".join(text.split("┘")[-1].split())  # under the table, wrapped to its width
    assert caption == f"Unranked: {c} (no valid score; answers: error 1; judgments: no_answer 2)", text
