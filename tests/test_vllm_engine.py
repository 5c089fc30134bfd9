"""The vLLM engine's own wiring, on real CPU vLLM with a tiny local model (no weights fetched).

A random-weight Qwen3 model with a tokenizer that knows <think> and </think> loads with
the reasoning parser configured, and the engine splits reasoning from the answer of its
(forced) outputs the way the generation job relies on: no end-of-thinking marker means no answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.models import local_weights
from tests.conftest import compose_config

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    smol = compose_config("model=smollm2").model.cards["smollm2"]
    tok = AutoTokenizer.from_pretrained(local_weights(smol, "float32"))
    tok.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-qwen3")
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(out)
    tok.save_pretrained(out)
    return out


ENGINE_CHECK = """
import json, os, sys
os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_NUM_OF_RESERVED_CPU="0")
from jobs.engines.base import EngineSettings, Request, SamplingParams
from jobs.engines.vllm import VllmEngine
from jobs.generate import answer_status
from sweep.core.config import Mode
from tests.conftest import compose_config

path = sys.argv[1]
card = compose_config("model=smollm2").model.cards["smollm2"]
card.name, card.path, card.gguf, card.reasoning_parser, card.mode = "tiny", path, None, "qwen3", Mode.thinking
settings = EngineSettings(weights=path, dtype="float32", max_model_len=512, kv_cache_bytes=64 << 20,
                          enforce_eager=True, tensor_parallel_size=1, gpu_memory_utilization=0.9, on_gpu=False, seed=0)
engine = VllmEngine(card, settings)
sampling = SamplingParams(temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, presence_penalty=0.0, max_tokens=8, seed=0)
ask = lambda n: [Request((("user", f"hi {i}"),), sampling, thinking=True) for i in range(n)]
(done,) = engine.complete(ask(1))

# Random weights never write </think>: the engine's real outputs get forced text (and its tokens),
# then go through the engine's own split, as a model's would.
forced = [("<think>add 17 and 25</think>42", "stop"), ("<think>still thinking when the budget ran out", "length")]
real_wait, tok = engine.llm.wait_for_completion, engine.llm.get_tokenizer()
def wait(*args, **kwargs):
    outs = real_wait(*args, **kwargs)
    for out, (text, finish) in zip(outs, forced, strict=True):
        out.outputs[0].text, out.outputs[0].token_ids = text, tok.encode(text, add_special_tokens=False)
        out.outputs[0].finish_reason = finish
    return outs
engine.llm.wait_for_completion = wait
split, cut = engine.complete(ask(2))
engine.llm.wait_for_completion = real_wait

# Cards sharing an engine: both modes in one batch, seeded sampled requests whose prompts outgrow one
# scheduler step together (vLLM-CPU's 4096 tokens; chunked prefill would split one and fail rewinding
# its CPU generator); each completion comes back in its request's place (distinct prompt lengths).
sampled = SamplingParams(temperature=0.7, top_p=0.9, top_k=0, min_p=0.0, presence_penalty=0.0, max_tokens=2, seed=0)
mixed = [Request((("user", "word " * (380 + 5 * i)),), sampled, thinking=i % 2 == 0) for i in range(12)]
lengths = [c.prompt_tokens for c in engine.complete(mixed)]
print(json.dumps({
    "split": [split.reasoning, split.text, answer_status(split), split.output_tokens],
    "cut": [cut.reasoning, cut.text, answer_status(cut), cut.finish_reason],
    "tokens": [len(tok.encode(t, add_special_tokens=False)) for t, _ in forced],
    "finish": done.finish_reason, "real_tokens": done.output_tokens, "latency": done.latency_s,
    "status": answer_status(done), "lengths": lengths,
}))
"""


def test_reasoning_is_split_from_the_answer(tiny_qwen3: Path) -> None:
    # A fresh interpreter: vLLM walks module globals at import and trips over objects other
    # tests leave in this process (moto's Flask proxies raise on hasattr).
    out = subprocess.run([sys.executable, "-c", ENGINE_CHECK, str(tiny_qwen3)], capture_output=True, text=True,
                         timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["split"] == ["add 17 and 25", "42", "ok", got["tokens"][0]]
    # No end-of-thinking marker: the budget ran out mid-thought, no answer, recorded as empty.
    assert got["cut"] == ["still thinking when the budget ran out", "", "empty", "length"]
    # A real batch through the engine: random weights, so only the shape of the result is checked.
    assert got["finish"] in ("stop", "length") and 0 < got["real_tokens"] <= 8 and got["latency"] > 0
    assert got["status"] in ("ok", "truncated", "empty")
    lengths = got["lengths"]
    assert sum(lengths) > 4096 and lengths == sorted(lengths) and len(set(lengths)) == 12, lengths  # > one step
