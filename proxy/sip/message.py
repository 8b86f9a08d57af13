"""SIP messages: a start line, an ordered header list and a body (RFC 3261 §7).

The header list keeps each line's original bytes (folding included) so that a relayed
message differs from the received one only where the proxy edited it (Kamailio's
"lumps" idea, done with a list).  Typed values (Via, CSeq, From, To) are parsed on first
access and cached until the next edit through :class:`SipMessage` methods.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from proxy.sip import abnf
from proxy.sip.errors import BadHeader, MissingHeader
from proxy.sip.headers import (
    LIST_HEADERS,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_values,
)
from proxy.sip.uri import Uri, parse_uri

__all__ = [
    "Header",
    "Request",
    "Response",
    "SipMessage",
    "StreamFramer",
    "build_reply_from_error",
    "build_response",
    "header_key",
    "parse_message",
    "reply_headers_of",
]

_ENC = "utf-8"
_ERRORS = "surrogateescape"

#: lower-case canonical names of the headers a stateless reply echoes (RFC 3261 §8.2.6.2)
REPLY_KEYS = ("via", "from", "to", "call-id", "cseq")


# header name as callers spell it -> lookup key; callers pass literals, but the size is
# bounded anyway in case a name comes from the network.
_KEYS: dict[str, str] = {}
_KEYS_LIMIT = 1024

#: Max-Forwards cache value meaning "not read yet" (None means "absent")
_UNREAD = -1


def header_key(name: str) -> str:
    """Lookup key of a header name: lower-case canonical name (``"v"`` -> ``"via"``)."""
    key = _KEYS.get(name)
    if key is None:
        key = sys.intern(canonical_name(name).lower())
        if len(_KEYS) < _KEYS_LIMIT:
            _KEYS[name] = key
    return key


class Header:
    """One header line: canonical ``name``, unfolded ``value``, original bytes in ``raw``.

    ``raw`` is the complete original line (continuation lines included, CRLF excluded);
    assigning ``value`` sets ``raw`` to None so the line is re-formatted on output.
    """

    __slots__ = ("_value", "_vstart", "key", "name", "raw")

    name: str
    key: str
    raw: bytes | None
    _value: str | None
    _vstart: int

    def __init__(self, name: str, value: str) -> None:
        canonical = canonical_name(name)
        self.name = canonical
        self.key = canonical.lower()
        self.raw = None
        self._value = value
        self._vstart = 0

    @classmethod
    def from_raw(cls, name: str, key: str, raw: bytes, vstart: int) -> Header:
        """A header read off the wire; the value is decoded lazily from ``raw[vstart:]``."""
        header = cls.__new__(cls)
        header.name = name
        header.key = key
        header.raw = raw
        header._value = None
        header._vstart = vstart
        return header

    @property
    def value(self) -> str:
        """The value with folding replaced by a single SP and outer whitespace removed."""
        value = self._value
        if value is None:
            assert self.raw is not None  # invariant: raw-backed until edited
            chunk = self.raw[self._vstart :]
            if b"\r\n" in chunk:
                # RFC 3261 §7.3.1: a continuation line is equivalent to a single SP.
                chunk = abnf.FOLD_RE.sub(b" ", chunk)
            value = chunk.strip(b" \t").decode(_ENC, _ERRORS)
            self._value = value
        return value

    @value.setter
    def value(self, value: str) -> None:
        self._value = value
        self.raw = None

    def copy(self) -> Header:
        """An independent copy keeping the original bytes."""
        if self.raw is not None:
            return Header.from_raw(self.name, self.key, self.raw, self._vstart)
        return Header(self.name, self.value)

    def to_bytes(self) -> bytes:
        """The original line when unedited, else ``Name: value``."""
        if self.raw is not None:
            return self.raw
        return f"{self.name}: {self.value}".encode(_ENC, _ERRORS)

    def __repr__(self) -> str:
        return f"Header({self.name!r}, {self.value!r})"


class SipMessage:
    """Common part of requests and responses: ``headers`` (ordered) and ``body`` (bytes)."""

    __slots__ = (
        "_call_id",
        "_cseq",
        "_from",
        "_max_forwards",
        "_to",
        "_top_via",
        "_vias",
        "body",
        "headers",
        "version",
    )

    headers: list[Header]
    body: bytes
    version: str

    def __init__(
        self, headers: Iterable[Header] = (), body: bytes = b"", version: str = "SIP/2.0"
    ) -> None:
        self.headers = list(headers)
        self.body = body
        self.version = version
        self._invalidate()

    def _invalidate(self, key: str | None = None) -> None:
        """Forget the typed values parsed from headers of ``key`` (all when None).

        Each cached value depends only on the lines of its own header, so an edit of one
        header keeps the others' values (the core edits Via, Route and Max-Forwards and
        then reads From, To and CSeq again).
        """
        if key is None:
            self._vias: list[Via] | None = None
            self._top_via: Via | None = None
            self._cseq: CSeq | None = None
            self._from: NameAddr | None = None
            self._to: NameAddr | None = None
            self._call_id: str | None = None
            self._max_forwards: int | None = _UNREAD
        elif key == "via":
            self._vias = None
            self._top_via = None
        elif key == "from":
            self._from = None
        elif key == "to":
            self._to = None
        elif key == "cseq":
            self._cseq = None
        elif key == "call-id":
            self._call_id = None
        elif key == "max-forwards":
            self._max_forwards = _UNREAD

    # --- generic access -------------------------------------------------------------
    def get(self, name: str) -> str | None:
        """Value of the first header of that name (compact names accepted), or None."""
        key = _KEYS.get(name) or header_key(name)
        for header in self.headers:
            if header.key == key:
                value = header._value  # the property's cached value, without its call
                return header.value if value is None else value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of that name, in order; list headers (Via, Route...) are comma-split."""
        key = _KEYS.get(name) or header_key(name)
        values = [h.value for h in self.headers if h.key == key]
        if not values:
            return values
        if key in LIST_HEADERS:
            return [item for value in values for item in split_values(value)]
        return values

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a header line.

        ``first=True`` puts it before all others of that name (or at the top when there are
        none), as for a new top Via (RFC 3261 §16.6 step 8); otherwise it goes after the last
        one of that name, or at the end.
        """
        header = Header(name, value)
        key = header.key
        index: int | None = None
        for i, existing in enumerate(self.headers):
            if existing.key == key:
                index = i if first else i + 1
                if first:
                    break
        if index is None:
            index = 0 if first else len(self.headers)
        self.headers.insert(index, header)
        self._invalidate(key)

    def remove(self, name: str) -> int:
        """Remove every header of that name; return how many lines were removed."""
        key = header_key(name)
        before = len(self.headers)
        self.headers = [h for h in self.headers if h.key != key]
        self._invalidate(key)
        return before - len(self.headers)

    def replace(self, name: str, value: str) -> None:
        """Make all headers of that name one line with this value, where the first one was
        (appended if absent)."""
        key = header_key(name)
        headers = self.headers
        found = [i for i, h in enumerate(headers) if h.key == key]
        header = Header(name, value)
        if found:
            headers[found[0]] = header
            for index in reversed(found[1:]):
                del headers[index]
        else:
            headers.append(header)
        self._invalidate(key)

    def pop_first_value(self, name: str) -> str | None:
        """Remove and return the first comma-value of the first header of that name.

        Used to pop the top Via of a response (RFC 3261 §16.7 step 3) or the top Route
        (§16.4); the header line disappears when it held a single value.
        """
        key = header_key(name)
        for i, header in enumerate(self.headers):
            if header.key != key:
                continue
            items = split_values(header.value) if key in LIST_HEADERS else [header.value]
            if len(items) <= 1:
                del self.headers[i]
            else:
                header.value = ", ".join(items[1:])
            self._invalidate(key)
            return items[0] if items else ""
        return None

    # --- typed accessors (lazy, cached) ---------------------------------------------
    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first; raises BadHeader if one is malformed."""
        vias = self._vias
        if vias is None:
            vias = [v for h in self.headers if h.key == "via" for v in parse_via(h.value)]
            self._vias = vias
        return vias

    @property
    def top_via(self) -> Via:
        """The topmost Via; raises MissingHeader when there is none."""
        via = self._top_via
        if via is not None:
            return via
        vias = self._vias
        if vias is not None:
            if not vias:
                raise MissingHeader("Missing Via")
            via = vias[0]
        else:
            value = self.get("Via")
            if value is None:
                raise MissingHeader("Missing Via")
            via = parse_via(value)[0]
        self._top_via = via
        return via

    @property
    def call_id(self) -> str:
        """The Call-ID; raises MissingHeader / BadHeader."""
        value = self._call_id
        if value is None:
            value = self.get("Call-ID")
            if value is None:
                raise MissingHeader("Missing Call-ID")
            if abnf.CALLID_RE.fullmatch(value) is None:
                raise BadHeader("Malformed Call-ID header")
            self._call_id = value
        return value

    @property
    def cseq(self) -> CSeq:
        """The CSeq; raises MissingHeader / BadHeader."""
        cseq = self._cseq
        if cseq is None:
            value = self.get("CSeq")
            if value is None:
                raise MissingHeader("Missing CSeq")
            cseq = self._cseq = parse_cseq(value)
        return cseq

    @property
    def from_(self) -> NameAddr:
        """The From header; raises MissingHeader / BadHeader."""
        value = self._from
        if value is None:
            text = self.get("From")
            if text is None:
                raise MissingHeader("Missing From")
            value = self._from = _parse_single_name_addr(text, "From")
        return value

    @property
    def to(self) -> NameAddr:
        """The To header; raises MissingHeader / BadHeader."""
        value = self._to
        if value is None:
            text = self.get("To")
            if text is None:
                raise MissingHeader("Missing To")
            value = self._to = _parse_single_name_addr(text, "To")
        return value

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0-255, leading zeros allowed) or None when absent."""
        number = self._max_forwards
        if number != _UNREAD:
            return number
        value = self.get("Max-Forwards")
        if value is None:
            number = None
        elif value.isdigit() and len(value) <= 3 and value.isascii():
            number = int(value)  # the usual "70"; DIGITS_RE accepts it with this value
            if number > 255:
                raise BadHeader("Malformed Max-Forwards header")
        else:
            match = abnf.DIGITS_RE.fullmatch(value)
            if match is None or int(match.group(1)) > 255:
                raise BadHeader("Malformed Max-Forwards header")
            number = int(match.group(1))
        self._max_forwards = number
        return number

    # --- output ---------------------------------------------------------------------
    def start_line(self) -> str:
        """The Request-Line / Status-Line without CRLF."""
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise: unedited lines verbatim, Content-Length set to ``len(body)``."""
        return serialize(self.start_line(), self.headers, self.body)


