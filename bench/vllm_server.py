"""`vllm serve` of a packaged model on 127.0.0.1 with CPU vLLM, for tests and benchmarks of
the API engine: started as a subprocess, ready once /health answers, stopped with its children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# The CPU settings the in-process engine uses (README): a 1 GiB KV cache (unset, vLLM-CPU
# takes 7.5 GiB), every core, nothing fetched from a hub.
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1"}


@contextmanager
def vllm_serve(weights: str, name: str, port: int, log: Path, max_model_len: int = 2048,
               ready_s: float = 600) -> Iterator[str]:
    """Serve ``weights`` as model ``name``; yields the base URL (``http://127.0.0.1:PORT/v1``)."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", weights,
           "--served-model-name", name, "--dtype", "float32", "--enforce-eager",
           "--max-model-len", str(max_model_len), "--host", "127.0.0.1", "--port", str(port)]
    with served(cmd, port, log, {**os.environ, **CPU_ENV}, ready_s) as base_url:
        yield base_url


@contextmanager
def served(cmd: list[str], port: int, log: Path, env: dict[str, str], ready_s: float = 600) -> Iterator[str]:
    """Run ``cmd`` (a server listening on 127.0.0.1:``port``) until /health answers; yields its base URL.
    The README's command runs through here too (tests/test_vllm_serve.py), as ``bash -c``."""
    with open(log, "wb") as out:
        # A session of its own, so stopping it stops the engine-core process it starts too.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_s
        while not _healthy(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"vllm serve did not come up (exit {proc.poll()}):\n{tail}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
