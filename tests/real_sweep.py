"""The real sweep behind tests/test_real_engine.py and the real page in tests/test_html.py: the packaged
SmolLM2 (float32) in CPU vLLM, in-process inside its Ray actor, as ``python -m sweep`` runs it.

One real sweep serves every check (each real load costs 20-60 s here), kept small: two SmolLM2
cards on the smoke suite, answers with max_tokens=8 (most are cut off once and asked again: re-asks
on, run.retry_truncated=1) and short justifications. The two cards are the same weights, so they share
one engine (sweep.plan.shared_engines): one load answers for both in one batch. Its driver is SIGKILLed
once those answers have landed; the same command is run again, and while that rerun judges, the Ray
actor process holding the vLLM engine is SIGKILLed too. tests/test_html.py opens the resulting page.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from warehouse.db import connect
from warehouse.store import Store

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 8  # answers' max_tokens: most are cut off once
RUN = "resumed"
JUDGING = "ray::Instance.judge"  # the title Ray gives an actor's process while it runs that method
WIDE = {**os.environ, "COLUMNS": "1000"}  # the driver's log lines unwrapped, so they can be matched


@dataclass(frozen=True)
class Resumed:
    """A real sweep whose driver was SIGKILLed mid-run, then run again to the end (an engine killed on the way)."""

    store: Store
    landed: dict[str, bytes]
    """The answer and verdict files on disk when the driver died, and their bytes."""
    first: str
    """The killed driver's log."""
    status_at_kill: str
    """runs.status as the killed driver left it."""
    killed: str
    """The command line of the engine process killed during the rerun."""
    rerun: subprocess.CompletedProcess


CONFIG = ("model=smol_pair", "evals=smoke", f"sampling.max_tokens={BUDGET}", "run.retry_truncated=1",
          "judge.justification_max_chars=60")
"""What the sweep runs, as overrides (tests/test_real_engine.py plans it again to rebuild the judge prompts)."""


def sweep_cli(root: Path) -> list[str]:
    return [sys.executable, "-m", "sweep", *CONFIG, f"warehouse.root={root}", f"run.name={RUN}", "run.progress=false"]


def resumed_sweep(root: Path) -> Resumed:
    """Run the sweep, SIGKILL its driver once answers have landed, run it again and kill an engine
    mid-batch on the way (conftest.py's session fixture of the same name)."""
    answers = root / "generations"
    with open(root / "first.err", "w+") as first:
        driver = subprocess.Popen(sweep_cli(root), cwd=ROOT, env=WIDE, stdout=subprocess.DEVNULL, stderr=first)
        # One batch answers for both cards, written as one file per card: both, so the rerun only judges.
        until(lambda: len(list(answers.glob("**/*.parquet"))) == 2, driver, "no answers landed")
        for pid in [driver.pid, *descendants(driver.pid)]:  # the driver, the local Ray it started, the vLLM actors
            os.kill(pid, signal.SIGKILL)
        driver.wait()
        first.seek(0)
        first_log = first.read()
    # Verdicts can land too: one on an answer no judge may see is written as soon as the answer lands.
    landed = {str(f): f.read_bytes() for t in ("generations", "judgments") for f in (root / t).glob("**/*.parquet")}
    store = Store(str(root))
    (status,) = connect(store).execute("select status from runs").fetchone()
    with open(root / "rerun.err", "w+") as err:
        rerun = subprocess.Popen(sweep_cli(root), cwd=ROOT, env=WIDE, stdout=subprocess.PIPE, stderr=err,
                                 text=True)
        pid = until(lambda: engine_judging(rerun.pid), rerun, "no engine was seen judging")
        killed = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
        os.kill(pid, signal.SIGKILL)  # the actor's process: the engine dies mid-batch
        out, _ = rerun.communicate(timeout=1500)
        err.seek(0)
        done = subprocess.CompletedProcess(rerun.args, rerun.returncode, out, err.read())
    assert done.returncode == 0, done.stderr[-4000:]
    return Resumed(store, landed, first_log, status, killed, done)


def until(found, process: subprocess.Popen, what: str, timeout: float = 900):  # noqa: ANN001, ANN201
    """Poll ``found()`` until it is truthy (its value) while ``process`` runs."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert process.poll() is None and time.monotonic() < deadline, f"{what} while the sweep ran"
        time.sleep(0.02)
    return value


def descendants(root: int) -> list[int]:
    """Every live process started, directly or not, by ``root`` (Ray's workers run in process groups of
    their own, and other sweeps may run on this machine)."""
    parents = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():  # the field after the parenthesised name is the state, then the ppid
                parents[int(proc.name)] = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
        except OSError:  # exited meanwhile
            continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += children
        frontier = children
    return found


def engine_judging(root: int) -> int:
    """The pid of a process under ``root`` that runs Instance.judge, or 0."""
    for pid in descendants(root):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(JUDGING.encode()):
                return pid
        except OSError:
            continue
    return 0


