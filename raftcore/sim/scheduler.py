"""The event scheduler: virtual time and the queue of scheduled actions.

Every action waits on one heap as ``(time, seq, fn, args)``. ``seq`` counts
the actions ever scheduled, so actions due at the same virtual instant run
in the order they were scheduled: ties never depend on the actions
themselves, which keeps a seed's trace the same on every run. Time moves
only when an action is taken off the heap: ``now`` is the time of the
action running.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

__all__ = ["Scheduler"]

Action = tuple[float, int, Callable[..., None], tuple[Any, ...]]


class Scheduler:
    """Virtual time, the event heap, and the flag that ends a run."""

    __slots__ = ("_seq", "heap", "now", "stopped")

    def __init__(self) -> None:
        self.heap: list[Action] = []
        self._seq = 0
        self.now = 0.0
        #: Set by ``stop()``: ``run`` returns before the next action.
        self.stopped = False

    def push(self, t: float, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        """Run ``fn(*args)`` at virtual time ``t``."""
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, fn, args))

    def schedule(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` ``delay`` virtual seconds from now."""
        self.push(self.now + delay, fn, args)

    def hold(self, until: float, fn: Callable[..., None], args: tuple[Any, ...]) -> bool:
        """If ``until`` is still to come, run ``fn(*args)`` then instead of now
        (a paused node's actions wait for it to resume); True if held."""
        if until > self.now:
            self.push(until, fn, args)
            return True
        return False

    def stop(self) -> None:
        self.stopped = True

    def next_time(self) -> float | None:
        """When the next action is due (``None``: nothing scheduled)."""
        heap = self.heap
        return heap[0][0] if heap else None

    def run(self, over_budget: Callable[[], bool]) -> None:
        """Take actions in order until none is left, ``stop()`` was called, or
        ``over_budget()`` (asked after every action) says so."""
        heap = self.heap
        pop = heapq.heappop
        while heap and not self.stopped:
            t, _, fn, args = pop(heap)
            self.now = t
            fn(*args)
            if over_budget():
                return

    def run_until(self, target: float, over_budget: Callable[[], bool]) -> None:
        """Take every action due by ``target`` in order (``stop()`` does not
        end this), unless ``over_budget()`` says so after one; then let time
        reach ``target``."""
        heap = self.heap
        pop = heapq.heappop
        while heap and heap[0][0] <= target:
            t, _, fn, args = pop(heap)
            self.now = t
            fn(*args)
            if over_budget():
                break
        self.now = max(self.now, target)
