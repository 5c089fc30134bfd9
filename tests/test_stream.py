"""A driver that streams: a model's work goes out as many batches of ``run.batch_cells``, each written as it
lands, so a failure loses only the batches in flight. The loop's bookkeeping on a scripted backend and
the queue's answers, pure; the sweep on real Ray with real Parquet is in tests/test_runner.py."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any, Sequence, Union

from sweep.core.cells import CompareCell
from sweep.forecast import SIMULATED, Simulated, local_inventory
from sweep.plan import plan
from sweep.queue import CellQueue
from sweep.schedule import Policy
from sweep.scheduler import (JUDGMENTS, Batch, Done, Lost, NullSink, Phase, Scheduler, Started, Stopped, Submitted,
                             chunks)
from sweep import sizing
from sweep.sizing import described
from tests.conftest import compose_config, fake_pool


def test_chunks_cut_cells_then_pairs_into_batches_of_at_most_the_size() -> None:
    assert list(chunks([1, 2, 3], ["a", "b"], 2)) == [((1, 2), ()), ((3,), ("a",)), ((), ("b",))]
    assert list(chunks([1, 2, 3], [], 0)) == [((1, 2, 3), ())]  # 0: one batch
    assert list(chunks([], [], 4)) == [((), ())]  # a job is always one batch at least


class FailsOnce(Simulated):
    """The forecast's clock, failing the first batch to land on an instance that already landed one
    (or, with ``early_late``, the first early judging batch to land once the judging phase has begun)."""

    def __init__(self, *args: Any, early_late: bool = False) -> None:
        super().__init__(*args)
        self.early_late = early_late
        self.loop: Scheduler | None = None
        self.landed: list[Batch] = []
        self.failed: Batch | None = None
        self.sent_before = self.landed_before = 0
        """Batches the loop had sent, and those that had landed, when the failure came."""

    def wait(self) -> Union[Done, Lost]:
        done = super().wait()
        assert self.loop is not None
        if self.early_late:
            fails = done.batch.job.early and self.loop.phase == JUDGMENTS
        else:
            fails = any(b.instance == done.batch.instance for b in self.landed)
        if self.failed is None and fails:
            self.failed, self.sent_before = done.batch, sum(isinstance(e, Submitted) for e in self.loop.trace)
            self.landed_before = len(self.landed)
            return Lost(done.batch, "injected")
        self.landed.append(done.batch)
        return done

    def stop(self, key: str) -> None:
        """A stopped instance's batches never end (Simulated keeps them: nothing fails there)."""
        super().stop(key)
        self._ends = [e for e in self._ends if e[2].instance != key]


class Landed(NullSink):
    def __init__(self) -> None:
        self.keys: list[str] = []

    def landed(self, batch: Batch, rows: Sequence[Any]) -> None:
        self.keys += [c.key for c in (*batch.cells, *batch.pairs)]

    def unseen(self, judge: str, cells: Sequence[Any], pairs: Sequence[CompareCell]) -> None:
        raise AssertionError("the simulation's answers are all seen")


def test_a_failed_batch_takes_back_only_its_instances_batches_not_those_that_landed() -> None:
    cfg = fake_pool("cluster=h100_8", "run.batch_cells=2", "run.samples=4")  # 6 batches of answers per model
    inventory = described(cfg.cluster)
    the_plan = plan(cfg, "t", inventory)
    backend, sink = FailsOnce(inventory), Landed()
    loop = backend.loop = Scheduler(the_plan, cfg, inventory, Policy(), backend, CellQueue(the_plan, cfg.judge, {}),
                                    sink)
    loop.run()
    every = [c.key for c in (*the_plan.generate, *the_plan.judge)]
    assert len(every) == 3 * 12 + 3 * 24 and Counter(sink.keys) == Counter(every)  # each cell landed once
    assert loop.failures == 1 and backend.failed is not None
    assert not loop.queue.answers  # every answer's verdicts are written: none is held any more
    submitted = [e for e in loop.trace if isinstance(e, Submitted)]
    sizes = Counter((e.instance, e.kind) for e in submitted)
    assert all(n >= 3 for n in sizes.values()) and max(len(e.cells) for e in submitted) == 2  # many batches each
    # What went out again after the failure, of what had gone out before it: exactly the failed instance's
    # cells that had not landed (the failed batch, the one in flight behind it, those not sent yet).
    before, after = submitted[:backend.sent_before], submitted[backend.sent_before:]
    failed = backend.failed
    sent_there = {k for e in before if e.instance == failed.instance for k in e.cells}
    landed_there = {c.key for b in backend.landed[:backend.landed_before] if b.instance == failed.instance for c in (*b.cells, *b.pairs)}
    again = {k for e in after for k in e.cells} & {k for e in before for k in e.cells}
    assert landed_there and {c.key for c in failed.cells} <= again
    assert again == sent_there - landed_there