def _parse_single_name_addr(text: str, name: str) -> NameAddr:
    try:
        return parse_name_addr(text)
    except BadHeader as exc:
        raise BadHeader(f"Malformed {name} header: {exc.reason}") from None


class Request(SipMessage):
    """A SIP request: ``method``, ``uri`` (parsed) and ``uri_text`` (as written)."""

    __slots__ = ("_uri", "_uri_text", "method")

    method: str

    def __init__(
        self,
        method: str,
        uri: Uri | str,
        headers: Iterable[Header] = (),
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body, version)
        self.method = method
        if isinstance(uri, str):
            self._uri_text = uri
            self._uri = parse_uri(uri)
        else:
            self._uri = uri
            self._uri_text = str(uri)

    @classmethod
    def _from_wire(
        cls, method: str, uri: Uri, uri_text: str, headers: list[Header], body: bytes, version: str
    ) -> Request:
        request = cls.__new__(cls)
        request.headers = headers
        request.body = body
        request.version = version
        request.method = method
        request._uri = uri
        request._uri_text = uri_text
        request._invalidate()
        return request

    def with_headers(self, headers: list[Header]) -> Request:
        """This request's start line over `headers` (taken as they are) and no body; the
        Request-URI is shared, not formatted again."""
        return Request._from_wire(
            self.method, self._uri, self._uri_text, headers, b"", self.version
        )

    @property
    def uri(self) -> Uri:
        """The Request-URI; assigning it also updates :attr:`uri_text`."""
        return self._uri

    @uri.setter
    def uri(self, uri: Uri) -> None:
        self._uri = uri
        self._uri_text = str(uri)

    @property
    def uri_text(self) -> str:
        """The Request-URI as written on the wire (kept verbatim until :attr:`uri` is set)."""
        return self._uri_text

    def start_line(self) -> str:
        """``Method SP Request-URI SP SIP-Version``."""
        return f"{self.method} {self._uri_text} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri_text}>"


class Response(SipMessage):
    """A SIP response: ``status`` (100-699) and ``reason`` phrase."""

    __slots__ = ("reason", "status")

    status: int
    reason: str

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Iterable[Header] = (),
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body, version)
        self.status = status
        self.reason = reason

    def start_line(self) -> str:
        """``SIP-Version SP Status-Code SP Reason-Phrase``."""
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def reply_headers_of(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """The Via, From, To, Call-ID and CSeq pairs to echo in a stateless reply.

    None unless all five are present; values holding CR, LF or NUL are skipped because
    echoing them would break the reply's framing.
    """
    picked: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in pairs:
        key = name.lower()
        if key in REPLY_KEYS and not ("\r" in value or "\n" in value or "\x00" in value):
            picked.append((name, value))
            seen.add(key)
    return picked if len(seen) == len(REPLY_KEYS) else None


# Bottom imports: these modules need the classes above.  proxy/sip/__init__.py imports this
# module first, so the cycle always resolves in this order.
from proxy.sip.parser import StreamFramer, parse_message  # noqa: E402
from proxy.sip.serializer import (  # noqa: E402
    build_reply_from_error,
    build_response,
    serialize,
)
