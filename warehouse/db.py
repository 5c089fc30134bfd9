"""DuckDB over the warehouse: raw views on the Parquet files, then the .sql models as views."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
import uuid
from pathlib import Path
from typing import Callable, Collection, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sweep.core.rows import SCHEMAS
from warehouse.store import DERIVED, TABLES, Live, Store

T = TypeVar("T")

SQL_DIR = Path(__file__).parent / "sql"
LATEST = ("generations", "judgments", "comparisons")
"""Tables whose cells may have been written twice; their staging views keep the latest row (latest_rows)."""

# Each file is one SELECT (jaffle-shop style) and becomes a view of the same name,
# in dependency order.
MODELS = (
    "stg_generations", "stg_judgments", "stg_comparisons", "eval_judgments", "judged_models", "eval_scores",
    "model_scores", "rankings", "efficiency", "judge_leniency", "judge_matrix", "family_leniency", "flat_judges",
    "judge_agreement", "common_evals_ranking", "failure_aware_ranking",
    "coverage", "efficiency_frontier", "run_pairs", "ranking_deltas", "cell_deltas",
    "pairwise_ranking", "position_bias", "soft_scores",
)


def sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def connect(store: Store, skip: Collection[str] = ()) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose views read the warehouse's live Parquet files where they are, but
    those in ``skip`` (found by ``damaged``)."""
    con = _with_models(store)
    # Footers read once per connection, not once per query: a report runs dozens of queries over the same
    # files (which are never changed in place).
    con.execute("set parquet_metadata_cache = true")
    for statement in raw_views(store, skip):
        con.execute(statement)
    return con


VIEWS = "sweep_views"
"""The catalog the cached views file is attached as (views_file)."""


def _with_models(store: Store) -> duckdb.DuckDBPyConnection:
    """A connection with the SQL models defined and no raw view yet (raw_views adds them).

    DuckDB binds a view when it is created, so defining the 24 models costs ~0.4 s of CPU at every open.
    They are defined once per definition instead, in a DuckDB file (views_file) attached read-only: DuckDB
    loads its catalog without binding, and a model resolves the raw views, which its file lacks, in this
    connection's own memory database (the search path), where user tables also go and vanish with it.
    Without a cache folder to write, the models are defined here as before."""
    con = duckdb.connect()
    if not store.local:
        con.register_filesystem(store.fs)
    if (path := views_file()) is not None:
        try:
            con.execute(f"attach {_literal(str(path))} as {VIEWS} (read_only)")
            con.execute(f"set search_path = 'memory.main,{VIEWS}.main'")
            return con
        except duckdb.Error:  # removed or damaged since it was found: define the models here
            pass
    for statement in _definitions(temp=False):
        con.execute(statement)
    return con


def _definitions(temp: bool) -> list[str]:
    """The models over empty raw views (temp ones when building views_file: a file that kept them would
    resolve its models to them rather than to the connection's)."""
    kind = "temp view" if temp else "view"
    return [*(f"create {kind} raw_{t} as {_empty_select(t)}" for t in (*TABLES, *DERIVED)), *model_views()]


def views_file() -> Path | None:
    """The models as a DuckDB database file in the user's cache folder ($XDG_CACHE_HOME/sweep/views, else
    ~/.cache/sweep/views), named by a hash of the DuckDB version and every definition, so a changed .sql file
    or schema gets a file of its own. Built when missing, written whole (a temp file renamed), so concurrent
    processes never see half of one. None when the folder can't be written."""
    key, definitions = _views_key()
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sweep" / "views"
    path = folder / f"views-{key}.duckdb"
    if path.exists():
        return path
    tmp = folder / f".views-{key}-{uuid.uuid4().hex}.duckdb"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with duckdb.connect(str(tmp)) as con:
            for statement in definitions:
                con.execute(statement)
        os.replace(tmp, path)
    except (OSError, duckdb.Error):
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return None
    return path


@functools.cache
def _views_key() -> tuple[str, tuple[str, ...]]:
    definitions = tuple(_definitions(temp=True))
    return hashlib.sha256("\n".join([duckdb.__version__, *definitions]).encode()).hexdigest()[:16], definitions


def on_sound_files(store: Store, open_: Callable[[Collection[str]], duckdb.DuckDBPyConnection],
                   work: Callable[[duckdb.DuckDBPyConnection], T],
                   worth_checking: Callable[[duckdb.Error], bool] = lambda e: True) -> T:
    """work on a connection from open_(skip); when it fails with a DuckDB error worth_checking, and
    some files have a sound footer but corrupt pages (which fail only the first query that reads them),
    once more on a connection without those files (a warning names each)."""
    try:
        return work(open_(()))
    except duckdb.Error as e:
        if not worth_checking(e) or not (broken := damaged(store)):
            raise
        return work(open_(broken))


