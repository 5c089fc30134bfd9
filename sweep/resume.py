"""What a run already has: reconcile a plan with the rows its warehouse holds. Pure.

A cell is done when a row with its content key exists and did not end in ``error``
(errors are infrastructure failures, worth another try), and, for a verdict left invalid or
truncated, when it had every re-ask ``judge.retries`` allows now: raising judge.retries and
resuming re-asks exactly those (the setting is not in the content key, since a valid verdict
never depends on it). A file holding any row that
can't be reused (the plan no longer asks for it because a prompt, card or setting
changed; it is an error; or it judged an answer being asked again) is stale: its reusable
rows are written again in a file of their own, it is moved aside (never deleted), and only
the cells it can't give are recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence, Union

from sweep.core.cells import SweepPlan
from sweep.core.rows import ComparisonRow, GenerationRow, JudgmentRow

Row = Union[GenerationRow, JudgmentRow, ComparisonRow]


@dataclass(frozen=True)
class Reuse:
    answers: dict[str, GenerationRow] = field(default_factory=dict)
    """Finished answers by cell key."""
    judged: frozenset[str] = frozenset()
    """Cell keys of finished judgments."""
    compared: frozenset[str] = frozenset()
    """Cell keys of finished pairwise verdicts."""
    stale: tuple[str, ...] = ()
    """Files to move out of the run."""
    keep: tuple[tuple[str, str, tuple[Row, ...]], ...] = ()
    """(table, stale file, its reusable rows): written again as the file's replacement, so a cell is reused
    whichever file holds it (a batch file, a compacted run)."""

    @property
    def cells(self) -> int:
        return len(self.answers) + len(self.judged) + len(self.compared)


def reconcile(
    plan: SweepPlan,
    generations: Mapping[str, Sequence[GenerationRow]],
    judgments: Mapping[str, Sequence[JudgmentRow]],
    comparisons: Mapping[str, Sequence[ComparisonRow]] | None = None,
    judge_retries: int = 0,
    later: frozenset[str] = frozenset(),
) -> Reuse:
    """``generations``, ``judgments`` and ``comparisons`` map each existing file of the run to its rows.

    Cells are reused one by one; files are all or nothing: a file holding one row that can't be reused
    is stale, its reusable rows are written again (``keep``) and it moves aside, so no cell ever has
    two live rows. ``later``: keys of judgments a later round may ask for (judge.adaptive): their rows are
    kept, not reused yet."""
    planned = {c.key for c in plan.judge}
    wanted = {c.key for c in plan.generate} | planned | {c.key for c in plan.compare} | later
    comparisons = comparisons or {}

    def usable(row: Row) -> bool:
        return row.cell_key in wanted and row.status != "error"

    answers = {r.cell_key: r for rows in generations.values() for r in rows if usable(r)}

    # A verdict on an answer that is being asked again judged other text: redo it too.
    def settled(row: JudgmentRow | ComparisonRow) -> bool:
        return usable(row) and (row.status not in ("invalid", "truncated") or row.attempts > judge_retries)

    def judged_ok(r: JudgmentRow) -> bool:
        return settled(r) and r.answer_key in answers

    def compared_ok(r: ComparisonRow) -> bool:
        return settled(r) and r.first_key in answers and r.second_key in answers

    stale: list[str] = []
    keep: list[tuple[str, str, tuple[Row, ...]]] = []
    for table, files, ok in (("generations", generations, usable), ("judgments", judgments, judged_ok),
                             ("comparisons", comparisons, compared_ok)):
        for path, rows in files.items():
            if not all(ok(r) for r in rows):
                stale.append(path)
                if kept := tuple(r for r in rows if ok(r)):
                    keep.append((table, path, kept))
    judged = frozenset(r.cell_key for rows in judgments.values() for r in rows
                       if judged_ok(r) and r.cell_key in planned)
    compared = frozenset(r.cell_key for rows in comparisons.values() for r in rows if compared_ok(r))
    return Reuse(answers, judged, compared, tuple(sorted(stale)), tuple(keep))
