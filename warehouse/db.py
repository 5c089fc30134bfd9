"""DuckDB over the warehouse: raw views on the Parquet files, then the .sql models as views."""

from __future__ import annotations

import functools
import sys
import uuid
from pathlib import Path
from typing import Collection

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sweep.core.rows import SCHEMAS
from warehouse.store import TABLES, Store

SQL_DIR = Path(__file__).parent / "sql"
LATEST = ("generations", "judgments", "comparisons")
"""Tables whose cells may have been written twice; their staging views keep the latest row (latest_rows)."""

# Each file is one SELECT (jaffle-shop style) and becomes a view of the same name,
# in dependency order.
MODELS = (
    "stg_generations", "stg_judgments", "stg_comparisons", "eval_scores", "model_scores", "rankings", "efficiency", "judge_leniency",
    "judge_matrix", "family_leniency", "flat_judges", "judge_agreement", "common_evals_ranking", "failure_aware_ranking",
    "coverage", "efficiency_frontier", "run_pairs", "ranking_deltas", "cell_deltas",
    "pairwise_ranking", "position_bias", "soft_scores",
)


def sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def connect(store: Store, skip: Collection[str] = ()) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose views read the warehouse's live Parquet files where they are, but
    those in ``skip`` (found by ``damaged``)."""
    con = duckdb.connect()
    if not store.local:
        con.register_filesystem(store.fs)
    # The models are created over empty raw views, then the raw views are pointed at the files: DuckDB
    # binds a view (reading footers) when it is created and again when queried, so binding each model over
    # the files would read them once per view at every open.
    for statement in (*(f"create view raw_{t} as {_empty_select(t)}" for t in TABLES), *model_views(),
                      *raw_views(store, skip)):
        con.execute(statement)
    return con


def raw_views(store: Store, skip: Collection[str] = ()) -> list[str]:
    """raw_{table} over the files the catalog lists (store.live) but those in ``skip``, with a warning
    naming each skipped file."""
    out = []
    for table in TABLES:
        live = store.live(table)
        files = {path: columns for path, columns in live.files.items() if path not in skip}
        for path in (*live.bad, *(path for path in live.files if path in skip)):
            print(f"warning: skipping {store.url(path)}: not a readable {table} Parquet file "
                  "(truncated, corrupt, or another schema)", file=sys.stderr)
        out.append(f"create or replace view raw_{table} as {_select(store, table, files, live.unique)}")
    return out


def _select(store: Store, table: str, files: dict[str, tuple[str, ...]], unique: frozenset[str] = frozenset()) -> str:
    """One read_parquet per set of columns (all files but those older than a column share one, so DuckDB
    reads one footer to bind), then every column of the schema, also when no file has it yet (a warehouse
    without judge.pairwise has no comparisons file and answers with zero rows). Folder names are never read
    back as values (hive_partitioning = false): each file holds its own columns, and a '/' in a name
    would otherwise split it. ``filename`` and ``file_row_number`` make latest_rows' order total, and
    ``_unique`` marks the files latest_rows need not look into (Live.unique)."""
    scan = getattr(store, "scan_url", store.url)  # a ReadOnlyStore reads through its own filesystem
    groups: dict[tuple[tuple[str, ...], bool], list[str]] = {}
    for path, columns in files.items():
        groups.setdefault((tuple(sorted(columns)), path in unique), []).append(scan(path))
    extra = ", filename = true, file_row_number = true" if table in LATEST else ""
    reads = [f"select *{f', {flag} as _unique' if table in LATEST else ''} from read_parquet("
             f"[{', '.join(map(_literal, urls))}], hive_partitioning = false{extra})"
             for (_, flag), urls in groups.items()]
    return " union all by name ".join([*reads, _empty_select(table)])


# Compacted files are sorted for the common queries: one respondent's (or judge's) rows of an eval together.
SORT = {"generations": "model, eval_id, sample", "judgments": "respondent, eval_id, judge, sample",
        "comparisons": "judge, eval_id, sample, first, second"}


def compact(store: Store, run_id: str) -> dict[str, tuple[int, int]]:
    """Rewrite a run's files of each table as one sorted file (row groups of store.ROW_GROUP rows): the
    latest row of each cell, as the views read it. One commit swaps the new file in and the old ones out,
    which then move to superseded/ (nothing is deleted, and any row left out, a cell's older write, is
    kept there). Returns {table: (files before, rows)} for the tables that had more than one file."""
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
    return done


def damaged(store: Store) -> list[str]:
    """Files whose footer reads but whose pages don't. ``connect`` checks footers only, as a full
    read of every file costs as much as the query: call this after a query failed."""
    out = []
    for table in TABLES:
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
        "create or replace view judgments as select * from stg_judgments",
        "create or replace view comparisons as select * from stg_comparisons",
        "create or replace view runs as select * from raw_runs",
    ]


def script(store: Store) -> str:
    """Every view as one SQL script for the duckdb CLI (local roots): duckdb -init views.sql. The raw views
    name the live files, as connect() does: a file the catalog removed or can't read is not in them."""
    return "\n".join(v.rstrip().rstrip(";") + ";" for v in (*raw_views(store), *model_views())) + "\n"


@functools.cache
def _empty_select(table: str) -> str:
    """A zero-row SELECT with the table's columns and types, for tables with no file yet (read_parquet
    refuses a glob that matches nothing)."""
    empty = pa.table({f.name: pa.array([], f.type) for f in SCHEMAS[table]})
    rel = duckdb.from_arrow(empty)  # the module's default connection: a new one costs ~50 ms
    columns = [f"null::{t} as {c}" for c, t in zip(rel.columns, rel.types)]
    if table in LATEST:
        columns += ["null::varchar as filename", "null::bigint as file_row_number", "false as _unique"]
    return "select " + ", ".join(columns) + " where false"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
