"""Credentials never reach what a sweep writes: warehouse files, provenance, logs, reports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import s3fs

from tests.conftest import fake_cli
from tests.openai_stub import Stub

ROOT = Path(__file__).resolve().parents[1]
SECRET = "SeCrEt-7f3a9c-do-not-log"
TOKEN = "hf_TOKEN-51c2e8-do-not-log"
API_KEY = "sk-APIKEY-93d1b4-do-not-log"


def test_no_credential_is_written_anywhere(s3_root: tuple[str, dict], tmp_path: Path) -> None:
    """A Hydra multirun (multirun.yaml, the job's folder, Hydra's launch lines) and a single run's outputs/."""
    root, options = s3_root
    multirun, outputs = tmp_path / "multirun", tmp_path / "outputs"
    storage = [f"+warehouse.storage_options.endpoint_url={options['endpoint_url']}",
               "+warehouse.storage_options.key=AKIAFAKE", f"+warehouse.storage_options.secret={SECRET}"]
    env = {**os.environ, "HF_TOKEN": TOKEN, "OPENAI_API_KEY": TOKEN, "AWS_SECRET_ACCESS_KEY": SECRET,
           "SWEEP_TEST_API_KEY": API_KEY}
    with Stub() as api:  # an API card in the pool, its key in the environment variable it names
        served = "model.cards.served_smollm2.endpoint."
        cli = fake_cli(root, f"hydra.sweep.dir={multirun}", *storage,
                       "model=[smollm2,smollm2_expert,gemma3_270m,served_smollm2]", f"{served}base_url={api.base_url}",
                       f"{served}api_key_env=SWEEP_TEST_API_KEY", f"{served}price_input_per_mtok=1")
        cli.insert(3, "-m")  # python -m sweep -m ...: Hydra takes the flag before the overrides
        # The local Ray the driver starts keeps its session (actor stdout and stderr, worker and
        # driver logs) under RAY_TMPDIR: a short path of our own (Ray's sockets live there too).
        ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        env["RAY_TMPDIR"] = str(ray_tmp)
        out = subprocess.run(cli, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert api.keys == {f"Bearer {API_KEY}"} and len(api.requests) >= 3 + 3 * 3  # it answered and judged
    assert "#0 : " in out.stdout and "secret=***" in out.stdout  # Hydra's launch line, redacted
    assert "Token authentication" not in out.stderr and "aiobotocore" not in out.stderr  # no library noise first
    plan = subprocess.run([sys.executable, "-m", "sweep", "plan=true", f"hydra.run.dir={outputs}", *storage],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr[-3000:]
    fs = s3fs.S3FileSystem(endpoint_url=options["endpoint_url"], key="AKIAFAKE", secret=SECRET)
    written = {path: fs.cat_file(path) for path in fs.find(root.removeprefix("s3://"))}
    hydra_files = {str(p): p.read_bytes() for d in (multirun, outputs) for p in d.rglob("*") if p.is_file()}
    assert any("runs/" in p for p in written) and str(multirun / "multirun.yaml") in hydra_files
    assert b"secret: '***'" in hydra_files[str(multirun / "multirun.yaml")]  # the file is there, scrubbed
    assert not any(p.endswith(".log") for p in hydra_files)  # no near-empty sweep.log per invocation
    ray_logs = {str(p): p.read_bytes() for p in ray_tmp.rglob("session_*/logs/**/*") if p.is_file()}
    shutil.rmtree(ray_tmp, ignore_errors=True)
    # The actors' own output is there (worker-*.out/err name their actor), so a key they printed would be.
    assert any("/worker-" in p and p.endswith(".err") for p in ray_logs), sorted(ray_logs)[:20]
    assert any(b"Instance" in blob for p, blob in ray_logs.items() if "/worker-" in p), "no actor output logged"
    written |= ray_logs
    streams = {"stdout": out.stdout + plan.stdout, "stderr": out.stderr + plan.stderr}
    for name, blob in {**written, **hydra_files, **{k: v.encode() for k, v in streams.items()}}.items():
        assert SECRET.encode() not in blob and TOKEN.encode() not in blob and API_KEY.encode() not in blob, name
