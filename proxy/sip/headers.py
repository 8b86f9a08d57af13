"""Header names and the typed header values the proxy needs (RFC 3261 §7.3, §20, §25.1).

Only the headers the proxy acts on get a type: Via, CSeq and the name-addr family (From,
To, Contact, Route, Record-Route...).  Everything else stays a string.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from proxy.sip import abnf
from proxy.sip.errors import BadHeader, SipParseError
from proxy.sip.uri import AbsoluteUri, SipUri, TelUri, Uri, fast_hostport, parse_uri

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "CSeq",
    "NameAddr",
    "Via",
    "canonical_name",
    "check_name_addr_list",
    "format_params",
    "parse_cseq",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_via",
    "split_values",
]

# RFC 3261 §7.3.3 and the IANA "Header Fields" registry compact forms.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN_NAMES = [
    *COMPACT_FORMS.values(),
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Content-Disposition",
    "Content-Language",
    "CSeq",
    "Date",
    "Diversion",
    "Error-Info",
    "Expires",
    "History-Info",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "Min-SE",
    "MIME-Version",
    "Organization",
    "P-Asserted-Identity",
    "P-Charging-Vector",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Reply-To",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Timestamp",
    "Unsupported",
    "User-Agent",
    "Warning",
    "WWW-Authenticate",
]

# lower-case name (long or compact) -> canonical spelling
_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES}
_CANONICAL.update(COMPACT_FORMS)

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1): several lines of the same
# name may be combined into one and vice versa.  Authorization-style headers are NOT lists
# (their parameters are comma-separated).
LIST_HEADERS: frozenset[str] = frozenset(
    name.lower()
    for name in (
        "Via",
        "Route",
        "Record-Route",
        "Contact",
        "Path",
        "Service-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow-Events",
        "Content-Encoding",
        "Content-Language",
        "In-Reply-To",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "Warning",
        "Reason",
        "P-Asserted-Identity",
        "History-Info",
        "Diversion",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
    )
)


def canonical_name(name: str) -> str:
    """Return the canonical spelling: ``"v"`` -> ``"Via"``, ``"call-id"`` -> ``"Call-ID"``.

    Unknown names are returned as given (header names compare case-insensitively anyway).
    """
    return _CANONICAL.get(name.lower(), name)


def _split(value: str) -> list[str]:
    """Comma split outside quoted strings and <...>; elements stripped, empties kept."""
    if "," not in value:
        return [value.strip(" \t")]
    items: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        char = value[i]
        if in_quotes:
            if char == "\\":
                i += 1
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == "<":
            in_angle = True
        elif char == ">":
            in_angle = False
        elif char == "," and not in_angle:
            items.append(value[start:i].strip(" \t"))
            start = i + 1
        i += 1
    items.append(value[start:].strip(" \t"))
    return items


def split_values(value: str) -> list[str]:
    """Split a list header value on commas, respecting ``"quoted strings"`` and ``<...>``.

    Elements are stripped of surrounding whitespace; empty elements are dropped.
    """
    return [item for item in _split(value) if item]


# token characters as a set, for the str-method fast paths (``issuperset`` runs in C)
_TOKEN_SET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_DIGIT_SET = frozenset("0123456789")


def _parse_params_fast(text: str) -> dict[str, str | None] | None:
    """``;name[=value]`` items of token characters only, no whitespace; None otherwise.

    A value of token characters cannot be read as IPv6address / quoted-string /
    IPv6reference (those need ``:``, ``"`` or ``[``), so the full grammar gives the same.
    """
    if not text.startswith(";"):
        return None
    params: dict[str, str | None] = {}
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        if not name or not _TOKEN_SET.issuperset(name):
            return None
        if eq:
            if not value or not _TOKEN_SET.issuperset(value):
                return None
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )``; names lower-cased, values as written.

    Raises :class:`BadHeader` naming ``what`` when the text is not a parameter list.
    """
    if not text:
        return {}
    params = _parse_params_fast(text)
    if params is not None:
        return params
    return parse_params_full(text, what)


def parse_params_full(text: str, what: str) -> dict[str, str | None]:
    """:func:`parse_params` without the fast path (the reference it is tested against)."""
    params: dict[str, str | None] = {}
    if not text.strip(" \t"):
        return params
    if abnf.GENERIC_PARAMS_RE.fullmatch(text) is None:
        raise BadHeader(f"Malformed parameters in {what}")
    for match in abnf.GENERIC_PARAM_RE.finditer(text):
        params[match.group(1).lower()] = match.group(2)
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Serialise parameters as ``;name=value`` / ``;name``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(slots=True)
class Via:
    """One via-parm (RFC 3261 §20.42, RFC 3581 for ``rport``).

    ``params`` keeps names lower-cased and values as written; a flag parameter
    (``;rport``) maps to ``None``.
    """

    protocol: str
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter, or None (RFC 2543 peers may omit it)."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter, or None."""
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The ``rport`` value; None when absent or present as a bare flag (RFC 3581 §4).

        Use :attr:`has_rport` to tell a bare ``;rport`` from no parameter at all.
        """
        value = self.params.get("rport")
        return None if value is None else int(value)

    @property
    def has_rport(self) -> bool:
        """True when ``rport`` is present, with or without a value."""
        return "rport" in self.params

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter, or None."""
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        """The ``ttl`` parameter, or None."""
        value = self.params.get("ttl")
        return None if value is None else int(value)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """(host, port) of sent-by."""
        return self.host, self.port


def _check_via_params(params: dict[str, str | None]) -> None:
    # via-ttl = 1*3DIGIT (0-255); via-received = IPv4address / IPv6address;
    # via-maddr = host; via-branch = token; response-port = [EQUAL 1*DIGIT] (RFC 3581)
    ttl = params.get("ttl", "0")
    if ttl is None or not ttl.isdigit() or len(ttl) > 3 or int(ttl) > 255:
        raise BadHeader("Malformed Via: bad ttl")
    if "rport" in params:
        rport = params["rport"]
        if rport is not None and (not rport.isdigit() or len(rport) > 5 or int(rport) > 65535):
            raise BadHeader("Malformed Via: bad rport")
    if "branch" in params and params["branch"] is None:
        raise BadHeader("Malformed Via: empty branch")
    if "received" in params:
        received = params["received"]
        if received is None or not (
            abnf.IPV4_RE.fullmatch(received) or (":" in received and _is_ipv6(received))
        ):
            raise BadHeader("Malformed Via: bad received")
    if "maddr" in params:
        maddr = params["maddr"]
        if maddr is None or not abnf.HOST_RE.fullmatch(maddr):
            raise BadHeader("Malformed Via: bad maddr")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _parse_via_fast(item: str) -> Via | None:
    """``SIP/2.0/TRANSPORT host[:port][;params]`` without whitespace in the sent-by and
    params and without IPv6; None when unsure (then the full regex decides)."""
    if not item.startswith("SIP/2.0/"):
        return None
    space = item.find(" ", 8)
    transport = item[8:space]
    if space < 0 or not transport or not _TOKEN_SET.issuperset(transport):
        return None
    rest = item[space + 1 :]
    if " " in rest or "\t" in rest:
        return None
    hostport, semi, params_text = rest.partition(";")
    sent_by = fast_hostport(hostport)
    if sent_by is None:
        return None
    host, port_number = sent_by
    if semi:
        params = _parse_params_fast(semi + params_text)
        if params is None:
            return None
        _check_via_params(params)
    else:
        params = {}
    return Via("SIP/2.0", transport.upper(), host.lower(), port_number, params)


def parse_via(value: str) -> list[Via]:
    """Parse a Via header value; one line may carry several comma-separated via-parms."""
    if "," not in value:
        via = _parse_via_fast(value.strip(" \t"))
        if via is not None:
            return [via]
    return parse_via_full(value)


def parse_via_full(value: str) -> list[Via]:
    """:func:`parse_via` without the fast path (the reference it is tested against)."""
    vias: list[Via] = []
    for item in _split(value):
        match = abnf.VIA_RE.fullmatch(item)
        if match is None:
            raise BadHeader("Malformed Via header")
        name, version, transport, host, port, params_text = match.groups()
        if host.startswith("[") and not _is_ipv6(host):
            raise BadHeader("Malformed Via header: bad IPv6 reference")
        port_number = None if port is None else int(port)
        if port_number is not None and port_number > 65535:
            raise BadHeader("Malformed Via header: port out of range")
        params = parse_params(params_text, "Via")
        _check_via_params(params)
        vias.append(
            Via(f"{name.upper()}/{version}", transport.upper(), host.lower(), port_number, params)
        )
    return vias


@dataclass(slots=True, frozen=True)
class CSeq:
    """The CSeq header (RFC 3261 §20.16): sequence number (< 2**31) and method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


CSEQ_MAX = 2**31 - 1


def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value; the number must be below 2**31 (RFC 3261 §8.1.1.5)."""
    number, space, method = value.partition(" ")
    if (
        space
        and 0 < len(number) <= 10
        and _DIGIT_SET.issuperset(number)
        and method
        and _TOKEN_SET.issuperset(method)
    ):
        seq = int(number)
        if seq <= CSEQ_MAX:
            return CSeq(seq, method)
    return parse_cseq_full(value)


def parse_cseq_full(value: str) -> CSeq:
    """:func:`parse_cseq` without the fast path (the reference it is tested against)."""
    match = abnf.CSEQ_RE.fullmatch(value)
    if match is None:
        raise BadHeader("Malformed CSeq header")
    digits = match.group(1).lstrip("0")
    # compare the length first: int() of a huge digit run is slow (and limited in 3.11)
    if len(digits) > 10 or int(digits or "0") > CSEQ_MAX:
        raise BadHeader("CSeq number too large")
    return CSeq(int(digits or "0"), match.group(2))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(slots=True)
class NameAddr:
    """``[display-name] <addr-spec> *(;param)`` as in From, To, Contact, Route (RFC 3261 §20.10).

    ``display_name`` is unquoted text (None when absent); ``params`` are the header
    parameters (names lower-cased, values as written).
    """

    display_name: str | None
    uri: Uri
    params: dict[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        display = "" if self.display_name is None else _quote(self.display_name) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 §19.3), or None."""
        return self.params.get("tag")


def _unquote(quoted: str) -> str:
    if "\\" not in quoted:
        return quoted[1:-1]
    return abnf.QUOTED_PAIR_RE.sub(lambda m: m.group(1), quoted[1:-1])


# value -> its parse: the same From/To/Contact/Route/Record-Route text comes back in every
# message of a call and, for Contact/Route/Record-Route, of every call.  Callers get a copy
# (the values are mutable dataclasses), errors are not remembered, the size is bounded.
_NAME_ADDR_MEMO: dict[str, NameAddr] = {}
_NAME_ADDR_MEMO_LIMIT = 4096


def _copy_name_addr(known: NameAddr) -> NameAddr:
    uri = known.uri
    if type(uri) is SipUri:
        uri = SipUri(
            uri.scheme,
            uri.user,
            uri.password,
            uri.host,
            uri.port,
            uri.params.copy(),
            uri.headers.copy(),
        )
    elif type(uri) is TelUri:
        uri = TelUri(uri.number, uri.params.copy())
    else:
        assert type(uri) is AbsoluteUri
        uri = AbsoluteUri(uri.scheme, uri.text)
    return NameAddr(known.display_name, uri, known.params.copy())


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``name-addr / addr-spec`` followed by header parameters.

    Without ``<>``, the URI stops at the first ``;``: what follows are header parameters,
    not URI parameters (RFC 3261 §20.10); such a URI may not contain ``,``, ``?`` or ``;``.
    Each call returns a new object (remembered parses are copied).
    """
    known = _NAME_ADDR_MEMO.get(value)
    if known is not None:
        return _copy_name_addr(known)
    parsed = _parse_name_addr(value)
    if len(_NAME_ADDR_MEMO) >= _NAME_ADDR_MEMO_LIMIT:
        _NAME_ADDR_MEMO.clear()
    _NAME_ADDR_MEMO[value] = _copy_name_addr(parsed)
    return parsed


def _parse_name_addr(value: str) -> NameAddr:
    text = value.strip(" \t")
    display: str | None = None
    if text.startswith('"'):
        end = text.find('"', 1)
        quoted = text[: end + 1]
        if end > 0 and "\\" not in quoted and "\r" not in quoted and "\n" not in quoted:
            # fast path: no quoted-pair, so the closing quote is the first one after
            display = quoted[1:-1]
            text = text[end + 1 :].lstrip(" \t")
        else:
            match = abnf.QUOTED_RE.match(text)
            if match is None:
                raise BadHeader("Unbalanced quotes in display name")
            display = _unquote(match.group(0))
            text = text[match.end() :].lstrip(" \t")
        if not text.startswith("<"):
            raise BadHeader("Quoted display name not followed by <URI>")
    elif "<" in text:
        lt = text.index("<")
        words = text[:lt].split()
        # display-name = *(token LWS): only token characters outside quotes
        if not all(_TOKEN_SET.issuperset(word) for word in words):
            raise BadHeader("Malformed display name (must be tokens or a quoted string)")
        display = " ".join(words) if words else None
        text = text[lt:]
    if text.startswith("<"):
        gt = text.find(">")
        if gt < 0:
            raise BadHeader("Missing > after URI")
        uri_text = text[1:gt]
        rest = text[gt + 1 :]
    else:
        uri_text, sep, rest = text.partition(";")
        uri_text = uri_text.rstrip(" \t")
        rest = sep + rest
        if "," in uri_text or "?" in uri_text:
            raise BadHeader("URI with ',' or '?' must be enclosed in <> (RFC 3261 §20.10)")
    try:
        uri = parse_uri(uri_text)
    except SipParseError as exc:
        raise BadHeader(exc.reason) from None
    return NameAddr(display, uri, parse_params(rest, "name-addr"))


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Parse a comma-separated list of name-addrs (Contact, Route, Record-Route...)."""
    items = _split(value)
    if any(not item for item in items):
        raise BadHeader("Empty element in header list")
    return [parse_name_addr(item) for item in items]


def check_name_addr_list(value: str) -> None:
    """Raise what :func:`parse_name_addr_list` raises; build nothing for known values."""
    items = _split(value)
    if any(not item for item in items):
        raise BadHeader("Empty element in header list")
    memo = _NAME_ADDR_MEMO
    for item in items:
        if item not in memo:
            parse_name_addr(item)
