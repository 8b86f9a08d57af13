"""Bytes -> :class:`Request` / :class:`Response` (RFC 3261 §7, §18.3) and stream framing.

Sans-IO in the h11 sense: the functions take bytes and return objects or raise
:class:`SipParseError`; any other exception escaping them is a bug.  Only the start line,
the header split and Content-Length are handled eagerly (the hot path); typed header
values are parsed on access by :mod:`proxy.sip.message`.
"""

from __future__ import annotations

from proxy.sip import abnf
from proxy.sip.errors import (
    BadContentLength,
    BadHeader,
    BadStartLine,
    MessageTooLarge,
    MissingHeader,
    SipParseError,
)
from proxy.sip.headers import canonical_name
from proxy.sip.message import Header, Request, Response, reply_headers_of
from proxy.sip.uri import parse_uri

__all__ = ["DEFAULT_MAX_SIZE", "StreamFramer", "parse_message"]

DEFAULT_MAX_SIZE = 65535
_ENC = "utf-8"
_ERRORS = "surrogateescape"

# raw header name -> (canonical name, lookup key).  Bounded so that random names sent by
# a peer cannot grow it without limit.
_NAME_CACHE: dict[bytes, tuple[str, str]] = {}
_NAME_CACHE_LIMIT = 1024


def _name_of(name: bytes) -> tuple[str, str]:
    known = _NAME_CACHE.get(name)
    if known is not None:
        return known
    if abnf.HEADER_NAME_RE.fullmatch(name) is None:
        raise BadHeader("Malformed header field name")
    canonical = canonical_name(name.decode("ascii"))
    known = (canonical, canonical.lower())
    if len(_NAME_CACHE) < _NAME_CACHE_LIMIT:
        _NAME_CACHE[name] = known
    return known


def _header_lines(block: bytes) -> list[bytes]:
    """Split a header block into logical lines, keeping folded lines together."""
    lines = block.split(b"\r\n")
    if b"\r\n " not in block and b"\r\n\t" not in block:
        if lines[0][:1] in (b" ", b"\t"):
            raise BadHeader("Header block starts with a continuation line")
        return lines
    logical: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not logical:
                raise BadHeader("Header block starts with a continuation line")
            logical[-1] += b"\r\n" + line
        else:
            logical.append(line)
    return logical


def _parse_headers(block: bytes) -> list[Header]:
    """Header lines of a block (start line and empty line excluded) as raw-backed Headers.

    The fast path handles the usual block: every line is ``name: value`` with a name seen
    before (the cache only holds names that passed HEADER_NAME_RE, none starting with SP or
    HTAB, so a hit also proves the line is no continuation).  Anything else - folding, a
    new name, a line without a colon - goes to :func:`_parse_headers_full`, which gives the
    same headers or raises.
    """
    if not block:
        return []
    lines = block.split(b"\r\n")
    # A bare CR or LF inside the header block is not a line end for us but may be one for
    # the next hop (header smuggling): reject it.  NUL stays legal (RFC 4475 intmeth).
    # Every CR and LF must belong to one of the len(lines) - 1 CRLFs.
    if len(block) - len(block.translate(None, b"\r\n")) != 2 * (len(lines) - 1):
        raise BadHeader("Bare CR or LF in the header fields")
    cache = _NAME_CACHE
    new = Header.__new__
    headers: list[Header] = []
    append = headers.append
    for line in lines:
        colon = line.find(b":")
        known = cache.get(line[:colon]) if colon > 0 else None
        if known is None:
            return _parse_headers_full(block)
        # Inlined Header.from_raw: this loop is the hottest code of the proxy.
        header = new(Header)
        header.name, header.key = known
        header.raw = line
        header._value = None
        header._vstart = colon + 1
        append(header)
    return headers


def _parse_headers_full(block: bytes) -> list[Header]:
    """The general header split (folding, names not seen yet); errors as BadHeader."""
    cache = _NAME_CACHE
    new = Header.__new__
    headers: list[Header] = []
    for line in _header_lines(block):
        colon = line.find(b":")
        if colon <= 0:
            raise BadHeader("Malformed header line (no colon)")
        raw_name = line[:colon]
        known = cache.get(raw_name)
        if known is None:
            known = _name_of(raw_name.rstrip(b" \t"))
            if len(cache) < _NAME_CACHE_LIMIT:
                cache[raw_name] = known
        header = new(Header)
        header.name, header.key = known
        header.raw = line
        header._value = None
        header._vstart = colon + 1
        headers.append(header)
    return headers


