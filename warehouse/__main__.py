"""``python -m warehouse query "SQL"``, ``report [RUN [RUN_B]] [--html FILE]``, ``views`` (SQL for the duckdb CLI)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import duckdb
from sweep.core.config import Warehouse
from warehouse.db import connect, script
from warehouse.html import compare_page, run_page
from warehouse.report import console, coverage_table, deltas_table, latest_run, print_report
from warehouse.store import Store


# SELECT covers WITH, FROM, DESCRIBE, SHOW and SUMMARIZE; COPY, CREATE, ATTACH, SET ... are refused.
READ_ONLY = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse", description=__doc__)
    parser.add_argument(
        "--root", default=os.environ.get("SWEEP_WAREHOUSE", Warehouse().root),
        help="warehouse root, any fsspec URL (default: $SWEEP_WAREHOUSE or %(default)s)",
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
    args = parser.parse_args(argv)
    if args.command == "views":
        print(script(str(Path(args.root).resolve())))
        return 0

    out = console()
    con = connect(Store(args.root))
    if args.command == "query":
        try:  # a relation runs lazily: errors can also come from show()
            writes = [st.type.name for st in con.extract_statements(args.sql) if st.type not in READ_ONLY]
            if writes:
                print(f"error: the warehouse is opened read-only; {', '.join(writes)} statements are refused\n"
                      "fix: query with SELECT (or EXPLAIN); to export, use the duckdb CLI: "
                      "python -m warehouse views", file=sys.stderr)
                return 2
            result = con.sql(args.sql)
            if result is not None:
                result.show(max_width=200, max_rows=200)
        except duckdb.Error as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
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
    if len(runs) == 1:
        print_report(con, Store(args.root), runs[0], out)
    else:
        out.print(deltas_table(con, *runs))
    if args.html:
        page = run_page(con, runs[0]) if len(runs) == 1 else compare_page(con, *runs)
        Path(args.html).write_text(page, encoding="utf-8")
        out.print(f"Page: {Path(args.html).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
