"""Sizing against published figures for the study models, and the TP/PP rules vLLM enforces. Pure."""

from __future__ import annotations

import pytest

from sweep import sizing
from sweep.core.config import ModelCard
from tests.conftest import compose_config

GiB = sizing.GiB
H100_2x8 = sizing.Slot(80 * GiB, 8, 2)
H200_8 = sizing.Slot(141 * GiB, 8, 1)
SHORT = sizing.Budget(max_model_len=4096, concurrency=8, utilization=0.9)
# The study's thinking budget: 32,768 output tokens plus the prompt, 64 sequences at once.
STUDY = sizing.Budget(max_model_len=40960, concurrency=64, utilization=0.9)


@pytest.fixture(scope="module")
def cards() -> dict[str, ModelCard]:
    return compose_config("model=all").model.cards


def test_weights_match_published_checkpoint_sizes(cards: dict[str, ModelCard]) -> None:
    # Model cards / Hub: Qwen3-8B "8.2B" -> 16.4 GB BF16; Qwen3-32B "32.8B" -> 65.5 GB BF16.
    assert sizing.weight_bytes(cards["qwen3_8b"], "bfloat16") / 1e9 == pytest.approx(16.4, rel=0.01)
    assert sizing.weight_bytes(cards["qwen3_32b"], "bfloat16") / 1e9 == pytest.approx(65.5, rel=0.01)
    a3b = cards["qwen3_5_35b_a3b"]
    assert sizing.weight_bytes(a3b, "bfloat16") / GiB == pytest.approx(67, rel=0.02)  # ~67 GB BF16 checkpoint
    assert sizing.weight_bytes(a3b, "fp8") / GiB == pytest.approx(35, rel=0.03)  # ~35 GB FP8 checkpoint
    # Qwen3.5-397B-A17B-FP8: ~378-379 GiB on disk (blog.muts.link/qwen-3.5-397b). The estimate is 2% low:
    # the checkpoint also holds the vision encoder and the MTP layer, which params_total_b leaves out.
    assert sizing.weight_bytes(cards["qwen3_5_397b_a17b"], "fp8") / GiB == pytest.approx(378, rel=0.03)


def test_kv_cache_grows_only_on_full_attention_layers(cards: dict[str, ModelCard]) -> None:
    a3b, q8 = cards["qwen3_5_35b_a3b"], cards["qwen3_8b"]
    assert sizing.kv_layers(a3b) == 10  # 40 layers, 3 of 4 linear attention
    assert sizing.kv_bytes_per_token(a3b, "bfloat16") == 2 * 10 * 2 * 256 * 2
    assert sizing.kv_bytes_per_token(q8, "bfloat16") == 147_456  # 144 KiB/token: 36 layers x 8 KV heads x 128
    # TP splits KV heads down to one per GPU, then replicates; PP splits the layers.
    assert sizing.kv_bytes_per_token(q8, "bfloat16", tp=4) == 147_456 // 4
    assert sizing.kv_bytes_per_token(a3b, "bfloat16", tp=8) == sizing.kv_bytes_per_token(a3b, "bfloat16", tp=2)
    assert sizing.kv_bytes_per_token(q8, "bfloat16", pp=2) == 147_456 // 2


def test_tp_follows_vllms_head_rules(cards: dict[str, ModelCard]) -> None:
    q27 = cards["qwen3_5_27b"]  # 24 attention heads, 4 KV heads
    assert [t for t in range(1, 9) if sizing.valid_tp(q27, t)] == [1, 2, 4, 8]  # 3, 6: 4 KV heads don't split
    a397 = cards["qwen3_5_397b_a17b"]  # 32 heads, 2 KV heads: 8 replicates each KV head 4 times
    assert [t for t in range(1, 9) if sizing.valid_tp(a397, t)] == [1, 2, 4, 8]


def test_397b_fp8_runs_tp8_on_one_h200_node_and_bf16_spans_two_h100_nodes(cards: dict[str, ModelCard]) -> None:
    a397 = cards["qwen3_5_397b_a17b"]
    a397.dtype = type(a397.dtype)("fp8")
    # The vLLM recipe: FP8, TP=8 on 8 x H200. With the study's KV budget, TP=4 would not hold it.
    s = sizing.choose_shape(a397, H200_8, STUDY)
    assert (s.tp, s.pp) == (8, 1)
    assert s.bytes_per_gpu <= 0.9 * 141 * GiB < sizing.shape_for(a397, 4, 1, H200_8, STUDY).bytes_per_gpu
    # With a short budget, the smallest degree that fits is 4 (372 GiB over 4 x 141 GiB).
    assert sizing.choose_shape(a397, H200_8, SHORT).tp == 4
    # BF16 (794 GB) needs more than one 8 x 80 GiB node: TP=8 in each, PP=2 across them.
    a397.dtype = type(a397.dtype)("auto")
    s = sizing.choose_shape(a397, H100_2x8, SHORT)
    assert (s.tp, s.pp, s.dtype) == (8, 2, "bfloat16")
    assert s.weight_bytes_per_gpu == pytest.approx(794e9 / 16, rel=0.001)
    assert sizing.choose_shape(a397, sizing.Slot(80 * GiB, 8, 1), SHORT) is None


