"""The warehouse: Parquet round trips on local disk and S3, atomic writes, the root probe, DuckDB views, the CLI."""

from __future__ import annotations

import datetime as dt
import posixpath
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from sweep.core.errors import SweepError
from warehouse.db import MODELS, connect, script
from warehouse.readonly import PROTOCOL, connect_read_only, refusal
from sweep.core.rows import SCHEMAS, GenerationRow, JudgmentRow
from warehouse.store import Store

REPO = Path(__file__).resolve().parents[1]
T0 = dt.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
PARTS = {"generations": ("run_id", "model", "eval_id"), "judgments": ("run_id", "judge", "eval_id")}


def gen(model: str, eval_id: str, **kw: Any) -> GenerationRow:
    base = dict(
        run_id="r1", cell_key=f"g-{model}-{eval_id}", model=model, family="qwen", pool_index=0, eval_id=eval_id,
        category="math", sample=0, prompt="Grüße, 你好 🙂?", system_prompt=None, answer="ответ ✓", reasoning=None,
        status="ok", finish_reason="stop", prompt_tokens=12, output_tokens=34, latency_s=1.5, ttft_s=None,
        queue_s=0.25, sampling='{"temperature": 0.7}', engine="vllm", error=None, attempts=1, created_at=T0,
    )
    return GenerationRow(**{**base, **kw})


def judgment(key: str, eval_id: str, **kw: Any) -> JudgmentRow:
    base = dict(
        run_id="r1", cell_key=key, answer_key=f"g-A-{eval_id}", judge="J", judge_family="llama", respondent="A",
        respondent_family="qwen", pool_index=0, eval_id=eval_id, sample=0, label="Model α",
        criteria={"correctness": 8, "clarity": 7}, score=7.5, scale_max=10, justification="Clair et net — 好.",
        status="ok", error=None, raw='{"correctness": 8}', finish_reason="stop", prompt_tokens=100,
        output_tokens=20, latency_s=0.5, attempts=1, created_at=T0,
    )
    return JudgmentRow(**{**base, **kw})


GENERATIONS = {("A", "e1"): [gen("A", "e1", system_prompt="Be brief.", ttft_s=0.1)],
               ("B", "e2"): [gen("B", "e2", reasoning="думаю…", status="error", error="boom ✗")]}
JUDGMENTS = {"e1": [judgment("valid", "e1"),
                    judgment("invalid", "e1", status="invalid", criteria=None, score=None, justification=None,
                             error="unparseable")],
             "e2": [judgment("zero", "e2", criteria={"correctness": 0}, score=0.0)]}


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "wh"))
    root, options = request.getfixturevalue("s3_root")
    return Store(root, options)


def fill(store: Store) -> None:
    for (model, eval_id), rows in GENERATIONS.items():
        store.write("generations", rows, "part-g.parquet", run_id="r1", model=model, eval_id=eval_id)
    for eval_id, rows in JUDGMENTS.items():
        store.write("judgments", rows, "part-j.parquet", run_id="r1", judge="J", eval_id=eval_id)


def as_stored(row: Any) -> dict[str, Any]:
    """A row dataclass as pyarrow reads it back: maps come back as (key, value) pairs."""
    d = asdict(row)
    if d.get("criteria") is not None:
        d["criteria"] = list(d["criteria"].items())
    return d


