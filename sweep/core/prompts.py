"""What a model is shown: answer messages, the judge's and the pairwise judge's templates and
verdict schemas, identity scrubbing, the plain-format rendering and its stop strings.

The planner hashes these into content keys and jobs/ sends them, so both read them from here.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from typing import Any, Mapping, Optional, Sequence

from sweep.core.cells import CompareCell
from sweep.core.config import ModelCard, Panel, Suite
from sweep.core.rows import GenerationRow


def answer_messages(system_prompt: Optional[str], prompt: str) -> tuple[tuple[str, str], ...]:
    system = (("system", system_prompt),) if system_prompt else ()
    return (*system, ("user", prompt))


PLAIN_STOP = ("\nQuestion:",)
"""Where a plain-format answer ends: a base model has no end-of-turn token and goes on to write
the next "Question:" of the pattern (Gemma-3-270M base ran to max_tokens on every prompt)."""


def render_plain(messages: Sequence[tuple[str, str]]) -> str:
    """A prompt for base models without a chat template; the answer stops at PLAIN_STOP."""
    parts = [content for role, content in messages if role == "system"]
    parts += [f"Question: {content}\n\nAnswer:" for role, content in messages if role == "user"]
    return "\n\n".join(parts)


JUDGE_TEMPLATE = """## Question
{question}

## Grading rubric (for you only)
{rubric}

## {label}
{answer}

## Your task
{brief}
Criteria:
{criteria}

Reply with JSON only: an integer from {lo} to {hi} for each criterion, and a "justification" of \
2-3 sentences (at most {max_chars} characters)."""

REDACTED = "[redacted]"
VENDOR_TERMS = (
    "Qwen", "Tongyi", "Alibaba", "Alibaba Cloud", "SmolLM", "Hugging Face", "HuggingFace", "Gemma",
    "Google DeepMind", "DeepMind",
)
"""How the pool's models name themselves and their makers ("I am Qwen, created by Alibaba Cloud").
Bare "Google" is left alone: answers cite it for other reasons."""


def identity_terms(cards: Sequence[ModelCard]) -> tuple[str, ...]:
    """What an answer must not show a judge: every card's name and family, and VENDOR_TERMS."""
    terms = {t.lower(): t for t in (*VENDOR_TERMS, *(c.name for c in cards), *(c.family for c in cards))}
    return tuple(sorted(terms.values(), key=lambda t: (-len(t), t)))  # longest first: "Alibaba Cloud" whole


@functools.lru_cache(maxsize=8)
def _identity_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    # A term and any version tail glued to it ("Qwen" in "Qwen3.5-9B"), in any case, not inside a word.
    return re.compile(r"(?<!\w)" + _trie({t.lower() for t in terms}) + r"(?:[\w.-]*\w)?", re.IGNORECASE)


def _trie(terms: set[str]) -> str:
    """An alternation of ``terms`` as a prefix tree: at each position the regex engine tries one branch per
    next character instead of every term (a pool of 16 cards has ~40 terms, and every judge prompt is
    scrubbed). Greedy, so of two terms matching at one place the longer wins, as longest-first does."""
    heads = sorted({t[0] for t in terms if t})
    branches = [re.escape(h) + _trie({t[1:] for t in terms if t[:1] == h}) for h in heads]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 and "" not in terms else \
        "(?:" + "|".join(branches) + ")"
    return body + "?" if "" in terms else body


def scrub(answer: str, terms: tuple[str, ...]) -> tuple[str, Optional[str]]:
    """The answer with each identity term replaced by REDACTED, and what was replaced as JSON
    {text: times} (None when nothing was), so a judge can't recognise a model by its self-description."""
    if not terms:
        return answer, None
    found: Counter[str] = Counter()

    def redact(match: re.Match[str]) -> str:
        found[match.group(0)] += 1
        return REDACTED

    text = _identity_pattern(terms).sub(redact, answer)
    return text, json.dumps(dict(sorted(found.items())), ensure_ascii=False) if found else None


