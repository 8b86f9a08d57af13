"""Server transactions: INVITE (RFC 3261 Fig. 7, with RFC 6026's Accepted state) and
non-INVITE (Fig. 8), written as (state, event) tables.

The TU (the proxy core) hands each response in as bytes; the transaction sends it, keeps the
latest one to answer request retransmissions, and retransmits a non-2xx INVITE final on Timer
G until the ACK comes (unreliable transports). 2xx finals are never stored for retransmission
(RFC 6026): their retransmissions come from downstream and go up through the TU.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, ClassVar, cast

from proxy.transaction.base import Transaction, TransactionKey
from proxy.transaction.fsm import (
    Arm,
    Backoff,
    Disarm,
    Do,
    Table,
    Transition,
    TxEvent,
    response_event,
)
from proxy.transaction.outputs import (
    AckReceived,
    AckTimedOut,
    Destination,
    TransactionOutput,
    Transmit,
)
from proxy.transaction.timers import IdentityEnum, TimerName

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.sip.message import Request
    from proxy.transaction.timers import DeadlineHeap, TimerSettings

G, H, I, J, L = TimerName.G, TimerName.H, TimerName.I, TimerName.J, TimerName.L  # noqa: E741
Ev = TxEvent


class ServerInviteState(IdentityEnum):
    """States of the INVITE server transaction (RFC 3261 Fig. 7, RFC 6026 Fig. 5)."""

    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class ServerNonInviteState(IdentityEnum):
    """States of the non-INVITE server transaction (RFC 3261 Fig. 8)."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


_SI = ServerInviteState

INVITE_SERVER_TABLE: Table[ServerInviteState] = {
    # Proceeding: a retransmitted INVITE is answered with the latest provisional (§17.2.1).
    (_SI.PROCEEDING, Ev.REQUEST): Transition(_SI.PROCEEDING, (Do.RESEND_RESPONSE,)),
    (_SI.PROCEEDING, Ev.PROVISIONAL): Transition(_SI.PROCEEDING, (Do.SEND_RESPONSE,)),
    (_SI.PROCEEDING, Ev.SUCCESS): Transition(_SI.ACCEPTED, (Do.SEND_RESPONSE, Arm(L))),
    (_SI.PROCEEDING, Ev.FAILURE): Transition(_SI.COMPLETED, (Do.SEND_RESPONSE, Arm(G), Arm(H))),
    # An ACK before any final cannot belong to this INVITE's final: ignore it.
    (_SI.PROCEEDING, Ev.ACK): Transition(_SI.PROCEEDING),
    (_SI.PROCEEDING, Ev.TRANSPORT_ERROR): Transition(_SI.TERMINATED),
    # Completed: the non-2xx final is retransmitted until the hop-by-hop ACK is absorbed.
    (_SI.COMPLETED, Ev.REQUEST): Transition(_SI.COMPLETED, (Do.RESEND_RESPONSE,)),
    (_SI.COMPLETED, Ev.TIMER_G): Transition(
        _SI.COMPLETED, (Do.RESEND_RESPONSE, Backoff(G, cap=True))
    ),
    (_SI.COMPLETED, Ev.ACK): Transition(_SI.CONFIRMED, (Disarm(G), Disarm(H), Arm(I))),
    (_SI.COMPLETED, Ev.TIMER_H): Transition(_SI.TERMINATED, (Do.REPORT_ACK_TIMEOUT,)),
    # §16.7 step 10: a 2xx from downstream is forwarded even after a non-2xx final went up.
    (_SI.COMPLETED, Ev.SUCCESS): Transition(_SI.COMPLETED, (Do.FORWARD_RESPONSE,)),
    (_SI.COMPLETED, Ev.PROVISIONAL): Transition(_SI.COMPLETED),
    (_SI.COMPLETED, Ev.FAILURE): Transition(_SI.COMPLETED),
    (_SI.COMPLETED, Ev.TRANSPORT_ERROR): Transition(_SI.TERMINATED),
    # Confirmed absorbs ACK retransmissions until Timer I.
    (_SI.CONFIRMED, Ev.REQUEST): Transition(_SI.CONFIRMED),
    (_SI.CONFIRMED, Ev.ACK): Transition(_SI.CONFIRMED),
    (_SI.CONFIRMED, Ev.SUCCESS): Transition(_SI.CONFIRMED, (Do.FORWARD_RESPONSE,)),
    (_SI.CONFIRMED, Ev.PROVISIONAL): Transition(_SI.CONFIRMED),
    (_SI.CONFIRMED, Ev.FAILURE): Transition(_SI.CONFIRMED),
    (_SI.CONFIRMED, Ev.TIMER_I): Transition(_SI.TERMINATED),
    # RFC 6026 §8.7: Accepted absorbs INVITE retransmissions, passes ACKs to the TU and
    # lets the TU send every 2xx retransmission, until Timer L.
    (_SI.ACCEPTED, Ev.REQUEST): Transition(_SI.ACCEPTED),
    (_SI.ACCEPTED, Ev.ACK): Transition(_SI.ACCEPTED, (Do.DELIVER_ACK,)),
    (_SI.ACCEPTED, Ev.SUCCESS): Transition(_SI.ACCEPTED, (Do.FORWARD_RESPONSE,)),
    (_SI.ACCEPTED, Ev.PROVISIONAL): Transition(_SI.ACCEPTED),
    (_SI.ACCEPTED, Ev.FAILURE): Transition(_SI.ACCEPTED),
    (_SI.ACCEPTED, Ev.TIMER_L): Transition(_SI.TERMINATED),
}

