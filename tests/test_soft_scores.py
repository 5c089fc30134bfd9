"""Soft scores (judge.soft_scores): the expected score under the judge's own probabilities of the score
tokens, computed as jobs/judge.py soft_criteria defines it, stored beside the sampled score, summed up
by the soft_scores view, and read from real vLLM logprobs of the packaged SmolLM2 under the JSON grammar.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import pytest
from rich.console import Console

from jobs import judge as judging
from jobs.engines.base import Completion, Request
from sweep.plan import plan
from tests.conftest import compose_config
from tests.test_plan import LAPTOP
from tests.test_rankings import gen
from tests.test_stats import row, warehouse
from warehouse.report import print_soft_scores

SUITE = compose_config("evals=smoke").evals
LN = math.log


def verdict_tokens(scores: dict[str, int], alternatives: dict[str, list[tuple[str, float]]],
                   after: dict[str, list[tuple[str, float]]]) -> tuple[str, tuple]:
    """A verdict as SmolLM2 tokenizes it (one token per digit), with logprobs: the value's first token
    gets ``alternatives[name]`` (the sampled one first), the token after it ``after.get(name)``."""
    tokens: list[tuple] = [(("{",  0.0),)]
    for name, value in scores.items():
        tokens += [((f'\n  "{name}', 0.0),), (('":', 0.0),), ((" ", 0.0),)]
        digits = str(value)
        tokens.append(tuple(alternatives[name]))
        assert alternatives[name][0][0] == digits[0]
        for d in digits[1:]:
            tokens.append(tuple(after[name]))
            assert after[name][0][0] == d
        if len(digits) == 1:
            tokens.append(tuple(after.get(name, [(",", 0.0)])))
        else:
            tokens.append(((",", 0.0),))
    tokens += [(('\n  "justification": "Fine."\n}', 0.0),)]
    text = "".join(t[0][0] for t in tokens)
    assert json.loads(text)  # the tokens spell the verdict
    return text, tuple(tokens)


def test_the_expected_score_follows_the_definition() -> None:
    scores = {"correctness": 7, "completeness": 10, "clarity": 1, "depth": 4, "usefulness": 3}
    alternatives = {
        "correctness": [("7", LN(0.6)), ("8", LN(0.3)), (" ", LN(0.05)), ("0", LN(0.05))],  # " " no value; 0 off scale
        "completeness": [("1", LN(0.8)), ("9", LN(0.2))],
        "clarity": [("1", LN(0.5)), ("2", LN(0.5))],
        "depth": [("4", 0.0)],
        "usefulness": [("3", LN(0.5)), (" 5 ", LN(0.25)), ("12", LN(0.25))],  # whitespace allowed; 12 off scale
    }
    after = {"completeness": [("0", LN(0.9)), (",", LN(0.1))],  # 10 = P(1) P(0 | 1)
             "clarity": [(",", LN(0.7)), ("0", LN(0.2)), ("1", LN(0.1))]}  # 1 then "1": 11, off the scale
    text, logprobs = verdict_tokens(scores, alternatives, after)
    soft = judging.soft_criteria(Completion(text, None, "stop", 1, 1, 0.1, logprobs=logprobs), SUITE)
    assert soft == pytest.approx({
        "correctness": (7 * 0.6 + 8 * 0.3) / 0.9,
        "completeness": 10 * 0.72 + 1 * 0.08 + 9 * 0.2,
        "clarity": (1 * 0.5 * 0.7 + 10 * 0.5 * 0.2 + 2 * 0.5) / (0.35 + 0.1 + 0.5),
        "depth": 4.0,
        "usefulness": (3 * 0.5 + 5 * 0.25) / 0.75,
    })
    weights = {c.name: c.weight for c in SUITE.criteria}
    completion = Completion(text, None, "stop", 1, 1, 0.1, logprobs=logprobs)
    assert judging.soft_score(completion, SUITE) == pytest.approx(sum(weights[k] * v for k, v in soft.items()))
    # No logprobs (an engine that can't give them), or a value not at a token start: no soft score.
    assert judging.soft_criteria(replace(completion, logprobs=None), SUITE) is None
    whole = ((text, 0.0),)  # the verdict as one token: no value starts a token
    assert judging.soft_criteria(replace(completion, logprobs=(whole,)), SUITE) is None


@dataclass
class WithLogprobs:
    """An engine that returns one verdict, with logprobs when asked for them, and records the requests."""

    completion: Completion
    seen: list[Request] = field(default_factory=list)

    def complete(self, requests: Sequence[Request]) -> list[Completion]:
        self.seen += requests
        return [self.completion if r.logprobs else replace(self.completion, logprobs=None) for r in requests]


@pytest.mark.parametrize("on", [True, False])
def test_judgments_store_the_soft_score_beside_the_sampled_one_when_asked(on: bool) -> None:
    scores = dict.fromkeys((c.name for c in SUITE.criteria), 6)
    alternatives = {c.name: [("6", LN(0.5)), ("8", LN(0.5))] for c in SUITE.criteria}
    text, logprobs = verdict_tokens(scores, alternatives, {})
    cfg = compose_config("evals=smoke", f"judge.soft_scores={str(on).lower()}")
    p = plan(cfg, "r", LAPTOP)
    judge = p.card("Gemma3-270M-base")
    cells = [c for c in p.judge if c.judge == judge.name]
    answers = {c.key: replace(gen("m-alpha", c.eval_id, 0, 0.1, 1), cell_key=c.key, model=c.model)
               for c in p.generate}
    engine = WithLogprobs(Completion(text, None, "stop", 1, 1, 0.1, logprobs=logprobs))
    rows = judging.judge(engine, {judge.name: judge}, cfg.evals, cfg.judge, cells, answers, "r")
    assert {r.logprobs for r in engine.seen} == {judging.SOFT_TOP_K if on else 0}
    assert {(r.status, r.score) for r in rows} == {("ok", 6.0)}
    assert [r.soft_score for r in rows] == [pytest.approx(7.0) if on else None] * len(rows)
    off = plan(compose_config("evals=smoke"), "r", LAPTOP)
    assert ({c.key for c in p.judge} == {c.key for c in off.judge}) is not on  # keys change only when on


def test_the_soft_scores_view_matches_python(tmp_path: Path) -> None:
    rows = [replace(row(j, m, e, score), soft_score=soft)
            for j, m, e, score, soft in [("a", "m1", "e0", 6.0, 6.5), ("b", "m1", "e0", 8.0, 7.0),
                                         ("a", "m1", "e1", 5.0, None), ("b", "m2", "e0", 4.0, 4.25)]]
    rows.append(replace(row("a", "m2", "e0", 0.0, "invalid"), soft_score=None))
    con = warehouse(tmp_path, rows)
    got = {m: rest for m, *rest in con.execute(
        "select model, n, avg_soft_score, avg_score, avg_gap, mean_abs_gap from soft_scores").fetchall()}
    assert got["m1"] == [2, pytest.approx(6.75), pytest.approx(7.0), pytest.approx(-0.25), pytest.approx(0.75)]
    assert got["m2"] == [1, pytest.approx(4.25), pytest.approx(4.0), pytest.approx(0.25), pytest.approx(0.25)]
    out = io.StringIO()
    print_soft_scores(con, "r", Console(file=out, width=200))
    assert "Soft scores, run r" in out.getvalue() and "6.75" in out.getvalue()


REAL_CHECK = """
import json, math, os, re
os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_NUM_OF_RESERVED_CPU="0", HF_HUB_OFFLINE="1")
from dataclasses import replace
from jobs import judge as judging
from jobs.engines.base import EngineSettings
from jobs.engines.vllm import VllmEngine
from jobs.models import local_weights
from sweep.plan import plan
from tests.conftest import compose_config
from tests.test_plan import LAPTOP
from tests.test_rankings import gen