def _content_length(headers: list[Header]) -> int | None:
    length: int | None = None
    for header in headers:
        if header.key != "content-length":
            continue
        raw = header.raw
        digits = raw[header._vstart :].strip(b" \t") if raw is not None else b""
        if 0 < len(digits) <= 12 and digits.isdigit():
            value = int(digits)  # the usual line, read without decoding it (DIGITS_RE's value)
        else:
            match = abnf.DIGITS_RE.fullmatch(header.value)
            if match is None:
                raise BadContentLength("Malformed Content-Length")
            value = int(match.group(1))
        if length is not None and value != length:
            # RFC 4475 §3.3.9 (mcl01): the framing is ambiguous, never guess.
            raise BadContentLength("Conflicting Content-Length values")
        length = value
    return length


def _skip_crlf(data: bytes) -> int:
    # RFC 3261 §7.5: CRLFs before the start line are ignored.
    pos = 0
    while data.startswith(b"\r\n", pos):
        pos += 2
    return pos


def _parse(data: bytes) -> Request | Response:
    pos = _skip_crlf(data)
    end = data.find(b"\r\n\r\n", pos)
    if end < 0:
        raise BadStartLine("Missing empty line after the header fields")
    line_end = data.find(b"\r\n", pos)
    start = data[pos:line_end]
    block = data[line_end + 2 : end] if line_end < end else b""
    body = data[end + 4 :]

    if start[:4].upper() == b"SIP/":
        status_match = abnf.STATUS_LINE_RE.fullmatch(start)
        if status_match is None:
            raise BadStartLine("Malformed Status-Line")
        headers = _parse_headers(block)
        body = _frame_datagram_body(headers, body)
        version, code, reason = status_match.groups()
        response = Response.__new__(Response)
        response.headers = headers
        response.body = body
        response.version = version.decode("ascii")
        response.status = int(code)
        response.reason = (reason or b"").decode(_ENC, _ERRORS)
        response._invalidate()
        return response

    request_match = abnf.REQUEST_LINE_RE.fullmatch(start)
    if request_match is None:
        raise BadStartLine("Malformed Request-Line")
    headers = _parse_headers(block)
    body = _frame_datagram_body(headers, body)
    method_b, uri_b, version_b = request_match.groups()
    uri_text = uri_b.decode(_ENC, _ERRORS)
    uri = parse_uri(uri_text)  # BadUri for a malformed URI; unknown schemes pass
    return Request._from_wire(
        method_b.decode("ascii"), uri, uri_text, headers, body, version_b.decode("ascii")
    )


def _frame_datagram_body(headers: list[Header], body: bytes) -> bytes:
    length = _content_length(headers)
    if length is None:
        # RFC 3261 §18.3: without Content-Length on a datagram the body runs to its end.
        return body
    if length > len(body):
        raise BadContentLength("Content-Length larger than body")
    # RFC 3261 §18.3: octets beyond Content-Length in a datagram are discarded (dblreq).
    return body[:length] if length < len(body) else body


def _salvage(data: bytes) -> tuple[str | None, list[tuple[str, str]] | None]:
    """Method and reply headers of a message that failed to parse; never raises."""
    pos = _skip_crlf(data)
    end = data.find(b"\r\n\r\n", pos)
    head = data[pos:end] if end >= 0 else data[pos:]
    line_end = head.find(b"\r\n")
    start = head if line_end < 0 else head[:line_end]
    method_match = abnf.METHOD_PREFIX_RE.match(start)
    if method_match is None:
        return None, None  # a response, or not even the start of a request: drop
    method = method_match.group(1).decode("ascii")
    if line_end < 0:
        return method, None
    pairs: list[tuple[str, str]] = []
    lines = head[line_end + 2 :].split(b"\r\n")
    logical: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and logical:
            logical[-1] += b" " + line
        else:
            logical.append(line)
    for line in logical:
        colon = line.find(b":")
        if colon <= 0:
            continue
        name = line[:colon].rstrip(b" \t")
        if abnf.HEADER_NAME_RE.fullmatch(name) is None:
            continue
        canonical = canonical_name(name.decode("ascii"))
        if canonical.lower() in ("via", "from", "to", "call-id", "cseq"):
            value = line[colon + 1 :].strip(b" \t").decode(_ENC, _ERRORS)
            pairs.append((canonical, value))
    return method, reply_headers_of(pairs)


