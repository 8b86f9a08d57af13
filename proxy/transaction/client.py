"""Client transactions: INVITE (RFC 3261 Fig. 5, with RFC 6026's Accepted state) and
non-INVITE (Fig. 6), written as (state, event) tables.

The proxy core is the TU. Timer C (§16.6 step 11) lives in the INVITE table too: it is the
proxy's guard on a branch that stays in Proceeding, and keeping it beside Timers A/B/D
keeps all of the branch's time handling in one place.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, ClassVar, cast

from proxy.transaction.base import Transaction, TransactionKey
from proxy.transaction.fsm import (
    Arm,
    ArmT2,
    Backoff,
    Disarm,
    Do,
    Table,
    Transition,
    TxEvent,
    response_event,
)
from proxy.transaction.messages import build_ack, build_cancel
from proxy.transaction.outputs import (
    Destination,
    ResponseReceived,
    TimedOut,
    TimerCFired,
    TransactionOutput,
    Transmit,
    TransportFailed,
)
from proxy.transaction.timers import IdentityEnum, TimerName

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.sip.message import Request, Response
    from proxy.transaction.timers import DeadlineHeap, TimerSettings

A, B, C, D, E, F, K, M = (
    TimerName.A,
    TimerName.B,
    TimerName.C,
    TimerName.D,
    TimerName.E,
    TimerName.F,
    TimerName.K,
    TimerName.M,
)
Ev = TxEvent


class ClientInviteState(IdentityEnum):
    """States of the INVITE client transaction (RFC 3261 Fig. 5, RFC 6026 Fig. 3)."""

    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class ClientNonInviteState(IdentityEnum):
    """States of the non-INVITE client transaction (RFC 3261 Fig. 6)."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


_CI = ClientInviteState
_final_non2xx = (Disarm(A), Disarm(B), Disarm(C), Do.SEND_ACK, Arm(D), Do.DELIVER)
_final_2xx = (Disarm(A), Disarm(B), Disarm(C), Arm(M), Do.DELIVER)

