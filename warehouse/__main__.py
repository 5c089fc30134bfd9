"""``python -m warehouse query "SQL"``, ``report [RUN]`` and ``views`` (SQL for the duckdb CLI)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import duckdb
from rich.console import Console

from sweep.config import Warehouse
from warehouse.db import connect, script
from warehouse.report import latest_run, print_report
from warehouse.store import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse", description=__doc__)
    parser.add_argument(
        "--root", default=os.environ.get("SWEEP_WAREHOUSE", Warehouse().root),
        help="warehouse root, any fsspec URL (default: $SWEEP_WAREHOUSE or %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("query", help="run SQL over the warehouse views (rankings, efficiency, judgments, ...)")
    q.add_argument("sql")
    r = sub.add_parser("report", help="print a run's ranking and efficiency tables")
    r.add_argument("run", nargs="?", help="run id (default: the latest run)")
    sub.add_parser("views", help="print every view as SQL for the duckdb CLI: duckdb -init views.sql")
    args = parser.parse_args(argv)
    if args.command == "views":
        print(script(str(Path(args.root).resolve())))
        return 0

    console = Console()
    con = connect(Store(args.root))
    if args.command == "query":
        try:  # a relation runs lazily: errors can also come from show()
            result = con.sql(args.sql)
            if result is not None:
                result.show(max_width=200, max_rows=200)
        except duckdb.Error as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    run_id = args.run or latest_run(con)
    if run_id is None:
        print(f"error: no runs in the warehouse at {args.root}\nfix: run a sweep first: python -m sweep", file=sys.stderr)
        return 2
    print_report(con, Store(args.root), run_id, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
