"""One queue of the cells a run still has to compute, with what each waits for. Pure.

An answer is ready at once; a judgment when its answer has landed; a pairwise verdict when both
its answers have. A verdict on an answer no judge may see (empty, failed, cut off where the panel
says so) needs no model: ``unseen`` hands it out to be written at once. So a loaded judge with
ready cells simply has work, whether models are still answering or not.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

from sweep.core.cells import CompareCell, JudgeCell, SweepPlan
from sweep.core.config import Panel
from sweep.core.prompts import answerable, shown
from sweep.core.rows import GenerationRow

T = TypeVar("T")


class CellQueue:
    """Cells left per model (answers) and per judge (judgments, pairwise verdicts), and the
    answers landed so far (reused ones included)."""

    def __init__(self, the_plan: SweepPlan, panel: Panel, answers: Mapping[str, GenerationRow],
                 judged: Iterable[str] = (), compared: Iterable[str] = ()) -> None:
        self.panel = panel
        self.answers: dict[str, GenerationRow] = dict(answers)
        done = set(judged) | set(compared)
        self.generate = group([c for c in the_plan.generate if c.key not in self.answers], lambda c: c.model)
        self.judge = group([c for c in the_plan.judge if c.key not in done], lambda c: c.judge)
        self.compare = group([c for c in the_plan.compare if c.key not in done], lambda c: c.judge)

    def land(self, rows: Iterable[GenerationRow]) -> None:
        """Answers that landed: the judgments waiting for them become ready (or unseen)."""
        self.answers.update((r.cell_key, r) for r in rows)

    def _landed(self, cell: JudgeCell | CompareCell) -> bool:
        keys = (cell.answer_key,) if isinstance(cell, JudgeCell) else (cell.first_key, cell.second_key)
        return all(k in self.answers for k in keys)

    def ready(self, judge: str) -> tuple[list[JudgeCell], list[CompareCell]]:
        """The judge's cells whose answers have landed and are shown to judges."""
        cells = [c for c in self.judge.get(judge, []) if self._landed(c) and answerable(self.answers[c.answer_key],
                                                                                         self.panel)]
        pairs = [c for c in self.compare.get(judge, []) if self._landed(c) and shown(c, self.answers, self.panel)]
        return cells, pairs

    def needs_model(self, judge: str) -> bool:
        """Whether the judge still has cells a model must compute: waiting for answers, or ready."""
        cells, pairs = self.ready(judge)
        return bool(cells or pairs) or not all(self._landed(c) for c in
                                               (*self.judge.get(judge, []), *self.compare.get(judge, [])))

    def take(self, judge: str, cells: Sequence[JudgeCell], pairs: Sequence[CompareCell]) -> None:
        """Remove cells handed to an instance."""
        _remove(self.judge, judge, cells)
        _remove(self.compare, judge, pairs)

    def put_back(self, judge: str, cells: Sequence[JudgeCell], pairs: Sequence[CompareCell]) -> None:
        """Cells of a batch that failed, to be computed again."""
        if cells:
            self.judge.setdefault(judge, []).extend(cells)
        if pairs:
            self.compare.setdefault(judge, []).extend(pairs)

    def unseen(self) -> dict[str, tuple[list[JudgeCell], list[CompareCell]]]:
        """Remove and return, per judge, the cells whose answers landed but no judge may see."""
        out: dict[str, tuple[list[JudgeCell], list[CompareCell]]] = {}
        for judge in sorted(set(self.judge) | set(self.compare)):
            cells = [c for c in self.judge.get(judge, [])
                     if self._landed(c) and not answerable(self.answers[c.answer_key], self.panel)]
            pairs = [c for c in self.compare.get(judge, []) if self._landed(c) and not shown(c, self.answers, self.panel)]
            if cells or pairs:
                self.take(judge, cells, pairs)
                out[judge] = (cells, pairs)
        return out

    def left(self, judge: str) -> tuple[list[JudgeCell], list[CompareCell]]:
        return self.judge.get(judge, []), self.compare.get(judge, [])

    def judges(self) -> set[str]:
        """Judges with cells left."""
        return set(self.judge) | set(self.compare)

    def answers_for(self, cells: Sequence[JudgeCell], pairs: Sequence[CompareCell] = ()) -> dict[str, GenerationRow]:
        """The answers a judge batch reads: only those, so each actor call ships little."""
        keys = [c.answer_key for c in cells] + [k for c in pairs for k in (c.first_key, c.second_key)]
        return {k: self.answers[k] for k in keys}


def _remove(cells: dict[str, list[T]], name: str, taken: Sequence[T]) -> None:
    """Remove ``taken`` from ``cells[name]``, and the key once nothing is left."""
    keys = {c.key for c in taken}  # type: ignore[attr-defined]
    rest = [c for c in cells.get(name, []) if c.key not in keys]  # type: ignore[attr-defined]
    if rest:
        cells[name] = rest
    else:
        cells.pop(name, None)


def group(items: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    out: dict[str, list[T]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return dict(out)