CUT_OFF_NOTICE = ("[Note from the evaluators: this response was cut off at its length budget before it finished. "
                  "Judge what it says; what it does not get to counts as missing.]")
"""Shown under an answer that was cut off at max_tokens (panel.judge_truncated), so a judge neither
takes the abrupt end for the model's choice nor scores the answer as if complete."""


def answerable(answer: GenerationRow, panel: Panel) -> bool:
    """Whether judges see this answer: complete ones always, cut-off ones (which have content: a
    cut-off answer with no text is ``empty``) unless the panel says not to, empty and failed ones
    never (the study's judges scored empty answers as answers)."""
    return answer.status == "ok" or (answer.status == "truncated" and panel.judge_truncated)


def cut_off(answer: GenerationRow) -> bool:
    """Whether a judge must be told the answer was cut off at its budget (CUT_OFF_NOTICE)."""
    return answer.status == "truncated"


def _as_shown(answer: str, was_cut_off: bool) -> str:
    return answer.strip() + (f"\n\n{CUT_OFF_NOTICE}" if was_cut_off else "")


def shown(cell: CompareCell, answers: Mapping[str, GenerationRow], panel: Panel) -> bool:
    """A pair is shown only when both its answers would be judged on their own."""
    return answerable(answers[cell.first_key], panel) and answerable(answers[cell.second_key], panel)


def judge_messages(suite: Suite, eval_id: str, answer: str, label: str, max_chars: int,
                   was_cut_off: bool = False) -> tuple[tuple[str, str], ...]:
    text = JUDGE_TEMPLATE.format(**task_fields(suite, eval_id, max_chars), label=label,
                                 answer=_as_shown(answer, was_cut_off))
    return (("user", text),)


def task_fields(suite: Suite, eval_id: str, max_chars: int) -> dict[str, Any]:
    """What every judge prompt of an eval says besides the answers: question, rubric, brief, criteria."""
    item = next(p for p in suite.prompts if p.id == eval_id)
    criteria = "\n".join(f"- {c.name} ({c.weight:.0%}): {c.description}" for c in suite.criteria)
    return dict(question=item.prompt.strip(), rubric=item.rubric.strip(), brief=suite.judge_brief.strip(),
                criteria=criteria, lo=suite.scale_min, hi=suite.scale_max, max_chars=max_chars)


def judge_schema(suite: Suite, max_chars: int) -> dict[str, Any]:
    """Scores first, then a length-bounded justification the grammar closes in time."""
    props: dict[str, Any] = {
        c.name: {"type": "integer", "minimum": suite.scale_min, "maximum": suite.scale_max} for c in suite.criteria
    }
    props["justification"] = {"type": "string", "maxLength": max_chars}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


SOFT_TOP_K = 20
"""Alternatives per token asked for when judge.soft_scores is on (vLLM's default max_logprobs)."""
COMPARE_TEMPLATE = """## Question
{question}

## Grading rubric (for you only)
{rubric}

## Response 1
{first}

## Response 2
{second}

## Your task
{brief}
Criteria:
{criteria}

Decide which response is better overall on these criteria. Reply with JSON only: a "winner" that is \
"1", "2" or "tie", and a "justification" of 2-3 sentences (at most {max_chars} characters)."""

WINNERS = ("1", "2", "tie")


def compare_schema(max_chars: int) -> dict[str, Any]:
    """The pick first, then a length-bounded justification the grammar closes in time."""
    props = {"winner": {"type": "string", "enum": list(WINNERS)},
             "justification": {"type": "string", "maxLength": max_chars}}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def compare_messages(suite: Suite, eval_id: str, first: str, second: str, max_chars: int,
                     cut_offs: tuple[bool, bool] = (False, False)) -> tuple[tuple[str, str], ...]:
    text = COMPARE_TEMPLATE.format(**task_fields(suite, eval_id, max_chars), first=_as_shown(first, cut_offs[0]),
                                   second=_as_shown(second, cut_offs[1]))
    return (("user", text),)


