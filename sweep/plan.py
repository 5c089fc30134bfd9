"""Config -> plan: the cells a sweep must compute, checked before anything is loaded.

Pure Python: no Ray, no vLLM. A plan is a frozen value, so it tests in milliseconds
and the runner only has to execute it.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Optional, Sequence

from sweep import adaptive, engine_args, panel, sizing
from sweep.core.cells import (HOLE, AnswerSizes, CompareCell, GenerateCell, JudgeCell, PanelLoad, SamplingParams,
                              SharedEngine, SweepPlan, content_key, key_template, prefill_estimate)
from sweep.core.config import Mode, ModelCard, NodeGroup, Panel, PromptFormat, Sampling, SweepConfig
from sweep.core.errors import SweepError
from sweep.core.stats import ScoreCube
from sweep.core.prompts import (COMPARE_TEMPLATE, CUT_OFF_NOTICE, JUDGE_TEMPLATE, PLAIN_STOP, SOFT_TOP_K, answer_messages,
                                identity_terms)


def resolve_sampling(card: ModelCard, mode: Mode, override: Sampling, seed: int) -> SamplingParams:
    """Card recommendation for the mode, then the override; unset values take vLLM's defaults."""
    base = card.sampling.thinking if mode is Mode.thinking else card.sampling.non_thinking
    defaults = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "presence_penalty": 0.0, "max_tokens": 512}
    merged = {
        f.name: next((v for v in (getattr(override, f.name), getattr(base, f.name)) if v is not None), defaults[f.name])
        for f in fields(Sampling)
    }
    return SamplingParams(**merged, seed=seed)


def _identity(card: ModelCard) -> dict[str, Any]:
    """What makes two cards produce different text for the same request: the engine that runs them
    (``_engine``) and what each request carries, the system prompt and the mode."""
    return {**_engine(card), "system": card.system_prompt, "mode": card.mode.value}


def _engine(card: ModelCard) -> dict[str, Any]:
    """The engine's part of ``_identity``: what produces the text once a request is given.

    The engine that runs local weights is in it, and the checkpoint that loads (prefer_fp8 picks
    another). Left out, as they change no text beyond float rounding, as batch composition does: the
    KV cache size and concurrency (how many sequences run at once), enforce_eager (the same ops, with
    or without CUDA graphs / torch.compile), the TP degree and memory utilisation (placement), and
    timeouts. engine.max_model_len is out too: it sizes a GPU's KV reservation, and each instance's
    window is fitted to its cards' budgets (engine_args.contexts); where a window must be capped, the
    plan says so and re-asks grow only that far."""
    if card.remote:
        assert card.endpoint is not None
        return {"endpoint": {"base_url": card.endpoint.base_url, "model": card.endpoint.model},
                "format": card.prompt_format.value}
    repo, revision = engine_args.checkpoint(card, card.dtype.value)
    return {
        "engine": card.engine,
        "weights": card.path or (asdict(card.gguf) if card.gguf else None) or repo,
        "revision": revision or card.revision,
        "dtype": card.dtype.value,
        "format": card.prompt_format.value,
        "stop": PLAIN_STOP if card.prompt_format is PromptFormat.plain else None,
        "reasoning_parser": card.reasoning_parser,
    }


def shared_engines(cards: Sequence[ModelCard], share: bool) -> tuple[SharedEngine, ...]:
    """Local cards whose engines are the same (``_engine``) and whose sizing facts are the same (so the
    same shape, memory, context length and KV cache: one instance holds either) share one engine, hosted
    by the first in pool order; the rest of a card (prompt, sampling, mode, retries) goes with each
    request. API cards load nothing and keep their own client; ``share`` false (run.share_engines): one
    engine per card."""
    keys = {c.name: content_key(_engine(c), c.params_total_b, c.params_active_b, c.architecture, c.context_length,
                                c.dtypes, c.cpu_ok) for c in cards}
    groups: dict[str, list[str]] = {}
    for card in cards:
        groups.setdefault(keys[card.name] if share and not card.remote else card.name, []).append(card.name)
    return tuple(SharedEngine(keys[names[0]], tuple(names)) for names in groups.values())


