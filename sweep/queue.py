"""One queue of the cells a run still has to compute, with what each waits for. Pure.

An answer is ready at once; a judgment when its answer has landed; a pairwise verdict when both
its answers have. A verdict on an answer no judge may see (empty, failed, cut off where the panel
says so) needs no model: ``unseen`` hands it out to be written at once. So a loaded judge with
ready cells simply has work, whether models are still answering or not.

Landing an answer moves only the cells that wait for it, and ``ready``/``unseen`` read only what is
ready or unseen: a sweep's bookkeeping is linear in its cells (the scheduling loop asks often).

Memory: an answer is kept only while a verdict on it is still to be written (``done`` counts them
down), and without what no judge reads (its prompt, reasoning, sampling): 80,000 answers of a
thinking model would otherwise hold gigabytes of reasoning in the driver.

Cells are held per engine (``SweepPlan.hosts``): cards that share one loaded engine are one name here,
their host's, so the loop hands that engine all of their cells in one batch; each cell still names its
own card.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import replace
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

    def remove(self, name: str, keys: Iterable[str]) -> None:
        """Remove the cells with these keys from ``name``'s, and the name once nothing is left."""
        held = self.by.get(name)
        if held is None:
            return
        for k in keys:
            held.pop(k, None)
        if not held:
            del self.by[name]

    def get(self, name: str) -> list[T]:
        held = self.by.get(name, {})
        return [held[k] for k in sorted(held, key=self.rank.__getitem__)]

    def copy(self) -> Cells[T]:
        out: Cells[T] = Cells(self.rank)
        out.by = {name: dict(held) for name, held in self.by.items()}
        return out


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
        self._readers: dict[str, int] = defaultdict(int)
        """Per answer, the verdicts on it not written yet: it is dropped when none are left."""
        for cells, left in zip((the_plan.judge, the_plan.compare), self._left):
            for cell in cells:
                if cell.key not in done:
                    left.by.setdefault(host[cell.judge], {})[cell.key] = cell  # type: ignore[index]
                    self._waits[host[cell.judge]] += 1
                    for key in _needs(cell):
                        self._waiting[key].append(cell)
                        self._readers[key] += 1
        self.land_answers(answers)

    def copy(self) -> CellQueue:
        """An independent queue in this state, sharing the cells (the forecast runs the loop on one plan
        under many load orders: copying the bookkeeping is cheaper than building it from every cell)."""
        out = copy.copy(self)
        out.answers = dict(self.answers)
        out.generate = {model: list(cells) for model, cells in self.generate.items()}
        out._left, out._ready, out._unseen = (tuple(c.copy() for c in kind)  # type: ignore[assignment]
                                              for kind in (self._left, self._ready, self._unseen))
        out._waiting = defaultdict(list, self._waiting)  # its lists are only ever popped whole
        out._waits = defaultdict(int, self._waits)
        out._readers = defaultdict(int, self._readers)
        return out

    def land(self, rows: Iterable[GenerationRow]) -> None:
        """Answers that landed: the judgments waiting for them become ready (or unseen)."""
        self.land_answers({r.cell_key: r for r in rows})

    def land_answers(self, answers: Mapping[str, GenerationRow]) -> None:
        """``land`` by answer key (the simulation lands keys with a stand-in row)."""
        self.answers.update((k, _slim(r)) for k, r in answers.items() if k in self._readers)
        moved: set[str] = set()  # a pair whose two answers land together is listed under both
        ready, unseen = self._ready[0].by, self._unseen[0].by
        for key in answers:
            waiting = self._waiting.pop(key, ())
            # A judgment waits for this answer alone: whether judges see it is the answer's (one test per answer).
            into = ready if waiting and answerable(self.answers[key], self.panel) else unseen
            for cell in waiting:
                if isinstance(cell, JudgeCell):
                    engine = self.host[cell.judge]
                    self._waits[engine] -= 1
                    into.setdefault(engine, {})[cell.key] = cell
                elif cell.key not in moved and all(k in self.answers for k in _needs(cell)):
                    moved.add(cell.key)
                    engine = self.host[cell.judge]
                    self._waits[engine] -= 1
                    (self._ready if shown(cell, self.answers, self.panel) else self._unseen)[1].add(engine, (cell,))

    def ready(self, judge: str) -> tuple[list[JudgeCell], list[CompareCell]]:
        """The judge's cells whose answers have landed and are shown to judges."""
        return self._ready[0].get(judge), self._ready[1].get(judge)

    def needs_model(self, judge: str) -> bool:
        """Whether the judge still has cells a model must compute: waiting for answers, or ready."""
        return bool(self._waits[judge] or judge in self._ready[0].by or judge in self._ready[1].by)

    def take(self, judge: str, cells: Sequence[JudgeCell], pairs: Sequence[CompareCell]) -> None:
        """Remove cells handed to an instance."""
        for part, taken in enumerate((cells, pairs)):
            keys = [c.key for c in taken]
            for kind in (self._left, self._ready, self._unseen):
                kind[part].remove(judge, keys)

    def put_back(self, judge: str, cells: Sequence[JudgeCell], pairs: Sequence[CompareCell]) -> None:
        """Cells of a batch that failed, to be computed again (their answers have landed: ready)."""
        for part, back in enumerate((cells, pairs)):
            if back:
                self._left[part].add(judge, back)  # type: ignore[arg-type]
                self._ready[part].add(judge, back)  # type: ignore[arg-type]

    def done(self, cells: Iterable[Judged]) -> None:
        """Verdicts written: the answers no verdict still needs are dropped."""
        for cell in cells:
            for key in _needs(cell):
                self._readers[key] -= 1
                if not self._readers[key]:
                    del self._readers[key]
                    self.answers.pop(key, None)

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


def _slim(answer: GenerationRow) -> GenerationRow:
    """What a verdict on ``answer`` reads of it (jobs/judge.py, jobs/compare.py): not its prompt or reasoning."""
    if not (answer.prompt or answer.system_prompt or answer.reasoning or answer.sampling):
        return answer  # nothing to drop (the simulation's stand-in): no copy
    return replace(answer, prompt="", system_prompt=None, reasoning=None, sampling="")


def _needs(cell: Judged) -> tuple[str, ...]:
    """The answers a cell waits for."""
    return (cell.answer_key,) if isinstance(cell, JudgeCell) else (cell.first_key, cell.second_key)


def group(items: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    out: dict[str, list[T]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return dict(out)