def raw_views(store: Store, skip: Collection[str] = ()) -> list[str]:
    """raw_{table} over the files the catalog lists (store.live) but those in ``skip``, with a warning
    naming each skipped file; raw_eval_judgments over the stored aggregates still true to their runs."""
    out = []
    lives = {table: store.live(table) for table in TABLES}
    aggregates = current_aggregates(store, lives["judgments"], skip)
    aggregated = {_run_folder(store, path) for path in aggregates}
    for table, live in lives.items():
        files = {path: columns for path, columns in live.files.items() if path not in skip}
        for path in (*live.bad, *(path for path in live.files if path in skip)):
            print(f"warning: skipping {store.url(path)}: not a readable {table} Parquet file "
                  "(truncated, corrupt, or another schema)", file=sys.stderr)
        flags = {p for p in files if _run_folder(store, p) in aggregated} if table == "judgments" else set()
        out.append(f"create or replace view raw_{table} as {_select(store, table, files, live.unique, flags)}")
    for path in sorted(p for p in skip if p[len(store.path) + 1:].split("/", 1)[0] in DERIVED):
        print(f"warning: skipping {store.url(path)}: not a readable Parquet file (truncated or corrupt); "
              "its run is summed from its judgments instead", file=sys.stderr)
    out.append(f"create or replace view raw_eval_judgments as {_select(store, 'eval_judgments', aggregates)}")
    return out


AGGREGATE_VERSION = hashlib.sha256((sql("eval_judgments") + sql("stg_judgments")).encode()).hexdigest()[:16]
"""Stored eval_judgments rows are read only when written by the same definition."""


def current_aggregates(store: Store, judgments: Live, skip: Collection[str] = ()) -> dict[str, tuple[str, ...]]:
    """The stored eval_judgments files whose sources are exactly their run's live judgment files (the
    catalog's paths and sizes, none skipped), written by this AGGREGATE_VERSION: any write to the run
    since (a resume, a rewrite) changes that list, and the run is summed from its judgments again."""
    sources: dict[str, dict[str, int]] = {}
    for path in judgments.files:
        entry = judgments.entries.get(path)
        # a file the catalog doesn't vouch for, or skipped, can't match: -1 is no size
        size = -1 if entry is None or path in skip else entry["bytes"]
        sources.setdefault(_run_folder(store, path), {})[path[len(store.path) + 1:]] = size
    live = store.live("eval_judgments")
    return {path: columns for path, columns in live.files.items() if path not in skip
            and (meta := live.entries[path].get("meta", {})).get("version") == AGGREGATE_VERSION
            and meta.get("sources") == sources.get(_run_folder(store, path))}


def _run_folder(store: Store, path: str) -> str:
    """run_id=R of a table file's path (under store.path: sliced, as relpath costs more than the rest of it)."""
    return path[len(store.path) + 1:].split("/", 2)[1]


def _select(store: Store, table: str, files: dict[str, tuple[str, ...]], unique: Collection[str] = (),
            aggregated: Collection[str] = ()) -> str:
    """One read_parquet per set of columns (all files but those older than a column share one, so DuckDB
    reads one footer to bind), then every column of the schema, also when no file has it yet (a warehouse
    without judge.pairwise has no comparisons file and answers with zero rows). Folder names are never read
    back as values (hive_partitioning = false): each file holds its own columns, and a '/' in a name
    would otherwise split it. ``filename`` and ``file_row_number`` make latest_rows' order total,
    ``_unique`` marks the files latest_rows need not look into (Live.unique), and ``_aggregated``
    (judgments) those of runs whose eval_judgments rows are stored. Both are constants per read_parquet,
    so a filter on them drops whole reads when the query is planned."""
    scan = getattr(store, "scan_url", store.url)  # a ReadOnlyStore reads through its own filesystem
    groups: dict[tuple[tuple[str, ...], bool, bool], list[str]] = {}
    for path, columns in files.items():
        groups.setdefault((tuple(sorted(columns)), path in unique, path in aggregated), []).append(scan(path))
    extra = ", filename = true, file_row_number = true" if table in LATEST else ""
    flags = ("{u} as _unique, {a} as _aggregated" if table == "judgments"
             else "{u} as _unique" if table in LATEST else "")
    reads = [f"select *{', ' + flags.format(u=u, a=a) if flags else ''} from read_parquet("
             f"[{', '.join(map(_literal, urls))}], hive_partitioning = false{extra})"
             for (_, u, a), urls in groups.items()]
    return " union all by name ".join([*reads, _empty_select(table)])


# Compacted files are sorted for the common queries: one respondent's (or judge's) rows of an eval together.
SORT = {"generations": "model, eval_id, sample", "judgments": "respondent, eval_id, judge, sample",
        "comparisons": "judge, eval_id, sample, first, second"}


