"""DuckDB over the warehouse: raw views on the Parquet files, then the .sql models as views."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pyarrow as pa

from sweep.core.rows import SCHEMAS
from warehouse.store import TABLES, Store

SQL_DIR = Path(__file__).parent / "sql"

# Each file is one SELECT (jaffle-shop style) and becomes a view of the same name,
# in dependency order.
MODELS = (
    "stg_generations", "stg_judgments", "stg_comparisons", "eval_scores", "model_scores", "rankings", "efficiency", "judge_leniency",
    "judge_matrix", "family_leniency", "flat_judges", "judge_agreement", "common_evals_ranking",
    "coverage", "efficiency_frontier", "run_pairs", "ranking_deltas", "cell_deltas",
    "pairwise_ranking", "position_bias", "soft_scores",
)


def sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text()


def connect(store: Store) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose views read the warehouse's Parquet files where they are."""
    con = duckdb.connect()
    if not store.local:
        con.register_filesystem(store.fs)
    for table in TABLES:
        files, bad = store.readable(table)
        for path in bad:
            print(f"warning: skipping {store.url(path)}: not a readable {table} Parquet file "
                  "(truncated, corrupt, or another schema)", file=sys.stderr)
        # Every column of the schema, also when no file has it yet (files older than a column; a
        # warehouse without judge.pairwise has no comparisons file and answers with zero rows).
        con.register(f"_empty_{table}", _empty(table))
        if files:
            urls = ", ".join(_literal(store.url(f)) for f in files)
            con.execute(f"create view raw_{table} as select * from read_parquet([{urls}], union_by_name = true) "
                        f"union all by name select * from _empty_{table}")
        else:
            con.execute(f"create view raw_{table} as select * from _empty_{table}")
    for statement in model_views():
        con.execute(statement)
    return con


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


def script(root: str) -> str:
    """Every view as one SQL script for the duckdb CLI (local roots): duckdb -init views.sql"""
    raw = [
        f"create or replace view raw_{t} as select * from read_parquet("
        f"{_literal(f'{root}/{t}/**/*.parquet')}, union_by_name = true) union all by name {_empty_select(t)};"
        if any(Path(root, t).glob("**/*.parquet")) else f"create or replace view raw_{t} as {_empty_select(t)};"
        for t in TABLES
    ]
    return "\n".join(raw + [v.rstrip().rstrip(";") + ";" for v in model_views()]) + "\n"


def _empty(table: str) -> pa.Table:
    return pa.table({f.name: pa.array([], f.type) for f in SCHEMAS[table]})


def _empty_select(table: str) -> str:
    """A zero-row SELECT with the table's columns and types, for tables with no file yet (read_parquet
    refuses a glob that matches nothing)."""
    rel = duckdb.connect().from_arrow(_empty(table))
    return "select " + ", ".join(f"null::{t} as {c}" for c, t in zip(rel.columns, rel.types)) + " where false"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
