"""The HTML report: real sweeps (fake engine) -> the warehouse -> the page -> real headless Chromium.

Two runs of the smoke pool: "base", and "twice" (two samples per cell) with one answer turned
into an engine error (a failed cell) and one answer file deleted (a missing cell). Every page is
opened in Debian's chromium; screenshots land in artifacts/. The last test opens the page of a
real sweep (SmolLM2 on CPU vLLM, tests/test_real_engine.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html.parser
import io
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from bench.chromium import BINARY, BOKEH_READY, Chromium, Page
from sweep.run import run
from tests.conftest import fake_pool
from warehouse import formats, stats
from tests.real_sweep import RUN as REAL_RUN
from tests.real_sweep import Resumed
from warehouse.__main__ import main
from warehouse.db import connect
from warehouse.html import compare_page, run_page, save_run_page
from warehouse.report import coverage_table
from sweep.core.rows import GenerationRow
from warehouse.store import Store

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
POOL = ["SmolLM2-135M", "SmolLM2-135M-expert", "Gemma3-270M-base"]
FAILED = ("SmolLM2-135M", "addition")
MISSING = ("Gemma3-270M-base", "capital-france")
PLOTS = {"ranking", "frontier", "heatmap", "validity"}
ERROR = "engine died: <script>document.title = 'injected'</script>"  # shown as text, never run


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> Store:
    root = tmp_path_factory.mktemp("warehouse")
    run(fake_pool(f"warehouse.root={root}", "run.name=base"))
    store = run(fake_pool(f"warehouse.root={root}", "run.name=twice", "run.samples=2")).store
    rows = {p: [GenerationRow(**r) for r in pq.read_table(p).to_pylist()] for p in store.files("generations", "twice")}
    row = next(r for file in rows.values() for r in file if (r.model, r.eval_id, r.sample) == (*FAILED, 0))
    failed = dataclasses.replace(row, status="error", answer="", finish_reason="error", error=ERROR,
                                 created_at=dt.datetime.now(dt.timezone.utc))  # the newest write of a cell wins
    store.write("generations", [failed], "part-failed.parquet", run_id="twice", model=FAILED[0])
    # A missing cell: the batch files holding it written again without it (the old ones go to superseded/).
    for path, file in rows.items():
        if any((r.model, r.eval_id) == MISSING for r in file):
            store.write("generations", [r for r in file if (r.model, r.eval_id) != MISSING], f"without-{Path(path).name}",
                        replaces=[path], run_id="twice", model=MISSING[0])
    return store


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    if not Path(BINARY).exists():
        pytest.fail(f"{BINARY} is missing: `make setup` installs Debian's chromium")
    with Chromium() as browser:
        yield browser


def open_page(chromium: Chromium, text: str, tmp_path: Path, name: str) -> Page:
    path = tmp_path / f"{name}.html"
    path.write_text(text, encoding="utf-8")
    page = chromium.load(path.as_uri(), ready=BOKEH_READY)
    page.screenshot(ARTIFACTS / f"{name}.png")
    return page


def plot_points(page: Page) -> dict[str, list[int]]:
    """Per Bokeh figure on the page: the number of data points behind each of its glyphs."""
    return dict(page.evaluate(
        "Bokeh.documents.flatMap(d => d.roots()).map(fig => "
        "[fig.name, fig.renderers.filter(r => r.data_source).map(r => r.data_source.get_length())])"))


def column(page: Page, table: str, index: int) -> list[str]:
    return page.evaluate(f"[...document.querySelectorAll('#{table} tbody tr')].map(r => r.cells[{index}].innerText)")


class Links(html.parser.HTMLParser):
    """Every src and href in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


@pytest.mark.parametrize("run_id", ["base", "twice"])
def test_the_page_is_one_self_contained_file_under_5_mb(store: Store, run_id: str) -> None:
    text = run_page(connect(store), run_id)
    links = Links()
    links.feed(text)
    assert links.urls and all(u.startswith(("#", "data:")) for u in links.urls), links.urls
    assert "<script src" not in text and 'rel="stylesheet"' not in text
    assert len(text.encode()) < 5_000_000


def test_the_page_loads_in_chromium_with_every_plot_drawn(store: Store, chromium: Chromium, tmp_path: Path) -> None:
    page = open_page(chromium, run_page(connect(store), "base"), tmp_path, "report-run")
    assert page.load.errors == []
    assert all(u.startswith(("file:", "data:")) for u in page.load.requests), page.load.requests  # no network
    assert sorted(column(page, "ranking", 1)) == sorted(POOL)  # one row per model
    points = plot_points(page)
    assert set(points) == PLOTS
    assert all(counts and all(n > 0 for n in counts) for counts in points.values()), points
    assert max(points["frontier"]) == len(POOL)  # one point per ranked model
    assert max(points["heatmap"]) == len(POOL) * (len(POOL) - 1)  # every judge x respondent pair but self
    page.close()