def plan(cfg: SweepConfig, run_id: str, inventory: sizing.Inventory) -> SweepPlan:
    """Expand a validated config into cells; refuse what can't run on ``inventory``."""
    validate(cfg)
    cards = tuple(engine_args.as_run(c, cfg.engine) for c in cfg.model.cards.values())
    check_fits(cards, cfg, inventory)
    suite = cfg.evals
    answers: list[GenerateCell] = []
    sizes: list[AnswerSizes] = []
    for card in cards:
        samplings = [resolve_sampling(card, card.mode, cfg.sampling, seed=cfg.run.seed + s)
                     for s in range(cfg.run.samples)]
        # The eval id too: two suite items with the same text are two cells, each judged on its own rubric.
        keys = [key_template("generate", _identity(card), HOLE, HOLE, sampling) for sampling in samplings]
        longest = prefill = 0
        for item in suite.prompts:
            messages = answer_messages(card.system_prompt, item.prompt)
            longest = max(longest, engine_args.message_tokens(messages))
            prefill += prefill_estimate(messages) * cfg.run.samples
            for sample, (sampling, key) in enumerate(zip(samplings, keys)):
                answers.append(GenerateCell(key(item.id, messages), card.name, item.id, sample, messages, sampling))
        sizes.append(AnswerSizes(card.name, len(suite.prompts) * cfg.run.samples, longest, prefill,
                                 max(s.max_tokens for s in samplings)))

    chosen = panel.assign([(a.model, (a.eval_id, a.sample)) for a in answers], eligible_judges(cfg.judge, cards),
                          {c.name: c.family for c in cards}, cfg.judge.judges_per_answer,
                          cfg.judge.min_other_families, cfg.judge.seed)
    made = judging(cfg, cards)
    by_judge: dict[str, list[JudgeCell]] = {c.name: [] for c in cards}  # each judge's cells in answer order
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for answer in answers:
        for judge in chosen[answer.model, (answer.eval_id, answer.sample)]:
            counts[judge, answer.model] += 1
            by_judge[judge].append(made.cell(answer, judge))
    judgments = tuple(itertools.chain.from_iterable(by_judge.values()))
    if cfg.judge.adaptive and cfg.judge.budget < len(judgments):
        raise SweepError(f"judge.budget={cfg.judge.budget} is less than the {len(judgments):,} judgments of adaptive "
                         f"judging's first round ({cfg.judge.judges_per_answer} per answer)",
                         f"set judge.budget to at least {len(judgments)} (judgments in all, round 1 included)")
    loads = tuple(PanelLoad(j.name, r.name, counts[j.name, r.name], made.sampling[j.name].max_tokens)
                  for j in cards for r in cards if counts.get((j.name, r.name)))
    comparisons = pairs(cfg, cards, answers, made.scrub) if cfg.judge.pairwise else ()
    reads: dict[str, set[tuple[str, ...]]] = {}  # per judge: whose answers one of its prompts holds
    for load in loads:
        reads.setdefault(load.judge, set()).add((load.respondent,))
    for p in comparisons:
        reads.setdefault(p.judge, set()).add((p.first, p.second))
    verdicts = {load.judge: load.verdict_budget for load in loads}
    by_card = {s.model: s for s in sizes}
    windows = engine_args.contexts(cards, by_card, reads, suite, verdicts, cfg, inventory)
    return SweepPlan(run_id, cards, suite, tuple(answers), judgments, comparisons, tuple(windows.values()),
                     tuple(sizes), loads, shared_engines(cards, cfg.run.share_engines))


@dataclass(frozen=True)
class Judging:
    """What a plan's judgment cells share, built once per plan: ``cell`` makes the cell of one (answer, judge)."""

    keys: dict[str, Callable[..., str]]
    sampling: dict[str, SamplingParams]
    labels: dict[str, str]
    rubric: dict[str, Optional[str]]
    scrub: tuple[str, ...]

    def cell(self, answer: GenerateCell, judge: str, round_: int = 1) -> JudgeCell:
        return JudgeCell(self.keys[judge](answer.key, self.rubric[answer.eval_id]), judge, answer.model,
                         answer.eval_id, answer.sample, self.labels[answer.model], answer.key, self.sampling[judge],
                         self.scrub, round_)


