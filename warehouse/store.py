"""Parquet in, Parquet out, through fsspec: the only module that touches warehouse storage.

Layout (Hive-style folders, values percent-encoded; one file per unit of work)::

    {root}/runs/run_id=R/run.parquet
    {root}/generations/run_id=R/model=M/part-{key}.parquet       (a batch of answers)
    {root}/judgments/run_id=R/judge=J/part-{key}.parquet         (a batch of verdicts)
    {root}/comparisons/run_id=R/judge=J/part-{key}.parquet       (judge.pairwise)
    {root}/{table}/run_id=R/compact-{uuid}.parquet               (python -m warehouse compact)
    {root}/eval_judgments/run_id=R/agg-{uuid}.parquet            (derived at compaction: see warehouse/db.py)
    {root}/_catalog/{table}/run_id=R/{uuid}.json                 the commits: files added and removed
    {root}/reports/R.html                      (not a table: the run's page)

Every file holds its own columns; the folder names are for people and globs, never read back as
values. A table's live files are the catalog's (added and not removed, with the size it recorded),
so opening the warehouse reads the commits and one listing, not every file's footer; a file the
catalog does not vouch for (written before the catalog, by a writer that died between the file and
its commit, or changed since) is checked by its footer, and skipped with a warning when unreadable.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence
from urllib.parse import quote

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from sweep.core.errors import SweepError
from sweep.core.rows import IDENTITY, from_table, to_table

TABLES = ("runs", "generations", "judgments", "comparisons")
DERIVED = ("eval_judgments",)
"""Tables computed from the others (never the only copy of anything): a file the catalog doesn't list
is not read, and a reader checks a file's recorded sources before trusting it."""
CATALOG = "_catalog"
ROW_GROUP = 128 * 1024
"""Rows per Parquet row group: big enough that a scan is a few reads per file, small enough to skip."""
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Live:
    """A table's files as a reader should see them."""

    files: dict[str, tuple[str, ...]]
    """Readable file -> its column names (files with the same columns are read together)."""
    bad: tuple[str, ...]
    """Files in the table's folders that are not readable warehouse Parquet: skipped with a warning."""
    commits: tuple[str, ...] = ()
    """The catalog's commit files that were read."""
    unique: frozenset[str] = frozenset()
    """Files whose writer vouched that no other live file holds their cells (the runner's batches, a
    compacted run): latest_rows looks for a cell's older writes only among the other files' cells."""
    stranded: tuple[str, ...] = ()
    """Files the catalog removed that are still in place (a crash before the move to superseded/)."""
    entries: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The catalog's entry (bytes, columns, unique, meta) of each live file it vouches for."""


