"""SIP, SIPS, tel and other URIs (RFC 3261 §19.1, §25.1; RFC 3966).

``parse_uri`` never rejects a well-formed URI of an unknown scheme: it returns an
:class:`AbsoluteUri` so the proxy core can answer 416 (RFC 3261 §16.3 step 1, §21.4.14)
instead of a 400.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from proxy.sip import abnf
from proxy.sip.errors import BadUri

__all__ = ["AbsoluteUri", "SipUri", "TelUri", "Uri", "parse_uri", "unescape"]

# Characters that may appear unescaped in the user / password parts (RFC 3261 §25.1).
_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()")
_USER_SAFE = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_SAFE = _UNRESERVED | frozenset("&=+$,")

# Fast-path character sets: the grammar's character classes without the ``%XX`` escape
# alternative (a ``%`` anywhere sends the text to the full regex).  ``issuperset`` on a
# str runs in C, which is the point.
_USER_FAST = _USER_SAFE
_PASSWORD_FAST = _PASSWORD_SAFE
_PARAM_FAST = _UNRESERVED | frozenset("[]/:&+$")  # paramchar minus escaped
_DIGITS = frozenset("0123456789")


def unescape(text: str) -> str:
    """Decode ``%XX`` escapes (RFC 3261 §19.1.2); bytes that are not UTF-8 survive as
    surrogates so that :func:`escape` gives them back unchanged."""
    if "%" not in text:
        return text
    raw = text.encode("utf-8", "surrogateescape")
    decoded = abnf.ESCAPE_RE.sub(lambda m: bytes((int(m.group(1), 16),)), raw)
    return decoded.decode("utf-8", "surrogateescape")


def _escape(text: str, safe: frozenset[str]) -> str:
    if all(c in safe for c in text):
        return text
    out: list[str] = []
    for char in text:
        if char in safe:
            out.append(char)
        else:
            out.extend(f"%{b:02X}" for b in char.encode("utf-8", "surrogateescape"))
    return "".join(out)


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI.

    ``user`` and ``password`` hold the decoded text (escapes resolved, e.g. ``%22`` -> ``"``);
    ``host`` is lower-case with IPv6 addresses kept in brackets; ``params`` and ``headers``
    keep their values as written (still escaped), parameter names lower-cased.
    ``str()`` re-serialises, escaping the user part again where needed.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts.append(":" + _escape(self.password, _PASSWORD_SAFE))
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        parts.append(_format_params(self.params))
        if self.headers:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased, or None."""
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        """True when the URI carries the loose-routing ``lr`` parameter (RFC 3261 §19.1.1)."""
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter, or None."""
        return self.params.get("maddr")


@dataclass(slots=True)
class TelUri:
    """A ``tel:`` URI (RFC 3966): the number as written plus its parameters."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"tel:{self.number}{_format_params(self.params)}"

    @property
    def is_global(self) -> bool:
        """True for a global number (``+`` followed by digits, RFC 3966 §5.1.4)."""
        return self.number.startswith("+")


@dataclass(slots=True)
class AbsoluteUri:
    """A URI of any other scheme, kept opaque: ``scheme`` lower-cased, ``text`` as written."""

    scheme: str
    text: str

    def __str__(self) -> str:
        return self.text


Uri = SipUri | TelUri | AbsoluteUri


def _split_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    if not text:
        return params
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        params[name.lower()] = value if eq else None
    return params


def fast_hostport(hostport: str) -> tuple[str, int | None] | None:
    """``host[:port]`` with a host name or IPv4 address (as written), or None when unsure
    (IPv6, anything the full grammar must judge): the fast paths' shared sent-by reader."""
    host, colon, port = hostport.partition(":")
    port_number: int | None = None
    if colon:
        if not 0 < len(port) <= 5 or not _DIGITS.issuperset(port):
            return None
        port_number = int(port)
        if port_number > 65535:
            return None
    if abnf.HOSTNAME_RE.fullmatch(host) is None:
        return None
    return host, port_number


