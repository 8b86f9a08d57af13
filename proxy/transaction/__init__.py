"""Sans-IO RFC 3261 §17 client and server transactions, time handed in.

The four state machines are tables in `client` and `server`; `TransactionManager` matches
messages to transactions and keeps one deadline heap for all of their timers.
"""

from proxy.transaction.client import (
    ClientInviteState,
    ClientNonInviteState,
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
)
from proxy.transaction.fsm import InvalidTransition, TxEvent
from proxy.transaction.manager import MAGIC_COOKIE, TransactionManager, client_key, server_key
from proxy.transaction.outputs import (
    AckReceived,
    AckTimedOut,
    Destination,
    ResponseReceived,
    TimedOut,
    TimerCFired,
    TransactionOutput,
    Transmit,
    TransportFailed,
)
from proxy.transaction.server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerInviteState,
    ServerNonInviteState,
    ServerTransaction,
)
from proxy.transaction.timers import DeadlineHeap, TimerName, TimerSettings

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "AckTimedOut",
    "ClientInviteState",
    "ClientNonInviteState",
    "ClientTransaction",
    "DeadlineHeap",
    "Destination",
    "InvalidTransition",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "ResponseReceived",
    "ServerInviteState",
    "ServerNonInviteState",
    "ServerTransaction",
    "TimedOut",
    "TimerCFired",
    "TimerName",
    "TimerSettings",
    "TransactionManager",
    "TransactionOutput",
    "Transmit",
    "TransportFailed",
    "TxEvent",
    "client_key",
    "server_key",
]
