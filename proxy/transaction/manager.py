"""The transaction layer: matching (RFC 3261 §17.1.3, §17.2.3), creation, and one deadline
heap for every transaction timer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.transaction.base import TransactionKey
from proxy.transaction.client import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
)
from proxy.transaction.server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)
from proxy.transaction.timers import DeadlineHeap, TimerName, TimerSettings

if TYPE_CHECKING:
    from proxy.sip.headers import Via
    from proxy.sip.message import Request, Response
    from proxy.transaction.outputs import Destination, TransactionOutput

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: marks a branch as globally unique


def server_key(
    request: Request, method: str | None = None, *, via: Via | None = None
) -> TransactionKey:
    """The key a request's server transaction is filed under (RFC 3261 §17.2.3).

    With an RFC 3261 branch: branch, sent-by and method, where ACK counts as INVITE (it
    matches the INVITE transaction it acknowledges). Without the magic cookie (RFC 2543
    peers) a simplified §17.2.3 fallback: Request-URI, From tag, Call-ID, CSeq number and
    top Via sent-by. `method` overrides the request's own (a CANCEL looks up its INVITE).
    Only the fields a proxy never edits (not received/rport) go in, so the key computed
    before and after adding them is the same; hence a caller holding the top Via already
    (stamped or not) may pass it as `via` instead of having it parsed again.
    """
    if via is None:
        via = request.top_via
    if method is None:
        method = request.method
        if method == "ACK":
            method = "INVITE"
    branch = via.branch
    port = "" if via.port is None else str(via.port)
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host, port, method)
    return (
        "2543",
        request.uri_text,
        request.from_.tag or "",
        request.call_id,
        str(request.cseq.seq),
        via.host,
        port,
        method,
    )


def top_branch(response: Response) -> str | None:
    """The branch of a response's top Via (RFC 3261 §17.1.3), read without parsing the Via
    when it is written plainly (`;branch=` in the first value of the first Via line, as every
    Via of ours is); anything else goes through the full Via parser."""
    value = response.get("Via")
    if value is None:
        return response.top_via.branch  # raises MissingHeader
    start = value.find(";branch=")
    comma = value.find(",")
    if start < 0 or (0 <= comma < start) or '"' in value:
        return response.top_via.branch
    start += 8
    end = len(value)
    for stop in (";", ",", " ", "\t"):
        index = value.find(stop, start)
        if 0 <= index < end:
            end = index
    return value[start:end] or None


def client_key(branch: str, method: str) -> TransactionKey:
    """The key of a client transaction: our own branch and the method (RFC 3261 §17.1.3)."""
    return (branch, method)


class TransactionManager:
    """Every live transaction of one proxy instance, and their timers."""

    __slots__ = ("_clients", "_heap", "_servers", "settings")

    def __init__(self, settings: TimerSettings) -> None:
        """Create an empty transaction layer using `settings` for new transactions."""
        self.settings = settings
        self._heap: DeadlineHeap[TimerName] = DeadlineHeap()
        self._servers: dict[TransactionKey, ServerTransaction] = {}
        self._clients: dict[TransactionKey, ClientTransaction] = {}

    @property
    def server_count(self) -> int:
        """Number of live server transactions."""
        return len(self._servers)

    @property
    def client_count(self) -> int:
        """Number of live client transactions."""
        return len(self._clients)

    # -- server side -------------------------------------------------------------------

    def find_server(
        self, request: Request, key: TransactionKey | None = None
    ) -> ServerTransaction | None:
        """The server transaction a request (a retransmission or an ACK) belongs to."""
        return self._servers.get(server_key(request) if key is None else key)

    def find_invite_server(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (RFC 3261 §9.2, §16.10)."""
        return self._servers.get(server_key(cancel, "INVITE"))

    def create_server(
        self,
        request: Request,
        destination: Destination,
        now: float,
        key: TransactionKey | None = None,
    ) -> ServerTransaction:
        """Open the server transaction for a new request (not ACK, which has none)."""
        if key is None:
            key = server_key(request)
        cls = InviteServerTransaction if request.method == "INVITE" else NonInviteServerTransaction
        tx = cls(
            key,
            request,
            destination,
            now=now,
            heap=self._heap,
            settings=self.settings,
            forget=self._forget_server,
        )
        self._servers[key] = tx
        return tx

    def _forget_server(self, key: TransactionKey) -> None:
        self._servers.pop(key, None)

    # -- client side -------------------------------------------------------------------

    def find_client(self, response: Response) -> ClientTransaction | None:
        """The client transaction a response matches: top Via branch and CSeq method."""
        branch = top_branch(response)
        if branch is None:
            return None
        return self._clients.get((branch, response.cseq.method))

    def client(self, branch: str, method: str) -> ClientTransaction | None:
        """The client transaction with our `branch` for `method`, if still live."""
        return self._clients.get((branch, method))

    def create_client(
        self,
        method: str,
        data: bytes,
        branch: str,
        destination: Destination,
        now: float,
        request: Request | None = None,
    ) -> tuple[ClientTransaction, list[TransactionOutput]]:
        """Open a client transaction for a request of `method` (wire form `data`, our top
        Via branch `branch`) and start it: the first output sends the request. INVITEs
        pass the parsed `request`, from which the ACK and CANCEL are built."""
        key = client_key(branch, method)
        cls = InviteClientTransaction if method == "INVITE" else NonInviteClientTransaction
        tx = cls(
            key,
            method,
            data,
            destination,
            request=request,
            now=now,
            heap=self._heap,
            settings=self.settings,
            forget=self._forget_client,
        )
        self._clients[key] = tx
        return tx, tx.start(now)

    def _forget_client(self, key: TransactionKey) -> None:
        self._clients.pop(key, None)

    # -- time --------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time `handle_timers` has work to do, or None."""
        return self._heap.next_deadline()

    def handle_timers(self, now: float) -> list[TransactionOutput]:
        """Fire every timer due at `now`, in deadline order."""
        out: list[TransactionOutput] = []
        heap = self._heap
        while (due := heap.pop_due(now)) is not None:
            tx, timer = due
            if isinstance(tx, ServerTransaction | ClientTransaction):
                out.extend(tx.timer_fired(timer, now))
        return out