def rows_of(con: Any, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_round_trip(store: Store) -> None:
    fill(store)
    # (c) Hive layout, and every file holds its own partition columns.
    base = posixpath.join(store.path, "generations", "run_id=r1")
    assert store.files("generations") == [f"{base}/model=A/eval_id=e1/part-g.parquet",
                                          f"{base}/model=B/eval_id=e2/part-g.parquet"]
    assert store.files("generations", run_id="r2") == []
    expected = {"generations": [r for rows in GENERATIONS.values() for r in rows],
                "judgments": [r for rows in JUDGMENTS.values() for r in rows]}
    for table, want in expected.items():
        got: list[dict[str, Any]] = []
        for path in store.files(table):
            data = pq.read_table(path, filesystem=store.fs)
            assert data.schema.equals(SCHEMAS[table]), table
            assert data.schema.field("created_at").metadata[b"doc"] == b"When the row was written, UTC"
            parts = dict(seg.split("=", 1) for seg in path.split("/") if "=" in seg)
            assert tuple(parts) == PARTS[table]
            for col, value in parts.items():
                assert data.column(col).to_pylist() == [value] * data.num_rows, (path, col)
            got += data.to_pylist()
        # (a) field by field, None, maps, unicode and timestamps included.
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g == as_stored(w)
    # (b) DuckDB over the same files.
    con = connect(store)
    assert rows_of(con, "select count(*) from judgments") == [(3,)]
    assert rows_of(con, "select count(*) from generations") == [(2,)]
    assert rows_of(con, "select cell_key, valid from judgments order by cell_key") == [
        ("invalid", False), ("valid", True), ("zero", False)]
    assert rows_of(con, "select answer, system_prompt from generations where model = 'A'") == [("ответ ✓", "Be brief.")]
    assert rows_of(con, "select model, avg_score, valid_judgments, total_judgments from rankings") == [("A", 7.5, 1, 3)]


def test_no_temp_files_and_files_ignores_strays(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    fill(store)
    assert [p for p in tmp_path.rglob(".*")] == []
    folder = tmp_path / "judgments" / "run_id=r1" / "judge=J" / "eval_id=e1"
    committed = store.files("judgments")
    (folder / ".x.tmp").write_bytes(b"junk")
    (folder / ".part.parquet.abc.tmp").write_bytes(b"half a parquet file")
    (folder / ".hidden.parquet").write_bytes(b"not parquet either")
    assert store.files("judgments") == committed
    assert rows_of(connect(store), "select count(*) from judgments") == [(3,)]


def expect_sweep_error(store: Store) -> SweepError:
    with pytest.raises(SweepError) as info:
        store.check_writable()
    err = info.value
    assert store.root in err.problem and "not writable" in err.problem
    assert "warehouse.root=" in err.fix and str(err).startswith("error: ") and "\nfix: " in str(err)
    return err


def test_check_writable(tmp_path: Path, s3_root: tuple[str, dict]) -> None:
    (tmp_path / "a_file").write_text("x")
    expect_sweep_error(Store(str(tmp_path / "a_file" / "wh")))
    root, options = s3_root
    bucket = root.split("/")[2]
    missing = Store(root.replace(bucket, bucket + "-missing"), options)
    expect_sweep_error(missing)
    assert not missing.fs.exists(bucket + "-missing"), "the probe must not create the bucket"
    for good in (Store(str(tmp_path / "new" / "wh")), Store(root, options)):
        good.check_writable()
        assert good.fs.find(good.path) == [], good.root


EMPTY_COLUMNS = {
    "generations": SCHEMAS["generations"].names,
    "judgments": SCHEMAS["judgments"].names + ["valid"],
    "runs": SCHEMAS["runs"].names,
    "rankings": ["rank", "run_id", "model", "avg_score", "wins", "top3", "evals", "avg_sigma",
                 "valid_judgments", "total_judgments", "unranked"],
    "efficiency": ["run_id", "model", "pool_index", "avg_time_s", "output_tokens_per_s", "score_per_sec",
                   "avg_score_per_avg_time", "answer_cost_usd", "judge_cost_usd", "cost_per_point_usd"],
    "judge_leniency": ["run_id", "judge", "family", "mean_given", "valid", "total", "valid_rate", "ok", "invalid",
                       "truncated", "error", "no_answer"],
    "comparisons": SCHEMAS["comparisons"].names + ["valid", "decided", "pair_a", "pair_b"],
    "pairwise_ranking": ["run_id", "rank", "model", "pool_index", "win_rate", "wins", "ties", "losses", "comparisons"],
    "position_bias": ["run_id", "judge", "family", "verdicts", "decided", "first_wins", "second_wins", "ties", "total",
                      "first_rate", "pairs", "consistent", "consistency"],
    "soft_scores": ["run_id", "model", "pool_index", "n", "avg_soft_score", "avg_score", "avg_gap", "mean_abs_gap"],
}


@pytest.mark.parametrize("view", sorted(EMPTY_COLUMNS))
def test_empty_warehouse_views(tmp_path: Path, view: str) -> None:
    con = connect(Store(str(tmp_path / "nothing-here")))
    result = con.execute(f"select * from {view}")
    assert [d[0] for d in result.description] == EMPTY_COLUMNS[view]
    assert result.fetchall() == []


def test_the_cli_views_script_reads_what_connect_reads(tmp_path: Path) -> None:
    """`python -m warehouse views` for the duckdb CLI: the same rows, also for a table no file holds yet
    (comparisons without judge.pairwise) and a column no file has (soft_score)."""
    fill(Store(str(tmp_path)))
    cli_con = duckdb.connect()
    cli_con.execute(script(Store(str(tmp_path))))
    con = connect(Store(str(tmp_path)))
    for view in (*MODELS, "judgments", "comparisons"):
        query = f"select count(*) from {view}"
        assert cli_con.execute(query).fetchone() == con.execute(query).fetchone(), view
    assert con.execute("select count(*), count(soft_score) from judgments").fetchone() == (3, 0)


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "warehouse", "--root", str(root), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_cli(tmp_path: Path) -> None:
    fill(Store(str(tmp_path)))
    ok = cli(tmp_path, "query", "select cell_key, valid from judgments where valid")
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout and "true" in ok.stdout and "zero" not in ok.stdout
    for bad, message in [("select nope from judgments", "Binder Error"),
                         ("selec 1", "Parser Error"),
                         ("select 'abc'::int", "Conversion Error")]:  # this one fails only when run
        res = cli(tmp_path, "query", bad)
        assert res.returncode == 2, (bad, res.stderr)
        assert res.stderr.startswith(f"error: {message}"), res.stderr
        assert "Traceback" not in res.stderr and res.stdout == ""
    empty = cli(tmp_path / "empty", "report")
    assert empty.returncode == 2
    assert empty.stderr.startswith("error: no runs in the warehouse") and str(tmp_path / "empty") in empty.stderr
    assert "Traceback" not in empty.stderr


def test_files_from_before_the_cost_columns_still_answer_every_view(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "wh"))
    fill(store)
    for path in store.files("generations") + store.files("judgments"):  # rewrite as an older release did
        old = pq.read_table(path).drop_columns(["cost_usd", "requests"])
        pq.write_table(old, path)
    assert "cost_usd" not in pq.read_schema(store.files("generations")[0]).names
    con = connect(store)
    assert rows_of(con, "select model, answer_cost_usd, judge_cost_usd, cost_per_point_usd from efficiency") == [
        ("A", None, None, None)]
    assert rows_of(con, "select count(*), count(requests) from generations") == [(2, 0)]


def test_a_slash_in_a_name_is_stored_and_read_back_as_written(store: Store) -> None:
    """Issue 13: folder names are never read back as values. A card named like a hub repo and eval ids
    with '/' keep their names in every view (before: the judge showed up as 'qwen', the evals collapsed)."""
    for eval_id in ("set/1", "set/2"):
        store.write("generations", [gen("qwen/qwen3-8b", eval_id)], "part-g.parquet",
                    run_id="r1", model="qwen/qwen3-8b", eval_id=eval_id)
        store.write("judgments", [judgment(f"j-{eval_id}", eval_id, judge="org/judge-1", respondent="qwen/qwen3-8b",
                                           answer_key=f"g-qwen/qwen3-8b-{eval_id}")],
                    "part-j.parquet", run_id="r1", judge="org/judge-1", eval_id=eval_id)
    con = connect(store)
    assert rows_of(con, "select model, eval_id from generations order by eval_id") == [
        ("qwen/qwen3-8b", "set/1"), ("qwen/qwen3-8b", "set/2")]
    assert rows_of(con, "select distinct judge from judgments") == [("org/judge-1",)]
    assert rows_of(con, "select model, evals from rankings") == [("qwen/qwen3-8b", 2)]
    assert rows_of(con, "select model from efficiency") == [("qwen/qwen3-8b",)]
    # One folder per name: the '/' is percent-encoded, not a deeper folder.
    assert {posixpath.relpath(p, store.path) for p in store.files("generations")} == {
        "generations/run_id=r1/model=qwen%2Fqwen3-8b/eval_id=set%2F1/part-g.parquet",
        "generations/run_id=r1/model=qwen%2Fqwen3-8b/eval_id=set%2F2/part-g.parquet"}


def test_a_name_with_dot_dots_stays_inside_the_root(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "wh"))
    store.write("generations", [gen("../../outside", "e1")], "part-g.parquet", run_id="../r", model="../../outside",
                eval_id="..")
    written = [p for p in tmp_path.rglob("*.parquet")]
    assert len(written) == 1 and (tmp_path / "wh") in written[0].parents, written
    assert rows_of(connect(store), "select run_id, model, eval_id from generations") == [("r1", "../../outside", "e1")]


