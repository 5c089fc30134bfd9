"""The warehouse catalog (issue 13): opening reads the commits, not every file's footer; a crash at any step
of a write, a compaction or a fold leaves the views whole; compaction swaps a run's files for one sorted file
and stores the run's eval_judgments, which the views read only while they are true to the run."""

from __future__ import annotations

import posixpath
from dataclasses import replace
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import warehouse.db as db_module
import warehouse.store as store_module
from tests.test_warehouse import GENERATIONS, JUDGMENTS, fill, gen, judgment, rows_of
from tests.test_warehouse import store  # noqa: F401  (the fixture: a local and an S3 warehouse)
from warehouse.__main__ import main
from warehouse.db import MODELS, compact, connect
from warehouse.store import CATALOG, Store

VIEWS = [v for v in MODELS if not v.startswith("stg_")] + ["generations", "judgments"]


def snapshot(store: Store, views: list[str] = VIEWS) -> dict[str, list[tuple]]:
    con = connect(store)
    out = {}
    for view in views:
        data = con.sql(f"select * from {view}").arrow()
        out[view] = sorted(map(repr, (data.read_all() if hasattr(data, "read_all") else data).to_pylist()))
    return out


def test_opening_reads_no_footer_of_a_file_the_catalog_lists(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(store)
    read: list[str] = []
    monkeypatch.setattr(store_module.pq, "read_schema", lambda path, **kw: read.append(path) or pq.read_schema(path, **kw))
    assert rows_of(connect(store), "select count(*) from judgments") == [(3,)]
    assert read == []


def test_a_file_whose_commit_never_landed_is_read_by_its_footer(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """A writer that died between the file and its commit: the file is complete (it was renamed into place
    whole), so it is read, checked by its footer."""
    store = Store(str(tmp_path))
    fill(store)
    folder = Path(store.partition("judgments", run_id="r1", judge="J", eval_id="e3"))
    folder.mkdir(parents=True)
    pq.write_table(pq.read_table(store.files("judgments")[0]), folder / "part-orphan.parquet")
    assert rows_of(connect(store), "select count(*) from raw_judgments") == [(3 + 2,)]
    assert "warning" not in capfd.readouterr().err


def test_a_file_removed_but_not_yet_moved_is_not_read(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """supersede() commits the removal, then moves the file: a crash between leaves it in place, unread."""
    store = Store(str(tmp_path))
    fill(store)
    victim = store.files("judgments")[0]
    store._commit(store._catalog_folder(victim), remove=[victim])
    assert Path(victim).exists()
    assert rows_of(connect(store), "select count(*) from judgments") == [(1,)]
    assert "warning" not in capfd.readouterr().err


def many_files(store: Store) -> None:
    """One run in several batch files, a cell written twice (the newer write counts), and a second run."""
    fill(store)
    store.write("judgments", [judgment("valid", "e1", score=9.0, created_at=judgment("x", "e1").created_at.replace(year=2026))],
                "part-again.parquet", run_id="r1", judge="J")
    store.write("generations", [gen("C", "e1", cell_key="g-C-e1")], "part-c.parquet", run_id="r1", model="C")
    store.write("generations", [replace(r, run_id="r2") for rows in GENERATIONS.values() for r in rows],
                "part-r2.parquet", run_id="r2", model="A")
    store.write("judgments", [replace(r, run_id="r2") for rows in JUDGMENTS.values() for r in rows],
                "part-r2.parquet", run_id="r2", judge="J")


def test_compaction_swaps_a_runs_files_for_one_sorted_file_and_keeps_every_view(store: Store) -> None:
    many_files(store)
    before = snapshot(store)
    assert rows_of(connect(store), "select score from judgments where run_id = 'r1' and cell_key = 'valid'") == [(9.0,)]
    old = store.files("judgments", "r1") + store.files("generations", "r1")
    assert compact(store, "r1") == {"generations": (3, 3), "judgments": (3, 3)}
    assert snapshot(store) == before
    for table in ("generations", "judgments"):
        (new,) = store.files(table, "r1")
        assert posixpath.basename(new).startswith("compact-")
        assert store.live(table, "r1").unique == {new}
        assert len(store.files(table, "r2")) == 1 and not store.live(table, "r2").unique  # r2 untouched
    # Sorted for the common queries: one respondent's rows of an eval together.
    models = pq.read_table(store.files("generations", "r1")[0], filesystem=store.fs).column("model").to_pylist()
    assert models == sorted(models)
    # Nothing deleted: the old files (the older write of the doubled cell too) are under superseded/.
    for path in old:
        assert store.fs.exists(posixpath.join(store.path, "superseded", posixpath.relpath(path, store.path)))
    # The run's catalog is one commit per table again.
    for table in ("generations", "judgments"):
        assert len(store.live(table, "r1").commits) == 1
    assert compact(store, "r1") == {}  # nothing left to do


def test_a_crash_in_compaction_leaves_the_views_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the swap commit, before any old file moved: the views are as before (no row twice)."""
    store = Store(str(tmp_path))
    many_files(store)
    before = snapshot(store)

    def die(*a: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "_move_aside", die)
    with pytest.raises(KeyboardInterrupt):
        compact(store, "r1")
    monkeypatch.undo()
    assert snapshot(store) == before
    compact(store, "r1")  # and a second try finishes the job
    assert snapshot(store) == before and len(store.files("judgments", "r1")) == 1


def test_the_compact_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = Store(str(tmp_path))
    many_files(store)
    before = snapshot(store)
    assert main(["--root", str(tmp_path), "compact", "r1", "r2"]) == 0
    assert "r1: judgments 3 files -> 1 (3 rows)" in capsys.readouterr().out
    assert snapshot(store) == before
    assert (tmp_path / CATALOG).is_dir()


def stored_runs(store: Store) -> list[tuple]:
    """The runs whose eval_judgments the views read from the stored file, and whether their judgments say so."""
    return rows_of(connect(store), "select run_id, count(*), bool_and(_aggregated) from stg_judgments "
                                   "where run_id in (select run_id from raw_eval_judgments) group by run_id")


SUMMED = ["eval_judgments", "judged_models", "eval_scores", "model_scores", "rankings", "efficiency",
          "common_evals_ranking", "failure_aware_ranking", "coverage"]
"""The views over eval_judgments."""
LATE = judgment("late", "e2", criteria={"correctness": 3}, score=3.0)
"""A judgment a resumed run adds after its compaction."""


def test_stored_eval_judgments_are_read_only_while_they_sum_the_runs_live_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction stores r1's eval_judgments; every view answers as before from them. A file the run writes
    afterwards (a resume) makes them stale: the views sum r1's judgments again, as a warehouse that was never
    compacted does, until the next compaction stores them again. A stored file of another definition is not read."""
    store, fresh = Store(str(tmp_path / "compacted")), Store(str(tmp_path / "fresh"))
    many_files(store)
    many_files(fresh)
    compact(store, "r1")
    assert stored_runs(store) == [("r1", 3, True)]
    assert snapshot(store, SUMMED) == snapshot(fresh, SUMMED)
    for wh in (store, fresh):
        wh.write("judgments", [LATE], "part-late.parquet", run_id="r1", judge="J")
    assert stored_runs(store) == []
    want = snapshot(fresh, SUMMED)
    assert snapshot(store, SUMMED) == want
    late = "select eval_score from eval_scores where run_id = 'r1' and eval_id = 'e2'"
    assert rows_of(connect(store), late) == [(3.0,)]
    compact(store, "r1")
    assert stored_runs(store) == [("r1", 4, True)]
    assert snapshot(store, SUMMED) == want
    monkeypatch.setattr(db_module, "AGGREGATE_VERSION", "another definition")
    assert stored_runs(store) == []
    assert snapshot(store, SUMMED) == want


def test_a_stored_eval_judgments_file_with_corrupt_pages_is_skipped_and_its_run_summed_again(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The report path of the CLI: the first query fails on the file, which is then left out (named in a
    warning) and its run summed from the judgments; one helper (db.on_sound_files) retries for query and report."""
    store = Store(str(tmp_path))
    many_files(store)
    expected = rows_of(connect(store), "select * from rankings")
    compact(store, "r1")
    (stored,) = store.files("eval_judgments")
    with open(stored, "r+b") as f:  # the footer stays whole, the first pages don't; the size the catalog has is kept
        f.seek(4)
        f.write(b"\xff" * 64)
    assert main(["--root", str(tmp_path), "query", "select * from rankings order by all"]) == 0
    out = capsys.readouterr()
    assert f"warning: skipping {stored}" in out.err
    assert rows_of(connect(store, [stored]), "select count(*) from raw_eval_judgments") == [(0,)]
    assert rows_of(connect(store, [stored]), "select * from rankings") == expected


def test_folding_a_runs_commits_keeps_its_files_and_survives_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capfd: pytest.CaptureFixture) -> None:
    """fold_run (the runner calls it when a run ends) leaves one commit per table of the run, the same live
    files, vouched and unique as before, and a removed file still in place still unread; killed after the
    folded commit, before the old ones moved, the views are the same too."""
    store = Store(str(tmp_path))
    many_files(store)
    store.write("judgments", [LATE], "part-late.parquet", unique=True, run_id="r1", judge="J")
    victim = store.files("judgments", "r1")[0]
    store._commit(store._catalog_folder(victim), remove=[victim])  # removed, not yet moved: a crash
    before = snapshot(store)
    lives = {t: store.live(t, "r1") for t in ("generations", "judgments")}
    assert len(lives["judgments"].commits) == 5 and len(lives["generations"].commits) == 3

    def die(*a: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "_move_aside", die)
    with pytest.raises(KeyboardInterrupt):
        store.fold_run("r1")
    monkeypatch.undo()
    assert snapshot(store) == before
    assert store.fold_run("r1") == 3 + 1 + 5  # generations': the old ones and the crash's; judgments' old ones
    assert snapshot(store) == before
    for table, live in lives.items():
        now = store.live(table, "r1")
        assert len(now.commits) == 1
        assert (now.files, now.unique, now.entries) == (live.files, live.unique, live.entries)
    assert Path(victim).exists() and victim not in store.files("judgments")
    assert store.fold_run("r1") == 0
    assert "warning" not in capfd.readouterr().err


def test_the_models_attached_from_the_cache_file_answer_as_models_defined_at_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """connect() attaches the models from one DuckDB file in the cache folder, built once per definition;
    every view answers as the models defined on the connection do (the fallback when no cache folder can be
    written), the file can't be written through a connection, and a query's own tables live in its memory."""
    store = Store(str(tmp_path / "wh"))
    many_files(store)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached = snapshot(store)
    assert cached["rankings"] and cached["judgments"]
    (views,) = (tmp_path / "cache" / "sweep" / "views").iterdir()
    assert views.name == f"views-{db_module._views_key()[0]}.duckdb"
    built = views.read_bytes()
    con = connect(store)
    con.execute("create table mine as select 1 as x")
    assert rows_of(con, "select database_name, (select x from mine) from duckdb_tables() where table_name = 'mine'") \
        == [("memory", 1)]
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute(f"create table {db_module.VIEWS}.main.theirs as select 1 as x")
    assert views.read_bytes() == built and sorted((tmp_path / "cache" / "sweep" / "views").iterdir()) == [views]
    (tmp_path / "file").write_text("")  # a cache folder under a file can't be made
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    assert db_module.views_file() is None
    assert snapshot(store) == cached