INVITE_CLIENT_TABLE: Table[ClientInviteState] = {
    # Fig. 5: "INVITE from TU / INVITE sent"; Timer A only over unreliable transports.
    (_CI.CALLING, Ev.TU_REQUEST): Transition(
        _CI.CALLING, (Do.SEND_REQUEST, Arm(A), Arm(B), Arm(C))
    ),
    (_CI.CALLING, Ev.TIMER_A): Transition(_CI.CALLING, (Do.SEND_REQUEST, Backoff(A, cap=False))),
    (_CI.CALLING, Ev.TIMER_B): Transition(_CI.TERMINATED, (Do.REPORT_TIMEOUT,)),
    # §16.8: Timer C before any provisional -> behave as if a 408 was received.
    (_CI.CALLING, Ev.TIMER_C): Transition(_CI.TERMINATED, (Do.REPORT_TIMEOUT,)),
    # A provisional stops retransmissions and Timer B, and resets Timer C (§16.7 step 2).
    (_CI.CALLING, Ev.PROVISIONAL): Transition(
        _CI.PROCEEDING, (Disarm(A), Disarm(B), Arm(C), Do.DELIVER)
    ),
    (_CI.CALLING, Ev.SUCCESS): Transition(_CI.ACCEPTED, _final_2xx),
    (_CI.CALLING, Ev.FAILURE): Transition(_CI.COMPLETED, _final_non2xx),
    (_CI.CALLING, Ev.TRANSPORT_ERROR): Transition(_CI.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    (_CI.PROCEEDING, Ev.PROVISIONAL): Transition(_CI.PROCEEDING, (Arm(C), Do.DELIVER)),
    (_CI.PROCEEDING, Ev.SUCCESS): Transition(_CI.ACCEPTED, _final_2xx),
    (_CI.PROCEEDING, Ev.FAILURE): Transition(_CI.COMPLETED, _final_non2xx),
    (_CI.PROCEEDING, Ev.TIMER_C): Transition(_CI.PROCEEDING, (Do.REPORT_TIMER_C,)),
    # §9.1: a CANCELled INVITE whose final never comes is given up 64*T1 after the CANCEL;
    # Timer B, unused in Proceeding by Fig. 5, carries that guard.
    (_CI.PROCEEDING, Ev.CANCEL_SENT): Transition(_CI.PROCEEDING, (Arm(B),)),
    (_CI.PROCEEDING, Ev.TIMER_B): Transition(_CI.TERMINATED, (Disarm(C), Do.REPORT_TIMEOUT)),
    (_CI.PROCEEDING, Ev.TRANSPORT_ERROR): Transition(
        _CI.TERMINATED, (Disarm(C), Disarm(B), Do.REPORT_TRANSPORT_ERROR)
    ),
    # Completed: retransmitted finals are re-ACKed and absorbed; a 2xx from another fork
    # downstream still goes up (RFC 6026 §8.4 keeps 2xx with the TU).
    (_CI.COMPLETED, Ev.FAILURE): Transition(_CI.COMPLETED, (Do.SEND_ACK,)),
    (_CI.COMPLETED, Ev.PROVISIONAL): Transition(_CI.COMPLETED),
    (_CI.COMPLETED, Ev.SUCCESS): Transition(_CI.COMPLETED, (Do.DELIVER,)),
    (_CI.COMPLETED, Ev.CANCEL_SENT): Transition(_CI.COMPLETED),
    (_CI.COMPLETED, Ev.TIMER_D): Transition(_CI.TERMINATED),
    (_CI.COMPLETED, Ev.TRANSPORT_ERROR): Transition(_CI.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    # RFC 6026 §8.4: Accepted passes every 2xx retransmission to the TU (never absorbed).
    (_CI.ACCEPTED, Ev.SUCCESS): Transition(_CI.ACCEPTED, (Do.DELIVER,)),
    (_CI.ACCEPTED, Ev.PROVISIONAL): Transition(_CI.ACCEPTED),
    (_CI.ACCEPTED, Ev.FAILURE): Transition(_CI.ACCEPTED),
    (_CI.ACCEPTED, Ev.CANCEL_SENT): Transition(_CI.ACCEPTED),
    (_CI.ACCEPTED, Ev.TIMER_M): Transition(_CI.TERMINATED),
}

_CN = ClientNonInviteState
_non_invite_final = (Disarm(E), Disarm(F), Arm(K), Do.DELIVER)

NON_INVITE_CLIENT_TABLE: Table[ClientNonInviteState] = {
    (_CN.TRYING, Ev.TU_REQUEST): Transition(_CN.TRYING, (Do.SEND_REQUEST, Arm(E), Arm(F))),
    (_CN.TRYING, Ev.TIMER_E): Transition(_CN.TRYING, (Do.SEND_REQUEST, Backoff(E, cap=True))),
    (_CN.TRYING, Ev.TIMER_F): Transition(_CN.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (_CN.TRYING, Ev.PROVISIONAL): Transition(_CN.PROCEEDING, (Do.DELIVER,)),
    (_CN.TRYING, Ev.SUCCESS): Transition(_CN.COMPLETED, _non_invite_final),
    (_CN.TRYING, Ev.FAILURE): Transition(_CN.COMPLETED, _non_invite_final),
    (_CN.TRYING, Ev.TRANSPORT_ERROR): Transition(_CN.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    # §17.1.2.2: in Proceeding, Timer E is reset to T2 instead of doubling.
    (_CN.PROCEEDING, Ev.TIMER_E): Transition(_CN.PROCEEDING, (Do.SEND_REQUEST, ArmT2(E))),
    (_CN.PROCEEDING, Ev.TIMER_F): Transition(_CN.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (_CN.PROCEEDING, Ev.PROVISIONAL): Transition(_CN.PROCEEDING, (Do.DELIVER,)),
    (_CN.PROCEEDING, Ev.SUCCESS): Transition(_CN.COMPLETED, _non_invite_final),
    (_CN.PROCEEDING, Ev.FAILURE): Transition(_CN.COMPLETED, _non_invite_final),
    (_CN.PROCEEDING, Ev.TRANSPORT_ERROR): Transition(_CN.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    # Completed buffers response retransmissions for Timer K, then ends.
    (_CN.COMPLETED, Ev.PROVISIONAL): Transition(_CN.COMPLETED),
    (_CN.COMPLETED, Ev.SUCCESS): Transition(_CN.COMPLETED),
    (_CN.COMPLETED, Ev.FAILURE): Transition(_CN.COMPLETED),
    (_CN.COMPLETED, Ev.TIMER_K): Transition(_CN.TERMINATED),
}


class ClientTransaction(Transaction):
    """A client transaction: one request sent downstream and the responses it gets."""

    __slots__ = ("_ack", "data", "method", "request")

    def __init__(
        self,
        key: TransactionKey,
        method: str,
        data: bytes,
        destination: Destination,
        *,
        request: Request | None,
        now: float,
        heap: DeadlineHeap[TimerName],
        settings: TimerSettings,
        forget: Callable[[TransactionKey], object],
    ) -> None:
        """Create the transaction for `data` (the wire form); `start` sends it.

        `request` is the parsed form, needed by INVITE transactions to build the ACK and
        the CANCEL (RFC 3261 §17.1.1.3, §9.1); requests the core builds itself (OPTIONS
        pings, CANCELs) may leave it out.
        """
        super().__init__(key, destination, now=now, heap=heap, settings=settings, forget=forget)
        self.request = request
        self.data = data
        self.method = method
        self._ack: bytes | None = None

    def start(self, now: float) -> list[TransactionOutput]:
        """Send the request and arm the transaction's timers."""
        out: list[TransactionOutput] = []
        self._fire(TxEvent.TU_REQUEST, now, None, out)
        return out

    def receive_response(self, response: Response, now: float) -> list[TransactionOutput]:
        """Feed a response that matched this transaction (RFC 3261 §17.1.3)."""
        out: list[TransactionOutput] = []
        self._fire(response_event(response.status), now, response, out)
        return out

    def build_cancel(self) -> bytes:
        """The CANCEL for this INVITE (RFC 3261 §9.1); the caller sends it in its own
        non-INVITE client transaction and then calls `cancel_sent`."""
        if self.request is None:
            raise ValueError("a CANCEL needs the INVITE it cancels")
        return build_cancel(self.request)

    def cancel_sent(self, now: float) -> list[TransactionOutput]:
        """Tell the INVITE transaction a CANCEL went out, which arms the §9.1 guard."""
        out: list[TransactionOutput] = []
        self._fire(TxEvent.CANCEL_SENT, now, None, out)
        return out

    def _do(self, effect: Do, msg: object, out: list[TransactionOutput]) -> None:
        if effect is Do.SEND_REQUEST:
            out.append(Transmit(self.data, self.destination))
        elif effect is Do.DELIVER:
            out.append(ResponseReceived(self, cast("Response", msg)))
        elif effect is Do.SEND_ACK:
            if self._ack is None and self.request is not None:
                self._ack = build_ack(self.request, cast("Response", msg))
            if self._ack is not None:
                out.append(Transmit(self._ack, self.destination))
        elif effect is Do.REPORT_TIMEOUT:
            out.append(TimedOut(self))
        elif effect is Do.REPORT_TIMER_C:
            out.append(TimerCFired(self))
        elif effect is Do.REPORT_TRANSPORT_ERROR:
            out.append(TransportFailed(self))


class InviteClientTransaction(ClientTransaction):
    """INVITE client transaction (RFC 3261 §17.1.1)."""

    __slots__ = ()
    MACHINE: ClassVar[str] = "INVITE client"
    TABLE: ClassVar[Table[ClientInviteState]] = INVITE_CLIENT_TABLE
    INITIAL: ClassVar[Enum] = ClientInviteState.CALLING
    TERMINATED: ClassVar[Enum] = ClientInviteState.TERMINATED


class NonInviteClientTransaction(ClientTransaction):
    """Non-INVITE client transaction (RFC 3261 §17.1.2)."""

    __slots__ = ()
    MACHINE: ClassVar[str] = "non-INVITE client"
    TABLE: ClassVar[Table[ClientNonInviteState]] = NON_INVITE_CLIENT_TABLE
    INITIAL: ClassVar[Enum] = ClientNonInviteState.TRYING
    TERMINATED: ClassVar[Enum] = ClientNonInviteState.TERMINATED