@pytest.mark.parametrize("bad", ["", "tab\there", "nul\x00", "x" * 300])
def test_a_name_a_folder_cant_hold_is_refused_with_a_sweep_error(tmp_path: Path, bad: str) -> None:
    store = Store(str(tmp_path))
    with pytest.raises(SweepError) as info:
        store.write("generations", [gen(bad, "e1")], "part-g.parquet", run_id="r1", model=bad, eval_id="e1")
    assert info.value.problem.startswith(f"model {bad!r} can't be a warehouse folder name") and info.value.fix
    assert list(tmp_path.rglob("*.parquet")) == []


def test_latest_rows_breaks_ties_the_same_way_every_time(tmp_path: Path) -> None:
    """Two writes of one cell at the same instant (created_at ties): the later file name wins, on every
    connection and every query (before: either row, so sums changed between reruns of one query)."""
    store = Store(str(tmp_path))
    for name, score in (("part-b.parquet", 9.0), ("part-a.parquet", 2.0), ("part-c.parquet", 5.0)):
        store.write("judgments", [judgment("same", "e1", score=score)], name, run_id="r1", judge="J", eval_id="e1")
    results = {rows_of(connect(store), "select score from judgments")[0] for _ in range(5)}
    assert results == {(5.0,)}


# Every way to write a file (or undo the lock) that we know of; {f} is a warehouse file, {d} a scratch folder.
WRITES = (
    "copy (select 1 as x) to '{d}/x.csv'",
    "copy generations to '{f}' (use_tmp_file false)",  # allowed_paths alone would let this truncate the file
    "copy generations to '{ro}{f}' (use_tmp_file false)",
    "copy (select 1 as x) to 's3://somewhere/x.csv'",
    "export database '{d}/export'",
    "explain analyze copy (select 1 as x) to '{d}/x.csv'",
    "explain analyze copy generations to '{ro}{f}' (use_tmp_file false)",
    "attach '{d}/x.db'",
    "attach '{ro}{d}/y.db'",
    "install httpfs",
    "load httpfs",
    "set enable_external_access = true",
    "set lock_configuration = false",
    "set allowed_directories = ['/']",  # would open every local file to the COPY that follows
    "reset enable_external_access",
    "call enable_logging(storage = 'file', storage_path = '{d}/logs')",
    "create persistent secret s (type s3, key_id 'a', secret 'b')",
    "select * from read_text('/etc/hostname')",
)


