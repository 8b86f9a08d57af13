"""Who sent a request, where it goes, and the addresses the proxy puts in Via and
Record-Route (RFC 3261 §16.4-§16.6, RFC 5658).

Built once per configuration; lookups on the per-message path are dict/set reads and a
short scan of the sources' networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from proxy.core.decision import Origin
from proxy.sip.uri import SipUri, TelUri

if TYPE_CHECKING:
    from proxy.config import Config, PbxTarget, Source, Trunk
    from proxy.sip.uri import Uri

Address = tuple[str, int]
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
VIA_TRANSPORT = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}


@lru_cache(maxsize=4096)
def is_ip_literal(host: str) -> bool:
    """True for an IPv4 or (bracketed or bare) IPv6 address, False for a host name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def bare_host(host: str) -> str:
    """Lower-case host without IPv6 brackets, for comparisons and socket addresses."""
    return host.strip("[]").lower()


def _is_v6(host: str) -> bool:
    """True for an IPv6 address (bare or bracketed); host names count as IPv4 peers."""
    return ":" in host


def uri_host(host: str) -> str:
    """A host as written in a URI or Via: IPv6 addresses go in brackets (RFC 3261 §25.1)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True, slots=True)
class Hop:
    """The next hop of a request: transport, address, and what we know about the peer.

    `trunk` names the trunk when the hop is one; `tcp_fallback` says a request too large for
    UDP may go over TCP instead (RFC 3261 §18.1.1), which a trunk marked udp_only refuses.
    """

    transport: str
    host: str
    port: int
    trunk: str | None = None
    tcp_fallback: bool = False

    @property
    def address(self) -> Address:
        """(host, port) for the shell, host without brackets."""
        return (bare_host(self.host), self.port)


def hop_of_trunk(trunk: Trunk) -> Hop:
    """The hop that reaches `trunk`."""
    return Hop(
        trunk.transport,
        trunk.host,
        trunk.port,
        trunk=trunk.name,
        tcp_fallback=trunk.transport == "udp" and not trunk.udp_only,
    )


def hop_of_pbx(pbx: PbxTarget) -> Hop:
    """The hop that reaches a source's PBX."""
    return Hop(pbx.transport, pbx.host, pbx.port)