def judging(cfg: SweepConfig, cards: Sequence[ModelCard]) -> Judging:
    """The judgment cells' key templates, sampling, labels, rubrics and scrub list of a pool (the plan's cards)."""
    suite, scrub = cfg.evals, identity_terms(cards)
    sampling = {c.name: resolve_sampling(c, cfg.judge.mode, cfg.judge.sampling, seed=cfg.run.seed) for c in cards}
    criteria = [asdict(c) for c in suite.criteria]
    keys = {c.name: key_template(
        "judge", _identity(c), cfg.judge.mode.value, HOLE, JUDGE_TEMPLATE, suite.judge_brief, criteria, HOLE,
        cfg.judge.justification_max_chars, sampling[c.name], scrub,
        # Only when on, so the keys of runs without soft scores stay as they were.
        *((("soft_scores", SOFT_TOP_K),) if cfg.judge.soft_scores else ()), *cut_off_rule(cfg.judge),
    ) for c in cards}
    labels = {c.name: f"Response {chr(ord('A') + i % 26)}{i // 26 or ''}" for i, c in enumerate(cards)}
    return Judging(keys, sampling, labels, {item.id: item.rubric for item in suite.prompts}, scrub)


def next_round(cfg: SweepConfig, the_plan: SweepPlan, cube: ScoreCube, round_: int) -> tuple[JudgeCell, ...]:
    """judge.adaptive: the judgment cells of round ``round_ + 1``, from the valid scores of the plan's judgments
    (rounds 1 to ``round_``) by sweep.adaptive's rule; empty when judging stops."""
    chosen: dict[tuple[str, tuple[str, int]], set[str]] = {}
    for c in the_plan.judge:
        chosen.setdefault((c.respondent, (c.eval_id, c.sample)), set()).add(c.judge)
    picks = adaptive.next_round(cube, chosen, eligible_judges(cfg.judge, the_plan.cards),
                                [c.name for c in the_plan.cards], cfg.judge.budget, cfg.judge.rounds - round_,
                                cfg.judge.seed, round_)
    answers = {(a.model, a.eval_id, a.sample): a for a in the_plan.generate}
    made = judging(cfg, the_plan.cards)
    return tuple(made.cell(answers[r, eval_id, sample], judge, round_ + 1) for r, (eval_id, sample), judge in picks)


def candidates(cfg: SweepConfig, the_plan: SweepPlan) -> frozenset[str]:
    """judge.adaptive: the keys of every judgment a later round may ask for (each answer by each eligible judge),
    so resuming round 1 keeps the later rounds' rows instead of setting them aside."""
    if not cfg.judge.adaptive:
        return frozenset()
    made, eligible = judging(cfg, the_plan.cards), eligible_judges(cfg.judge, the_plan.cards)
    return frozenset(made.cell(a, judge).key for a in the_plan.generate for judge in eligible[a.model])


def cut_off_rule(judging: Panel) -> tuple[tuple[str, str], ...]:
    """What a verdict's key holds of the cut-off rule: which answers a judge reads depends on it (and
    how, by the notice), and an answer's status is known only once it lands. Empty when off, so the keys
    of runs that didn't judge cut-off answers stay as they were."""
    return (("cut_off", CUT_OFF_NOTICE),) if judging.judge_truncated else ()


def pairs(cfg: SweepConfig, cards: tuple[ModelCard, ...], answers: list[GenerateCell],
          scrub: tuple[str, ...]) -> tuple[CompareCell, ...]:
    """For each judge, prompt and sample, every unordered pair of respondents it may judge, once in
    each order (pool order first), so a preference for a position shows against the answers' merit.
    With judge.judges_per_answer = K, each pair of answers gets K of the judges that may judge both,
    drawn by the panel's balanced design (sweep.panel), each of them in both orders."""
    suite = cfg.evals
    rubric = {item.id: item.rubric for item in suite.prompts}
    by_cell = {(a.model, a.eval_id, a.sample): a for a in answers}
    slots = [(item.id, sample) for item in suite.prompts for sample in range(cfg.run.samples)]
    both = pair_judges(cfg.judge, cards)
    chosen = panel.assign([(pair, slot) for slot in slots for pair in both], both, {c.name: c.family for c in cards},
                          cfg.judge.judges_per_answer, cfg.judge.min_other_families, cfg.judge.seed)
    keys, samplings = {}, {}
    for c in cards:
        samplings[c.name] = resolve_sampling(c, cfg.judge.mode, cfg.judge.sampling, seed=cfg.run.seed)
        keys[c.name] = key_template("compare", _identity(c), cfg.judge.mode.value, HOLE, HOLE, COMPARE_TEMPLATE,
                                    suite.judge_brief, [asdict(x) for x in suite.criteria], HOLE,
                                    cfg.judge.justification_max_chars, samplings[c.name], scrub,
                                    *cut_off_rule(cfg.judge))
    by_judge: dict[str, list[CompareCell]] = {c.name: [] for c in cards}  # each judge's in (slot, pair) order
    for eval_id, sample in slots:
        for pair in both:
            for judge in chosen[pair, (eval_id, sample)]:
                for first, second in (pair, pair[::-1]):
                    one, two = by_cell[first, eval_id, sample], by_cell[second, eval_id, sample]
                    by_judge[judge].append(CompareCell(keys[judge](one.key, two.key, rubric[eval_id]), judge, eval_id,
                                                       sample, first, second, one.key, two.key, samplings[judge],
                                                       scrub))
    return tuple(itertools.chain.from_iterable(by_judge.values()))