def compact(store: Store, run_id: str) -> dict[str, tuple[int, int]]:
    """Rewrite a run's files of each table as one sorted file (row groups of store.ROW_GROUP rows): the
    latest row of each cell, as the views read it. One commit swaps the new file in and the old ones out,
    which then move to superseded/ (nothing is deleted, and any row left out, a cell's older write, is
    kept there). Then stores the run's eval_judgments (store_aggregate). Returns {table: (files before,
    rows)} for the tables that had more than one file."""
    done = {}
    for table in LATEST:
        live = store.live(table, run_id)
        if len(live.files) < 2:
            continue
        con = duckdb.connect()
        if not store.local:
            con.register_filesystem(store.fs)
        con.execute(sql("macros"))
        con.execute(f"create view raw_{table} as {_select(store, table, live.files, live.unique)}")
        columns = ", ".join(SCHEMAS[table].names)
        data = con.sql(f"select {columns} from latest_rows('raw_{table}') order by {SORT[table]}").arrow()
        if isinstance(data, pa.RecordBatchReader):
            data = data.read_all()
        store.write(table, data.cast(SCHEMAS[table]), f"compact-{uuid.uuid4().hex[:12]}.parquet",
                    replaces=sorted(live.files), unique=True, run_id=run_id)
        store.fold(live.commits, stranded=live.stranded)
        done[table] = (len(live.files), data.num_rows)
    store_aggregate(store, run_id)
    return done


def store_aggregate(store: Store, run_id: str) -> int | None:
    """Write the run's eval_judgments rows as one file that names the judgment files it sums (their paths
    and sizes in the catalog), replacing the run's older one; the views read it while those are still the
    run's live judgment files (current_aggregates). Returns its rows; None when there is nothing to store
    (no judgments, a file the catalog doesn't vouch for, or the stored one is current)."""
    judgments = store.live("judgments", run_id)
    if not judgments.files or set(judgments.files) - set(judgments.entries):
        return None
    old = store.live("eval_judgments", run_id)
    if current_aggregates(store, judgments, ()).keys() & old.files.keys():
        return None
    con = _with_models(store)
    for statement in (*(f"create or replace view raw_{t} as {_empty_select(t)}" for t in (*TABLES, *DERIVED)),
                      f"create or replace view raw_judgments as "
                      f"{_select(store, 'judgments', judgments.files, judgments.unique)}"):
        con.execute(statement)
    data = con.sql("select * from eval_judgments order by respondent, eval_id, status").arrow()
    if isinstance(data, pa.RecordBatchReader):
        data = data.read_all()
    sources = {p[len(store.path) + 1:]: judgments.entries[p]["bytes"] for p in judgments.files}
    store.write("eval_judgments", data.cast(AGGREGATE_SCHEMA), f"agg-{uuid.uuid4().hex[:12]}.parquet",
                replaces=sorted(old.files), unique=True, meta={"version": AGGREGATE_VERSION, "sources": sources},
                run_id=run_id)
    store.fold(old.commits, stranded=old.stranded)
    return data.num_rows


def damaged(store: Store) -> list[str]:
    """Files whose footer reads but whose pages don't. ``connect`` checks footers only, as a full
    read of every file costs as much as the query: call this after a query failed."""
    out = []
    for table in (*TABLES, *DERIVED):
        for path in store.live(table).files:
            try:
                pq.read_table(path, filesystem=store.fs)
            except (pa.ArrowException, OSError):
                out.append(path)
    return out


def model_views() -> list[str]:
    """The SQL models as views over raw_runs, raw_generations and raw_judgments."""
    return [
        sql("macros"),
        *(f"create or replace view {name} as {sql(name)}" for name in MODELS),
        # The names users query: cleaned tables, plus the runs as written.
        "create or replace view generations as select * from stg_generations",
        "create or replace view judgments as select * exclude (_aggregated) from stg_judgments",
        "create or replace view comparisons as select * from stg_comparisons",
        "create or replace view runs as select * from raw_runs",
    ]


def script(store: Store) -> str:
    """Every view as one SQL script for the duckdb CLI (local roots): duckdb -init views.sql. The raw views
    name the live files, as connect() does: a file the catalog removed or can't read is not in them."""
    return "\n".join(v.rstrip().rstrip(";") + ";" for v in (*raw_views(store), *model_views())) + "\n"


AGGREGATE_SCHEMA = pa.schema([("run_id", pa.string()), ("respondent", pa.string()), ("eval_id", pa.string()),
                              ("status", pa.string()), ("pool_index", pa.int64()), ("judgments", pa.int64()),
                              ("valid_scores", pa.int64()), ("micro_sum", pa.int64()), ("sigma", pa.float64())])
"""raw_eval_judgments' columns (see eval_judgments.sql)."""


@functools.cache
def _empty_select(table: str) -> str:
    """A zero-row SELECT with the table's columns and types, for tables with no file yet (read_parquet
    refuses a glob that matches nothing)."""
    schema = AGGREGATE_SCHEMA if table == "eval_judgments" else SCHEMAS[table]
    empty = pa.table({f.name: pa.array([], f.type) for f in schema})
    rel = duckdb.from_arrow(empty)  # the module's default connection: a new one costs ~50 ms
    columns = [f"null::{t} as {c}" for c, t in zip(rel.columns, rel.types)]
    if table in LATEST:
        columns += ["null::varchar as filename", "null::bigint as file_row_number", "false as _unique"]
    if table == "judgments":
        columns += ["false as _aggregated"]
    return "select " + ", ".join(columns) + " where false"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
