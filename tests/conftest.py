"""Shared fixtures: the real conf/ composed and shrunk, a warehouse, a moto S3 server."""

from __future__ import annotations

import re
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sweep.core.config import SweepConfig, register

CONF = Path(__file__).resolve().parents[1] / "conf"
register()


def compose_config(*overrides: str) -> SweepConfig:
    """The shipped config with overrides, as the typed object the pipeline runs on."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def exact_rows(store: Any, run_id: str) -> tuple[int, int, int, int]:
    """Answer rows, distinct answer keys, judgment rows, distinct judgment keys of a run, counted on
    the raw Parquet files: the generations and judgments views keep one row per key, so a cell
    written twice only shows here."""
    from warehouse.db import connect

    con = connect(store)
    q = "select count(*), count(distinct cell_key) from raw_{} where run_id = ?"
    return (*con.execute(q.format("generations"), [run_id]).fetchone(),
            *con.execute(q.format("judgments"), [run_id]).fetchone())


def superseded(root: Path | str, *tables: str) -> list[Path]:
    """The Parquet files set aside under ``root``/superseded/ for ``tables`` (default: answers and verdicts),
    relative to that folder (so ``parts[0]`` is the table), sorted."""
    aside = Path(root) / "superseded"
    return sorted(p.relative_to(aside) for t in tables or ("generations", "judgments")
                  for p in (aside / t).glob("**/*.parquet"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real HTTP S3 endpoint on 127.0.0.1 (moto), for s3:// warehouse roots."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_root(s3_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> tuple[str, dict]:
    """A fresh bucket; returns (root URL, storage_options)."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    options = {"endpoint_url": s3_server}
    bucket = "wh-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return f"s3://{bucket}/sweep", options


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray for the module; sweep.run joins it instead of starting its own."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def fake_pool(*overrides: str) -> SweepConfig:
    """The shipped smoke config with every card on the fake engine (scheduling tests only)."""
    # Fake instances hold no model: a small reservation, so the room on the machine
    # (whatever else runs) never decides how often they load, unless a test says so.
    room = [] if any(o.startswith("cluster.instance_memory_gib") for o in overrides) else [
        "cluster.instance_memory_gib=0.25"]
    cfg = compose_config("evals=smoke", "run.progress=false", *room, *overrides)
    for card in cfg.model.cards.values():
        card.engine, card.gguf, card.hf_repo = "fake", None, f"fake/{card.name}"
    return cfg


def fake_cli(root: Path | str, *extra: str) -> list[str]:
    """`python -m sweep` on the smoke suite with every card on the fake engine, as a command."""
    cards = ("smollm2", "smollm2_expert", "gemma3_270m")
    fake = [f"model.cards.{c}.{k}" for c in cards for k in ("engine=fake", "gguf=null", f"hf_repo=fake/{c}")]
    return [sys.executable, "-m", "sweep", "evals=smoke", f"warehouse.root={root}", "run.name=cli",
            "run.progress=false", *fake, *extra]


@pytest.fixture
def ray_nodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Start a real multi-node Ray cluster on this machine: ``ray_nodes(workers=2, gpus=8, **env)``.

    ``env`` is set before the nodes start, so every worker process (and the fake engine in
    it) sees it: that is how faults are injected.
    """
    import ray
    from ray.cluster_utils import Cluster

    clusters = []

    def start(workers: int = 1, worker_memory_gib: float = 4, gpus: int = 0, cpus: int = 1, **env: str) -> Cluster:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        # The head holds no model: instances need more memory than it offers. Its dashboard
        # (which the state API behind list_actors reads) gets a free port of its own.
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "memory": 1 << 28,
                                                                "dashboard_port": free_port()})
        for _ in range(workers):
            # Logical GPUs: Ray schedules placement groups onto them; nothing touches a device.
            gpu = {"num_gpus": gpus, "resources": {"accelerator_type:H100": 1}} if gpus else {}
            cluster.add_node(num_cpus=cpus, memory=int(worker_memory_gib * (1 << 30)), **gpu)
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        cluster.wait_for_nodes()
        clusters.append(cluster)
        return cluster

    yield start
    ray.shutdown()
    for cluster in clusters:
        cluster.shutdown()


@pytest.fixture(scope="session")
def resumed_sweep(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One real sweep killed mid-run and resumed (tests/real_sweep.py), for tests/test_real_engine.py and
    the real page in tests/test_html.py."""
    from tests.real_sweep import resumed_sweep as sweep

    return sweep(tmp_path_factory.mktemp("resumed"))
