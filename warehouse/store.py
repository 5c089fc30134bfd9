"""Parquet in, Parquet out, through fsspec: the only module that touches warehouse storage.

Layout (Hive-style partitions, one deterministic file per unit of work)::

    {root}/runs/run_id=R/run.parquet
    {root}/generations/run_id=R/model=M/eval_id=E/part-{key}.parquet
    {root}/judgments/run_id=R/judge=J/eval_id=E/part-{key}.parquet
    {root}/comparisons/run_id=R/judge=J/eval_id=E/part-{key}.parquet   (judge.pairwise)
    {root}/reports/R.html                      (not a table: the run's page)

Every file also holds its partition columns, so a file read on its own is complete.
"""

from __future__ import annotations

import io
import posixpath
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from sweep.core.errors import SweepError
from sweep.core.rows import IDENTITY, from_table, to_table

TABLES = ("runs", "generations", "judgments", "comparisons")


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

    def partition(self, table: str, **parts: str) -> str:
        return posixpath.join(self.path, table, *(f"{k}={v}" for k, v in parts.items()))

    def write(self, table: str, rows: Sequence[Any], name: str, **parts: str) -> str:
        """Write rows as one Parquet file, all or nothing: readers never see half a file.

        Local disk: write a hidden temp file, then rename (atomic on POSIX). Object stores:
        an upload becomes visible only once complete, so write the final key directly.
        """
        buf = io.BytesIO()
        pq.write_table(to_table(rows, table), buf, compression="zstd")
        return self._put(posixpath.join(self.partition(table, **parts), name), buf.getvalue())

    def put(self, path: str, data: bytes) -> str:
        """Write a file that is not a table (a report page) at path under the root, all or nothing."""
        return self._put(posixpath.join(self.path, path), data)

    def _put(self, final: str, data: bytes) -> str:
        if self.local:
            folder, name = posixpath.split(final)
            self.fs.makedirs(folder, exist_ok=True)
            tmp = posixpath.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, final)
        else:
            self.fs.pipe_file(final, data)
        return self.url(final)

    def read(self, table: str, run_id: str) -> tuple[dict[str, list[Any]], list[str]]:
        """A run's rows per file, and the files that are not readable warehouse Parquet
        (corrupt, truncated, or another schema), which callers skip with a warning."""
        good: dict[str, list[Any]] = {}
        bad: list[str] = []
        for path in self.files(table, run_id):
            try:
                good[path] = from_table(pq.read_table(path, filesystem=self.fs), table)
            except (pa.ArrowException, KeyError, OSError, TypeError):
                bad.append(path)
        return good, bad

    def readable(self, table: str) -> tuple[list[str], list[str]]:
        """A table's files split into readable ones and the rest (no Parquet footer, as a
        truncated or corrupt file has none, or not this table's identity columns)."""
        good, bad = [], []
        for path in self.files(table):
            try:
                names = set(pq.read_schema(path, filesystem=self.fs).names)
            except (pa.ArrowException, OSError):
                names = set()
            (good if set(IDENTITY[table]) <= names else bad).append(path)
        return good, bad

    def supersede(self, path: str) -> str:
        """Move a file out of the live tables, keeping it under superseded/ (nothing is deleted)."""
        target = posixpath.join(self.path, "superseded", posixpath.relpath(path, self.path))
        if self.local:
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        self.fs.mv(path, target)
        return self.url(target)

    def files(self, table: str, run_id: str | None = None) -> list[str]:
        """Committed Parquet files of a table (temp files are hidden by their leading dot)."""
        base = self.partition(table, run_id=run_id) if run_id else posixpath.join(self.path, table)
        return sorted(p for p in self.fs.glob(posixpath.join(base, "**", "*.parquet")) if "/." not in p)


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    proto = fs.protocol
    return proto[0] if isinstance(proto, (tuple, list)) else proto
