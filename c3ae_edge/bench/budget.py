"""Time budgets: a row times up to ``runs`` forwards, or stops once it has spent ``seconds`` timing with at least
``min_runs`` forwards (a batch of 4096 through MobileNet is 40 ms a forward: 2,000 of them would be 80 s). The count
and what stopped the row are recorded with it. A whole run can also have a deadline: rows shrink to fit it and no row
starts after it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WARMUP_SHARE = 0.25  # warm-up stops at this share of a row's budget (at least one call)


@dataclass
class Budget:
    runs: int = 2000
    seconds: float | None = None  # None or 0: no time budget, ``runs`` forwards
    min_runs: int = 20
    warmup: int = 100

    def record(self, clock: RowClock) -> dict:
        """The ``timing`` block of a row."""
        return {
            "runs_asked": self.runs,
            "runs": len(clock.ns),
            "budget_s": self.seconds or None,
            "min_runs": self.min_runs,
            "stopped_by": "runs" if len(clock.ns) >= self.runs else "budget",
            "timed_s": round(clock.spent_ns / 1e9, 4),
        }


@dataclass
class RowClock:
    """One row's timed forwards, gathered over one or more blocks (the CPU bench interleaves rows in blocks)."""

    budget: Budget
    seconds: float | None = None  # this row's budget (the run may give it less than ``budget.seconds``)
    ns: list[int] = field(default_factory=list)
    spent_ns: int = 0

    def __post_init__(self):
        if self.seconds is None:
            self.seconds = self.budget.seconds

    @property
    def done(self) -> bool:
        b = self.budget
        over = bool(self.seconds) and self.spent_ns >= self.seconds * 1e9
        return len(self.ns) >= b.runs or (over and len(self.ns) >= b.min_runs)

    def block(self, call: Callable[..., object], n: int, blocks_left: int = 1, *args) -> None:
        """Up to ``n`` timed ``call(*args)``: this block's share of the remaining budget, and of the runs still owed
        to ``min_runs``."""
        if self.done:
            return
        n = min(n, self.budget.runs - len(self.ns))
        owed = math.ceil(max(0, self.budget.min_runs - len(self.ns)) / max(1, blocks_left))
        share = (self.seconds * 1e9 - self.spent_ns) / max(1, blocks_left) if self.seconds else None
        clock = time.perf_counter_ns
        start = clock()
        for i in range(n):
            t = clock()
            call(*args)
            end = clock()
            self.ns.append(end - t)
            if share is not None and end - start >= share and i + 1 >= owed:
                break
        self.spent_ns += clock() - start


def warm_up(call: Callable[[], object], budget: Budget, seconds: float | None = None) -> int:
    """The first (timed) call's ns, then up to ``budget.warmup`` calls within a share of the row's budget."""
    t = time.perf_counter_ns()
    call()
    first = time.perf_counter_ns() - t
    limit = (seconds if seconds is not None else budget.seconds) or 0
    end = time.perf_counter() + limit * WARMUP_SHARE if limit else None
    for _ in range(budget.warmup):
        if end is not None and time.perf_counter() >= end:
            break
        call()
    return first


@dataclass
class Deadline:
    """A whole run's time limit: how long the next row may time, and whether any row may still start. Each row's
    overhead (load, capture, warm-up, parity) is learnt as the run goes and kept out of the timing shares."""

    at: float | None  # time.monotonic() value, None: no limit
    overhead_s: float = 0.0  # mean seconds a row spends outside its timed forwards, so far
    rows: int = 0

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(time.monotonic() + seconds if seconds else None)

    @property
    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def row_seconds(self, budget: Budget, rows_left: int) -> float | None:
        if self.at is None:
            return budget.seconds
        left = self.at - time.monotonic() - rows_left * self.overhead_s
        fit = max(0.02, left * 0.9 / max(1, rows_left))
        return min(budget.seconds, fit) if budget.seconds else fit

    def note(self, row_s: float, timed_s: float) -> None:
        """A row took ``row_s`` seconds in all, ``timed_s`` of them timing forwards."""
        self.rows += 1
        self.overhead_s += (max(0.0, row_s - timed_s) - self.overhead_s) / self.rows
