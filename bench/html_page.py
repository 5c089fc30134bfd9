"""The report page's cost: its size, and how long headless Chromium takes to open it, against an empty page.

The sweep runs as `python -m sweep` does (default: the default pool, model=cpu evals=hard) with
every card on the fake engine, so it takes seconds and needs no model; it writes its page to
<warehouse>/reports/<run>.html, which is what is measured. Fake answers are short: a real run's
page also carries its answers' text (tens of kB for the default pool). Each load is a fresh tab
in one Chromium, timed from navigation to every plot drawn; the baseline is an empty page loaded
the same way, alternating with the report, in the same browser.

    python -m bench.html_page [hydra overrides...]
    python -m bench.html_page --page FILE          # measure a page that already exists
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.chromium import BOKEH_READY, Chromium

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LOADS = 11


def sweep_page(overrides: list[str], warehouse: Path) -> Path:
    """Run the sweep with every card on the fake engine; returns the page it wrote."""
    from hydra import compose, initialize_config_dir

    from sweep.core.config import register

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cards = compose(config_name="config", overrides=overrides).model.cards
    fake = [f"model.cards.{key}.engine=fake" for key in cards]
    subprocess.run([sys.executable, "-m", "sweep", *overrides, *fake, f"warehouse.root={warehouse}",
                    "run.name=bench", "run.progress=false"], check=True, cwd=ROOT, capture_output=True)
    return warehouse / "reports" / "bench.html"


def measure(page: Path, loads: int = LOADS) -> dict:
    """Median load time of the page and of an empty page, alternating, in one browser."""
    empty = Path(tempfile.mkdtemp()) / "empty.html"
    empty.write_text("<!DOCTYPE html><html><head><title>empty</title></head><body></body></html>")
    times: dict[str, list[float]] = {"page": [], "empty": []}
    errors: list[str] = []
    with Chromium() as browser:
        version = browser.send("Browser.getVersion")["product"]
        browser.load(empty.as_uri()).close()  # the first tab also pays for the browser's own warm-up
        for _ in range(loads):
            for name, url, ready in (("empty", empty.as_uri(), "true"), ("page", page.as_uri(), BOKEH_READY)):
                tab = browser.load(url, ready)
                times[name].append(tab.load.seconds)
                errors += tab.load.errors
                tab.close()
    page_s, empty_s = statistics.median(times["page"]), statistics.median(times["empty"])
    return {
        "page_bytes": page.stat().st_size, "page_load_s": round(page_s, 3), "empty_load_s": round(empty_s, 3),
        "ratio": round(page_s / empty_s, 1), "loads": loads, "browser": version, "console_errors": errors,
        "page_load_s_all": [round(t, 3) for t in times["page"]],
    }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--page"]:
        result = measure(Path(argv[1]).resolve())
    else:
        with tempfile.TemporaryDirectory() as wh:
            result = measure(sweep_page(argv or ["model=cpu", "evals=hard"], Path(wh)))
    result = {
        "command": "python -m bench.html_page " + " ".join(argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"), **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"html-page-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