class Routes:
    """The configuration, indexed for the per-message path."""

    __slots__ = (
        "_advertised",
        "_origins",
        "_peer_hosts",
        "_rr_values",
        "_sent_by",
        "_sources",
        "_trunk_by_address",
        "_trunk_by_host",
        "_via_prefixes",
        "advertise",
        "config",
        "our_hosts",
        "our_ports",
        "sources",
        "trunks",
        "via_hosts",
    )

    def __init__(
        self,
        config: Config,
        advertised: Mapping[str, Address] | Iterable[tuple[str, Address]] | None = None,
    ) -> None:
        """Index `config`.

        `advertised` gives, per transport (and per address family: a worker may listen on
        IPv4 and IPv6), the (host, port) this worker puts in Via and Record-Route; with
        several workers that is the worker's private port, so that responses, CANCELs and
        in-dialog requests come back to the worker holding the transaction (issue 2 §5).
        Without it, the listeners and `config.advertise` are used.
        """
        self.config = config
        wildcard = {"0.0.0.0", "::"}
        listen_hosts = [bare_host(listener.host) for listener in config.listen]
        pairs = list(advertised.items() if isinstance(advertised, Mapping) else advertised or ())
        advertise = config.advertise
        if advertise is None:
            candidates = [bare_host(a[0]) for _, a in pairs] + listen_hosts
            advertise = next((h for h in candidates if h not in wildcard), "127.0.0.1")
        self.advertise = uri_host(bare_host(advertise))
        # A Via or Record-Route must name us in the family of the peer it is sent to: an
        # IPv6-only trunk cannot answer an IPv4 sent-by (RFC 3261 §18.2.2).
        by_family: dict[bool, str] = {_is_v6(bare_host(advertise)): self.advertise}
        for host in [bare_host(a[0]) for _, a in pairs] + listen_hosts:
            if host not in wildcard:
                by_family.setdefault(_is_v6(host), uri_host(host))
        self._advertised: dict[tuple[str, bool], Address] = {}
        self._sent_by: dict[tuple[str, bool], tuple[str, int]] = {}
        for transport, (host, port) in pairs:
            host = bare_host(host)
            v6 = _is_v6(host)
            self._advertised.setdefault((transport, v6), (host, port))
            self._sent_by.setdefault(
                (transport, v6),
                (by_family.get(v6, self.advertise) if host in wildcard else uri_host(host), port),
            )
        for listener in config.listen:
            v6 = _is_v6(bare_host(listener.host))
            self._sent_by.setdefault(
                (listener.transport, v6), (by_family.get(v6, self.advertise), listener.port)
            )
        self.our_hosts = {bare_host(advertise), *listen_hosts} - wildcard
        self.our_hosts.update(bare_host(host) for host, _ in self._sent_by.values())
        self.our_ports = {listener.port for listener in config.listen}
        self.our_ports.update(port for _, port in self._sent_by.values())
        self.via_hosts = tuple({host for host, _ in self._sent_by.values()} | {self.advertise})
        self.trunks: dict[str, Trunk] = {trunk.name: trunk for trunk in config.trunks}
        self.sources: dict[str, Source] = {source.name: source for source in config.sources}
        self._sources = [
            (tuple(ipaddress.ip_network(a, strict=False) for a in source.addresses), source)
            for source in config.sources
        ]
        self._trunk_by_address: dict[Address, Trunk] = {}
        self._trunk_by_host: dict[str, Trunk] = {}
        for trunk in config.trunks:
            host = bare_host(trunk.host)
            self._trunk_by_address.setdefault((host, trunk.port), trunk)
            self._trunk_by_host.setdefault(host, trunk)
        self._origins: dict[tuple[str, Address, str | None], Origin] = {}
        # The strings we add to every forwarded request, rendered once per configuration.
        self._via_prefixes: dict[tuple[str, bool], str] = {}
        self._rr_values: dict[tuple[str, int, bool], str] = {}
        self._peer_hosts = set(self._trunk_by_host)
        for source in config.sources:
            if source.pbx is not None:
                self._peer_hosts.add(bare_host(source.pbx.host))

    # -- who is talking ----------------------------------------------------------------

    def identify(self, transport: str, remote: Address, tls_subject: str | None) -> Origin:
        """Classify the sender (RFC 3261 leaves this to policy; no open relay here).

        A trunk's exact address wins (on a lab host a trunk and a source may share an IP),
        then a source whose network, transport and TLS subject match, then a trunk by IP.
        Answers are cached per (transport, address, subject): peers are few and stable.
        """
        cache_key = (transport, remote, tls_subject)
        origin = self._origins.get(cache_key)
        if origin is None:
            if len(self._origins) >= 4096:
                self._origins.clear()  # a crude bound against address-scanning floods
            origin = self._origins[cache_key] = self._identify(transport, remote, tls_subject)
        return origin

    def _identify(self, transport: str, remote: Address, tls_subject: str | None) -> Origin:
        ip = bare_host(remote[0])
        trunk = self._trunk_by_address.get((ip, remote[1]))
        if trunk is not None:
            return Origin("trunk", trunk.name, transport, remote, tls_subject)
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            address = None
        if address is not None:
            for networks, source in self._sources:
                if transport not in source.transports:
                    continue
                if source.tls_subject is not None and source.tls_subject != tls_subject:
                    continue
                if any(address in network for network in networks):
                    return Origin("source", source.name, transport, remote, tls_subject)
        trunk = self._trunk_by_host.get(ip)
        if trunk is not None:
            return Origin("trunk", trunk.name, transport, remote, tls_subject)
        return Origin("unknown", None, transport, remote, tls_subject)

    # -- our own addresses -------------------------------------------------------------

    def is_us(self, uri: Uri, local_host: str | None = None) -> bool:
        """True when `uri` names this proxy (a host of ours and one of our ports)."""
        if not isinstance(uri, SipUri):
            return False
        host = bare_host(uri.host)
        if host not in self.our_hosts and host != local_host:
            return False
        port = uri.port
        if port is None:
            port = 5061 if uri.scheme == "sips" or uri.transport == "tls" else 5060
        return port in self.our_ports

    def is_our_via(self, host: str, port: int | None) -> bool:
        """True when a Via sent-by is one of ours (loop detection, RFC 3261 §16.3 step 4)."""
        return bare_host(host) in self.our_hosts and (port or 5060) in self.our_ports

    def sent_by(self, transport: str, v6: bool = False) -> tuple[str, int]:
        """The (host, port) we put in Via and Record-Route for `transport` towards a peer of
        that address family (`v6`)."""
        sent_by = self._sent_by.get((transport, v6)) or self._sent_by.get((transport, not v6))
        if sent_by is None:
            # No listener of that transport: name the first one we have.
            sent_by = next(iter(self._sent_by.values()), (self.advertise, 5060))
        return sent_by

    def local_port(self, transport: str, v6: bool = False) -> int:
        """The port we advertise for requests we send over `transport`."""
        return self.sent_by(transport, v6)[1]

    def inbound_port(self, transport: str, local: Address) -> int:
        """The port that names the side a request came in on, for Record-Route: this
        worker's advertised port for that transport, else the socket it arrived on."""
        advertised = self._advertised.get((transport, _is_v6(local[0])))
        return advertised[1] if advertised is not None else local[1]

    def via_value(self, transport: str, branch: str, v6: bool = False) -> str:
        """Our Via (RFC 3261 §16.6 step 8); `rport` asks the next hop to answer to the
        source port it saw (RFC 3581), which keeps NATs between us and a trunk working."""
        prefix = self._via_prefixes.get((transport, v6))
        if prefix is None:
            host, port = self.sent_by(transport, v6)
            prefix = f"SIP/2.0/{VIA_TRANSPORT[transport]} {host}:{port};branch="
            self._via_prefixes[(transport, v6)] = prefix
        return prefix + branch + ";rport"

    def record_route_value(self, transport: str, port: int, v6: bool = False) -> str:
        """One Record-Route entry naming this proxy on `transport`/`port` (loose routing)."""
        value = self._rr_values.get((transport, port, v6))
        if value is None:
            host = self.sent_by(transport, v6)[0]
            value = f"<sip:{host}:{port};transport={transport};lr>"
            if len(self._rr_values) < 64:  # ports come from our own sockets: few
                self._rr_values[(transport, port, v6)] = value
        return value

    # -- where requests go -------------------------------------------------------------

    def pbx_for(self, trunk_name: str, called: str | None) -> tuple[Source, Hop] | None:
        """The PBX an inbound call from `trunk_name` goes to: the longest configured prefix of
        the called number, else the trunk's default; None when neither gives a PBX."""
        inbound = self.trunks[trunk_name].inbound
        target = inbound.default_pbx
        best = -1
        if called:
            for route in inbound.routes:
                if len(route.prefix) > best and called.startswith(route.prefix):
                    best = len(route.prefix)
                    target = route.pbx
        if target is None:
            return None
        source = self.sources[target]
        if source.pbx is None:
            return None
        return source, hop_of_pbx(source.pbx)

    def trunk_at(self, host: str, port: int) -> Trunk | None:
        """The trunk at an address, if any (for in-dialog hops and logging)."""
        host = bare_host(host)
        return self._trunk_by_address.get((host, port)) or self._trunk_by_host.get(host)

    def hop_of_uri(self, uri: Uri, transport: str | None = None) -> Hop | None:
        """The hop for a Route or Request-URI (RFC 3263 without DNS: literal addresses only).

        The transport is the URI's own, else `transport` (the one our Record-Route named
        for that side), else the configured trunk's at that address, else UDP (TLS for
        sips). A host name is followed only when it is a configured peer's or when the
        configuration allows resolving names (the shell resolves); else None.
        """
        if not isinstance(uri, SipUri):
            return None
        host = uri.maddr or uri.host
        bare = bare_host(host)
        if (
            not is_ip_literal(bare)
            and bare not in self._peer_hosts
            and not self.config.routing.resolve_hostnames
        ):
            return None
        chosen = uri.transport or ("tls" if uri.scheme == "sips" else transport)
        trunk = self.trunk_at(bare, uri.port or 5060)
        if chosen is None:
            chosen = trunk.transport if trunk is not None else "udp"
        if chosen not in DEFAULT_PORTS:
            return None
        port = uri.port or DEFAULT_PORTS[chosen]
        if trunk is not None:
            return Hop(
                chosen,
                host,
                port,
                trunk=trunk.name,
                tcp_fallback=chosen == "udp" and not trunk.udp_only,
            )
        return Hop(chosen, host, port)


def called_number(uri: Uri) -> str | None:
    """The called number of a Request-URI: the user part of a SIP URI or a tel number."""
    if isinstance(uri, SipUri):
        return uri.user
    if isinstance(uri, TelUri):
        return uri.number
    return None
