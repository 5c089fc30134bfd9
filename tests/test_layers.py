"""The import layers hold (pyproject.toml [tool.importlinter]): the leaf layer sweep.core imports
nothing above it, jobs/ and warehouse/ import only it from sweep/, the planner imports no Ray, vLLM
or DuckDB, and no module takes part in an import circle, TYPE_CHECKING imports included."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0
