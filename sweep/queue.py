"""One queue of the cells a run still has to compute, with what each waits for. Pure.

An answer is ready at once; a judgment when its answer has landed; a pairwise verdict when both
its answers have. A verdict on an answer no judge may see (empty, failed, cut off where the panel
says so) needs no model: ``unseen`` hands it out to be written at once. So a loaded judge with
ready cells simply has work, whether models are still answering or not.

Landing an answer moves only the cells that wait for it, and ``ready``/``unseen`` read only what is
ready or unseen: a sweep's bookkeeping is linear in its cells (the scheduling loop asks often).

Cells are held per engine (``SweepPlan.hosts``): cards that share one loaded engine are one name here,
their host's, so the loop hands that engine all of their cells in one batch; each cell still names its
own card.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Generic, Iterable, Mapping, Sequence, TypeVar, Union

from sweep.core.cells import CompareCell, JudgeCell, SweepPlan
from sweep.core.config import Panel
from sweep.core.prompts import answerable, shown
from sweep.core.rows import GenerationRow

T = TypeVar("T")
Judged = Union[JudgeCell, CompareCell]


class Cells(Generic[T]):
    """Cells per judge, each kept in plan order (``rank``) whatever order they arrive in."""

    def __init__(self, rank: Mapping[str, int]) -> None:
        self.rank = rank
        self.by: dict[str, dict[str, T]] = {}

    def add(self, name: str, cells: Iterable[T]) -> None:
        into = self.by.setdefault(name, {})
        for c in cells:
            into[c.key] = c  # type: ignore[attr-defined]

    def remove(self, name: str, cells: Iterable[T]) -> None:
        """Remove ``cells`` from ``name``'s, and the name once nothing is left."""
        held = self.by.get(name, {})
        for c in cells:
            held.pop(c.key, None)  # type: ignore[attr-defined]
        if not held:
            self.by.pop(name, None)

    def get(self, name: str) -> list[T]:
        return sorted(self.by.get(name, {}).values(), key=lambda c: self.rank[c.key])  # type: ignore[attr-defined]


class CellQueue:
    """Cells left per model (answers) and per judge (judgments, pairwise verdicts), and the
    answers landed so far (reused ones included)."""

    def __init__(self, the_plan: SweepPlan, panel: Panel, answers: Mapping[str, GenerationRow],
                 judged: Iterable[str] = (), compared: Iterable[str] = ()) -> None:
        self.panel = panel
        self.answers: dict[str, GenerationRow] = {}
        done = set(judged) | set(compared)
        self.host = host = the_plan.hosts()
        self.generate = group([c for c in the_plan.generate if c.key not in answers], lambda c: host[c.model])
        rank = {c.key: i for i, c in enumerate((*the_plan.judge, *the_plan.compare))}
        self._left: tuple[Cells[JudgeCell], Cells[CompareCell]] = (Cells(rank), Cells(rank))
        self._ready: tuple[Cells[JudgeCell], Cells[CompareCell]] = (Cells(rank), Cells(rank))
        self._unseen: tuple[Cells[JudgeCell], Cells[CompareCell]] = (Cells(rank), Cells(rank))
        self._waiting: dict[str, list[Judged]] = defaultdict(list)
        """Cells not yet ready, by each answer they wait for."""
        self._waits: dict[str, int] = defaultdict(int)
        """Per judge, how many of its cells wait for an answer."""
        for cells, left in zip((the_plan.judge, the_plan.compare), self._left):
            for cell in cells:
                if cell.key not in done:
                    left.by.setdefault(host[cell.judge], {})[cell.key] = cell  # type: ignore[index]
                    self._waits[host[cell.judge]] += 1
                    for key in _needs(cell):
                        self._waiting[key].append(cell)
        self.land_answers(answers)

    def land(self, rows: Iterable[GenerationRow]) -> None:
        """Answers that landed: the judgments waiting for them become ready (or unseen)."""
        self.land_answers({r.cell_key: r for r in rows})

    def land_answers(self, answers: Mapping[str, GenerationRow]) -> None:
        """``land`` by answer key (the simulation lands keys with a stand-in row)."""
        self.answers.update(answers)
        moved: set[str] = set()  # a pair whose two answers land together is listed under both
        for key in answers:
            for cell in self._waiting.pop(key, ()):
                if cell.key not in moved and all(k in self.answers for k in _needs(cell)):
                    moved.add(cell.key)
                    engine = self.host[cell.judge]
                    self._waits[engine] -= 1
                    pair = isinstance(cell, CompareCell)
                    seen = shown(cell, self.answers, self.panel) if pair else answerable(  # type: ignore[arg-type]
                        self.answers[cell.answer_key], self.panel)  # type: ignore[union-attr]
                    (self._ready if seen else self._unseen)[pair].add(engine, (cell,))

    def ready(self, judge: str) -> tuple[list[JudgeCell], list[CompareCell]]:
        """The judge's cells whose answers have landed and are shown to judges."""
        return self._ready[0].get(judge), self._ready[1].get(judge)

    def needs_model(self, judge: str) -> bool:
        """Whether the judge still has cells a model must compute: waiting for answers, or ready."""
        return bool(self._waits[judge] or judge in self._ready[0].by or judge in self._ready[1].by)

    def take(self, judge: str, cells: Sequence[JudgeCell], pairs: Sequence[CompareCell]) -> None:
        """Remove cells handed to an instance."""
        for part, taken in enumerate((cells, pairs)):
            for kind in (self._left, self._ready, self._unseen):
                kind[part].remove(judge, taken)  # type: ignore[arg-type]

    def put_back(self, judge: str, cells: Sequence[JudgeCell], pairs: Sequence[CompareCell]) -> None:
        """Cells of a batch that failed, to be computed again (their answers have landed: ready)."""
        for part, back in enumerate((cells, pairs)):
            if back:
                self._left[part].add(judge, back)  # type: ignore[arg-type]
                self._ready[part].add(judge, back)  # type: ignore[arg-type]

    def unseen(self) -> dict[str, tuple[list[JudgeCell], list[CompareCell]]]:
        """Remove and return, per judge card (their rows need no engine), the cells whose answers landed
        but no judge may see."""
        out: dict[str, tuple[list[JudgeCell], list[CompareCell]]] = {}
        for engine in sorted(set(self._unseen[0].by) | set(self._unseen[1].by)):
            cells, pairs = self._unseen[0].get(engine), self._unseen[1].get(engine)
            self.take(engine, cells, pairs)
            for judge in dict.fromkeys(c.judge for c in (*cells, *pairs)):
                out[judge] = ([c for c in cells if c.judge == judge], [p for p in pairs if p.judge == judge])
        return out

    def left(self, judge: str) -> tuple[list[JudgeCell], list[CompareCell]]:
        return self._left[0].get(judge), self._left[1].get(judge)

    def judges(self) -> set[str]:
        """Judges with cells left."""
        return set(self._left[0].by) | set(self._left[1].by)

    def answers_for(self, cells: Sequence[JudgeCell], pairs: Sequence[CompareCell] = ()) -> dict[str, GenerationRow]:
        """The answers a judge batch reads: only those, so each actor call ships little."""
        keys = [c.answer_key for c in cells] + [k for c in pairs for k in (c.first_key, c.second_key)]
        return {k: self.answers[k] for k in keys}


def _needs(cell: Judged) -> tuple[str, ...]:
    """The answers a cell waits for."""
    return (cell.answer_key,) if isinstance(cell, JudgeCell) else (cell.first_key, cell.second_key)


def group(items: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    out: dict[str, list[T]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return dict(out)
