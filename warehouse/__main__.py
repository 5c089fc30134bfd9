"""``python -m warehouse query "SQL"``, ``report [RUN [RUN_B]] [--html FILE]``, ``views`` (SQL for the duckdb CLI),
``compact [RUN]``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import duckdb
from rich.console import Console
from sweep.core.config import Warehouse
from sweep.core.errors import SweepError
from warehouse.db import compact, connect, on_sound_files, script
from warehouse.formats import console
from warehouse.html import compare_page, run_page
from warehouse.readonly import connect_read_only, refusal
from warehouse.report import coverage_table, deltas_table, latest_run, print_report
from warehouse.store import TABLES, Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse", description=__doc__)
    parser.add_argument(
        "--root", default=os.environ.get("SWEEP_WAREHOUSE", Warehouse().root),
        help="warehouse root, any fsspec URL (default: $SWEEP_WAREHOUSE or %(default)s)",
    )
    parser.add_argument(
        "-o", "--storage-option", action="append", default=[], metavar="KEY=VALUE", dest="options",
        help="passed to fsspec, as warehouse.storage_options in a sweep; e.g. -o endpoint_url=http://127.0.0.1:9000 "
             "for an S3-compatible store (or set AWS_ENDPOINT_URL); credentials come from the environment",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("query", help="run SQL over the warehouse views (rankings, efficiency, judgments, ...)")
    q.add_argument("sql")
    r = sub.add_parser("report", help="print a run's tables, or how run B differs from run A; --html writes the page")
    r.add_argument("runs", nargs="*", metavar="RUN", help="run id (default: the latest run); two ids compare them")
    r.add_argument("--html", metavar="FILE", help="also write one self-contained HTML page (plots, tables, answers)")
    sub.add_parser("views", help="print every view as SQL for the duckdb CLI: duckdb -init views.sql")
    c = sub.add_parser("coverage", help="the model x eval matrix of a run: usable, missing and failed cells")
    c.add_argument("runs", nargs="*", metavar="RUN", help="run id (default: the latest run)")
    k = sub.add_parser("compact", help="rewrite finished runs' files as one sorted file per table (old ones to superseded/)")
    k.add_argument("runs", nargs="*", metavar="RUN", help="run ids (default: every run)")
    args = parser.parse_args(argv)
    try:
        return command(args, r, c)
    except SweepError as e:
        print(e, file=sys.stderr)
        return 2


def command(args: argparse.Namespace, r: argparse.ArgumentParser, c: argparse.ArgumentParser) -> int:
    store = open_store(args.root, args.options)
    if args.command == "views":
        if not store.local:
            raise SweepError(f"views writes local paths for the duckdb CLI; {args.root} is not a local folder",
                             f'query it here instead: python -m warehouse --root {args.root} query "select ..."')
        print(script(store))
        warn_if_empty(store, args.root)
        return 0
    if getattr(args, "html", None) and not Path(args.html).resolve().parent.is_dir():
        raise SweepError(f"--html {args.html}: the folder {Path(args.html).resolve().parent} does not exist",
                         "create it first (mkdir -p), or write the page elsewhere")

    out = console()
    if args.command == "query":
        warn_if_empty(store, args.root)
        def show(con: duckdb.DuckDBPyConnection) -> None:
            result = con.sql(args.sql)  # a relation runs lazily: errors can also come from show()
            if result is not None:
                result.show(max_width=200, max_rows=200)
        try:
            on_sound_files(store, lambda skip: opened(lambda: connect_read_only(store, skip), args.root), show,
                           worth_checking=lambda e: refusal(e) is None)
            return 0
        except duckdb.Error as e:
            if (reason := refusal(e)) is None:
                print(f"error: {e}", file=sys.stderr)
            else:
                print(f"error: the warehouse is opened read-only, and this query would write or reconfigure: "
                      f"{reason}\nfix: query with SELECT; to export, use the duckdb CLI: python -m warehouse views",
                      file=sys.stderr)
            return 2
    if args.command == "compact":
        con = opened(lambda: connect(store), args.root)
        for run in args.runs or [r for (r,) in con.execute("select run_id from runs order by run_id").fetchall()]:
            for table, (files, rows) in compact(store, run).items():
                out.print(f"{run}: {table} {files} files -> 1 ({rows} rows); the old files are in superseded/")
        return 0
    # A file with a sound footer and corrupt pages fails the first query that reads it.
    return on_sound_files(store, lambda skip: opened(lambda: connect(store, skip), args.root),
                          lambda con: tables(args, store, con, r, c, out))


def opened(open_: Callable[[], duckdb.DuckDBPyConnection], root: str) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse, or one error naming the root when it can't be read."""
    try:
        return open_()
    except OSError as e:
        raise SweepError(f"can't read the warehouse at {root} ({type(e).__name__}: {e})", ROOT_FIX) from None


