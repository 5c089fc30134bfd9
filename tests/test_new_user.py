"""What a new user sees from a sweep piped to a file (fake engine, pairwise on): no stray warnings or
files, whole names, judgments and pairwise verdicts counted apart, a full resume without a plan of loads,
order consistency as counts."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import fake_cli

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]


def test_a_piped_sweep_and_its_full_resume_read_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [*fake_cli(tmp_path / "wh", "judge.pairwise=true"), "run.progress=true"]

    def sweep(*args: str) -> subprocess.CompletedProcess[str]:  # from a fresh folder, as a user would
        out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return out

    first = sweep(*cli)
    err = first.stderr
    assert err.startswith("sweep cli: 3 models"), err[:500]  # no Ray (token auth) or library warning first
    assert "WARNING" not in err and "warning" not in err.lower()
    assert "…" not in err and "SmolLM2-135M-expert │" in err  # the plan table is not cut at 80 columns
    assert re.search(r"judgments +━+ 18/18", err) and re.search(r"pairwise +━+ 18/18", err), err[-1500:]
    assert re.search(r"│ +\d/3 pairs \(0\.\d\d\) │", first.stdout), first.stdout  # order consistency as counts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wh"]  # no outputs/<date>/<time>/sweep.log

    resumed = sweep(*cli).stderr
    assert "nothing to compute" in resumed and "model loads; times are" not in resumed, resumed  # no plan table
    assert "sweep cli: 0 model loads for 3 models" in resumed