cfg = compose_config("evals=smoke", "judge.soft_scores=true")
card = cfg.model.cards["smollm2"]
path = local_weights(card, "float32")
settings = EngineSettings(weights=path, dtype="float32", max_model_len=2048, kv_cache_bytes=1 << 30,
                          enforce_eager=True, tensor_parallel_size=1, gpu_memory_utilization=0.9, on_gpu=False, seed=0)
engine = VllmEngine(card, settings)
tokenizer = engine.llm.get_tokenizer()
p = plan(cfg, "r", LAPTOP)
cells = [c for c in p.judge if c.judge == card.name]
said = {"capital-france": "The capital of France is Paris.", "arithmetic": "17 + 25 = 42."}
answers = {c.key: replace(gen("m-alpha", c.eval_id, 0, 0.1, 1), cell_key=c.key, model=c.model,
                          answer=said.get(c.eval_id, "A short poem about the sea.")) for c in p.generate}
asked = []
complete = engine.complete
engine.complete = lambda requests: asked.extend(complete(requests)) or asked[-len(requests):]
rows = judging.judge(engine, {card.name: card}, cfg.evals, cfg.judge, cells, answers, "r")
checks = []
for comp, r in zip(asked, rows):
    soft = judging.soft_criteria(comp, cfg.evals)
    tokens = [position[0][0] for position in comp.logprobs]
    at = {}
    for c in cfg.evals.criteria:  # where each value starts, found independently of soft_criteria
        start = re.search(r'"%s"\\s*:\\s*(\\d+)' % c.name, comp.text).start(1)
        at[c.name] = next(i for i in range(len(tokens)) if len("".join(tokens[:i])) == start)
    digit_mass = [sum(math.exp(lp) for t, lp in comp.logprobs[i] if t.strip().isdigit()) for i in at.values()]
    greedy = [comp.logprobs[i][0][1] >= max(lp for t, lp in comp.logprobs[i]) for i in at.values()]
    checks.append({"status": r.status, "score": r.score, "soft_score": r.soft_score, "soft": soft,
                   "sampled": r.criteria, "digit_mass": digit_mass, "greedy": greedy,
                   "joined": "".join(tokens), "text": comp.text,
                   "raw": {name: [comp.logprobs[i], comp.logprobs[i + 1]] for name, i in at.items()}})
