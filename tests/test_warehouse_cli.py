"""What a user of `python -m warehouse` hits first: a wrong or empty root, a missing folder for the page,
an S3-compatible store, and the README's duckdb CLI command."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.test_warehouse import fill
from sweep.core.rows import RunRow
from warehouse.store import Store

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "warehouse", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def one_error(out: subprocess.CompletedProcess[str], problem: str, fix: str) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and out.stdout == "", out
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("fix: "), out.stderr
    assert problem in lines[0] and fix in lines[1], out.stderr


def a_run(store: Store) -> None:
    """The tables of test_warehouse plus the run row that names them."""
    fill(store)
    now = dt.datetime.now(dt.timezone.utc)
    store.write("runs", [RunRow(
        run_id="r1", started_at=now, finished_at=now, status="finished", config_yaml="", config_hash="", git_commit=None,
        packages={}, hardware="{}", pool=["A", "B"], suite="s", generate_cells=2, judge_cells=3, model_loads=2,
        reused_cells=0, instance_failures=0, wall_s=1.0)], "run.parquet", run_id="r1")


def test_a_root_that_does_not_exist_is_an_error_and_an_empty_one_a_warning(tmp_path: Path) -> None:
    missing = str(tmp_path / "nonexistent")
    for args in (["query", "select * from rankings"], ["views"], ["report"]):  # coverage opens it as report does
        one_error(cli("--root", missing, *args), f"no runs in the warehouse at {missing}: it does not exist",
                  "point --root at a warehouse a sweep wrote")
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["query", "select * from rankings"], ["views"]):
        out = cli("--root", str(empty), *args)
        assert out.returncode == 0 and "warning: the warehouse at" in out.stderr and "holds no files" in out.stderr


def test_report_html_into_a_missing_folder_is_refused_before_anything_is_printed(tmp_path: Path) -> None:
    a_run(Store(str(tmp_path / "wh")))
    page = tmp_path / "no-such-dir" / "x.html"
    one_error(cli("--root", str(tmp_path / "wh"), "report", "r1", "--html", str(page)),
              f"the folder {page.parent} does not exist", "mkdir -p")
    ok = cli("--root", str(tmp_path / "wh"), "report", "r1", "--html", str(tmp_path / "x.html"))
    assert ok.returncode == 0 and (tmp_path / "x.html").stat().st_size > 10_000, ok.stderr[-2000:]


def test_an_s3_compatible_store_from_the_cli_and_a_bucket_that_does_not_exist(
        s3_root: tuple[str, dict], tmp_path: Path) -> None:
    root, options = s3_root
    a_run(Store(root, options))
    endpoint = f"endpoint_url={options['endpoint_url']}"
    out = cli("--root", root, "-o", endpoint, "report", "r1")
    assert out.returncode == 0 and "Ranking, run r1" in out.stdout, out.stderr[-2000:]
    out = cli("--root", root, "-o", endpoint, "query", "select count(*) as n from judgments")
    assert out.returncode == 0 and re.search(r"│\s+3\s+│", out.stdout), out.stdout
    one_error(cli("--root", "s3://nosuchbucket/x", "-o", endpoint, "report"), "no runs in the warehouse at "
              "s3://nosuchbucket/x", "-o endpoint_url=URL")
    one_error(cli("--root", root, "-o", "endpoint_url", "report"), "is not KEY=VALUE", "-o endpoint_url=")


def test_the_readme_duckdb_cli_command_runs_as_written(tmp_path: Path) -> None:
    """README: `python -m warehouse views > views.sql && duckdb -init views.sql -c "..."`, from a folder whose
    data/warehouse holds a run, with the venv's bin first on PATH (as after `make setup` and activating it)."""
    readme = (REPO / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("python -m warehouse views > views.sql"))
    a_run(Store(str(tmp_path / "data" / "warehouse")))
    out = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert "avg_score" in out.stdout and re.search(r"│\s+A\s+│", out.stdout), out.stdout
