"""The one error type for user mistakes: printed as problem + fix, without a traceback."""

from __future__ import annotations


class SweepError(Exception):
    """A problem the user can fix (bad config, missing model, too-small cluster).

    Anything else is a bug and keeps its traceback.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"error: {self.problem}" + (f"\nfix: {self.fix}" if self.fix else "")
