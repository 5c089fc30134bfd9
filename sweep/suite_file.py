"""evals=file: a suite's prompts from a JSONL, Parquet or CSV file (or a folder of them) at any fsspec URL.

The one edge that reads user data before planning: it returns the ``Suite`` the planner already takes
(brief, criteria and scale from the scoring group), and what the run records about the file. Every
problem is one ``SweepError`` naming the file, the row and the fix, raised before any model loads.
Rows are numbered as a person finds them: JSONL by line, CSV by data row (the header is row 0), Parquet
from 1.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, fields, replace
from pathlib import PurePosixPath
from typing import Any, Iterator, Optional

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sweep.core.config import EvalPrompt, Suite, SuiteFields, SweepConfig
from sweep.core.errors import SweepError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
NO_RUBRIC = "No rubric was given: judge the answer on the question alone."
REQUIRED = ("id", "prompt")


@dataclass(frozen=True)
class Source:
    """What a run records about its suite file: where, which bytes, how many rows."""

    url: str
    sha256: str
    """Over the files' names (relative to ``url``) and bytes, in name order."""
    rows: int
    """Rows in the file(s), before ``evals.limit``."""


@dataclass(frozen=True)
class _Row:
    where: str
    """"FILE line N" / "FILE row N": how an error names the row."""
    values: dict[str, Any]


def resolve(conf: SweepConfig) -> tuple[SweepConfig, Optional[Source]]:
    """The config with its suite's prompts read from ``evals.path``; unchanged (and None) without one."""
    if conf.evals.path is None:  # a YAML suite (or evals=file without a path: plan.validate says so)
        return conf, None
    suite, source = load(conf.evals)
    return replace(conf, evals=suite), source


def load(suite: Suite) -> tuple[Suite, Source]:
    """Read, check and subset the prompts of ``suite.path``."""
    url = str(suite.path)
    if suite.prompts:
        raise SweepError(f"evals.path={url} and evals.prompts are both set",
                         "use one: evals=file evals.path=... reads the prompts from the file")
    if suite.limit is not None and suite.limit <= 0:
        raise SweepError(f"evals.limit={suite.limit} must be positive", "set evals.limit=N above 0, or null for all rows")
    try:
        fs, root = fsspec.core.url_to_fs(url, **suite.storage_options)
    except (ImportError, ValueError) as e:
        raise SweepError(f"evals.path={url}: {e}", "use a local path or an fsspec URL whose filesystem is installed "
                         "(s3:// needs s3fs)") from None
    files = _files(fs, root, url)
    digest = hashlib.sha256()
    rows: list[_Row] = []
    for path in files:
        data = fs.cat_file(path)
        name = PurePosixPath(path).relative_to(root).as_posix() if path != root else PurePosixPath(path).name
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
        rows.extend(_read(data, _format(path), _shown(fs, path)))
    prompts = _prompts(rows, suite.fields, url)
    if suite.limit is not None and suite.limit < len(prompts):
        prompts = subset(prompts, suite.limit, suite.seed)
    return replace(suite, prompts=prompts), Source(url, digest.hexdigest(), len(rows))


def subset(prompts: list[EvalPrompt], limit: int, seed: int) -> list[EvalPrompt]:
    """``limit`` prompts chosen by a hash of (seed, id), kept in file order: the same seed takes the same
    prompts whatever the row order or the split into files, and editing a row keeps it in (or out)."""
    rank = sorted(prompts, key=lambda p: hashlib.sha256(f"{seed}\0{p.id}".encode()).hexdigest())
    chosen = {p.id for p in rank[:limit]}
    return [p for p in prompts if p.id in chosen]


def _files(fs: fsspec.AbstractFileSystem, root: str, url: str) -> list[str]:
    if not fs.exists(root):
        raise SweepError(f"evals.path={url} does not exist", "check the path (a JSONL, Parquet or CSV file, or a "
                         "folder of them) and, for an object store, evals.storage_options")
    if not fs.isdir(root):
        _format(root)
        return [root]
    # Hidden and underscore files (.DS_Store, _SUCCESS) are a writer's bookkeeping, not data.
    found = sorted(p for p in fs.find(root) if not PurePosixPath(p).name.startswith((".", "_")))
    if not found:
        raise SweepError(f"evals.path={url} is an empty folder", "point evals.path at a folder of .jsonl, .parquet "
                         "or .csv files")
    for path in found:
        _format(path)
    return found