def test_judges_start_the_judging_phase_while_early_judging_is_still_in_flight() -> None:
    """The answers phase ends with its last answer: a judge's early batches not sent yet go on into the
    judging phase, and judges without early work start theirs meanwhile instead of waiting for them."""
    cfg = fake_pool("cluster=h100_8", "run.batch_cells=2", "run.samples=16")  # the SmolLM2s answer first
    inventory = described(cfg.cluster)
    the_plan = plan(cfg, "t", inventory)
    sink = Landed()
    loop = Scheduler(the_plan, cfg, inventory, Policy(), Simulated(inventory), CellQueue(the_plan, cfg.judge, {}),
                     sink)
    loop.run()
    every = [c.key for c in (*the_plan.generate, *the_plan.judge)]
    assert Counter(sink.keys) == Counter(every)
    judging = next(i for i, e in enumerate(loop.trace) if isinstance(e, Phase) and e.kind == JUDGMENTS)
    early = [i for i, e in enumerate(loop.trace) if isinstance(e, Submitted) and e.early]
    assert early[-1] > judging  # early batches still went out after the answers phase ended
    assert any(isinstance(e, Submitted) and not e.early for e in loop.trace[judging:early[-1]])


def test_an_instance_whose_early_batch_holds_its_lane_into_the_judging_phase_stays_for_its_own_job() -> None:
    """Two CPU nodes, three engines: SmolLM2 judges early on its node while the others answer, and that batch
    is still computing when the last answer lands. Its judging-phase job must wait for its lane (the batch
    holds it), so when the batch ends the instance stays for that job instead of stopping and reloading."""
    cfg = compose_config("evals=smoke", "run.share_engines=false", "run.batch_cells=2")  # CPU cards' own sizes
    node = sizing.Node(2.0, 0, 8 * sizing.GiB)  # two of the three per node
    inventory = sizing.Inventory((node, node))
    the_plan = plan(cfg, "t", inventory)
    sink = Landed()
    loop = Scheduler(the_plan, cfg, inventory, Policy(), Simulated(inventory), CellQueue(the_plan, cfg.judge, {}),
                     sink)
    loop.run()
    assert Counter(sink.keys) == Counter(c.key for c in (*the_plan.generate, *the_plan.judge))
    judging = next(i for i, e in enumerate(loop.trace) if isinstance(e, Phase) and e.kind == JUDGMENTS)
    smol = [e for e in loop.trace if getattr(e, "instance", None) == "SmolLM2-135M"]
    # It judged early, then judged in the judging phase, without stopping between: one life.
    assert any(isinstance(e, Submitted) and e.early for e in smol)
    assert any(isinstance(e, Submitted) and not e.early and e.kind == JUDGMENTS for e in smol)
    assert [type(e).__name__ for e in smol if isinstance(e, (Started, Stopped))] == ["Started", "Stopped"]
    assert loop.loads == 3 and judging > 0


def test_an_early_batch_that_fails_in_the_judging_phase_is_judged_again() -> None:
    """Its cells can't go back for a judging phase that has begun: they retry as that phase's own job."""
    cfg = fake_pool("cluster=h100_8", "run.batch_cells=2", "run.samples=16")
    inventory = described(cfg.cluster)
    the_plan = plan(cfg, "t", inventory)
    backend, sink = FailsOnce(inventory, early_late=True), Landed()
    loop = backend.loop = Scheduler(the_plan, cfg, inventory, Policy(), backend, CellQueue(the_plan, cfg.judge, {}),
                                    sink)
    loop.run()
    assert loop.failures == 1 and backend.failed is not None and backend.failed.job.early
    every = [c.key for c in (*the_plan.generate, *the_plan.judge)]
    assert Counter(sink.keys) == Counter(every)  # each cell landed once, the failed batch's included


def test_the_queue_holds_an_answer_without_prompt_or_reasoning_until_its_verdicts_are_written() -> None:
    cfg = fake_pool()
    the_plan = plan(cfg, "q", local_inventory())
    queue = CellQueue(the_plan, cfg.judge, {})
    answer = the_plan.generate[0]
    queue.land([replace(SIMULATED, cell_key=answer.key, model=answer.model, prompt="the prompt", answer="42",
                        reasoning="long thoughts")])
    kept = queue.answers[answer.key]
    assert (kept.prompt, kept.reasoning, kept.answer, kept.model) == ("", None, "42", answer.model)
    readers = [c for c in the_plan.judge if c.answer_key == answer.key]
    assert len(readers) == 2 and queue.answers_for(readers) == {answer.key: kept}  # what a judge batch ships
    queue.done(readers[:1])
    assert answer.key in queue.answers
    queue.done(readers[1:])
    assert answer.key not in queue.answers
