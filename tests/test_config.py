"""The shipped configs compose, and bad input fails with the key and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from sweep.config import Mode, PromptFormat
from sweep.errors import SweepError
from sweep.plan import validate
from tests.conftest import CONF, compose_config

STUDY = ["Qwen3-32B", "Qwen3.5-397B-A17B", "Qwen3.5-122B-A10B", "Qwen3.5-35B-A3B",
         "Qwen3.5-27B", "Qwen3-8B", "Qwen3-Coder-Next", "Qwen3.5-9B"]


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
def test_every_model_option_composes_and_validates(option: str) -> None:
    cfg = compose_config(f"model={option}")
    assert cfg.model.cards
    for card in cfg.model.cards.values():
        arch = card.architecture
        assert arch.num_attention_heads % arch.num_kv_heads == 0, card.name
        assert card.params_active_b <= card.params_total_b


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "evals").glob("*.yaml")))
def test_every_suite_composes_and_validates(option: str) -> None:
    cfg = compose_config(f"evals={option}")
    validate(cfg)
    assert all(p.rubric.strip() and p.prompt.strip() for p in cfg.evals.prompts)


def test_default_is_the_cpu_pool_on_the_hard_suite() -> None:
    cfg = compose_config()
    validate(cfg)
    assert len(cfg.model.cards) >= 3
    assert all(c.cpu_ok for c in cfg.model.cards.values())
    assert {c.prompt_format for c in cfg.model.cards.values()} == {PromptFormat.chat, PromptFormat.plain}
    assert cfg.evals.name == "hard" and len(cfg.evals.prompts) == 11
    assert [c.weight for c in cfg.evals.criteria] == [0.30, 0.20, 0.20, 0.15, 0.15]


def test_model_all_is_the_study_pool_with_sizing_facts() -> None:
    cards = list(compose_config("model=all").model.cards.values())
    assert [c.name for c in cards] == STUDY
    for c in cards:
        assert c.hf_repo and c.context_length > 0 and not c.cpu_ok
        assert c.sampling.non_thinking.max_tokens and c.sampling.non_thinking.temperature is not None
        if c.reasoning_parser:  # hybrid models carry a thinking recommendation too
            assert c.sampling.thinking.max_tokens and c.sampling.thinking.max_tokens >= 8192
    hybrid = {c.name: c.architecture.full_attention_interval for c in cards}
    assert hybrid["Qwen3.5-35B-A3B"] == 4 and hybrid["Qwen3-32B"] == 1


def test_overrides_reach_the_typed_config() -> None:
    cfg = compose_config("sampling.max_tokens=64", "warehouse.root=/tmp/x", "run.name=r1", "judge.mode=thinking")
    assert cfg.sampling.max_tokens == 64 and cfg.warehouse.root == "/tmp/x" and cfg.run.name == "r1"
    assert cfg.judge.mode is Mode.thinking


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.cards.smollm2.colour=red", "colour"),
        ("model.cards.smollm2.dtype=bf16", "expected one of [auto, float32, bfloat16, float16, fp8]"),
        ("run.samples=many", "run.samples"),
        ("judge.mode=deep", "expected one of [thinking, non_thinking]"),
    ],
)
def test_bad_keys_and_values_name_the_key(override: str, expected: str) -> None:
    with pytest.raises((ConfigCompositionException, ValidationError)) as e:
        compose_config(override)
    assert expected in str(e.value) + str(e.value.__cause__)


def _with(cfg, **changes):  # noqa: ANN001, ANN202 - test helper
    for dotted, value in changes.items():
        obj = cfg
        *path, last = dotted.split("__")
        for part in path:
            obj = getattr(obj, part) if not isinstance(obj, dict) else obj[part]
        setattr(obj, last, value)
    return cfg


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"run__samples": 0}, "run.samples=0 must be positive"),
        ({"engine__kv_cache_gib": -1.0}, "engine.kv_cache_gib=-1.0 must be positive"),
        ({"sampling__max_tokens": 0}, "sampling.max_tokens=0 must be positive"),
        ({"evals__prompts": []}, "has no prompts"),
        ({"engine__gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    ],
)
def test_validate_rejects_bad_values(changes: dict, problem: str) -> None:
    cfg = _with(compose_config("model=smol_pair", "evals=smoke"), **changes)
    with pytest.raises(SweepError, match=problem.replace("(", r"\(").replace(".", r"\.")):
        validate(cfg)


def test_validate_rejects_duplicate_card_names_and_lone_judges() -> None:
    cfg = compose_config("model=smol_pair", "evals=smoke")
    cfg.model.cards["smollm2_expert"].name = "SmolLM2-135M"
    with pytest.raises(SweepError, match="duplicate card name"):
        validate(cfg)
    with pytest.raises(SweepError, match="peer judging needs at least 2 cards"):
        validate(compose_config("model=smollm2", "evals=smoke"))


def test_weights_must_sum_to_one() -> None:
    cfg = compose_config("evals=smoke")
    cfg.evals.criteria[0].weight = 0.5
    with pytest.raises(SweepError, match="weights sum to 1.2"):
        validate(cfg)


def _sweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweep", *args], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


def test_cli_help_and_cfg_job() -> None:
    out = _sweep("--help")
    assert out.returncode == 0 and "model: all, cpu," in out.stdout and "python -m sweep model=all" in out.stdout
    job = _sweep("model=all", "evals=smoke", "--cfg", "job")
    assert job.returncode == 0 and "Qwen3.5-397B-A17B" in job.stdout


def test_cli_empty_suite_is_a_clean_error(tmp_path: Path) -> None:
    out = _sweep("evals=smoke", "evals.prompts=[]", f"warehouse.root={tmp_path}")
    assert out.returncode == 2
    assert "error: suite 'smoke' has no prompts" in out.stderr and "fix:" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_cli_model_all_on_a_cpu_machine_stops_before_loading(tmp_path: Path) -> None:
    out = _sweep("model=all", "evals=smoke", f"warehouse.root={tmp_path}")
    assert out.returncode == 2, out.stderr
    assert "8 of 8 models need GPUs and this cluster has none" in out.stderr
    assert "Qwen3.5-397B-A17B: 794 GB of bfloat16 weights" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "generations").exists()