_SN = ServerNonInviteState
_non_invite_final = (Do.SEND_RESPONSE, Arm(J))

NON_INVITE_SERVER_TABLE: Table[ServerNonInviteState] = {
    # Trying: retransmissions are absorbed until the TU has something to say (§17.2.2).
    (_SN.TRYING, Ev.REQUEST): Transition(_SN.TRYING),
    (_SN.TRYING, Ev.PROVISIONAL): Transition(_SN.PROCEEDING, (Do.SEND_RESPONSE,)),
    (_SN.TRYING, Ev.SUCCESS): Transition(_SN.COMPLETED, _non_invite_final),
    (_SN.TRYING, Ev.FAILURE): Transition(_SN.COMPLETED, _non_invite_final),
    (_SN.TRYING, Ev.TRANSPORT_ERROR): Transition(_SN.TERMINATED),
    # RFC 4320 §4.1: a proxy that cannot answer before the transaction expires sends no
    # 408 at all; the TU then abandons the transaction so it does not linger.
    (_SN.TRYING, Ev.ABANDONED): Transition(_SN.TERMINATED),
    (_SN.PROCEEDING, Ev.ABANDONED): Transition(_SN.TERMINATED),
    (_SN.PROCEEDING, Ev.REQUEST): Transition(_SN.PROCEEDING, (Do.RESEND_RESPONSE,)),
    (_SN.PROCEEDING, Ev.PROVISIONAL): Transition(_SN.PROCEEDING, (Do.SEND_RESPONSE,)),
    (_SN.PROCEEDING, Ev.SUCCESS): Transition(_SN.COMPLETED, _non_invite_final),
    (_SN.PROCEEDING, Ev.FAILURE): Transition(_SN.COMPLETED, _non_invite_final),
    (_SN.PROCEEDING, Ev.TRANSPORT_ERROR): Transition(_SN.TERMINATED),
    # Completed answers retransmissions with the final and ignores later TU responses.
    (_SN.COMPLETED, Ev.REQUEST): Transition(_SN.COMPLETED, (Do.RESEND_RESPONSE,)),
    (_SN.COMPLETED, Ev.PROVISIONAL): Transition(_SN.COMPLETED),
    (_SN.COMPLETED, Ev.SUCCESS): Transition(_SN.COMPLETED),
    (_SN.COMPLETED, Ev.FAILURE): Transition(_SN.COMPLETED),
    (_SN.COMPLETED, Ev.TIMER_J): Transition(_SN.TERMINATED),
    (_SN.COMPLETED, Ev.TRANSPORT_ERROR): Transition(_SN.TERMINATED),
}


