"""What a run already has: reconcile a plan with the rows its warehouse holds. Pure.

A cell is done when a row with its content key exists and did not end in ``error``
(errors are infrastructure failures, worth another try), and, for a verdict left invalid or
truncated, when it had every re-ask ``judge.retries`` allows now: raising judge.retries and
resuming re-asks exactly those (the setting is not in the content key, since a valid verdict
never depends on it). A file holding any row that
can't be reused (the plan no longer asks for it because a prompt, card or setting
changed; it is an error; or it judged an answer being asked again) is stale: it is moved
aside, never deleted, and its wanted cells are recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from sweep.core.cells import SweepPlan
from sweep.core.rows import ComparisonRow, GenerationRow, JudgmentRow


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

    @property
    def cells(self) -> int:
        return len(self.answers) + len(self.judged) + len(self.compared)


def reconcile(
    plan: SweepPlan,
    generations: Mapping[str, Sequence[GenerationRow]],
    judgments: Mapping[str, Sequence[JudgmentRow]],
    comparisons: Mapping[str, Sequence[ComparisonRow]] | None = None,
    judge_retries: int = 0,
) -> Reuse:
    """``generations``, ``judgments`` and ``comparisons`` map each existing file of the run to its rows.

    Files are all or nothing: one row that can't be reused makes the whole file stale, so
    its cells are written again in new files and no cell ever has two live rows."""
    wanted = {c.key for c in plan.generate} | {c.key for c in plan.judge} | {c.key for c in plan.compare}
    comparisons = comparisons or {}

    def usable(row: GenerationRow | JudgmentRow | ComparisonRow) -> bool:
        return row.cell_key in wanted and row.status != "error"

    def settled(row: JudgmentRow | ComparisonRow) -> bool:
        return usable(row) and (row.status not in ("invalid", "truncated") or row.attempts > judge_retries)

    kept_answers = {f: rows for f, rows in generations.items() if all(usable(r) for r in rows)}
    answers = {r.cell_key: r for rows in kept_answers.values() for r in rows}
    # A verdict on an answer that is being asked again judged other text: redo it too.
    kept_judgments = {f: rows for f, rows in judgments.items()
                      if all(settled(r) and r.answer_key in answers for r in rows)}
    judged = frozenset(r.cell_key for rows in kept_judgments.values() for r in rows)
    kept_comparisons = {f: rows for f, rows in comparisons.items()
                        if all(settled(r) and r.first_key in answers and r.second_key in answers for r in rows)}
    compared = frozenset(r.cell_key for rows in kept_comparisons.values() for r in rows)
    kept = kept_answers.keys() | kept_judgments.keys() | kept_comparisons.keys()
    stale = sorted(f for f in (*generations, *judgments, *comparisons) if f not in kept)
    return Reuse(answers, judged, compared, tuple(stale))
