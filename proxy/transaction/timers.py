"""Transaction timer settings and the deadline heap (RFC 3261 §17, Table 4).

Nothing here reads a clock: callers hand `now` in and ask for the next deadline, as aioquic
does, so the shell arms exactly one timer and tests step a fake clock.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Generic, Protocol, TypeVar


class IdentityEnum(Enum):
    """An Enum hashed by identity (members are singletons and compare by identity anyway).

    Enum's own __hash__ is a Python-level `hash(self._name_)`; the transaction tables and
    timer dicts are looked up several times per message, so the C-level one matters.
    """

    __hash__ = object.__hash__


class TimerName(IdentityEnum):
    """The RFC 3261 transaction timers (Table 4), the proxy's Timer C (§16.6 step 11) and
    RFC 6026's Timers L and M (Accepted state)."""

    A = "A"  # INVITE request retransmit, unreliable transport only (§17.1.1.2)
    B = "B"  # INVITE transaction timeout (§17.1.1.2)
    C = "C"  # proxy INVITE transaction timeout (§16.6 step 11, §16.8)
    D = "D"  # wait time for response retransmits (§17.1.1.2)
    E = "E"  # non-INVITE request retransmit, unreliable only (§17.1.2.2)
    F = "F"  # non-INVITE transaction timeout (§17.1.2.2)
    G = "G"  # INVITE response retransmit, unreliable only (§17.2.1)
    H = "H"  # wait time for ACK receipt (§17.2.1)
    I = "I"  # wait time for ACK retransmits (§17.2.1)  # noqa: E741 - the RFC's name
    J = "J"  # wait time for non-INVITE request retransmits (§17.2.2)
    K = "K"  # wait time for response retransmits (§17.1.2.2)
    L = "L"  # wait time for accepted INVITE request retransmits (RFC 6026 §8.7)
    M = "M"  # wait time for retransmission of 2xx to INVITE (RFC 6026 §8.4)


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """T1, T2, T4 and Timer C in seconds (RFC 3261 Table 4 defaults; Timer C > 3 min, §16.6)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_c: float = 180.0

    def duration(self, name: TimerName, reliable: bool) -> float:
        """Initial duration of `name`; 0 means "fire at once" (reliable transports, Table 4)."""
        t1 = self.t1
        if name is TimerName.A or name is TimerName.E or name is TimerName.G:
            return t1
        if name is TimerName.B or name is TimerName.F or name is TimerName.H:
            return 64 * t1
        if name is TimerName.C:
            return self.timer_c
        if name is TimerName.D:
            # "at least 32 seconds for unreliable transports, zero for reliable" (Table 4)
            return 0.0 if reliable else max(32.0, 64 * t1)
        if name is TimerName.I or name is TimerName.K:
            return 0.0 if reliable else self.t4
        if name is TimerName.J:
            return 0.0 if reliable else 64 * t1
        # L and M: 64*T1 regardless of transport (RFC 6026 §8.4, §8.7)
        return 64 * t1

    def durations(self, reliable: bool) -> dict[TimerName, float]:
        """Every timer's initial duration for one kind of transport (a lookup table for the
        per-message path)."""
        return _durations(self, reliable)


@lru_cache(maxsize=32)
def _durations(settings: TimerSettings, reliable: bool) -> dict[TimerName, float]:
    return {name: settings.duration(name, reliable) for name in TimerName}


K = TypeVar("K")
# Below this many entries the heap is never compacted.
_COMPACT_MIN = 4096


class TimerOwner(Protocol[K]):
    """Anything that arms timers in a `DeadlineHeap`: it keeps the token of each armed timer."""

    armed: dict[K, int]


class DeadlineHeap(Generic[K]):
    """A heap of (deadline, owner, timer) with lazy cancellation.

    Cancelling a timer only drops it from the owner's `armed` dict; the stale heap entry is
    skipped when it reaches the top (Kamailio's tm/timer.h makes the same point: a stale
    timer must be harmless). Tokens are unique, so re-arming a timer invalidates older entries.
    """

    __slots__ = ("_counter", "_heap", "_limit")

    def __init__(self) -> None:
        """Create an empty heap."""
        self._heap: list[tuple[float, int, TimerOwner[K], K]] = []
        self._counter = itertools.count()
        self._limit = _COMPACT_MIN

    def __len__(self) -> int:
        """Number of entries, stale ones included."""
        return len(self._heap)

    def arm(self, owner: TimerOwner[K], name: K, when: float) -> None:
        """Arm (or re-arm) `owner`'s timer `name` to fire at `when`."""
        token = next(self._counter)
        owner.armed[name] = token
        heap = self._heap
        heapq.heappush(heap, (when, token, owner, name))
        if len(heap) > self._limit:
            self._compact()

    def _compact(self) -> None:
        """Drop the stale entries (a Timer C re-armed by every provisional leaves one that
        would otherwise sit for 180 s holding its transaction alive), then allow the heap to
        double again before the next pass: amortised O(1) per `arm`."""
        heap = self._heap
        heap[:] = [e for e in heap if e[2].armed.get(e[3]) == e[1]]
        heapq.heapify(heap)
        self._limit = max(_COMPACT_MIN, 2 * len(heap))

    @staticmethod
    def cancel(owner: TimerOwner[K], name: K) -> None:
        """Disarm `owner`'s timer `name`, if armed."""
        owner.armed.pop(name, None)

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is armed."""
        heap = self._heap
        while heap:
            when, token, owner, name = heap[0]
            if owner.armed.get(name) == token:
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> tuple[TimerOwner[K], K] | None:
        """Remove and return the earliest live timer due at or before `now`, or None.

        One at a time, so that a timer disarmed by the handler of an earlier one is seen as
        stale; the popped timer is disarmed before it is returned, so its handler may re-arm it.
        """
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, token, owner, name = heapq.heappop(heap)
            if owner.armed.get(name) == token:
                del owner.armed[name]
                return owner, name
        return None