def tables(args: argparse.Namespace, store: Store, con: duckdb.DuckDBPyConnection, r: argparse.ArgumentParser,
           c: argparse.ArgumentParser, out: Console) -> int:
    """report and coverage."""
    if len(args.runs) > 2 or len(set(args.runs)) < len(args.runs):
        r.error("report takes one run, or two different runs to compare")
    if args.command == "coverage" and len(args.runs) > 1:
        c.error("coverage takes one run")
    runs = args.runs or [latest_run(con)]
    if runs == [None]:
        print(f"error: no runs in the warehouse at {args.root}\nfix: run a sweep first: python -m sweep", file=sys.stderr)
        return 2
    known = {r for (r,) in con.execute("select run_id from runs").fetchall()}
    if unknown := [r for r in runs if r not in known]:
        print(f"error: no run {', '.join(unknown)} in the warehouse at {args.root}\n"
              f"fix: pick one of: {', '.join(sorted(known)) or 'none (run a sweep first)'}", file=sys.stderr)
        return 2
    if args.command == "coverage":
        out.print(coverage_table(con, runs[0]))
        return 0
    panel = None
    if len(runs) == 1:
        panel = print_report(con, store, runs[0], out)
    else:
        out.print(deltas_table(con, *runs))
    if args.html:
        page = run_page(con, runs[0], panel) if len(runs) == 1 else compare_page(con, *runs)
        Path(args.html).write_text(page, encoding="utf-8")
        out.print(f"Page: {Path(args.html).resolve()}")
    return 0


ROOT_FIX = ("point --root at a warehouse a sweep wrote (default data/warehouse, or $SWEEP_WAREHOUSE); for an "
            "S3-compatible store add -o endpoint_url=URL, with credentials in AWS_* variables")


def open_store(root: str, options: list[str]) -> Store:
    """The warehouse at ``root``, refused with one error when it can't be reached or doesn't exist."""
    pairs = [o.partition("=") for o in options]
    if bad := [k for k, eq, _ in pairs if not eq or not k]:
        raise SweepError(f"--storage-option {bad[0]!r} is not KEY=VALUE", "e.g. -o endpoint_url=http://127.0.0.1:9000")
    try:
        store = Store(root, {k: v for k, _, v in pairs})
        found = store.fs.exists(store.path)
    except Exception as e:  # any backend error (no such bucket, no credentials, bad endpoint) means the same here
        raise SweepError(f"can't open the warehouse at {root} ({type(e).__name__}: {str(e)[:300]})", ROOT_FIX) from None
    if not found:
        raise SweepError(f"no runs in the warehouse at {root}: it does not exist", ROOT_FIX)
    return store


def warn_if_empty(store: Store, root: str) -> None:
    """query and views answer with zero rows on a warehouse no sweep wrote to; say why."""
    if not any(store.files(table) for table in TABLES):
        print(f"warning: the warehouse at {root} holds no files yet: every view is empty (run a sweep first: "
              "python -m sweep)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