def _add_context(error: SipParseError, data: bytes) -> SipParseError:
    method, reply = _salvage(data)
    if error.method is None:
        error.method = method
    if error.reply_headers is None and method is not None:
        error.reply_headers = reply
    return error


def parse_message(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Request | Response:
    """Parse one complete SIP message (a UDP datagram or a framed stream message).

    Raises :class:`SipParseError` (only) when the bytes are not a valid message; the error
    carries ``reply_headers`` when a stateless 400 can be sent (requests only).
    """
    if len(data) > max_size:
        raise _add_context(MessageTooLarge(f"Message larger than {max_size} octets"), data)
    try:
        return _parse(data)
    except SipParseError as error:
        raise _add_context(error, data) from None


class StreamFramer:
    """Cut a TCP/TLS byte stream into messages using Content-Length (RFC 3261 §18.3).

    :meth:`feed` returns complete messages (bytes, to hand to :func:`parse_message`) and,
    at most once, a :class:`SipParseError` when the stream can no longer be framed (no or
    bad Content-Length, message too large).  After an error the framer returns nothing
    more: the shell should answer if ``reply_headers`` allows and close the connection.
    CRLF keep-alives between messages are skipped; each double-CRLF ping is counted in
    :attr:`keepalive_pings` so the shell can answer with a single CRLF (RFC 5626 §3.5.1).
    """

    __slots__ = ("_buffer", "_failed", "keepalive_pings", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self.keepalive_pings = 0
        self._buffer = bytearray()
        self._failed = False

    @property
    def failed(self) -> bool:
        """True once a framing error was reported; the connection should be closed."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | SipParseError]:
        """Add received bytes; return every message completed by them, in order."""
        if self._failed:
            return []
        buf = self._buffer
        buf += data
        out: list[bytes | SipParseError] = []
        pos = 0
        while True:
            remaining = len(buf) - pos
            if remaining == 0:
                break
            if buf.startswith(b"\r\n\r\n", pos):
                self.keepalive_pings += 1
                pos += 4
                continue
            if buf.startswith(b"\r", pos):
                if remaining < 4 and b"\r\n\r\n".startswith(bytes(buf[pos:])):
                    break  # maybe the start of a ping: wait for more
                if buf.startswith(b"\r\n", pos):
                    pos += 2  # RFC 3261 §7.5: stray CRLF before a start line (or a pong)
                    continue
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                if remaining > self.max_size:
                    too_large = MessageTooLarge("Header block too large")
                    out.append(self._fail(too_large, bytes(buf[pos:])))
                    return out
                break
            head = bytes(buf[pos : end + 4])
            try:
                length = self._content_length(head)
            except SipParseError as exc:
                out.append(self._fail(exc, head))
                return out
            total = end + 4 - pos + length
            if total > self.max_size:
                too_large = MessageTooLarge(f"Message larger than {self.max_size} octets")
                out.append(self._fail(too_large, head))
                return out
            if remaining < total:
                break
            out.append(bytes(buf[pos : pos + total]))
            pos += total
        del buf[:pos]
        return out

    @staticmethod
    def _content_length(head: bytes) -> int:
        line_end = head.find(b"\r\n")
        headers = _parse_headers(head[line_end + 2 : -4] if line_end < len(head) - 4 else b"")
        length = _content_length(headers)
        if length is None:
            raise MissingHeader("Missing Content-Length (required on stream transports)")
        return length

    def _fail(self, error: SipParseError, data: bytes) -> SipParseError:
        self._failed = True
        self._buffer.clear()
        return _add_context(error, data)
