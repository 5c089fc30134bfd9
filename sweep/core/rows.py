"""The warehouse contract: one row dataclass per table, and its Arrow schema derived from it.

The dataclass is what jobs build; the Arrow schema (with a description and unit per
field, stored as Parquet field metadata) is what lands on disk. Deriving one from the
other keeps the two from drifting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional

import pyarrow as pa


def doc(text: str, default: Any = dataclasses.MISSING) -> Any:
    """A field with its description, kept in the Parquet schema."""
    return dataclasses.field(default=default, metadata={"doc": text})


COST = ("USD: prompt and output tokens times the API card's prices, summed over every attempt; "
        "null for local engines and cards without a price")
REQUESTS = ("HTTP requests sent to the API endpoint over every attempt, retries on 429, 5xx, timeouts and "
            "connection errors included; null for local engines")


@dataclass(frozen=True)
class GenerationRow:
    """One answer: one per (run, model, eval, sample)."""

    run_id: str = doc("Run this row belongs to")
    cell_key: str = doc("Content hash of everything that determines this answer")
    model: str = doc("Card name of the respondent")
    family: str = doc("Model family of the card")
    pool_index: int = doc("Position of the card in the pool; breaks ranking ties")
    eval_id: str = doc("Suite item id")
    category: str = doc("Suite item category")
    sample: int = doc("Sample index, 0-based")
    prompt: str = doc("The user prompt as sent")
    system_prompt: Optional[str] = doc("System prompt of the card, if any")
    answer: str = doc("The answer, reasoning removed")
    reasoning: Optional[str] = doc("Reasoning text split off by the reasoning parser")
    status: str = doc("ok | truncated (hit max_tokens) | empty (no answer text) | error")
    finish_reason: str = doc("Engine finish reason: stop | length | error")
    prompt_tokens: int = doc("Prompt length, tokens")
    output_tokens: int = doc("Generated tokens, reasoning included")
    latency_s: float = doc("Arrival to last token, seconds")
    ttft_s: Optional[float] = doc("Arrival to first token, seconds")
    queue_s: Optional[float] = doc("Arrival to first scheduling, seconds")
    sampling: str = doc("Sampling the answer was last asked with (a re-ask's larger max_tokens), JSON")
    engine: str = doc("Engine that produced the answer")
    error: Optional[str] = doc("Error message when status = error")
    attempts: int = doc("Times the answer was asked for (re-asked when cut off at max_tokens)")
    created_at: dt.datetime = doc("When the row was written, UTC")
    cost_usd: Optional[float] = doc(COST, default=None)
    requests: Optional[int] = doc(REQUESTS, default=None)


@dataclass(frozen=True)
class JudgmentRow:
    """One judgment: one per (run, judge, respondent, eval, sample)."""

    run_id: str = doc("Run this row belongs to")
    cell_key: str = doc("Content hash of everything that determines this judgment")
    answer_key: str = doc("cell_key of the judged generation")
    judge: str = doc("Card name of the judge")
    judge_family: str = doc("Model family of the judge")
    respondent: str = doc("Card name of the judged model (hidden from the judge)")
    respondent_family: str = doc("Model family of the respondent")
    pool_index: int = doc("Pool position of the respondent; breaks ranking ties")
    eval_id: str = doc("Suite item id")
    sample: int = doc("Sample index of the judged answer")
    label: str = doc("Neutral label the judge saw instead of the respondent's name")
    criteria: Optional[dict[str, int]] = doc("Criterion scores as the judge gave them")
    score: Optional[float] = doc("Weighted score computed by sweep from the criteria (never the judge's arithmetic)")
    scale_max: int = doc("Top of the score scale; a valid score is in (0, scale_max]")
    justification: Optional[str] = doc("The judge's 2-3 sentence justification")
    status: str = doc("ok | invalid (unparseable or off-schema) | truncated (hit max_tokens) | error | no_answer")
    error: Optional[str] = doc("Why the judgment is not ok")
    raw: str = doc("The judge's raw output text")
    finish_reason: str = doc("Engine finish reason: stop | length | error")
    prompt_tokens: int = doc("Judge prompt length, tokens")
    output_tokens: int = doc("Judge output, tokens")
    latency_s: float = doc("Arrival to last token, seconds")
    attempts: int = doc("Times the verdict was asked for (re-asked when invalid or truncated)")
    created_at: dt.datetime = doc("When the row was written, UTC")
    scrubbed: Optional[str] = doc(
        "Self-identification replaced in the answer before the judge saw it, JSON {text: times}; "
        "null when nothing was", default=None,
    )
    cost_usd: Optional[float] = doc(COST, default=None)
    requests: Optional[int] = doc(REQUESTS, default=None)
    soft_score: Optional[float] = doc(
        "Expected weighted score under the judge's probabilities of the score tokens (judge.soft_scores); "
        "null when off, not ok, or the engine gave no logprobs", default=None,
    )
    scale_min: Optional[int] = doc(
        "Bottom of the score scale: what failure_aware_ranking counts for an answer never given; "
        "null in runs written before it was stored", default=None,
    )
    round: Optional[int] = doc(
        "Judging round that asked for this judgment: 1 for the first, 2, 3, ... for adaptive judging's extra "
        "judgments (judge.adaptive); null in runs written before it was stored (all round 1)", default=None,
    )


@dataclass(frozen=True)
class ComparisonRow:
    """One pairwise verdict: one per (run, judge, eval, sample, ordered pair of respondents)."""

    run_id: str = doc("Run this row belongs to")
    cell_key: str = doc("Content hash of everything that determines this verdict")
    judge: str = doc("Card name of the judge")
    judge_family: str = doc("Model family of the judge")
    eval_id: str = doc("Suite item id")
    sample: int = doc("Sample index of the two answers")
    first: str = doc("Respondent whose answer the judge saw first, as 'Response 1' (hidden from the judge)")
    second: str = doc("Respondent whose answer the judge saw second, as 'Response 2'")
    first_key: str = doc("cell_key of the generation shown first")
    second_key: str = doc("cell_key of the generation shown second")
    first_index: int = doc("Pool position of the first respondent")
    second_index: int = doc("Pool position of the second respondent")
    verdict: Optional[str] = doc("What the judge picked: '1' (shown first), '2' (shown second) or 'tie'; null if not ok")
    winner: Optional[str] = doc("Card name of the picked answer; null on a tie or when not ok")
    justification: Optional[str] = doc("The judge's 2-3 sentence justification")
    status: str = doc("ok | invalid (unparseable or off-schema) | truncated (hit max_tokens) | error | no_answer")
    error: Optional[str] = doc("Why the verdict is not ok")
    raw: str = doc("The judge's raw output text")
    finish_reason: str = doc("Engine finish reason: stop | length | error")
    prompt_tokens: int = doc("Judge prompt length, tokens")
    output_tokens: int = doc("Judge output, tokens")
    latency_s: float = doc("Arrival to last token, seconds")
    attempts: int = doc("Times the verdict was asked for (re-asked when invalid or truncated)")
    created_at: dt.datetime = doc("When the row was written, UTC")
    scrubbed: Optional[str] = doc(
        "Self-identification replaced in the two answers before the judge saw them, JSON {text: times}; "
        "null when nothing was")
    cost_usd: Optional[float] = doc(COST, default=None)
    requests: Optional[int] = doc(REQUESTS, default=None)


@dataclass(frozen=True)
class RunRow:
    """One sweep run and where it came from."""

    run_id: str = doc("Run id (run.name, or a timestamp)")
    started_at: dt.datetime = doc("Start, UTC")
    finished_at: Optional[dt.datetime] = doc("End, UTC; null while running or after a crash")
    status: str = doc("running | finished | failed")
    config_yaml: str = doc("The resolved config, YAML")
    config_hash: str = doc("SHA-256 of the resolved config")
    git_commit: Optional[str] = doc("Commit of the sweep checkout, '+dirty' when modified")
    packages: dict[str, str] = doc("Versions of the packages that shape results")
    hardware: str = doc("Cluster inventory as Ray saw it, JSON")
    pool: list[str] = doc("Card names in answer order")
    suite: str = doc("Suite name")
    generate_cells: int = doc("Planned generation cells")
    judge_cells: int = doc("Planned judgment cells")
    model_loads: int = doc("Model instances loaded during the run")
    reused_cells: int = doc("Cells found in the warehouse and not recomputed (resume)")
    instance_failures: int = doc("Model instances that died, failed or hung and were replaced")
    wall_s: Optional[float] = doc("Wall time of the run, seconds")
    suite_source: Optional[str] = doc("evals=file: the URL the prompts were read from; null for a YAML suite",
                                      default=None)
    suite_sha256: Optional[str] = doc("evals=file: SHA-256 over the suite files' names and bytes", default=None)
    suite_rows: Optional[int] = doc("evals=file: rows in the suite file(s), before evals.limit", default=None)


_SCALARS: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
    dict[str, int]: pa.map_(pa.string(), pa.int64()),
    dict[str, str]: pa.map_(pa.string(), pa.string()),
    list[str]: pa.list_(pa.string()),
}


def arrow_schema(row_type: type) -> pa.Schema:
    hints = typing.get_type_hints(row_type)
    out = []
    for f in dataclasses.fields(row_type):
        hint, nullable = hints[f.name], False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint, nullable = next(a for a in typing.get_args(hint) if a is not type(None)), True
        out.append(pa.field(f.name, _SCALARS[hint], nullable=nullable, metadata={"doc": f.metadata["doc"]}))
    return pa.schema(out)


TABLES: dict[str, type] = {"generations": GenerationRow, "judgments": JudgmentRow, "runs": RunRow,
                           "comparisons": ComparisonRow}
SCHEMAS: dict[str, pa.Schema] = {name: arrow_schema(t) for name, t in TABLES.items()}


def to_table(rows: typing.Sequence[Any], table: str) -> pa.Table:
    schema = SCHEMAS[table]
    columns = {name: [getattr(r, name) for r in rows] for name in schema.names}
    for name in ("criteria", "packages"):  # Arrow maps take (key, value) pairs
        if name in columns:
            columns[name] = [list(v.items()) if v is not None else None for v in columns[name]]
    return pa.Table.from_pydict(columns, schema=schema)


# Columns every file of a table has had since the first release. A file without them is
# not ours; a file missing only newer columns is an older file and reads with nulls there.
IDENTITY = {"runs": ("run_id", "config_hash"), "generations": ("run_id", "cell_key"),
            "judgments": ("run_id", "cell_key", "answer_key"), "comparisons": ("run_id", "cell_key", "first_key")}


def from_table(data: pa.Table, table: str) -> list[Any]:
    """Rows back from Arrow; raises KeyError when an identity column is missing."""
    row_type = TABLES[table]
    names = [f.name for f in dataclasses.fields(row_type)]
    for name in IDENTITY[table]:
        data.column(name)
    columns = {n: data.column(n).to_pylist() if n in data.column_names else [None] * data.num_rows for n in names}
    for name in ("criteria", "packages"):
        if name in columns:
            columns[name] = [dict(v) if v is not None else None for v in columns[name]]
    return [row_type(**dict(zip(names, values))) for values in zip(*columns.values())]