def pair_judges(panel_cfg: Panel, cards: Sequence[ModelCard]) -> dict[tuple[str, str], list[str]]:
    """Each unordered pair of cards (pool order) that some card may judge both of -> those judges, in pool order."""
    out = {}
    for i, a in enumerate(cards):
        for b in cards[i + 1:]:
            judges_both = [j.name for j in cards if judges(panel_cfg, j, a) and judges(panel_cfg, j, b)]
            if judges_both:
                out[a.name, b.name] = judges_both
    return out


def judges(panel: Panel, judge: ModelCard, respondent: ModelCard) -> bool:
    """Whether ``judge`` scores ``respondent``'s answers under the panel's exclusions."""
    if panel.exclude_same_family and judge.family == respondent.family:
        return False
    return not (panel.exclude_self and judge.name == respondent.name)


def eligible_judges(panel_cfg: Panel, cards: Sequence[ModelCard]) -> dict[str, list[str]]:
    """Respondent -> the cards that may judge it, in pool order."""
    return {r.name: [j.name for j in cards if judges(panel_cfg, j, r)] for r in cards}


def validate(cfg: SweepConfig) -> None:
    """The checks a type can't express; each error names the key and the fix."""
    cards = list(cfg.model.cards.values())
    if not cards:
        raise SweepError("the pool is empty (model.cards has no cards)", "choose a pool, e.g. model=cpu or model=all")
    names = [c.name for c in cards]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SweepError(f"duplicate card name(s) {dupes} in model.cards", "give every card a unique name")
    if cfg.judge.exclude_self and len(cards) < 2:
        raise SweepError(
            f"peer judging needs at least 2 cards, the pool has 1 ({names[0]})",
            "add cards (model=cpu has 3) or set judge.exclude_self=false to let it judge itself",
        )
    unjudged = [f"{c.name} ({c.family})" for c in cards if not any(judges(cfg.judge, j, c) for j in cards)]
    if unjudged:
        raise SweepError(
            f"with judge.exclude_same_family=true no card may judge {', '.join(unjudged)}: "
            "the pool has no card of another family",
            "add a card of another family, or set judge.exclude_same_family=false",
        )
    if cfg.judge.adaptive and cfg.judge.judges_per_answer == 0:
        raise SweepError("judge.adaptive=true needs a first round of K judges per answer, but "
                         "judge.judges_per_answer=0 (every eligible peer: nothing is left to add)",
                         "set judge.judges_per_answer (e.g. 2) and judge.budget, or judge.adaptive=false")
    if cfg.judge.adaptive and cfg.judge.rounds < 1:
        raise SweepError(f"judge.rounds={cfg.judge.rounds} must be at least 1", "set judge.rounds to 1 or more")
    family = {c.name: c.family for c in cards}
    panel.check(eligible_judges(cfg.judge, cards), family, cfg.judge.judges_per_answer, cfg.judge.min_other_families)
    if cfg.judge.pairwise:
        panel.check(pair_judges(cfg.judge, cards), family, cfg.judge.judges_per_answer, cfg.judge.min_other_families)
    for key, card in cfg.model.cards.items():
        if card.remote:
            validate_endpoint(key, card)
            continue
        if card.endpoint is not None:
            raise SweepError(f"model.cards.{key} has an endpoint but engine={card.engine}",
                             f"set model.cards.{key}.engine=openai to use the endpoint, or remove the endpoint")
        if not (card.path or card.gguf or card.hf_repo):
            raise SweepError(f"model.cards.{key} has no weights", "set one of path, gguf or hf_repo")
        unsized = [k for k in ("params_total_b", "params_active_b", "architecture", "context_length")
                   if getattr(card, k) is None]
        if unsized:
            raise SweepError(f"model.cards.{key} (engine {card.engine}) lacks {', '.join(unsized)}, needed to size it",
                             "add them from the model's config.json, or serve the model and use engine=openai")
    suite = cfg.evals
    if not suite.prompts:
        raise SweepError(f"suite '{suite.name}' has no prompts", "add prompts to the suite, read them from a file "
                         "(evals=file evals.path=URL) or choose another: evals=hard")
    ids = [i.id for i in suite.prompts]
    if len(set(ids)) != len(ids):
        raise SweepError(f"suite '{suite.name}' repeats prompt ids", "give every prompt a unique id")
    if not suite.scale_min < suite.scale_max or suite.scale_min < 0:
        raise SweepError(f"evals.scale_min={suite.scale_min}, scale_max={suite.scale_max}", "use 0 <= scale_min < scale_max")
    total = sum(c.weight for c in suite.criteria)
    if not suite.criteria or abs(total - 1.0) > 1e-6 or any(c.weight < 0 for c in suite.criteria):
        raise SweepError(f"evals.criteria weights sum to {total:g}", "make the weights non-negative and sum to 1")
    positive = {
        "run.samples": cfg.run.samples,
        "engine.max_model_len": cfg.engine.max_model_len,
        "engine.kv_cache_gib": cfg.engine.kv_cache_gib,
        "engine.timeout_s": cfg.engine.timeout_s,
        "engine.concurrency": cfg.engine.concurrency,
        "judge.justification_max_chars": cfg.judge.justification_max_chars,
        "sampling.max_tokens": cfg.sampling.max_tokens if cfg.sampling.max_tokens is not None else 1,
        "judge.sampling.max_tokens": cfg.judge.sampling.max_tokens if cfg.judge.sampling.max_tokens is not None else 1,
    }
    for key, value in positive.items():
        if value <= 0:
            raise SweepError(f"{key}={value} must be positive", f"set {key} to a value above 0")
    if not 0 < cfg.engine.gpu_memory_utilization <= 1:
        raise SweepError(f"engine.gpu_memory_utilization={cfg.engine.gpu_memory_utilization}", "use a value in (0, 1]")
    counts = {"run.retries": cfg.run.retries, "run.retry_truncated": cfg.run.retry_truncated or 0,
              "run.batch_cells": cfg.run.batch_cells, "judge.retries": cfg.judge.retries, "engine.tensor_parallel_size": cfg.engine.tensor_parallel_size}
    counts |= {f"model.cards.{key}.retry_truncated": card.retry_truncated for key, card in cfg.model.cards.items()}
    for key, value in counts.items():
        if value < 0:
            raise SweepError(f"{key}={value} is negative", f"set {key} to 0 or more")
    samplings = {"sampling": cfg.sampling, "judge.sampling": cfg.judge.sampling}
    for key, card in cfg.model.cards.items():
        samplings |= {f"model.cards.{key}.sampling.{m}": getattr(card.sampling, m) for m in ("thinking", "non_thinking")}
    for key, s in samplings.items():
        validate_sampling(key, s)
    validate_nodes(cfg.cluster.nodes)