print(json.dumps({"ten": [tokenizer.decode([t]) for t in tokenizer.encode(" 10")], "checks": checks}))
"""


@pytest.mark.vllm
def test_soft_scores_from_real_vllm_logprobs_under_the_json_grammar() -> None:
    out = subprocess.run([sys.executable, "-c", REAL_CHECK], capture_output=True, text=True, timeout=900,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ten"] == [" ", "1", "0"]  # SmolLM2 writes 10 as two tokens: soft_criteria follows the "0"
    checks = got["checks"]
    assert len(checks) == 2 * 3 and all(c["status"] == "ok" for c in checks)
    for c in checks:
        # The tokens spell the verdict (then the stop token, which the text leaves out): offsets line up.
        assert c["joined"].startswith(c["text"]), (c["joined"], c["text"])
        assert all(c["greedy"])  # temperature 0: the sampled digit is the most likely token there
        # The grammar's mask comes before vLLM's raw logprobs: at a value's first token only digits remain.
        assert all(m == pytest.approx(1.0, abs=1e-3) for m in c["digit_mass"]), c["digit_mass"]
        assert all(1 <= v <= 10 for v in c["soft"].values())
        weights = {k.name: k.weight for k in SUITE.criteria}
        assert c["soft_score"] == pytest.approx(sum(weights[k] * v for k, v in c["soft"].items()))
        # The stored soft score against the definition worked here from the raw logprobs. Both read the
        # same float logprobs (JSON round-trips a double exactly) and differ only in the order of a few
        # dozen additions of numbers at most 10, so they agree to ~1e-13; 1e-9 leaves room for that alone.
        assert c["soft_score"] == pytest.approx(expected_score(c["raw"], weights), abs=1e-9), c["raw"]
    print("sampled vs soft:", [(c["score"], round(c["soft_score"], 3)) for c in checks])


def expected_score(raw: dict[str, list[list[list]]], weights: dict[str, float]) -> float:
    """The README's soft score from a verdict's logprobs at each value's first token and the token after it
    ([[token, logprob], ...], the sampled token first), worked out without jobs/judge.py."""
    total = 0.0
    for name, (first, after) in raw.items():
        mass: dict[int, float] = {}
        for rank, (token, logprob) in enumerate(first):
            if not token.strip().isdigit():
                continue
            value, p = token.strip(), math.exp(logprob)
            # The sampled digit is followed one token on: "1" then "0" is 10, with P(1) x P(0 | 1).
            more = [(value + t, math.exp(lp)) for t, lp in after if t.isdigit()] if rank == 0 else []
            for longer, q in more:
                mass[int(longer)] = mass.get(int(longer), 0.0) + p * q
            mass[int(value)] = mass.get(int(value), 0.0) + p * (1 - sum(q for _, q in more))
        on_scale = {v: p for v, p in mass.items() if SUITE.scale_min <= v <= SUITE.scale_max}
        total += weights[name] * sum(v * p for v, p in on_scale.items()) / sum(on_scale.values())
    return total
