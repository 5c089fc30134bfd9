"""A new user's first run (issue 16): the default sweep under the defaults it had when issue 16 was
filed, against today's defaults, back to back in one session on the same machine.

Before: cut-off answers not shown to judges (``judge.judge_truncated=false``) and every cut-off answer
asked again at twice its budget (``run.retry_truncated=1``). After: today's defaults. Both run the
same code, as fresh ``python -m sweep`` processes on fresh warehouses; each side's figures come from
its own warehouse (the runs table and the coverage view). Ratio = after / before wall time; the load
average is recorded beside each, since a busy machine moves wall time.

    python -m bench.first_run [hydra overrides applied to both sides...]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BEFORE = ["judge.judge_truncated=false", "run.retry_truncated=1"]


def one(overrides: list[str]) -> dict:
    from warehouse.db import connect
    from warehouse.store import Store

    with tempfile.TemporaryDirectory() as wh:
        load = os.getloadavg()[0]
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "sweep", *overrides, f"warehouse.root={wh}", "run.name=first",
                        "run.progress=false"], check=True, cwd=ROOT, capture_output=True)
        wall = time.monotonic() - started
        con = connect(Store(wh))
        loads, = con.execute("select model_loads from runs").fetchone()
        usable, cells = con.execute("select count(*) filter (where cell_status = 'ok'), count(*) from coverage"
                                    ).fetchone()
        ok, judgments = con.execute("select count(*) filter (where status = 'ok'), count(*) from judgments"
                                    ).fetchone()
    return {"overrides": overrides, "wall_s": round(wall, 1), "load_before": load, "load_after": os.getloadavg()[0],
            "model_loads": loads, "cells_usable": usable, "cells": cells, "judgments_ok": ok, "judgments": judgments}


def main(overrides: list[str]) -> None:
    before = one([*overrides, *BEFORE])
    after = one(overrides)
    result = {
        "command": "python -m bench.first_run " + " ".join(overrides),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "before": before, "after": after,
        "wall_ratio": round(after["wall_s"] / before["wall_s"], 3),
        "usable_ratio": round(after["cells_usable"] / max(before["cells_usable"], 1), 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"first-run-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