def validate_sampling(where: str, s: Sampling) -> None:
    """Values vLLM would refuse mid-run (or, for temperature < 0, treat as greedy without saying so)."""
    bounds = (("temperature", s.temperature, 0.0, None), ("top_p", s.top_p, 1e-9, 1.0), ("min_p", s.min_p, 0.0, 1.0),
              ("presence_penalty", s.presence_penalty, -2.0, 2.0))
    for name, value, low, high in bounds:
        if value is not None and (value < low or (high is not None and value > high)):
            allowed = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise SweepError(f"{where}.{name}={value:g} is out of range", f"set {where}.{name} to a value {allowed} (or null)")
    if s.top_k is not None and s.top_k < -1:
        raise SweepError(f"{where}.top_k={s.top_k} is out of range", f"set {where}.top_k to -1 (all tokens) or above 0")


def validate_nodes(nodes: list[NodeGroup]) -> None:
    """A described cluster (``cluster.nodes``): sane counts, and a GPU memory that is known, not guessed."""
    for i, group in enumerate(nodes):
        where = f"cluster.nodes[{i}]"
        for name, value, low, allowed in (("count", group.count, 1, "at least 1"), ("gpus", group.gpus, 0, "0 or more"),
                                          ("cpus", group.cpus, 1e-9, "above 0"),
                                          ("memory_gib", group.memory_gib, 1e-9, "above 0"),
                                          ("gpu_memory_gib", group.gpu_memory_gib, 0, "0 (from gpu_type) or more")):
            if value < low:
                raise SweepError(f"{where}.{name}={value:g} is out of range", f"set {where}.{name} to {allowed}")
        if group.gpus and not group.gpu_memory_gib and group.gpu_type not in sizing.GPU_MEMORY_GIB:
            raise SweepError(f"{where}.gpu_type={group.gpu_type!r} is not a GPU type sweep knows the memory of",
                             f"use one of {', '.join(sizing.GPU_MEMORY_GIB)}, or set {where}.gpu_memory_gib")