def test_smallest_fitting_tp_for_the_study_pool_on_h100(cards: dict[str, ModelCard]) -> None:
    shapes = {c.name: sizing.choose_shape(c, H100_2x8, SHORT) for c in cards.values()}
    assert {n: (s.tp, s.pp) for n, s in shapes.items()} == {
        "Qwen3-32B": (2, 1),  # 61 GiB + 8 GiB KV (256 KiB/token) + 3 GiB: just over 0.9 x 80 GiB
        "Qwen3.5-397B-A17B": (8, 2),
        "Qwen3.5-122B-A10B": (4, 1),
        "Qwen3.5-35B-A3B": (1, 1),
        "Qwen3.5-27B": (1, 1),
        "Qwen3-8B": (1, 1),
        "Qwen3-Coder-Next": (4, 1),  # 160 GB: 3 GPUs would hold it, but 16 heads / 2 KV heads allow 1, 2, 4, 8
        "Qwen3.5-9B": (1, 1),
    }
    for s in shapes.values():
        assert s.bytes_per_gpu <= 0.9 * 80 * GiB


def test_a_forced_tp_is_kept_or_refused(cards: dict[str, ModelCard]) -> None:
    q8 = cards["qwen3_8b"]
    forced = sizing.Budget(4096, 8, 0.9, tensor_parallel_size=4)
    assert sizing.choose_shape(q8, H100_2x8, forced).tp == 4
    assert sizing.choose_shape(q8, H100_2x8, sizing.Budget(4096, 8, 0.9, tensor_parallel_size=3)) is None
    # TP stays inside a node: 16 GPUs of TP would need a 16-GPU node.
    forced = sizing.Budget(4096, 8, 0.9, tensor_parallel_size=16)
    assert sizing.choose_shape(q8, H100_2x8, forced) is None
    assert "engine.tensor_parallel_size=16 can't run it (TP must divide its 32 attention heads" in sizing.need_text(
        q8, H100_2x8, forced)


def test_described_cluster_inventory() -> None:
    inv = sizing.described(compose_config("cluster=h100_2x8").cluster)
    assert inv.gpus == 16 and len(inv.nodes) == 2
    assert inv.slot(0) == sizing.Slot(80 * GiB, 8, 2)
    h200 = sizing.described(compose_config("cluster=h200_8").cluster)
    assert h200.slot(0) == H200_8
    assert sizing.described(compose_config("cluster=h100_64").cluster).gpus == 64
    assert sizing.described(compose_config().cluster).nodes == ()  # local: Ray tells


def test_a_local_checkpoint_is_sized_from_its_safetensors_headers(tmp_path) -> None:  # noqa: ANN001
    import numpy as np
    from safetensors.numpy import save_file

    # Two shards of a made-up 3.5M-parameter checkpoint; the card claims 1B.
    save_file({"embed": np.zeros((1000, 1000), np.float32)}, str(tmp_path / "model-00001.safetensors"))
    save_file({"layer": np.zeros((2500, 1000), np.float16)}, str(tmp_path / "model-00002.safetensors"))
    card = compose_config("model=cpu").model.cards["smollm2"]
    card.params_total_b, card.path = 1.0, str(tmp_path)
    assert sizing.checkpoint_params(str(tmp_path)) == 3_500_000
    assert sizing.weight_bytes(card, "bfloat16") == 7_000_000  # the headers' count, not the card's
    card.path = str(tmp_path / "elsewhere")  # no safetensors there: the card's figure
    assert sizing.weight_bytes(card, "bfloat16") == 2_000_000_000


def test_a_cut_short_safetensors_file_is_one_clear_error_before_any_load(tmp_path) -> None:  # noqa: ANN001
    """A copy or download cut short: the header names more bytes than the file holds. The plan, which sizes
    the card from the headers, refuses it naming the card and the fix (not safetensors' traceback)."""
    import numpy as np
    from safetensors.numpy import save_file

    from sweep.core.errors import SweepError
    from sweep.plan import plan
    from tests.test_plan import LAPTOP

    whole = tmp_path / "whole.safetensors"
    save_file({"embed": np.zeros((1000, 100), np.float32)}, str(whole))
    (tmp_path / "model.safetensors").write_bytes(whole.read_bytes()[:-1000])
    whole.unlink()
    (tmp_path / "config.json").write_text("{}")
    cfg = compose_config("model=smol_pair", "evals=smoke", "model.cards.smollm2_expert.gguf=null",
                         f"model.cards.smollm2_expert.path={tmp_path}")
    with pytest.raises(SweepError) as e:
        plan(cfg, "r", LAPTOP)
    assert e.value.problem.startswith(f"card SmolLM2-135M-expert: {tmp_path / 'model.safetensors'} can't be read "
                                      "(Error while deserializing header: incomplete metadata"), e.value.problem
    assert "copy the checkpoint again" in e.value.fix
