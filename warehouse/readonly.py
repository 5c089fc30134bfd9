"""The read-only warehouse connection behind ``python -m warehouse query``: read-only by construction.

DuckDB has no read-only file access (``allowed_paths`` lets a query read *and* write a file, e.g.
``COPY ... TO`` a warehouse file with ``use_tmp_file false`` truncates it), so the views read the
warehouse through an fsspec filesystem that can only read, and DuckDB's own file access (local
files, extensions, secrets, ATTACH, EXPORT) is switched off and locked.
"""

from __future__ import annotations

from typing import Any, Collection

import duckdb
from fsspec import AbstractFileSystem

from warehouse.db import connect
from warehouse.store import Live, Store

PROTOCOL = "sweep-readonly"


class ReadOnlyFileSystem(AbstractFileSystem):
    """Another filesystem's listing and reads; every write raises."""

    protocol = PROTOCOL
    cachable = False

    def __init__(self, inner: AbstractFileSystem) -> None:
        super().__init__()
        self.inner = inner

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path).removeprefix(f"{PROTOCOL}://")
        return path.rstrip("/") or "/"

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        return self.inner.ls(self._strip_protocol(path), detail=detail, **kwargs)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.inner.info(self._strip_protocol(path), **kwargs)

    def modified(self, path: str) -> Any:
        return self.inner.modified(self._strip_protocol(path))

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            raise PermissionError(f"the warehouse is read-only here: {path} can't be opened for writing")
        return self.inner.open(self._strip_protocol(path), "rb")

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise PermissionError("the warehouse is read-only here")

    mkdir = makedirs = rm = rm_file = _rm = rmdir = mv = cp_file = put_file = pipe_file = touch = _refuse


class ReadOnlyStore(Store):
    """A Store whose files are read through ReadOnlyFileSystem and named by its protocol."""

    def __init__(self, store: Store) -> None:
        self.root, self.storage_options, self.path = store.root, store.storage_options, store.path
        self.fs, self.local, self.inner = ReadOnlyFileSystem(store.fs), False, store

    def url(self, path: str) -> str:
        """What messages name: the file where it is."""
        return self.inner.url(path)

    def live(self, table: str, run_id: str | None = None) -> Live:
        """The catalog is read through the store's own filesystem; only the views go through this one."""
        return self.inner.live(table, run_id)

    def scan_url(self, path: str) -> str:
        """What the views read: the file through ReadOnlyFileSystem."""
        return f"{PROTOCOL}://{path}"


def refusal(error: duckdb.Error) -> str | None:
    """The reason a query was refused a write (DuckDB's own permission error, or the one this
    filesystem raised, which DuckDB passes on inside a Python traceback), or None."""
    text = str(error)
    if isinstance(error, duckdb.PermissionException) or "the configuration has been locked" in text:
        return text.split(": ", 1)[-1]
    lines = [line for line in text.splitlines() if line.startswith("PermissionError: ")]
    return lines[-1].removeprefix("PermissionError: ") if lines else None


def connect_read_only(store: Store, skip: Collection[str] = ()) -> duckdb.DuckDBPyConnection:
    """The warehouse views on a connection that can write no file anywhere, and can't be reconfigured."""
    con = connect(ReadOnlyStore(store), skip)
    for statement in (f"set allowed_directories = ['{PROTOCOL}://']", "set enable_external_access = false",
                      "set autoinstall_known_extensions = false", "set autoload_known_extensions = false",
                      "set lock_configuration = true"):
        con.execute(statement)
    return con
