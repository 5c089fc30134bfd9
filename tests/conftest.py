"""Shared fixtures: the real conf/ composed and shrunk, a warehouse, a moto S3 server."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Iterator

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sweep.config import SweepConfig, register

CONF = Path(__file__).resolve().parents[1] / "conf"
register()


def compose_config(*overrides: str) -> SweepConfig:
    """The shipped config with overrides, as the typed object the pipeline runs on."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real HTTP S3 endpoint on 127.0.0.1 (moto), for s3:// warehouse roots."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray for the session; sweep.run joins it instead of starting its own."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


def fake_pool(*overrides: str) -> SweepConfig:
    """The shipped smoke config with every card on the fake engine (scheduling tests only)."""
    cfg = compose_config("evals=smoke", "run.progress=false", *overrides)
    for card in cfg.model.cards.values():
        card.engine, card.gguf, card.hf_repo = "fake", None, f"fake/{card.name}"
    return cfg
