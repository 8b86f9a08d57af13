"""The table-driven engine common to client and server transactions."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar

from proxy.transaction.fsm import (
    TIMER_EVENTS,
    Arm,
    ArmT2,
    Backoff,
    Disarm,
    Do,
    Table,
    TxEvent,
    lookup,
)
from proxy.transaction.outputs import Destination, TransactionOutput
from proxy.transaction.timers import DeadlineHeap, TimerName, TimerSettings

# Timers that only retransmit: they are never armed over reliable transports (RFC 3261
# §17.1.1.2, §17.1.2.2, §17.2.1: "only if unreliable transport").
RETRANSMIT_TIMERS = frozenset({TimerName.A, TimerName.E, TimerName.G})

TransactionKey = tuple[str, ...]


class Transaction:
    """State, timers and destination of one transaction; subclasses supply the table and
    the meaning of the `Do` effects."""

    __slots__ = (
        "_durations",
        "_forget",
        "_heap",
        "_intervals",
        "_settings",
        "armed",
        "context",
        "created",
        "destination",
        "key",
        "state",
    )

    MACHINE: ClassVar[str]
    TABLE: ClassVar[Table[Any]]
    INITIAL: ClassVar[Enum]
    TERMINATED: ClassVar[Enum]

    def __init__(
        self,
        key: TransactionKey,
        destination: Destination,
        *,
        now: float,
        heap: DeadlineHeap[TimerName],
        settings: TimerSettings,
        forget: Callable[[TransactionKey], object],
    ) -> None:
        """Create the transaction in its initial state; `forget` is called on termination."""
        self.key = key
        self.destination = destination
        self.state: Enum = self.INITIAL
        self.armed: dict[TimerName, int] = {}
        self.created = now
        self.context: object = None  # the TU's own record (the core's response context)
        self._heap = heap
        self._settings = settings
        self._forget = forget
        self._intervals: dict[TimerName, float] = {}
        self._durations = settings.durations(destination.reliable)

    @property
    def terminated(self) -> bool:
        """True once the transaction reached its Terminated state."""
        return self.state is self.TERMINATED

    def timer_fired(self, timer: TimerName, now: float) -> list[TransactionOutput]:
        """Feed the expiry of `timer` (called by the manager's deadline heap)."""
        out: list[TransactionOutput] = []
        self._fire(TIMER_EVENTS[timer], now, None, out)
        return out

    def transport_error(self, now: float) -> list[TransactionOutput]:
        """The transport layer could not deliver a message (RFC 3261 §17.1.4, §17.2.4)."""
        out: list[TransactionOutput] = []
        self._fire(TxEvent.TRANSPORT_ERROR, now, None, out)
        return out

    def _fire(self, event: TxEvent, now: float, msg: object, out: list[TransactionOutput]) -> None:
        """Run the table entry for `event`, then any timer that was armed with duration 0."""
        pending: list[TxEvent] = []
        while True:
            transition = lookup(self.MACHINE, self.TABLE, self.state, event)
            self.state = transition.next_state
            for effect in transition.effects:
                if isinstance(effect, Do):
                    self._do(effect, msg, out)
                else:
                    self._timer_effect(effect, now, pending)
            if self.state is self.TERMINATED:
                self.armed.clear()
                self._forget(self.key)
                return
            if not pending:
                return
            # Table 4: D, I, J and K are zero over reliable transports, i.e. the state is
            # left at once; the follow-up event carries no message.
            event = pending.pop(0)
            msg = None

    def _timer_effect(
        self, effect: Arm | Disarm | Backoff | ArmT2, now: float, pending: list[TxEvent]
    ) -> None:
        timer = effect.timer
        reliable = self.destination.reliable
        if isinstance(effect, Disarm):
            self.armed.pop(timer, None)
            return
        if reliable and timer in RETRANSMIT_TIMERS:
            return
        if isinstance(effect, Arm):
            duration = self._durations[timer]
            if duration <= 0:
                pending.append(TIMER_EVENTS[timer])
                return
        elif isinstance(effect, Backoff):
            duration = 2 * self._intervals.get(timer, self._settings.t1)
            if effect.cap:
                duration = min(duration, self._settings.t2)
        else:  # ArmT2
            duration = self._settings.t2
        self._intervals[timer] = duration
        self._heap.arm(self, timer, now + duration)

    def _do(self, effect: Do, msg: object, out: list[TransactionOutput]) -> None:
        raise NotImplementedError  # pragma: no cover - every subclass implements it