def validate_endpoint(key: str, card: ModelCard) -> None:
    """An API card: an endpoint to reach, a key in the environment (never in the config), sane limits."""
    ep = card.endpoint
    where = f"model.cards.{key}.endpoint"
    if ep is None:
        raise SweepError(f"model.cards.{key} has engine=openai but no endpoint",
                         f"set {where}.base_url (e.g. http://127.0.0.1:8000/v1) and {where}.model")
    if not ep.base_url.startswith(("http://", "https://")):
        raise SweepError(f"{where}.base_url={ep.base_url!r} is not an http(s) URL",
                         f"set {where}.base_url to the API root, e.g. http://127.0.0.1:8000/v1")
    if ep.api_key_env is not None and not os.environ.get(ep.api_key_env):
        raise SweepError(f"{where}.api_key_env names {ep.api_key_env}, which is not set in this environment",
                         f"export {ep.api_key_env}=<key> before the sweep (the key itself never goes in the config), "
                         f"or set {where}.api_key_env=null for a server that takes no key")
    if card.prompt_format is PromptFormat.plain:
        raise SweepError(f"model.cards.{key}: an API card speaks chat, prompt_format=plain is for local base models",
                         f"set model.cards.{key}.prompt_format=chat")
    for name, value, low in (("max_concurrency", ep.max_concurrency, 1), ("timeout_s", ep.timeout_s, 1e-9),
                             ("max_retries", ep.max_retries, 0), ("price_input_per_mtok", ep.price_input_per_mtok, 0),
                             ("price_output_per_mtok", ep.price_output_per_mtok, 0)):
        if value is not None and value < low:
            raise SweepError(f"{where}.{name}={value} is too small", f"set {where}.{name} to at least {low:g}")


def check_fits(cards: tuple[ModelCard, ...], cfg: SweepConfig, inventory: sizing.Inventory) -> None:
    """Refuse, before anything loads, a pool the cluster can't hold (API cards hold nothing here)."""
    cards = tuple(c for c in cards if not c.remote)
    if not cards:
        return
    if inventory.gpus == 0:
        gpu_only = [c for c in cards if not c.cpu_ok]
        if gpu_only:
            slot = sizing.Slot(int(cfg.cluster.gpu_memory_gib * sizing.GiB), 8, 1)
            needs = "\n  ".join(sizing.need_text(c, slot, sizing.budget(cfg.engine)) for c in gpu_only)
            raise SweepError(
                f"{len(gpu_only)} of {len(cards)} models need GPUs and this cluster has none "
                f"({inventory.describe()}). The models need:\n  {needs}",
                "run on a GPU Ray cluster (cluster.address=..., see cluster.yaml), or pick CPU-sized cards: model=cpu",
            )
        biggest = max(n.memory_bytes for n in inventory.nodes)
        for card in cards:
            need = sizing.cpu_instance_bytes(card, cfg.engine.kv_cache_gib)
            if need > biggest:
                raise SweepError(
                    f"{card.name} needs {need / sizing.GiB:.1f} GiB of host memory; the largest node has "
                    f"{biggest / sizing.GiB:.1f} GiB",
                    "lower engine.kv_cache_gib or use a smaller card",
                )
        return
    slot = inventory.slot(int(cfg.cluster.gpu_memory_gib * sizing.GiB))
    budget = sizing.budget(cfg.engine)
    too_big = [c for c in cards if sizing.choose_shape(c, slot, budget) is None]
    if too_big:
        needs = "\n  ".join(sizing.need_text(c, slot, budget) for c in too_big)
        raise SweepError(
            f"{len(too_big)} of {len(cards)} models don't fit this cluster ({inventory.describe()}): the biggest "
            f"slot one model can span is {slot.describe()} (TP inside a node, PP across nodes) at "
            f"gpu_memory_utilization={budget.utilization:g}. They need:\n  {needs}",
            "add GPU nodes, use the cards' FP8 checkpoints (engine.prefer_fp8=true, or model.cards.<key>.dtype=fp8), "
            "or lower engine.max_model_len "
            "or engine.concurrency",
        )