def _format(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix not in FORMATS:
        raise SweepError(f"{path}: unsupported extension {suffix or '(none)'!r}; suite files are "
                         f"{', '.join(FORMATS)}", "convert it (or rename it if it is one of these formats), or move it "
                         "out of the suite's folder")
    return FORMATS[suffix]


def _shown(fs: fsspec.AbstractFileSystem, path: str) -> str:
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    return path if protocol in ("file", "local") else f"{protocol}://{path}"


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise SweepError(f"{where} is not UTF-8: byte {e.start} (line {line}) is {data[e.start:e.start + 1]!r}",
                         "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8") from None


def _read(data: bytes, fmt: str, where: str) -> Iterator[_Row]:
    if fmt == "jsonl":
        for number, line in enumerate(_text(data, where).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise SweepError(f"{where} line {number} is not JSON: {e.msg}",
                                 "write one JSON object per line") from None
            if not isinstance(value, dict):
                raise SweepError(f"{where} line {number} is a JSON {type(value).__name__}, not an object",
                                 'write one object per line: {"id": ..., "prompt": ...}')
            yield _Row(f"{where} line {number}", value)
        return
    if fmt == "csv":
        _text(data, where)
        try:
            table = pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(newlines_in_values=True),
                                   convert_options=pacsv.ConvertOptions(strings_can_be_null=True,
                                                                        column_types=_all_strings(data)))
        except pa.ArrowInvalid as e:
            raise SweepError(f"{where} is not a readable CSV file: {e}", "write a header row and quote fields that "
                             "hold commas or newlines") from None
        yield from (_Row(f"{where} row {i}", r) for i, r in enumerate(table.to_pylist(), start=1))
        return
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise SweepError(f"{where} is not a readable Parquet file: {e}", "rewrite it, e.g. with "
                         "pyarrow.parquet.write_table") from None
    for i, r in enumerate(table.to_pylist(), start=1):
        yield _Row(f"{where} row {i}", {k: _text(v, f"{where} row {i} column {k}") if isinstance(v, bytes) else v
                                        for k, v in r.items()})


def _all_strings(data: bytes) -> dict[str, pa.DataType]:
    """Every CSV column as text: an id column of digits stays "007", not 7."""
    reader = pacsv.open_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(newlines_in_values=True))
    return {name: pa.string() for name in reader.schema.names}


def _prompts(rows: list[_Row], columns: SuiteFields, url: str) -> list[EvalPrompt]:
    if not rows:
        raise SweepError(f"evals.path={url} holds no rows", "add prompts: one row per prompt with an id and a prompt")
    seen: dict[str, tuple[str, str]] = {}
    out = []
    for row in rows:
        get = {}
        for f in fields(SuiteFields):
            column = getattr(columns, f.name)
            if column not in row.values and (f.name in REQUIRED or column != f.default):
                present = ", ".join(map(str, row.values)) or "none"
                raise SweepError(f"{row.where} has no column {column!r} (the {f.name}; its columns: {present})",
                                 f"map the column that holds it: evals.fields.{f.name}=<column>")
            value = row.values.get(column)
            get[f.name] = "" if value is None else str(value)
        get = {k: v if k == "prompt" else v.strip() for k, v in get.items()}  # the prompt exactly as written
        if not get["id"]:
            raise SweepError(f"{row.where} has an empty id", "give every row an id")
        if not get["prompt"].strip():
            raise SweepError(f"{row.where} (id {get['id']!r}) has an empty prompt", "write the prompt, or remove the row")
        if get["id"] in seen:
            first, text = seen[get["id"]]
            same = text == get["prompt"]
            raise SweepError(
                f"{row.where} repeats id {get['id']!r} of {first}" + ("" if same else " with a different prompt"),
                "remove the repeated row" if same else "give one of the two prompts another id")
        seen[get["id"]] = (row.where, get["prompt"])
        rubric = "\n\n".join(x for x in (get["rubric"], get["reference"] and f"Reference answer: {get['reference']}")
                             if x) or NO_RUBRIC
        out.append(EvalPrompt(id=get["id"], category=get["category"], prompt=get["prompt"], rubric=rubric))
    return out