def _parse_sip_fast(scheme: str, rest: str) -> SipUri | None:
    """The common ``[user[:password]@]host[:port][;params]`` shape, or None.

    None means "not sure", never "invalid": the caller then runs the full regex.  Only
    text that the full grammar accepts with the same split gets a result here, so both
    paths give equal values (tests/property/test_sip_fast_paths.py checks it).  No ``%``
    (escapes), ``?`` (URI headers) or ``[`` (IPv6) is handled here.
    """
    at = rest.find("@")
    if at >= 0:
        # '@' is in none of the character sets after the user part: it appears once.
        hostport = rest[at + 1 :]
        user, colon, password = rest[:at].partition(":")
        if not user or "@" in hostport or not _USER_FAST.issuperset(user):
            return None
        if colon:
            if not _PASSWORD_FAST.issuperset(password):
                return None
            password_value: str | None = password
        else:
            password_value = None
        user_value: str | None = user
    else:
        hostport = rest
        user_value = password_value = None
    hostport, semi, params = hostport.partition(";")
    sent_by = fast_hostport(hostport)
    if sent_by is None:
        return None
    host, port_number = sent_by
    param_map: dict[str, str | None] = {}
    if semi:
        for item in params.split(";"):
            name, eq, value = item.partition("=")
            if not name or not _PARAM_FAST.issuperset(name):
                return None
            if eq:
                if not value or not _PARAM_FAST.issuperset(value):
                    return None
                param_map[name.lower()] = value
            else:
                param_map[name.lower()] = None
    return SipUri(scheme, user_value, password_value, host.lower(), port_number, param_map, {})


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    match = abnf.SIP_URI_RE.fullmatch(rest)
    if match is None:
        raise BadUri(f"Malformed {scheme.upper()} URI: {text[:80]}")
    user, password, host, port, params, headers = match.group(
        "user", "password", "host", "port", "params", "headers"
    )
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise BadUri(f"Malformed IPv6 reference in URI: {host}") from None
    port_number: int | None = None
    if port is not None:
        port_number = int(port)
        if port_number > 65535:
            raise BadUri(f"URI port out of range: {port}")
    header_map: dict[str, str] = {}
    if headers:
        for item in headers.split("&"):
            name, _, value = item.partition("=")
            header_map[name] = value
    return SipUri(
        scheme=scheme,
        user=None if user is None else unescape(user),
        password=None if password is None else unescape(password),
        host=host.lower(),
        port=port_number,
        params=_split_params(params),
        headers=header_map,
    )


def _parse_tel(rest: str, text: str) -> TelUri:
    number, sep, params = rest.partition(";")
    if not abnf.TEL_NUMBER_RE.fullmatch(number) or not abnf.TEL_PARAMS_RE.fullmatch(sep + params):
        raise BadUri(f"Malformed tel URI: {text[:80]}")
    return TelUri(number=number, params=_split_params(sep + params))


def parse_uri(text: str) -> Uri:
    """Parse a URI; raise :class:`~proxy.sip.errors.BadUri` when it is malformed.

    ``sip``/``sips`` (any case) give :class:`SipUri`, ``tel`` gives :class:`TelUri`, any
    other syntactically valid scheme gives :class:`AbsoluteUri`.
    """
    if text.startswith("sip:"):
        uri = _parse_sip_fast("sip", text[4:])
        if uri is not None:
            return uri
    elif text.startswith("sips:"):
        uri = _parse_sip_fast("sips", text[5:])
        if uri is not None:
            return uri
    return parse_uri_full(text)


def parse_uri_full(text: str) -> Uri:
    """:func:`parse_uri` without the fast path: the reference the fast path is tested against."""
    match = abnf.SCHEME_RE.match(text)
    if match is None:
        raise BadUri(f"Malformed URI (no scheme): {text[:80]}")
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest, text)
    if scheme == "tel":
        return _parse_tel(rest, text)
    if not abnf.ABSOLUTE_REST_RE.fullmatch(rest):
        raise BadUri(f"Malformed URI: {text[:80]}")
    return AbsoluteUri(scheme=scheme, text=text)
