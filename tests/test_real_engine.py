"""Fault tolerance, resume and re-asks on the real engine: the packaged SmolLM2 (float32) in CPU
vLLM, in-process inside its Ray actor, as ``python -m sweep`` runs it. tests/test_faults.py and
tests/test_reask.py test the same features at scale on the fake engine.

One real sweep serves every check (each real load costs 20-60 s here), kept small: two SmolLM2
cards on the smoke suite, answers with max_tokens=8 (most are cut off once and asked again) and
short justifications. Its driver is SIGKILLed once the first answers have landed; the same command
is run again, and while that rerun generates, the Ray actor process holding a vLLM engine is
SIGKILLed too. tests/test_html.py opens the resulting page.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_faults import exact_rows
from warehouse.db import connect
from warehouse.store import Store

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[1]
BUDGET = 8  # answers' max_tokens: most are cut off once
RUN = "resumed"
GENERATING = "ray::Instance.generate"  # the title Ray gives an actor's process while it runs that method
WIDE = {**os.environ, "COLUMNS": "1000"}  # the driver's log lines unwrapped, so they can be matched


@dataclass(frozen=True)
class Resumed:
    """A real sweep whose driver was SIGKILLed mid-run, then run again to the end (an engine killed on the way)."""

    store: Store
    landed: dict[str, bytes]
    """The answer files on disk when the driver died, and their bytes."""
    status_at_kill: str
    """runs.status as the killed driver left it."""
    killed: str
    """The command line of the engine process killed during the rerun."""
    rerun: subprocess.CompletedProcess


def sweep_cli(root: Path) -> list[str]:
    return [sys.executable, "-m", "sweep", "model=smol_pair", "evals=smoke", f"sampling.max_tokens={BUDGET}",
            "judge.justification_max_chars=60", f"warehouse.root={root}", f"run.name={RUN}", "run.progress=false"]


@pytest.fixture(scope="session")
def resumed_sweep(tmp_path_factory: pytest.TempPathFactory) -> Resumed:
    """Session-wide and imported by tests/test_html.py (it belongs in conftest.py)."""
    # pytest imports this file as test_real_engine and test_html.py as tests.test_real_engine: two
    # fixtures. The first one to run leaves its result on disk for the other.
    saved = tmp_path_factory.getbasetemp() / "resumed.pickle"
    if not saved.exists():
        saved.write_bytes(pickle.dumps(_resumed_sweep(tmp_path_factory.mktemp("resumed"))))
    return pickle.loads(saved.read_bytes())


def _resumed_sweep(root: Path) -> Resumed:
    answers = root / "generations"
    driver = subprocess.Popen(sweep_cli(root), cwd=ROOT, env=WIDE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    until(lambda: list(answers.glob("**/*.parquet")), driver, "no answer landed")
    for pid in [driver.pid, *descendants(driver.pid)]:  # the driver, the local Ray it started, the vLLM actors
        os.kill(pid, signal.SIGKILL)
    driver.wait()
    landed = {str(f): f.read_bytes() for f in answers.glob("**/*.parquet")}
    store = Store(str(root))
    (status,) = connect(store).execute("select status from runs").fetchone()
    with open(root / "rerun.err", "w+") as err:
        rerun = subprocess.Popen(sweep_cli(root), cwd=ROOT, env=WIDE, stdout=subprocess.PIPE, stderr=err,
                                 text=True)
        pid = until(lambda: engine_generating(rerun.pid), rerun, "no engine was seen generating")
        killed = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
        os.kill(pid, signal.SIGKILL)  # the actor's process: the engine dies mid-batch
        out, _ = rerun.communicate(timeout=1500)
        err.seek(0)
        done = subprocess.CompletedProcess(rerun.args, rerun.returncode, out, err.read())
    assert done.returncode == 0, done.stderr[-4000:]
    return Resumed(store, landed, status, killed, done)


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


def engine_generating(root: int) -> int:
    """The pid of a process under ``root`` that runs Instance.generate, or 0."""
    for pid in descendants(root):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(GENERATING.encode()):
                return pid
        except OSError:
            continue
    return 0


def test_a_real_sweep_killed_mid_run_finishes_on_rerun_without_redoing_cells(resumed_sweep: Resumed) -> None:
    r = resumed_sweep
    con = connect(r.store)
    answered = len(r.landed)  # one file per (model, eval), one row each
    assert r.status_at_kill == "running" and 0 < answered < 6, (r.status_at_kill, answered)
    assert exact_rows(r.store, RUN) == (6, 6, 6, 6)  # 2 models x 3 prompts; 2 judges x 1 peer x 3 prompts
    assert con.execute("select status, reused_cells from runs").fetchone() == ("finished", answered)
    assert f"reusing {answered} answers, 0 judgments" in r.rerun.stderr
    # Finished cells are not recomputed: the files that had landed are still there, byte for byte.
    assert {f: Path(f).read_bytes() for f in r.landed} == r.landed
    assert not (Path(r.store.root) / "superseded").exists()  # nothing set aside: nothing was redone
    assert not list(Path(r.store.root).glob("**/.*.tmp"))


def test_a_real_engine_killed_while_generating_is_replaced(resumed_sweep: Resumed) -> None:
    r = resumed_sweep
    con = connect(r.store)
    assert r.killed.startswith(GENERATING)  # it was killed inside a batch of answers
    assert "instance failed (ActorDiedError" in r.rerun.stderr and "restarting (1/2)" in r.rerun.stderr
    # Both models load to judge, and the killed one once more: exactly one failure, no error rows.
    assert con.execute("select model_loads, instance_failures from runs").fetchone() == (3, 1)
    assert exact_rows(r.store, RUN) == (6, 6, 6, 6)
    # Every cell ended as the model made it (cut-off answers are checked below), none as an error.
    answers, verdicts = con.execute("select (select list(distinct status order by status) from raw_generations), "
                                    "(select list(distinct status order by status) from raw_judgments)").fetchone()
    assert set(answers) <= {"ok", "truncated"} and set(verdicts) <= {"ok", "no_answer"}, (answers, verdicts)
    assert con.execute("select count(error) from raw_generations").fetchone() == (0,)


def test_a_real_cut_off_answer_is_asked_again_with_twice_the_budget(resumed_sweep: Resumed) -> None:
    con = connect(resumed_sweep.store)
    rows = con.execute("select model, eval_id, status, finish_reason, attempts, output_tokens, sampling "
                       "from raw_generations").fetchall()
    assert len(rows) == 6
    for model, eval_id, status, finish, attempts, tokens, sampling in rows:
        asked = json.loads(sampling)["max_tokens"]
        if attempts == 1:  # finished inside the first budget
            assert (status, finish, asked) == ("ok", "stop", BUDGET) and tokens <= BUDGET, (model, eval_id)
        else:  # cut off at 8, asked again with 16: it went past the first budget
            assert attempts == 2 and asked == 2 * BUDGET and BUDGET < tokens <= 2 * BUDGET, (model, eval_id)
            assert status == ("truncated" if finish == "length" else "ok"), (model, eval_id)
            assert finish == "stop" or tokens == 2 * BUDGET, (model, eval_id)
    # Greedy float32 SmolLM2 is deterministic: "The capital of France is Paris." fits in 8 tokens,
    # its sum ("17 + 25 = 32.") and its pen answer don't, and fit in 16.
    greedy = {e: (s, a) for m, e, s, _, a, _, _ in rows if m == "SmolLM2-135M"}
    assert greedy == {"capital-france": ("ok", 1), "addition": ("ok", 2), "pen-price": ("ok", 2)}
    # An answer still cut off after its re-ask is not judged as if complete; the others are judged.
    verdicts = con.execute("select g.status, j.status from raw_judgments j join raw_generations g "
                           "on g.cell_key = j.answer_key").fetchall()
    assert len(verdicts) == 6 and all(j == ("ok" if g == "ok" else "no_answer") for g, j in verdicts), verdicts