class ServerTransaction(Transaction):
    """A server transaction: one request received from upstream and our answers to it."""

    __slots__ = ("final_status", "last_response", "method", "request")

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        destination: Destination,
        *,
        now: float,
        heap: DeadlineHeap[TimerName],
        settings: TimerSettings,
        forget: Callable[[TransactionKey], object],
    ) -> None:
        """Create the transaction for `request`, whose responses go to `destination`."""
        super().__init__(key, destination, now=now, heap=heap, settings=settings, forget=forget)
        self.request = request
        self.method = request.method
        self.last_response: bytes | None = None
        self.final_status: int | None = None  # the first final response sent, for logging

    def respond(self, status: int, data: bytes, now: float) -> list[TransactionOutput]:
        """Send a response with `status` whose wire form is `data` (from the TU)."""
        out: list[TransactionOutput] = []
        if status >= 200 and self.final_status is None:
            self.final_status = status
        self._fire(response_event(status), now, data, out)
        return out

    def receive_request(self, request: Request, now: float) -> list[TransactionOutput]:
        """Feed a retransmission of the request, or (INVITE) its ACK (RFC 3261 §17.2.3)."""
        out: list[TransactionOutput] = []
        event = TxEvent.ACK if request.method == "ACK" else TxEvent.REQUEST
        self._fire(event, now, request, out)
        return out

    def abandon(self, now: float) -> list[TransactionOutput]:
        """End an unanswered non-INVITE transaction silently (RFC 4320 §4.1)."""
        out: list[TransactionOutput] = []
        self._fire(TxEvent.ABANDONED, now, None, out)
        return out

    @property
    def answered(self) -> bool:
        """True once a final response was sent."""
        return self.final_status is not None

    def _do(self, effect: Do, msg: object, out: list[TransactionOutput]) -> None:
        if effect is Do.SEND_RESPONSE:
            self.last_response = cast(bytes, msg)
            out.append(Transmit(self.last_response, self.destination))
        elif effect is Do.FORWARD_RESPONSE:
            out.append(Transmit(cast(bytes, msg), self.destination))
        elif effect is Do.RESEND_RESPONSE:
            if self.last_response is not None:
                out.append(Transmit(self.last_response, self.destination))
        elif effect is Do.DELIVER_ACK:
            out.append(AckReceived(self, cast("Request", msg)))
        elif effect is Do.REPORT_ACK_TIMEOUT:
            out.append(AckTimedOut(self))


class InviteServerTransaction(ServerTransaction):
    """INVITE server transaction (RFC 3261 §17.2.1)."""

    __slots__ = ()
    MACHINE: ClassVar[str] = "INVITE server"
    TABLE: ClassVar[Table[ServerInviteState]] = INVITE_SERVER_TABLE
    INITIAL: ClassVar[Enum] = ServerInviteState.PROCEEDING
    TERMINATED: ClassVar[Enum] = ServerInviteState.TERMINATED


class NonInviteServerTransaction(ServerTransaction):
    """Non-INVITE server transaction (RFC 3261 §17.2.2)."""

    __slots__ = ()
    MACHINE: ClassVar[str] = "non-INVITE server"
    TABLE: ClassVar[Table[ServerNonInviteState]] = NON_INVITE_SERVER_TABLE
    INITIAL: ClassVar[Enum] = ServerNonInviteState.TRYING
    TERMINATED: ClassVar[Enum] = ServerNonInviteState.TERMINATED
