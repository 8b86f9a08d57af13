"""The transaction-stateful proxy core (RFC 3261 §16): events in, actions out.

`ProxyCore.handle(event, now)` parses what the shell received, runs it through the
transaction layer and the §16 proxy logic, and returns the actions to perform. Nothing here
does I/O or reads a clock; `next_deadline()` tells the shell when to send `TimerFired`.

One request that is proxied statefully has a `ResponseContext` (§16.2's "response
context"): the server transaction upstream, the branches (client transactions) downstream,
what the routing and decision steps found out. sipguard does not fork, so a context has one
branch at a time; a second one exists only when a failed trunk is replaced by its backup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from proxy.core.actions import (
    Action,
    FetchCertificate,
    MessageDropped,
    Send,
    TransactionEnded,
    TrunkStateChanged,
)
from proxy.core.decision import Assessment, Continue, Origin, Reject, RequestStep
from proxy.core.events import (
    CertificateFetched,
    ConfigReloaded,
    ConnectionClosed,
    ConnectionFailed,
    DatagramReceived,
    DrainStarted,
    Event,
    StreamMessageReceived,
    TimerFired,
)
from proxy.core.monitor import TrunkHealth, build_ping, select_trunk
from proxy.core.overload import LoadGauge
from proxy.core.routing import (
    DEFAULT_PORTS,
    Hop,
    Routes,
    bare_host,
    called_number,
    hop_of_trunk,
)
from proxy.sip.errors import SipParseError
from proxy.sip.headers import Via, parse_name_addr
from proxy.sip.message import (
    Request,
    Response,
    build_reply_from_error,
    build_response,
    parse_message,
    reply_headers_of,
)
from proxy.sip.uri import SipUri
from proxy.sip.validate import check_request
from proxy.transaction import (
    AckReceived,
    ClientInviteState,
    ClientTransaction,
    DeadlineHeap,
    Destination,
    ResponseReceived,
    ServerTransaction,
    TimedOut,
    TimerCFired,
    TimerSettings,
    TransactionManager,
    TransactionOutput,
    Transmit,
    TransportFailed,
    server_key,
)

if TYPE_CHECKING:
    from proxy.config import Config, Trunk

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, UPDATE, INFO, PRACK, REFER, SUBSCRIBE, NOTIFY"
# Dialog-creating requests we stay on the path of (RFC 3261 §16.6 step 4; RFC 6665 for
# SUBSCRIBE/NOTIFY, RFC 3515 for REFER).
RECORD_ROUTE_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
# The headers a locally generated response copies (§8.2.6.2) plus Timestamp (§8.2.6.1).
_REPLY_KEYS = frozenset({"via", "from", "to", "call-id", "cseq", "timestamp"})
# Finals from a trunk after which a source's call may move on to the trunk's backup.
_FAILOVER_STATUSES = frozenset({408, 503})
# How long a request may wait for a certificate fetch before it is answered 504.
DEFER_TIMEOUT = 10.0
_DEFER = "defer"
_PING = "ping"
_COOKIE = "z9hG4bK"
_TRYING_START = b"SIP/2.0 100 Trying\r\n"
_TRYING_END = b"\r\nContent-Length: 0\r\n\r\n"


class Logger(Protocol):
    """The part of a structlog logger the core uses (injected, as h2 injects its logger)."""

    def debug(self, event: str, **kw: Any) -> Any:
        """Log at debug level."""

    def info(self, event: str, **kw: Any) -> Any:
        """Log at info level."""

    def warning(self, event: str, **kw: Any) -> Any:
        """Log at warning level."""


class NullLogger:
    """A logger that drops everything, so the core never tests `if logger`."""

    def debug(self, event: str, **kw: Any) -> None:
        """Drop."""

    def info(self, event: str, **kw: Any) -> None:
        """Drop."""

    def warning(self, event: str, **kw: Any) -> None:
        """Drop."""


@dataclass(frozen=True, slots=True)
class Inbound:
    """Where a message came from: transport, peer, our socket, connection and TLS subject."""

    transport: str
    remote: tuple[str, int]
    local: tuple[str, int]
    connection_id: int | None = None
    tls_subject: str | None = None


class Branch:
    """One downstream client transaction of a response context (RFC 3261 §16.6)."""

    __slots__ = ("cancel_pending", "cancelled", "size_fallback", "tx")

    def __init__(self, tx: ClientTransaction, *, size_fallback: bool = False) -> None:
        """Record the client transaction `tx`; `size_fallback` says it went over TCP only
        because the request was too large for UDP (RFC 3261 §18.1.1)."""
        self.tx = tx
        self.cancel_pending = False  # CANCEL asked for before any provisional (§9.1)
        self.cancelled = False
        self.size_fallback = size_fallback


class ResponseContext:
    """Everything the proxy keeps about one proxied request (RFC 3261 §16.2)."""

    __slots__ = (
        "armed",
        "assessment",
        "branches",
        "cancelled",
        "deferred",
        "fetched",
        "hop",
        "in_dialog",
        "inbound",
        "key_hash",
        "loop_hash",
        "max_forwards",
        "origin",
        "record_routes",
        "request",
        "server",
        "step_index",
        "tried",
        "trunk",
    )

    def __init__(
        self, server: ServerTransaction, request: Request, inbound: Inbound, origin: Origin
    ) -> None:
        """A context for `request`, answered through `server`."""
        self.server = server
        self.request = request
        self.inbound = inbound
        self.origin = origin
        self.assessment: Assessment | None = None
        self.trunk: str | None = origin.name if origin.kind == "trunk" else None
        self.hop: Hop | None = None
        self.branches: list[Branch] = []
        self.cancelled = False
        self.in_dialog = False
        self.max_forwards: int | None = None
        self.record_routes = 0
        self.step_index = 0
        self.deferred: str | None = None
        self.fetched: set[str] = set()
        self.tried: list[str] = []
        self.armed: dict[str, int] = {}
        self.key_hash = _hash("\x1f".join(server.key))
        # §16.3 step 4 / §16.6 step 8: computed once, on the request as received.
        self.loop_hash = _loop_hash(request)

    def branch_of(self, tx: ClientTransaction) -> Branch | None:
        """The branch whose client transaction is `tx`."""
        for branch in self.branches:
            if branch.tx is tx:
                return branch
        return None


def _hash(text: str, size: int = 8) -> str:
    return hashlib.blake2s(text.encode("utf-8", "surrogateescape"), digest_size=size).hexdigest()


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _timer_settings(config: Config) -> TimerSettings:
    timers = config.timers
    return TimerSettings(t1=timers.t1, t2=timers.t2, t4=timers.t4, timer_c=timers.timer_c)


class ProxyCore:
    """The sans-IO stateful proxy: `handle(event, now) -> list[Action]`, `next_deadline()`.

    `source_steps` run on initial requests from sources (policy, signing), `trunk_steps` on
    those from trunks (verification). `advertised` maps each transport to the (host, port)
    this worker puts in Via and Record-Route: with several workers, the worker's private
    port, so that responses, CANCELs and in-dialog requests reach the worker holding the
    transaction.
    """

    def __init__(
        self,
        config: Config,
        *,
        source_steps: Sequence[RequestStep] = (),
        trunk_steps: Sequence[RequestStep] = (),
        logger: Logger | None = None,
        advertised: Mapping[str, tuple[str, int]]
        | Iterable[tuple[str, tuple[str, int]]]
        | None = None,
    ) -> None:
        """Build the core for `config`; no timer runs before the first `handle` call."""
        self._advertised = list(
            advertised.items() if isinstance(advertised, Mapping) else advertised or ()
        )
        self._routes = Routes(config, self._advertised)
        self._tm = TransactionManager(_timer_settings(config))
        self._timers: DeadlineHeap[str] = DeadlineHeap()
        self._health = {trunk.name: TrunkHealth(trunk.name) for trunk in config.trunks}
        self._source_steps = tuple(source_steps)
        self._trunk_steps = tuple(trunk_steps)
        self._log: Logger = logger if logger is not None else NullLogger()
        self._started = False
        self._drain_deadline: float | None = None
        self._parked: dict[str, list[ResponseContext]] = {}
        # trunk address -> until when its large requests skip TCP (routing.tcp_refused_memory);
        # keyed by configured trunk addresses only, so it stays as small as the trunk list.
        self._tcp_refused: dict[tuple[str, int], float] = {}
        self._ping_seq = 0
        self._load = LoadGauge(period=config.routing.overload_period)
        self._shed = config.routing.overload_protection

    # -- public API --------------------------------------------------------------------

    @property
    def routes(self) -> Routes:
        """The indexed configuration in force."""
        return self._routes

    @property
    def transactions(self) -> TransactionManager:
        """The transaction layer (for tests and metrics)."""
        return self._tm

    @property
    def load(self) -> LoadGauge:
        """The overload gauge (its `overloaded` flag makes new INVITEs answered 503)."""
        return self._load

    def record_busy(self, start: float, end: float) -> None:
        """The shell spent [start, end] (time.time() seconds) on one event; see
        `proxy.core.overload`. While the worker is overloaded new INVITEs get 503."""
        self._overload_changed(self._load.record(start, end))

    def _note_invite(self, now: float, *, retransmission: bool) -> None:
        self._overload_changed(self._load.note_invite(now, retransmission))

    def _overload_changed(self, changed: bool | None) -> None:
        if changed is not None:
            self._log.warning(
                "overload.shedding" if changed else "overload.cleared",
                stretch_s=round(self._load.stretch, 3),
            )

    def busy(self) -> bool:
        """True while a request still waits for its final answer (a draining shell waits for
        False). Transactions lingering after their final (Timers I, J, L) do not count: they
        only absorb retransmissions, and waiting for them would stretch every drain to its
        deadline."""
        return any(not tx.answered for tx in self._tm._servers.values())

    def trunk_up(self, name: str) -> bool:
        """What the OPTIONS monitoring currently thinks of trunk `name`."""
        return self._health[name].up

    def trunk_states(self) -> dict[str, bool]:
        """Every trunk's monitored state, up (True) or down."""
        return {name: health.up for name, health in self._health.items()}

    def replace_steps(
        self, source_steps: Sequence[RequestStep], trunk_steps: Sequence[RequestStep]
    ) -> None:
        """Swap the decision steps (on reload); requests already parked keep their index."""
        self._source_steps = tuple(source_steps)
        self._trunk_steps = tuple(trunk_steps)

    def next_deadline(self) -> float | None:
        """When the shell must next send `TimerFired` (seconds since the epoch), or None.

        Before the first event it is 0.0 ("now"), so the trunk pings get scheduled.
        """
        if not self._started:
            return 0.0 if self._health else None
        first = self._tm.next_deadline()
        second = self._timers.next_deadline()
        if first is None:
            return second
        if second is None:
            return first
        return min(first, second)

    def handle(self, event: Event, now: float) -> list[Action]:
        """Process one event at time `now`; return the actions for the shell."""
        out: list[Action] = []
        if not self._started:
            self._start(now)
        if isinstance(event, DatagramReceived):
            self._on_data(event.data, Inbound("udp", event.remote, event.local), now, out)
        elif isinstance(event, StreamMessageReceived):
            inbound = Inbound(
                event.transport, event.remote, event.local, event.connection_id, event.tls_subject
            )
            self._on_data(event.data, inbound, now, out)
        elif isinstance(event, TimerFired):
            self._on_timers(now, out)
        elif isinstance(event, CertificateFetched):
            self._on_certificate(event.url, now, out)
        elif isinstance(event, ConfigReloaded):
            self._reload(event.config, now)
        elif isinstance(event, DrainStarted):
            self._drain_deadline = event.deadline
        elif isinstance(event, ConnectionClosed):
            # Nothing to forget: a response for a closed connection carries the Via address
            # too, and the shell opens a new connection there (RFC 3261 §18.2.2).
            pass
        elif isinstance(event, ConnectionFailed):
            self._on_connection_failed(event.transport, event.remote, now, out)
        return out

    # -- start, timers, configuration -------------------------------------------------

    def _start(self, now: float) -> None:
        self._started = True
        for health in self._health.values():
            trunk = self._routes.trunks[health.name]
            # The first ping waits one interval: a trunk is presumed up at start.
            self._timers.arm(health, _PING, now + trunk.options_interval)

    def _reload(self, config: Config, now: float) -> None:
        self._routes = Routes(config, self._advertised)
        self._tm.settings = _timer_settings(config)
        self._load.period = config.routing.overload_period
        self._shed = config.routing.overload_protection
        health: dict[str, TrunkHealth] = {}
        for trunk in config.trunks:
            state = self._health.pop(trunk.name, None)
            if state is None:
                state = TrunkHealth(trunk.name)
                self._timers.arm(state, _PING, now + trunk.options_interval)
            health[trunk.name] = state
        for gone in self._health.values():
            DeadlineHeap.cancel(gone, _PING)
        self._health = health

    def _on_timers(self, now: float, out: list[Action]) -> None:
        self._emit(self._tm.handle_timers(now), now, out)
        while (due := self._timers.pop_due(now)) is not None:
            owner, _ = due
            if isinstance(owner, TrunkHealth):
                self._ping(owner, now, out)
            elif isinstance(owner, ResponseContext):
                self._defer_expired(owner, now, out)

    def _ping(self, health: TrunkHealth, now: float, out: list[Action]) -> None:
        trunk = self._routes.trunks.get(health.name)
        if trunk is None:
            return
        self._ping_seq += 1
        data, branch = build_ping(self._routes, trunk, self._ping_seq)
        destination = Destination(trunk.transport, hop_of_trunk(trunk).address)
        tx, outputs = self._tm.create_client("OPTIONS", data, branch, destination, now)
        tx.context = health
        self._emit(outputs, now, out)
        self._timers.arm(health, _PING, now + trunk.options_interval)

    # -- receiving ---------------------------------------------------------------------

    def _on_data(self, data: bytes, inbound: Inbound, now: float, out: list[Action]) -> None:
        try:
            message = parse_message(data, max_size=self._routes.config.routing.max_message_size)
        except SipParseError as error:
            self._reply_to_unparseable(error, inbound, out)
            return
        try:
            if isinstance(message, Response):
                self._on_response(message, inbound, now, out)
            else:
                self._on_request(message, inbound, now, out)
        except SipParseError as error:
            # A header parsed lazily on the way turned out malformed.
            if isinstance(message, Request):
                error.method = message.method
                if error.reply_headers is None:
                    error.reply_headers = reply_headers_of(
                        (h.name, h.value) for h in message.headers
                    )
                self._reply_to_unparseable(error, inbound, out)
            else:
                out.append(MessageDropped("unparseable_response", inbound.remote))

    def _reply_to_unparseable(
        self, error: SipParseError, inbound: Inbound, out: list[Action]
    ) -> None:
        """Stateless 400 (or 505, 513, 416) with a Warning, or drop (issue 2 §1)."""
        reply = None if error.method == "ACK" else build_reply_from_error(error)
        if reply is None:
            out.append(MessageDropped("unparseable", inbound.remote))
            self._log.debug("sip.dropped", reason=error.reason, remote=inbound.remote)
            return
        out.append(
            Send(reply, inbound.transport, inbound.remote, inbound.connection_id, inbound.local)
        )

    def _on_request(
        self, request: Request, inbound: Inbound, now: float, out: list[Action]
    ) -> None:
        problem = check_request(request)
        if problem is not None:
            self._reply_to_unparseable(problem, inbound, out)
            return
        via = self._stamp_via(request, inbound)
        key = server_key(request, via=via)
        server = self._tm.find_server(request, key)
        if server is not None:
            # A retransmission, or the ACK of our non-2xx final (§17.2.3).
            if request.method == "INVITE" and not server.answered:
                self._note_invite(now, retransmission=True)
            self._emit(server.receive_request(request, now), now, out)
            return
        method = request.method
        if method == "ACK":
            self._forward_ack(request, key, inbound, now, out)
            return
        destination = self._response_destination(via, inbound)
        template = request.with_headers([h for h in request.headers if h.key in _REPLY_KEYS])
        server = self._tm.create_server(template, destination, now, key)
        if method == "CANCEL":
            self._on_cancel(request, server, now, out)
            return
        if method == "INVITE":
            self._note_invite(now, retransmission=False)
            if self._shed and self._load.overloaded and request.to.tag is None:
                # Shed load before it snowballs: a new call is refused at once (cheaper
                # than routing it), in-dialog requests and other calls' messages go on.
                self._reply(server, 503, now, out, reason="Overloaded", extra=self._retry_after())
                return
            # §16.2 / §17.2.1: the proxy answers 100 at once, which stops the upstream's
            # INVITE retransmissions while the call is routed and (maybe) policed.
            self._reply(server, 100, now, out)
        origin = self._routes.identify(inbound.transport, inbound.remote, inbound.tls_subject)
        context = ResponseContext(server, request, inbound, origin)
        server.context = context
        try:
            self._process(context, now, out)
        except SipParseError as error:
            # A header check_request does not cover was malformed: answer through the
            # transaction we opened, so that it ends (the 400 names the problem).
            warning = [("Warning", f"399 {self._routes.advertise} {_quoted(error.reason)}")]
            self._reply(server, error.status, now, out, context=context, extra=warning)

    def _stamp_via(self, request: Request, inbound: Inbound) -> Via:
        """Add received (and the rport value) to the top Via (§18.2.1, RFC 3581 §4)."""
        via = request.top_via
        ip = inbound.remote[0]
        rport = via.has_rport and via.rport is None
        if not rport and bare_host(via.host) == ip:
            return via
        params = dict(via.params)
        params["received"] = ip
        if rport:
            params["rport"] = str(inbound.remote[1])
        stamped = Via(via.protocol, via.transport, via.host, via.port, params)
        request.pop_first_value("Via")
        request.add("Via", str(stamped), first=True)
        return stamped

    @staticmethod
    def _response_destination(via: Via, inbound: Inbound) -> Destination:
        """Where responses to a request go (§18.2.2 with RFC 3581): the connection it came
        on for streams; for UDP the source address and, with rport, the source port."""
        host = inbound.remote[0]
        if inbound.transport == "udp":
            port = via.rport if via.rport is not None else (via.port or 5060)
            return Destination("udp", (host, port), None, inbound.local)
        port = via.port or DEFAULT_PORTS.get(inbound.transport, 5060)
        return Destination(inbound.transport, (host, port), inbound.connection_id, inbound.local)

    # -- the §16 request path ----------------------------------------------------------

    def _process(self, context: ResponseContext, now: float, out: list[Action]) -> None:
        """Validate (§16.3), pre-process routes (§16.4), pick the target (§16.5), run the
        decision steps, forward (§16.6)."""
        request = context.request
        server = context.server
        routes = self._routes
        method = request.method
        uri = request.uri
        local_host = bare_host(context.inbound.local[0])
        max_forwards = request.max_forwards
        context.max_forwards = max_forwards

        # OPTIONS for the proxy itself is a keepalive (§11); with Max-Forwards 0 the proxy
        # may answer it too (§16.3 step 3). Answered whoever asks: it reveals nothing.
        if method == "OPTIONS" and (
            max_forwards == 0
            or (
                isinstance(uri, SipUri)
                and uri.user is None
                and routes.is_us(uri, local_host)
                and request.get("Route") is None
            )
        ):
            if self._draining():
                self._reply_unavailable(context, now, out)
            else:
                extra = [("Allow", ALLOW), ("Accept", "application/sdp")]
                self._reply(server, 200, now, out, context=context, extra=extra)
            return
        if context.origin.kind == "unknown":
            # No open relay: only configured sources and trunks are proxied.
            self._reply(server, 403, now, out, context=context, reason="Unknown source")
            return
        if max_forwards == 0:
            self._reply(server, 483, now, out, context=context)  # §16.3 step 3
            return
        if self._looped(request, context.loop_hash):
            self._reply(server, 482, now, out, context=context)  # §16.3 step 4
            return
        required = request.get_all("Proxy-Require")
        if required:
            # §16.3 step 5: we support no extensions that need proxy support.
            unsupported = [("Unsupported", ", ".join(required))]
            self._reply(server, 420, now, out, context=context, extra=unsupported)
            return
        if method == "REGISTER":
            # A trunking proxy is no registrar (routing.register_requests: reject).
            self._reply(server, 405, now, out, context=context, extra=[("Allow", ALLOW)])
            return
        context.in_dialog = request.to.tag is not None
        if not context.in_dialog and self._draining():
            self._reply_unavailable(context, now, out)
            return
        route_transport = self._preprocess_routes(request, local_host)

        if context.in_dialog:
            hop = self._next_hop_in_dialog(request, route_transport)
            if hop is None:
                # Kamailio's status for a destination it will not or cannot resolve.
                self._reply(
                    server, 476, now, out, context=context, reason="Unresolvable destination"
                )
                return
            if context.trunk is None:
                context.trunk = hop.trunk
            self._forward(context, hop, now, out)
            return

        if request.get("Route") is not None:
            # A preloaded Route not naming us is never followed (no open relay).
            if routes.config.routing.preloaded_route == "reject":
                reason = "Preloaded Route not allowed"
                self._reply(server, 403, now, out, context=context, reason=reason)
                return
            request.remove("Route")
        origin = context.origin
        if origin.kind == "source":
            assert origin.name is not None
            trunk = select_trunk(routes, self._health, routes.sources[origin.name].trunk)
            if trunk is None:
                self._reply_no_trunk(context, now, out)
                return
            hop = hop_of_trunk(trunk)
            context.trunk = trunk.name
        else:
            assert origin.name is not None
            target = routes.pbx_for(origin.name, called_number(uri))
            if target is None:
                self._reply(server, 404, now, out, context=context, reason="No route")
                return
            hop = target[1]
        context.hop = hop
        if not self._run_steps(context, 0, now, out):
            return
        self._forward(context, hop, now, out)

    def _draining(self) -> bool:
        return self._drain_deadline is not None

    def _reply_unavailable(self, context: ResponseContext, now: float, out: list[Action]) -> None:
        self._reply(
            context.server,
            503,
            now,
            out,
            context=context,
            reason="Shutting down",
            extra=self._retry_after(),
        )

    def _reply_no_trunk(self, context: ResponseContext, now: float, out: list[Action]) -> None:
        self._reply(
            context.server,
            503,
            now,
            out,
            context=context,
            reason="No trunk available",
            extra=self._retry_after(),
        )

    def _retry_after(self) -> list[tuple[str, str]]:
        """Retry-After for our own 503s (§21.5.4); routing.retry_after 0 leaves it out."""
        retry = self._routes.config.routing.retry_after
        return [("Retry-After", str(retry))] if retry > 0 else []

    def _looped(self, request: Request, loop: str) -> bool:
        """§16.3 step 4: a Via of ours whose branch carries this request's loop hash."""
        hosts = self._routes.via_hosts
        if not any(h.key == "via" and any(x in h.value for x in hosts) for h in request.headers):
            return False  # cheap pre-check: most requests never passed through us
        for via in request.vias:
            branch = via.branch
            if (
                branch is not None
                and branch.endswith("." + loop)
                and self._routes.is_our_via(via.host, via.port)
            ):
                return True
        return False

    def _preprocess_routes(self, request: Request, local_host: str) -> str | None:
        """§16.4: undo a strict router's rewrite, then pop the Route entries naming us
        (two of them after a double Record-Route, RFC 5658).

        Returns the transport named by the last entry popped: with a double Record-Route
        it is the entry facing the next hop, so it says how to reach it (RFC 5658 §4).
        """
        routes = self._routes
        values = request.get_all("Route")
        if not values:
            return None
        uri = request.uri
        if isinstance(uri, SipUri) and uri.user is None and routes.is_us(uri, local_host):
            # The previous hop was a strict router: our Record-Route value (no user part)
            # went into the Request-URI and the real target is the last Route value.
            request.uri = parse_name_addr(values[-1]).uri
            request.remove("Route")
            for value in values[:-1]:
                request.add("Route", value)
            values = values[:-1]
        transport = None
        for _ in range(2):
            if not values:
                break
            route = parse_name_addr(values[0]).uri
            if not isinstance(route, SipUri) or not routes.is_us(route, local_host):
                break
            request.pop_first_value("Route")
            values.pop(0)
            transport = route.transport
        return transport

    def _next_hop_in_dialog(self, request: Request, transport: str | None) -> Hop | None:
        """The next hop of an in-dialog request: the top Route, else the Request-URI
        (§16.5, §16.6 steps 6-7, no DNS); `transport` is the one our popped Route named,
        used when the next hop's URI names none."""
        values = request.get_all("Route")
        if values:
            uri = parse_name_addr(values[0]).uri
            if isinstance(uri, SipUri) and not uri.lr:
                # §16.6 step 6: the next hop is a strict router: it gets the Route URI as
                # Request-URI and the old Request-URI goes to the end of the route set.
                request.pop_first_value("Route")
                request.add("Route", f"<{request.uri_text}>")
                request.uri = uri
            return self._routes.hop_of_uri(uri, transport)
        return self._routes.hop_of_uri(request.uri, transport)

    # -- decision steps ----------------------------------------------------------------

    def _run_steps(
        self, context: ResponseContext, start: int, now: float, out: list[Action]
    ) -> bool:
        """Run the decision steps from `start`; True when the request may be forwarded."""
        steps = self._source_steps if context.origin.kind == "source" else self._trunk_steps
        if start >= len(steps) or context.request.method in ("ACK", "CANCEL"):
            return True
        if context.assessment is None:
            context.assessment = Assessment()
        for index in range(start, len(steps)):
            decision = steps[index].decide(context.request, context.origin, context.assessment, now)
            if isinstance(decision, Continue):
                continue
            if isinstance(decision, Reject):
                self._reject(context, decision, now, out)
                return False
            url = decision.url
            if url in context.fetched:
                # The fetch came back and the step still cannot decide: give up rather
                # than fetch in a loop.
                self._reply(
                    context.server,
                    500,
                    now,
                    out,
                    context=context,
                    reason="Certificate unavailable",
                )
                return False
            context.step_index = index
            context.deferred = url
            parked = self._parked.setdefault(url, [])
            parked.append(context)
            if len(parked) == 1:
                out.append(FetchCertificate(url))  # once per URL, however many wait
            self._timers.arm(context, _DEFER, now + DEFER_TIMEOUT)
            return False
        return True

    def _reject(
        self, context: ResponseContext, reject: Reject, now: float, out: list[Action]
    ) -> None:
        text = f"{reject.rule_id}: {reject.text}"
        extra = [
            ("Reason", f"SIP;cause={reject.status};text={_quoted(text)}"),
            ("Warning", f"399 {self._routes.advertise} {_quoted(text)}"),
        ]
        self._reply(
            context.server,
            reject.status,
            now,
            out,
            context=context,
            reason=reject.reason_phrase,
            extra=extra,
        )

    def _on_certificate(self, url: str, now: float, out: list[Action]) -> None:
        for context in self._parked.pop(url, ()):
            DeadlineHeap.cancel(context, _DEFER)
            context.deferred = None
            if context.cancelled or context.server.answered or context.hop is None:
                continue
            context.fetched.add(url)
            if self._run_steps(context, context.step_index, now, out):
                self._forward(context, context.hop, now, out)

    def _defer_expired(self, context: ResponseContext, now: float, out: list[Action]) -> None:
        url = context.deferred
        if url is None:
            return
        waiting = self._parked.get(url, [])
        if context in waiting:
            waiting.remove(context)
        if not waiting:
            self._parked.pop(url, None)
        context.deferred = None
        if not context.server.answered:
            # 504: an external server (the certificate repository) did not answer in time.
            self._reply(
                context.server, 504, now, out, context=context, reason="Certificate fetch timed out"
            )

    # -- forwarding (§16.6) -----------------------------------------------------------

    def _forward(self, context: ResponseContext, hop: Hop, now: float, out: list[Action]) -> None:
        request = context.request
        max_forwards = context.max_forwards
        # §16.6 step 3: decrement Max-Forwards, or add it with 70.
        request.replace("Max-Forwards", "70" if max_forwards is None else str(max_forwards - 1))
        transport = hop.transport
        v6 = ":" in hop.address[0]
        branch = self._decorate(context, transport, v6)
        data = request.to_bytes()
        threshold = self._routes.config.routing.udp_mtu_threshold
        size_fallback = (
            transport == "udp"
            and hop.tcp_fallback
            and len(data) > threshold
            and self._tcp_refused.get(hop.address, 0.0) <= now
        )
        if size_fallback:
            # §18.1.1: a request larger than 1300 bytes (an Identity header does that)
            # goes over a congestion-controlled transport when the peer offers one.
            self._undecorate(context)
            transport = "tcp"
            branch = self._decorate(context, transport, v6)
            data = request.to_bytes()
        if hop.trunk is not None:
            context.tried.append(hop.trunk)
        destination = Destination(transport, hop.address)
        invite = request.method == "INVITE"
        tx, outputs = self._tm.create_client(
            request.method, data, branch, destination, now, request if invite else None
        )
        tx.context = context
        context.branches.append(Branch(tx, size_fallback=size_fallback))
        self._emit(outputs, now, out)

    def _on_connection_failed(
        self, transport: str, remote: tuple[str, int], now: float, out: list[Action]
    ) -> None:
        """The shell could not open a `transport` connection to `remote`: the requests it
        carried are lost. Client transactions towards it that have had no response yet
        (still Calling/Trying: a later connection failure says nothing of a request already
        answered) see a transport error, which the core treats as a 503 from that branch
        (RFC 3261 §17.1.4, §16.9): failover to the backup trunk, or an answer upstream,
        instead of waiting 64*T1 for Timer B. A branch that went over TCP only because of
        its size is retried over UDP instead (§18.1.1)."""
        # The transaction layer keeps no index by destination; this event is rare.
        lost = [
            tx
            for tx in self._tm._clients.values()
            if tx.state is tx.INITIAL
            and tx.destination.transport == transport
            and tx.destination.remote == remote
        ]
        for tx in lost:
            if tx.terminated:
                continue
            context = tx.context
            if isinstance(context, ResponseContext):
                branch = context.branch_of(tx)
                if (
                    branch is not None
                    and branch.size_fallback
                    and not context.cancelled
                    and not context.server.answered
                ):
                    self._retry_over_udp(context, branch, now, out)
                    continue
            self._emit(tx.transport_error(now), now, out)

    def _retry_over_udp(
        self, context: ResponseContext, failed: Branch, now: float, out: list[Action]
    ) -> None:
        """§18.1.1: a request sent over TCP only because of its size whose connection could
        not be made "SHOULD" be retried over UDP, the top Via changed to UDP. The TCP
        transaction ends quietly (its transport-error report is not acted on: this retry
        replaces it); the retry is a new branch, with our Via and Record-Route rewritten
        for UDP. RFC 3261 names a TCP reset; a silent port (timeout) is treated the same,
        since UDP is the trunk's configured transport and TCP was only our choice."""
        failed.tx.transport_error(now)
        request = context.request
        self._undecorate(context)
        remote = failed.tx.destination.remote
        memory = self._routes.config.routing.tcp_refused_memory
        if memory > 0:
            self._tcp_refused[remote] = now + memory
        branch = self._decorate(context, "udp", ":" in remote[0])
        destination = Destination("udp", remote)
        invite = request.method == "INVITE"
        tx, outputs = self._tm.create_client(
            request.method,
            request.to_bytes(),
            branch,
            destination,
            now,
            request if invite else None,
        )
        tx.context = context
        retry = Branch(tx)
        retry.cancel_pending = failed.cancel_pending
        context.branches.append(retry)
        self._log.info("transport.udp_retry", remote=destination.remote, tcp_skipped_for=memory)
        self._emit(outputs, now, out)

    def _decorate(self, context: ResponseContext, transport: str, v6: bool = False) -> str:
        """Add our Record-Route(s) (§16.6 step 4, RFC 5658) and Via (§16.6 step 8) for a
        next hop reached over `transport`, in the IPv6 family when `v6`."""
        request = context.request
        routes = self._routes
        context.record_routes = 0
        if not context.in_dialog and request.method in RECORD_ROUTE_METHODS:
            inbound = context.inbound
            in_port = routes.inbound_port(inbound.transport, inbound.local)
            in_v6 = ":" in inbound.local[0]
            out_port = routes.local_port(transport, v6)
            # The entry facing downstream goes on top; when the two sides differ in
            # transport, port or address family, the upstream-facing one goes under it
            # (RFC 5658 §4).
            if (inbound.transport, in_port, in_v6) != (transport, out_port, v6):
                request.add(
                    "Record-Route",
                    routes.record_route_value(inbound.transport, in_port, in_v6),
                    first=True,
                )
                context.record_routes += 1
            request.add(
                "Record-Route", routes.record_route_value(transport, out_port, v6), first=True
            )
            context.record_routes += 1
        # The branch hashes the upstream transaction key (so a retransmission or a CANCEL
        # maps to the same branch, §16.6 step 8, §16.10) plus the attempt number; the part
        # after the dot is the loop-detection hash of §16.3 step 4.
        attempt = len(context.branches)
        branch = f"{_COOKIE}sg{context.key_hash}{attempt:x}.{context.loop_hash}"
        request.add("Via", routes.via_value(transport, branch, v6), first=True)
        return branch

    def _undecorate(self, context: ResponseContext) -> None:
        """Remove what `_decorate` added, before the request is sent another way."""
        request = context.request
        request.pop_first_value("Via")
        for _ in range(context.record_routes):
            request.pop_first_value("Record-Route")
        context.record_routes = 0

    def _forward_ack(
        self,
        request: Request,
        key: tuple[str, ...],
        inbound: Inbound,
        now: float,
        out: list[Action],
    ) -> None:
        """Forward an ACK for a 2xx statelessly, along its route set (§16.11, §17.2.3:
        such an ACK matches no transaction of ours)."""
        origin = self._routes.identify(inbound.transport, inbound.remote, inbound.tls_subject)
        max_forwards = request.max_forwards
        if origin.kind == "unknown" or max_forwards == 0:
            out.append(MessageDropped("ack_refused", inbound.remote))
            return
        route_transport = self._preprocess_routes(request, bare_host(inbound.local[0]))
        hop = self._next_hop_in_dialog(request, route_transport)
        if hop is None:
            out.append(MessageDropped("ack_unroutable", inbound.remote))
            return
        request.replace("Max-Forwards", "70" if max_forwards is None else str(max_forwards - 1))
        # §16.11: a stateless branch must be the same for retransmissions of the ACK.
        branch = f"{_COOKIE}sga{_hash(chr(31).join(key))}"
        request.add(
            "Via", self._routes.via_value(hop.transport, branch, ":" in hop.address[0]), first=True
        )
        out.append(Send(request.to_bytes(), hop.transport, hop.address))

    # -- CANCEL (§16.10) ---------------------------------------------------------------

    def _on_cancel(
        self, cancel: Request, server: ServerTransaction, now: float, out: list[Action]
    ) -> None:
        invite = self._tm.find_invite_server(cancel)
        context = invite.context if invite is not None else None
        if not isinstance(context, ResponseContext):
            # §16.10 would forward it statelessly; with no transaction to cancel here (and
            # no open relay) the honest answer is 481.
            self._reply(server, 481, now, out)
            return
        self._reply(server, 200, now, out, context=context)
        if context.cancelled:
            return
        context.cancelled = True
        if context.deferred is not None:
            self._unpark(context)
        if not context.branches:
            # Nothing went downstream yet (parked for a certificate, or refused): answer.
            self._reply(context.server, 487, now, out, context=context)
            return
        for branch in context.branches:
            self._cancel_branch(branch, now, out)

    def _unpark(self, context: ResponseContext) -> None:
        url = context.deferred
        if url is None:
            return
        waiting = self._parked.get(url, [])
        if context in waiting:
            waiting.remove(context)
        DeadlineHeap.cancel(context, _DEFER)
        context.deferred = None

    def _cancel_branch(self, branch: Branch, now: float, out: list[Action]) -> None:
        tx = branch.tx
        if branch.cancelled or tx.terminated:
            return
        if tx.state is ClientInviteState.CALLING:
            branch.cancel_pending = True  # §9.1: wait for a provisional first
            return
        if tx.state is not ClientInviteState.PROCEEDING:
            return
        branch.cancelled = True
        branch.cancel_pending = False
        # The CANCEL reuses the INVITE's branch in its own transaction (§9.1).
        _, outputs = self._tm.create_client(
            "CANCEL", tx.build_cancel(), tx.key[0], tx.destination, now
        )
        self._emit(outputs, now, out)
        self._emit(tx.cancel_sent(now), now, out)

    # -- responses (§16.7) -------------------------------------------------------------

    def _on_response(
        self, response: Response, inbound: Inbound, now: float, out: list[Action]
    ) -> None:
        tx = self._tm.find_client(response)
        if tx is None:
            # Not ours, or a retransmission after the transaction ended (RFC 6026 §8.4
            # leaves stray 2xx to the Accepted state; past it there is nobody to tell).
            out.append(MessageDropped("stray_response", inbound.remote))
            return
        self._emit(tx.receive_response(response, now), now, out)

    def _on_branch_response(
        self, tx: ClientTransaction, response: Response, now: float, out: list[Action]
    ) -> None:
        context = tx.context
        status = response.status
        if isinstance(context, TrunkHealth):
            if status >= 200 and context.succeeded():
                out.append(TrunkStateChanged(context.name, True))
                self._log.info("trunk.up", trunk=context.name)
            return
        if not isinstance(context, ResponseContext):
            return  # the answer to one of our CANCELs
        if status < 200:
            branch = context.branch_of(tx)
            if branch is not None and branch.cancel_pending:
                self._cancel_branch(branch, now, out)
            if status == 100:
                return  # §16.7 step 5: a 100 is not forwarded
        # §16.7 step 3: remove our Via; a response with no Via left was meant for us.
        response.pop_first_value("Via")
        if response.get("Via") is None:
            return
        if status >= 300:
            if self._failover(context, status, now, out):
                return
            if status == 503:
                # §16.7 step 6: a downstream 503 must not make upstream think *we* are
                # unavailable; it goes up as 500.
                response.status = 500
                response.reason = "Server Internal Error"
        if context.assessment is not None:
            _add_upstream_headers(context.assessment, response)
        self._send_upstream(context, response.status, response.to_bytes(), now, out)

    def _on_branch_failed(
        self, tx: ClientTransaction, status: int, now: float, out: list[Action]
    ) -> None:
        """Timer B/F (or a transport error) ended a branch without a final response."""
        context = tx.context
        if isinstance(context, TrunkHealth):
            trunk = self._routes.trunks.get(context.name)
            threshold = trunk.options_failures if trunk is not None else 1
            if context.failed(threshold):
                out.append(TrunkStateChanged(context.name, False))
                self._log.warning("trunk.down", trunk=context.name, failures=context.failures)
            return
        if not isinstance(context, ResponseContext) or context.server.answered:
            return
        if self._failover(context, status, now, out):
            return
        if tx.method == "INVITE" or status != 408:
            # §16.7 step 1 / §16.8: the branch behaves as if it received a 408; §16.9: a
            # transport error as a 503, which the upstream, not timed out, still awaits.
            self._reply(context.server, status, now, out, context=context)
        else:
            # RFC 4320 §4.1: no 408 to a non-INVITE (the upstream has timed out by now
            # too); the outcome is still logged and the server transaction let go.
            self._ended(context.server, context, status, now, out)
            self._emit(context.server.abandon(now), now, out)

    def _on_timer_c(self, tx: ClientTransaction, now: float, out: list[Action]) -> None:
        """§16.8: Timer C after a provisional: CANCEL the branch, answer 408 upstream."""
        context = tx.context
        if not isinstance(context, ResponseContext):
            return
        branch = context.branch_of(tx)
        if branch is None or branch.cancelled:
            return
        self._cancel_branch(branch, now, out)
        if not context.server.answered:
            self._reply(context.server, 408, now, out, context=context)

    def _failover(
        self, context: ResponseContext, status: int, now: float, out: list[Action]
    ) -> bool:
        """Move a source's new call to the next trunk that is up, after a timeout or 503."""
        if (
            status not in _FAILOVER_STATUSES
            or context.origin.kind != "source"
            or context.in_dialog
            or context.cancelled
            or context.server.answered
            or context.origin.name is None
        ):
            return False
        trunk = self._next_trunk(context)
        if trunk is None:
            return False
        self._undecorate(context)
        hop = hop_of_trunk(trunk)
        context.trunk = trunk.name
        context.hop = hop
        self._log.info("trunk.failover", trunk=trunk.name, status=status)
        self._forward(context, hop, now, out)
        return True

    def _next_trunk(self, context: ResponseContext) -> Trunk | None:
        assert context.origin.name is not None
        routes = self._routes
        name: str | None = routes.sources[context.origin.name].trunk
        seen: set[str] = set()
        while name is not None and name not in seen:
            seen.add(name)
            trunk = routes.trunks[name]
            if name not in context.tried and self._health[name].up:
                return trunk
            name = trunk.backup
        return None

    def _send_upstream(
        self, context: ResponseContext, status: int, data: bytes, now: float, out: list[Action]
    ) -> None:
        server = context.server
        if server.terminated:
            if 200 <= status < 300:
                # RFC 6026: 2xx are forwarded even once the server transaction is gone.
                d = server.destination
                out.append(Send(data, d.transport, d.remote, d.connection_id, d.local))
            return
        first_final = status >= 200 and server.final_status is None
        self._emit(server.respond(status, data, now), now, out)
        if first_final:
            self._ended(server, context, status, now, out)

    # -- local responses ---------------------------------------------------------------

    def _reply(
        self,
        server: ServerTransaction,
        status: int,
        now: float,
        out: list[Action],
        *,
        context: ResponseContext | None = None,
        reason: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Answer through `server` with a response of our own (§8.2.6, §16.7)."""
        if server.terminated:
            return
        if status == 100 and not extra and reason is None:
            # The 100 Trying of every INVITE: the template holds exactly the headers it
            # copies (§8.2.6: Via, From, To without a tag, Call-ID, CSeq, Timestamp), so
            # their original lines are joined as they are.
            lines = [h.to_bytes() for h in server.request.headers]
            data = _TRYING_START + b"\r\n".join(lines) + _TRYING_END
            self._emit(server.respond(100, data, now), now, out)
            return
        to_tag = None if status == 100 else "sg" + _hash("\x1f".join(server.key), 5)
        response = build_response(server.request, status, reason, to_tag=to_tag, extra=extra)
        if context is not None and context.assessment is not None and server is context.server:
            _add_upstream_headers(context.assessment, response)
        first_final = status >= 200 and server.final_status is None
        self._emit(server.respond(status, response.to_bytes(), now), now, out)
        if first_final:
            self._ended(server, context, status, now, out)

    def _ended(
        self,
        server: ServerTransaction,
        context: ResponseContext | None,
        status: int,
        now: float,
        out: list[Action],
    ) -> None:
        origin = "unknown"
        trunk = None
        if context is not None:
            origin = context.origin.name or "unknown"
            trunk = context.trunk
        out.append(
            TransactionEnded(
                server.request.call_id, server.method, origin, trunk, status, now - server.created
            )
        )

    # -- transaction outputs -----------------------------------------------------------

    def _emit(self, outputs: list[TransactionOutput], now: float, out: list[Action]) -> None:
        """Turn what the transaction layer returned into actions and TU processing."""
        for output in outputs:
            if isinstance(output, Transmit):
                d = output.destination
                out.append(Send(output.data, d.transport, d.remote, d.connection_id, d.local))
            elif isinstance(output, ResponseReceived):
                self._on_branch_response(output.transaction, output.response, now, out)
            elif isinstance(output, TimedOut):
                self._on_branch_failed(output.transaction, 408, now, out)
            elif isinstance(output, TransportFailed):
                # §16.9: a transport error counts as a 503 from that branch.
                self._on_branch_failed(output.transaction, 503, now, out)
            elif isinstance(output, TimerCFired):
                self._on_timer_c(output.transaction, now, out)
            elif isinstance(output, AckReceived):
                context = output.transaction.context
                if isinstance(context, ResponseContext):
                    ack = output.request
                    self._forward_ack(ack, server_key(ack), context.inbound, now, out)
            # AckTimedOut: the upstream never ACKed our non-2xx; nothing left to do.


def _add_upstream_headers(assessment: Assessment, response: Response) -> None:
    """Add the decision steps' `upstream_headers` to a response going back towards the
    request's origin (docs/design.md, "Decision steps"; issue 4 §3 for the verification
    Reason). A Reason whose protocol the response already carries is left out: RFC 3326 §2
    allows one Reason per protocol (hence RFC 9410's own STIR protocol value)."""
    for name, value in assessment.upstream_headers:
        if name.lower() == "reason":
            protocol = _reason_protocol(value)
            if any(_reason_protocol(v) == protocol for v in response.get_all("Reason")):
                continue
        response.add(name, value)


def _reason_protocol(value: str) -> str:
    """The protocol token of a Reason value ("SIP", "Q.850", "STIR"), upper-cased."""
    return value.split(";", 1)[0].strip().upper()


def _loop_hash(request: Request) -> str:
    """The loop-detection hash of §16.3 step 4 / §16.6 step 8: the fields that stay the
    same when a request comes back to us (the top Via does not, so it is left out)."""
    text = "\x1f".join(
        (
            request.uri_text,
            request.from_.tag or "",
            request.to.tag or "",
            request.call_id,
            str(request.cseq.seq),
        )
    )
    return _hash(text, 5)