def test_the_ranking_matches_the_view_and_sorts_by_column(store: Store, chromium: Chromium, tmp_path: Path) -> None:
    con = connect(store)
    page = open_page(chromium, run_page(con, "base"), tmp_path, "report-sorted")
    ranked = con.execute("select model from rankings where run_id = 'base' order by rank").fetchall()
    assert column(page, "ranking", 1) == [m for (m,) in ranked]
    page.evaluate("document.querySelector('#ranking th:nth-child(2)').click()")
    assert column(page, "ranking", 1) == sorted(POOL)
    page.evaluate("document.querySelector('#ranking th:nth-child(2)').click()")
    assert column(page, "ranking", 1) == sorted(POOL, reverse=True)
    page.close()


def test_coverage_marks_the_missing_and_the_failed_cell(store: Store, chromium: Chromium, tmp_path: Path) -> None:
    page = open_page(chromium, run_page(connect(store), "twice"), tmp_path, "report-coverage")
    assert page.load.errors == []
    marked = page.evaluate(
        "[...document.querySelectorAll('#coverage td.missing, #coverage td.failed')].map(td => "
        "[td.parentElement.cells[0].innerText, td.closest('table').tHead.rows[0].cells[td.cellIndex].innerText, "
        "td.className])")
    assert sorted(map(tuple, marked)) == sorted([(*FAILED, "failed"), (*MISSING, "missing")])
    ok = page.evaluate("document.querySelectorAll('#coverage td.ok').length")
    assert ok == len(POOL) * 3 - 2
    page.evaluate("document.querySelector('#eval-addition').open = true")
    assert ERROR in page.evaluate("document.querySelector('#eval-addition').innerText")
    assert page.evaluate("document.title") == "sweep run twice"
    page.close()


def test_the_drill_down_shows_every_answer_and_every_judge_by_name(store: Store, chromium: Chromium,
                                                                   tmp_path: Path) -> None:
    con = connect(store)
    page = open_page(chromium, run_page(con, "base"), tmp_path, "report-drilldown")
    page.evaluate("document.querySelector('a[href=\"#eval-addition\"]').click()")  # opens the folded eval
    assert page.evaluate("document.querySelector('#eval-addition').open")
    text = page.evaluate("document.querySelector('#eval-addition').innerText")
    for (prompt,) in con.execute("select distinct prompt from generations where eval_id = 'addition'").fetchall():
        assert prompt in text
    for (answer,) in con.execute("select answer from generations where run_id = 'base' and eval_id = 'addition'"
                                 ).fetchall():
        assert answer in text
    rows = page.evaluate(  # one judgment table per answer: judge, label it saw, criteria..., justification
        "[...document.querySelectorAll('#eval-addition .answer')].map(a => [a.querySelector('h3').innerText, "
        "[...a.querySelectorAll('tbody tr')].map(r => [r.cells[0].innerText, r.cells[1].innerText])])")
    judged = con.execute(
        "select respondent, judge, label from judgments where run_id = 'base' and eval_id = 'addition'").fetchall()
    assert sorted((h.split(":")[0], j, lab) for h, pairs in rows for j, lab in pairs) == sorted(judged)
    page.close()


def test_comparing_two_runs_shows_deltas_and_changed_cells(store: Store, chromium: Chromium, tmp_path: Path) -> None:
    con = connect(store)
    page = open_page(chromium, compare_page(con, "base", "twice"), tmp_path, "report-compare")
    assert page.load.errors == []
    assert set(plot_points(page)) == {"deltas"} and all(n > 0 for n in plot_points(page)["deltas"])
    scores = {r: dict(con.execute("select model, avg_score from rankings where run_id = ?", [r]).fetchall())
              for r in ("base", "twice")}
    deltas = {m: round(scores["twice"][m] - scores["base"][m], 2) for m in POOL}
    shown = dict(zip(column(page, "ranking", 0), column(page, "ranking", 6)))
    assert shown == {m: f"{d:+.2f}" if d else "0.00" for m, d in deltas.items()}
    changed = {(m, e): (a, b) for m, e, a, b in page.evaluate(
        "[...document.querySelectorAll('#cells tbody tr')].map(r => [...r.cells].slice(0, 4).map(c => c.innerText))")}
    assert changed[FAILED] == ("ok", "failed") and changed[MISSING] == ("ok", "missing")
    page.close()