@dataclass
class Store:
    root: str
    """Any fsspec URL."""
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fs, path = fsspec.core.url_to_fs(self.root, **self.storage_options)
        self.path = path.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)

    def url(self, path: str) -> str:
        """A URL DuckDB can read: the local path, or protocol://path for fsspec stores."""
        return path if self.local else f"{_protocol(self.fs)}://{path}"

    def check_writable(self) -> None:
        """Probe the root before any model loads; a sweep that can't save must not start."""
        probe = posixpath.join(self.path, f"_probe-{uuid.uuid4().hex}")
        try:
            if self.local:  # object stores have no folders; makedirs there would create a missing bucket
                self.fs.makedirs(self.path, exist_ok=True)
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except Exception as e:  # any backend error means the same thing to the user
            raise SweepError(
                f"warehouse.root={self.root} is not writable ({type(e).__name__}: {e})",
                "set warehouse.root to a folder or bucket you can write, e.g. warehouse.root=/tmp/sweep",
            ) from e

    def check_names(self, **names: Sequence[str]) -> None:
        """Refuse, before any model loads, names the warehouse can't store as folders (see segment)."""
        for key, values in names.items():
            for value in values:
                segment(key, value)

    def partition(self, table: str, **parts: str) -> str:
        return posixpath.join(self.path, table, *(f"{k}={segment(k, v)}" for k, v in parts.items()))

    def write(self, table: str, rows: Sequence[Any] | pa.Table, name: str, replaces: Sequence[str] = (),
              unique: bool = False, meta: Mapping[str, Any] | None = None, **parts: str) -> str:
        """Write rows as one Parquet file and commit it, all or nothing: readers never see half a file.

        ``replaces`` leave the table in the same commit (readers see them or the new file, never both or
        neither), then move to superseded/. A file already at the new path (the same cells computed again,
        a run's row updated) moves to superseded/ first: nothing is overwritten in place. ``unique``: the
        writer vouches that the rows hold each cell once and no other live file of the run holds them.
        ``meta`` is kept in the file's catalog entry (a derived file's sources)."""
        data = rows if isinstance(rows, pa.Table) else to_table(rows, table)
        buf = io.BytesIO()
        pq.write_table(data, buf, compression="zstd", row_group_size=ROW_GROUP)
        final = posixpath.join(self.partition(table, **parts), name)
        if self.fs.exists(final):
            self.supersede(final)
        self._put(final, buf.getvalue())
        entry = {"bytes": buf.tell(), "columns": data.column_names, "unique": unique,
                 **({"meta": meta} if meta else {})}
        self._commit(self._catalog_folder(final), add={final: entry}, remove=replaces)
        for path in replaces:
            self._move_aside(path)
        return self.url(final)

    def fold(self, commits: Sequence[str], stranded: Sequence[str]) -> None:
        """Move commits that a later one made moot (every file they add was removed since) to superseded/,
        so the catalog stays as short as the table. The files they removed that are still in place go
        first: once their removal is folded away they would read as files the catalog doesn't know."""
        for path in (*stranded, *commits):
            self._move_aside(path)

    def put(self, path: str, data: bytes) -> str:
        """Write a file that is not a table (a report page) at path under the root, all or nothing."""
        return self._put(posixpath.join(self.path, path), data)

    def _put(self, final: str, data: bytes) -> str:
        """Local disk: a hidden temp file, then rename (atomic on POSIX). Object stores: an upload
        becomes visible only once complete, so write the final key directly."""
        if self.local:
            folder, name = posixpath.split(final)
            self.fs.makedirs(folder, exist_ok=True)
            tmp = posixpath.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, final)
        else:
            self.fs.pipe_file(final, data)
        return self.url(final)

    def fold_run(self, run_id: str) -> int:
        """Fold each table's commits of a run into one, so opening the warehouse reads one commit per
        (table, run) however many batches wrote it (call it when the run ends; a resume adds commits
        again, and folds again when it ends). The new commit lists every live file the old ones vouched
        for and removes the files they removed that are still in place, so it alone gives the same live
        files: a crash anywhere leaves the views as they were. Returns the commits moved aside."""
        folded = 0
        for table in (*TABLES, *DERIVED):
            live = self.live(table, run_id)
            if len(live.commits) < 2:
                continue
            folder = posixpath.dirname(live.commits[0])
            self._commit(folder, add={path: dict(entry) for path, entry in live.entries.items()}, remove=live.stranded)
            for path in live.commits:
                self._move_aside(path)
            folded += len(live.commits)
        return folded

    def _commit(self, folder: str, add: Mapping[str, Mapping[str, Any]] = {}, remove: Sequence[str] = ()) -> None:
        """One commit file per change, so a reader sees a change whole or not at all. Named by time, then a
        random part: readers replay commits in name order (a path removed, then written again, is live),
        and concurrent writers never collide. Paths are relative to the root (the root can move)."""
        commit = {"add": [{"path": self._rel(p), **entry} for p, entry in add.items()],
                  "remove": [self._rel(p) for p in remove]}
        self._put(posixpath.join(folder, f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.json"),
                  json.dumps(commit).encode())

    def _catalog_folder(self, path: str) -> str:
        """The commits of the (table, run) a data file belongs to: _catalog/{table}/run_id=R."""
        table, run = self._rel(path).split("/")[:2]
        return posixpath.join(self.path, CATALOG, table, run)

    def _rel(self, path: str) -> str:
        return posixpath.relpath(path, self.path)

    def live(self, table: str, run_id: str | None = None) -> Live:
        """The files a reader should see: one listing of the table's folders and the catalog's commits."""
        listed = {p: size for p, size in self._find(self._base(table, run_id)).items()
                  if p.endswith(".parquet") and "/." not in p}
        root = self.path + "/"  # paths in commits are relative to the root (joined by hand: posixpath.join per file
        # is a tenth of an open at thousands of files)
        added: dict[str, dict[str, Any]] = {}
        removed: set[str] = set()
        commits = self._commits(table, run_id)
        for commit in commits.values():
            for p in commit["remove"]:
                added.pop(path := root + p, None)
                removed.add(path)
            for entry in commit["add"]:
                path = root + entry["path"]
                added[path] = {k: v for k, v in entry.items() if k != "path"}
                removed.discard(path)
        files: dict[str, tuple[str, ...]] = {}
        bad: list[str] = []
        stranded: list[str] = []
        for path, size in sorted(listed.items()):
            if path in removed:  # superseded, and the move to superseded/ did not happen (a crash)
                stranded.append(path)
                continue
            if path in added and added[path]["bytes"] == size:
                files[path] = tuple(added[path]["columns"])
            elif table in DERIVED:  # recomputed rather than trusted when the catalog can't vouch for it
                continue
            elif (columns := self._columns(path, table)) is not None:  # the catalog can't vouch for it
                files[path] = columns
            else:
                bad.append(path)
        entries = {p: added[p] for p in files if p in added and added[p]["bytes"] == listed[p]}
        unique = frozenset(p for p, entry in entries.items() if entry.get("unique", False))
        return Live(files, tuple(bad), tuple(commits), unique, tuple(stranded), entries)

    def _columns(self, path: str, table: str) -> tuple[str, ...] | None:
        """Column names from the footer, or None when the file is not this table's Parquet (no footer, as a
        truncated or corrupt file has none, or not this table's identity columns)."""
        try:
            names = tuple(pq.read_schema(path, filesystem=self.fs).names)
        except (pa.ArrowException, OSError):
            return None
        return names if set(IDENTITY[table]) <= set(names) else None

    def _commits(self, table: str, run_id: str | None) -> dict[str, dict[str, Any]]:
        folder = posixpath.join(self.path, CATALOG, table)
        if run_id is not None:
            folder = posixpath.join(folder, f"run_id={segment('run_id', run_id)}")
        paths = sorted((p for p in self._find(folder) if p.endswith(".json") and "/." not in p), key=posixpath.basename)
        blobs = self.fs.cat(paths) if paths else {}
        return {p: json.loads(blobs[p]) for p in paths}

    def _find(self, folder: str) -> dict[str, int | None]:
        """Every file under folder -> its size. On local disk os.scandir: fsspec's find costs a stat and
        a dict per entry in Python, which is most of an open at thousands of files."""
        if self.local:
            return _scan(folder)
        try:
            return {p: info.get("size") for p, info in self.fs.find(folder, detail=True).items()}
        except FileNotFoundError:
            return {}

    def _base(self, table: str, run_id: str | None) -> str:
        return self.partition(table, run_id=run_id) if run_id is not None else posixpath.join(self.path, table)

    def read(self, table: str, run_id: str) -> tuple[dict[str, list[Any]], list[str]]:
        """A run's rows per live file, and the files that are not readable warehouse Parquet
        (corrupt, truncated, or another schema), which callers skip with a warning."""
        live = self.live(table, run_id)
        good: dict[str, list[Any]] = {}
        bad = list(live.bad)
        for path in live.files:
            try:
                good[path] = from_table(pq.read_table(path, filesystem=self.fs), table)
            except (pa.ArrowException, KeyError, OSError, TypeError):
                bad.append(path)
        return good, bad

    def supersede(self, path: str) -> str:
        """Take a file out of the live tables, keeping it under superseded/ (nothing is deleted): a commit
        removes it, then it moves (a crash between leaves it in place, and readers skip it)."""
        if self._rel(path).split("/")[0] in TABLES:
            self._commit(self._catalog_folder(path), remove=[path])
        return self._move_aside(path)

    def _move_aside(self, path: str) -> str:
        target = posixpath.join(self.path, "superseded", self._rel(path))
        if self.fs.exists(target):  # replaced before (a run's row, rewritten at each start and end): keep both
            stem, ext = posixpath.splitext(target)
            target = f"{stem}-{time.time_ns()}{ext}"
        if self.local:
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        self.fs.mv(path, target)
        return self.url(target)

    def files(self, table: str, run_id: str | None = None) -> list[str]:
        """A table's live Parquet files (temp files are hidden by their leading dot)."""
        return sorted(self.live(table, run_id).files)


def _scan(folder: str) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            out.update(_scan(entry.path))
        else:
            out[entry.path] = entry.stat().st_size
    return out


def segment(key: str, value: str) -> str:
    """A partition value as one folder name: percent-encoded, so '/' and '..' stay inside the folder
    (Spark's and pyarrow's Hive decoding read it back). Values a path can't hold faithfully are refused."""
    if not value or _UNSAFE.search(value):
        raise SweepError(f"{key} {value!r} can't be a warehouse folder name (empty, or holds control characters)",
                         f"rename it: {key} names must be non-empty printable text")
    encoded = quote(value, safe=" @+,;~-_.()[]!'")
    if len(f"{key}={encoded}".encode()) > 255:
        raise SweepError(f"{key} {value!r} can't be a warehouse folder name (over 255 bytes encoded)",
                         f"rename it to a shorter {key}")
    return encoded


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    proto = fs.protocol
    return proto[0] if isinstance(proto, (tuple, list)) else proto
