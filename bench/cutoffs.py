"""How often the pool's answers are cut off at their budget, what a re-ask with twice the budget
recovers, and what a presence or repetition penalty does to the cut-offs.

Plain vLLM in one process on the sweep's own plan (cells, prompts, seeds, engine settings): each
distinct set of weights is loaded once and answers every card that uses it, one card's requests per
batch. Per variant and card: answers cut off (finish_reason length), empty ones, output tokens.
For the card defaults, the cut-off answers are then asked again as the sweep's re-ask does it
(``run.retry_truncated``: same request and seed, twice the budget) and the ones that now finish are
counted. Nothing is written but the result file.

    python -m bench.cutoffs                       # the default pool on the hard suite
    python -m bench.cutoffs evals=smoke           # any hydra overrides
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

VARIANTS: dict[str, dict[str, float]] = {
    "card defaults": {},
    "presence_penalty=0.5": {"presence_penalty": 0.5},
    "repetition_penalty=1.15": {"repetition_penalty": 1.15},
}
"""vLLM sampling parameters per variant, replacing the card's own where both set one."""


@dataclass
class Tally:
    answers: int = 0
    cut_off: int = 0
    empty: int = 0
    output_tokens: int = 0
    reasked: int = 0
    reask_finished: int = 0
    tails: list[str] = field(default_factory=list)
    """The last characters of each cut-off answer: how the card rambles."""


def main(overrides: list[str]) -> dict[str, Any]:
    os.environ.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_NUM_OF_RESERVED_CPU="0", HF_HUB_OFFLINE="1")
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from vllm import LLM, SamplingParams

    from jobs.models import local_weights
    from sweep import engine_args
    from sweep.core.config import PromptFormat, register
    from sweep.core.prompts import PLAIN_STOP, render_plain
    from sweep.plan import plan
    from sweep.schedule import Placement
    from sweep.sizing import GiB, Inventory, Node

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=overrides))
    p = plan(cfg, "cutoffs", Inventory((Node(os.cpu_count() or 1, 0, 64 * GiB),)))
    groups: dict[str, list[Any]] = defaultdict(list)  # weights folder -> its cards
    for card in p.cards:
        groups[str(local_weights(card, engine_args.settings(card, None, Placement((0,)), cfg,
                                                            p.context(card.name)).dtype))].append(card)

    def params(s: Any, plain: bool, budget: int, extra: dict[str, float]) -> Any:
        card = dict(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, min_p=s.min_p,
                    presence_penalty=s.presence_penalty, max_tokens=budget, seed=s.seed)
        return SamplingParams(**{**card, **extra}, stop=list(PLAIN_STOP) if plain else None)

    tallies: dict[str, dict[str, Tally]] = {v: {c.name: Tally() for c in p.cards} for v in VARIANTS}
    seconds: dict[str, float] = defaultdict(float)
    started = time.monotonic()
    for weights, cards in groups.items():
        s = engine_args.settings(cards[0], None, Placement((0,)), cfg, p.context(cards[0].name))
        window = max(p.context(c.name).max_model_len for c in cards)
        llm = LLM(model=weights, dtype=s.dtype, enforce_eager=s.enforce_eager, max_model_len=window, seed=s.seed,
                  kv_cache_memory_bytes=s.kv_cache_bytes, distributed_executor_backend="uni")
        plain = cards[0].prompt_format is PromptFormat.plain  # cards sharing weights share the format here

        def ask(todo: list[Any], budgets: list[int], extra: dict[str, float]) -> list[Any]:
            sampling = [params(c.sampling, plain, b, extra) for c, b in zip(todo, budgets)]
            if plain:
                return llm.generate([render_plain(c.messages) for c in todo], sampling, use_tqdm=False)
            convs = [[{"role": r, "content": t} for r, t in c.messages] for c in todo]
            return llm.chat(convs, sampling, use_tqdm=False)

        # One card per batch, as the sweep asks them (vLLM-CPU 0.32 fails a batch mixing greedy and seeded
        # sampled requests once chunked prefill splits one: "CPU Generator does not use offset").
        for (name, extra), card in ((v, c) for v in VARIANTS.items() for c in cards):
            cells = [c for c in p.generate if c.model == card.name]
            t0 = time.monotonic()
            outs = ask(cells, [c.sampling.max_tokens for c in cells], extra)
            seconds[name] += time.monotonic() - t0
            cut = []
            for cell, out in zip(cells, outs):
                gen, tally = out.outputs[0], tallies[name][cell.model]
                tally.answers += 1
                tally.output_tokens += len(gen.token_ids)
                if not gen.text.strip():
                    tally.empty += 1
                elif gen.finish_reason == "length":
                    tally.cut_off += 1
                    tally.tails.append(gen.text[-160:])
                    cut.append(cell)
            if name == "card defaults" and cut:
                t0 = time.monotonic()
                again = ask(cut, [2 * c.sampling.max_tokens for c in cut], extra)
                seconds["re-ask at twice the budget"] += time.monotonic() - t0
                for cell, out in zip(cut, again):
                    tallies[name][cell.model].reasked += 1
                    tallies[name][cell.model].reask_finished += out.outputs[0].finish_reason == "stop"
        del llm
    result = {
        "command": "python -m bench.cutoffs " + " ".join(overrides),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "wall_s": round(time.monotonic() - started, 1),
        "answering_s": {k: round(v, 1) for k, v in seconds.items()},
        "variants": {v: {card: t.__dict__ for card, t in by.items()} for v, by in tallies.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"cutoffs-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))
    for v, by in tallies.items():
        print(v, {card: (t.cut_off, t.empty, t.answers, t.reask_finished, t.reasked) for card, t in by.items()})
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