def test_the_cli_writes_a_run_page_and_a_comparison(store: Store, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", store.root, "report", "base", "--html", str(tmp_path / "run.html")]) == 0
    assert main(["--root", store.root, "report", "base", "twice", "--html", str(tmp_path / "ab.html")]) == 0
    assert 'id="ranking"' in (tmp_path / "run.html").read_text() and "Cells that changed" in (
        tmp_path / "ab.html").read_text()
    out = capsys.readouterr().out
    assert f"Page: {tmp_path / 'ab.html'}" in out and "Ranking, run base -> twice" in out
    assert main(["--root", store.root, "report", "nope", "--html", str(tmp_path / "x.html")]) == 2
    assert "no run nope" in capsys.readouterr().err and not (tmp_path / "x.html").exists()


def test_a_finished_sweep_saves_its_page_in_the_warehouse(store: Store, s3_root: tuple[str, dict]) -> None:
    con = connect(store)
    local = save_run_page(con, store, "base")
    assert local == f"{store.root}/reports/base.html" and Path(local).read_text().startswith("<!DOCTYPE html>")
    root, options = s3_root  # the same call writes to an object store through fsspec
    remote = save_run_page(con, Store(root, options), "base")
    assert remote == f"{root}/reports/base.html"
    assert 'id="ranking"' in Store(root, options).fs.cat_file(remote).decode()


def test_the_coverage_and_frontier_views_follow_their_definitions(store: Store) -> None:
    con = connect(store)
    cells = {(m, e): (s, n) for m, e, s, n in con.execute(
        "select model, eval_id, cell_status, valid_judgments from coverage where run_id = 'twice'").fetchall()}
    assert cells[FAILED][0] == "failed" and cells[MISSING][0] == "missing"
    assert all(s == "ok" and n > 0 for k, (s, n) in cells.items() if k not in (FAILED, MISSING))
    for run_id in ("base", "twice"):
        points = con.execute("select model, avg_score, avg_time_s, on_frontier from efficiency_frontier "
                             "where run_id = ?", [run_id]).fetchall()
        assert len(points) == len(POOL)
        for model, score, time_s, on in points:  # Pareto: nobody at least as good on both and better on one
            beaten = any(s >= score and t <= time_s and (s > score or t < time_s) for _, s, t, _ in points)
            assert on == (not beaten), model


def test_the_report_and_its_page_compute_the_statistics_once(store: Store, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: the 1,000-replicate bootstrap ran twice per report (terminal, then page)."""
    calls: list[str] = []
    real = stats.analyze
    monkeypatch.setattr(stats, "analyze", lambda con, run_id, *a, **kw: calls.append(run_id) or real(con, run_id, *a, **kw))
    assert main(["--root", store.root, "report", "base", "--html", str(tmp_path / "once.html")]) == 0
    assert calls == ["base"]
    assert 'id="ranking"' in (tmp_path / "once.html").read_text()


def test_a_page_of_many_evals_shows_the_troubled_ones_and_says_what_it_left_out(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "PAGE_EVALS", 2)
    text = run_page(connect(store), "twice")
    shown = {f"eval-{e}" for e in ("addition", "capital-france")}  # the failed and the missing cell's evals
    assert all(f'id="{e}"' in text for e in shown) and 'id="eval-pen-price"' not in text
    assert "2 of 3 evals shown here" in text and "select * from coverage where run_id = &#39;twice&#39;" in text
    # The terminal's coverage matrix shows the same evals and says the same.
    out = io.StringIO()
    Console(file=out, width=400).print(coverage_table(connect(store), "twice"))
    terminal = " ".join(out.getvalue().split())
    assert "addition" in terminal and "capital-france" in terminal and "pen-price" not in terminal
    assert "2 of 3 evals shown here" in terminal and "cells usable" in terminal
    monkeypatch.setattr(formats, "PAGE_EVALS", 3)
    assert "evals shown here" not in run_page(connect(store), "twice")  # 3 evals: all shown


@pytest.mark.vllm
def test_the_page_of_a_real_sweep_shows_the_rankings_view(resumed_sweep: Resumed,
                                                          chromium: Chromium) -> None:
    """The page a real sweep (SmolLM2 on CPU vLLM, see tests/test_real_engine.py) wrote for itself."""
    store = resumed_sweep.store
    path = Path(store.root) / "reports" / f"{REAL_RUN}.html"
    assert f"Page: {path}" in resumed_sweep.rerun.stdout
    page = chromium.load(path.as_uri(), ready=BOKEH_READY)
    page.screenshot(ARTIFACTS / "report-real.png")
    assert page.load.errors == []
    con = connect(store)
    ranked = con.execute("select rank, model, avg_score, wins, top3, evals, avg_sigma, valid_judgments, "
                         "total_judgments from rankings where run_id = ? order by rank", [REAL_RUN]).fetchall()
    models = {m for (m,) in con.execute("select distinct model from raw_generations").fetchall()}
    assert len(ranked) == len(models) == 2 and all(avg is not None for _, _, avg, *_ in ranked), ranked
    want = [[str(rank), model, f"{avg:.2f}", str(wins), f"{top3}/{evals}", f"{sigma:.2f}", f"{valid}/{total}"]
            for rank, model, avg, wins, top3, evals, sigma, valid, total in ranked]
    cells = page.evaluate("[...document.querySelectorAll('#ranking tbody tr')].map(r => [...r.cells].map(c => "
                          "c.innerText))")
    # Rank and scores carry their bootstrap range after a space; the calibrated column is stats.py's.
    shown = [[c.split(" (")[0] for i, c in enumerate(row) if i != 3] for row in cells]
    assert shown == want
    page.close()