def snapshot(store: Store, scratch: Path) -> dict[str, bytes]:
    files = {p: store.fs.cat_file(p) for p in store.fs.find(store.path)}
    return files | {str(p): p.read_bytes() for p in scratch.rglob("*") if p.is_file()}


def test_query_connections_cannot_write_anything(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(store)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(scratch)  # relative paths land here
    before = snapshot(store, scratch)
    con = connect_read_only(store)
    for sql in WRITES:
        with pytest.raises(duckdb.Error) as info:
            con.sql(sql.format(f=store.files("generations")[0], d=scratch, ro=f"{PROTOCOL}://"))
        assert refusal(info.value), (sql, info.value)  # refused as a write, not failed for another reason
        assert snapshot(store, scratch) == before, sql
    # The views still read the warehouse, local or S3, on the same connection.
    assert rows_of(con, "select model, avg_score, valid_judgments from rankings") == [("A", 7.5, 1)]


def test_the_query_command_refuses_writes_in_one_clear_error(tmp_path: Path) -> None:
    fill(Store(str(tmp_path / "wh")))
    # EXPLAIN ANALYZE runs its statement: a statement-type filter let this one write x.csv.
    out = subprocess.run([sys.executable, "-m", "warehouse", "--root", str(tmp_path / "wh"), "query",
                          "explain analyze copy (select 1 as x) to 'x.csv'"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: the warehouse is opened read-only") and "\nfix: " in out.stderr
    assert "Traceback" not in out.stderr and 'Cannot access file "x.csv"' in out.stderr, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wh"]
