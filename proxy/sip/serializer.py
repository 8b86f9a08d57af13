"""Message -> bytes, and the responses the SIP layer builds itself (RFC 3261 §8.2.6).

Unedited header lines are written byte-for-byte; Content-Length is always rewritten to
the body length so a relayed message can never be mis-framed downstream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from proxy.sip import abnf
from proxy.sip.errors import SipParseError
from proxy.sip.headers import parse_name_addr
from proxy.sip.message import Header, Request, Response

__all__ = ["REASON_PHRASES", "build_reply_from_error", "build_response", "serialize"]

_ENC = "utf-8"
_ERRORS = "surrogateescape"

#: Default reason phrases (RFC 3261 §21 and extensions the proxy may send).
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    436: "Bad Identity Info",
    437: "Unsupported Credential",
    438: "Invalid Identity Header",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

_CRLF = b"\r\n"


def serialize(start_line: str, headers: Iterable[Header], body: bytes) -> bytes:
    """Serialise a message; the first Content-Length line is kept (verbatim if already
    correct) and set to ``len(body)``, further ones dropped, one appended if missing."""
    parts = [start_line.encode(_ENC, _ERRORS)]
    length = len(body)
    length_done = False
    for header in headers:
        raw = header.raw
        if header.key == "content-length":
            if length_done:
                continue
            length_done = True
            if raw is not None and _length_is(header, length):
                parts.append(raw)
            else:
                parts.append(b"Content-Length: %d" % length)
        else:
            parts.append(raw if raw is not None else header.to_bytes())
    if not length_done:
        parts.append(b"Content-Length: %d" % length)
    parts.append(b"")
    parts.append(body)
    return _CRLF.join(parts)


def _length_is(header: Header, length: int) -> bool:
    # The line as received, "Content-Length: 42", is the usual spelling; DIGITS_RE also
    # takes leading zeros and folding.
    raw = header.raw
    if raw is not None and raw[header._vstart :].strip(b" \t") == b"%d" % length:
        return True
    match = abnf.DIGITS_RE.fullmatch(header.value)
    return match is not None and int(match.group(1)) == length


def _safe_phrase(text: str) -> str:
    # Reason-Phrase allows no CR/LF or other CTL; keep it short for the reply.
    cleaned = "".join(c if c >= " " and c != "\x7f" else " " for c in text)
    return " ".join(cleaned.split())[:200] or "Bad Request"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _has_tag(to_value: str) -> bool:
    try:
        return parse_name_addr(to_value).tag is not None
    except SipParseError:
        return ";tag=" in "".join(to_value.split()).lower()


def build_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> Response:
    """Build a response to ``request`` as in RFC 3261 §8.2.6.

    Via (all, in order), From, To, Call-ID and CSeq are copied with their original bytes;
    ``to_tag`` is added to To when it has none (never on 100, §8.2.6.1); ``extra`` headers
    are appended.  Content-Length is added on serialisation.
    """
    headers: list[Header] = []
    for header in request.headers:
        if header.key in ("via", "from", "to", "call-id", "cseq") or (
            status == 100 and header.key == "timestamp"  # §8.2.6.1
        ):
            copy = header.copy()
            if header.key == "to" and to_tag and status > 100 and not _has_tag(copy.value):
                copy.value = f"{copy.value};tag={to_tag}"
            headers.append(copy)
    headers.extend(Header(name, value) for name, value in extra)
    phrase = reason if reason is not None else REASON_PHRASES.get(status, "Unknown")
    return Response(status, phrase, headers)


def build_reply_from_error(error: SipParseError, *, agent: str = "sipguard") -> bytes | None:
    """The stateless reply to a request that failed to parse or validate, or None (drop).

    Status is ``error.status``; the reason phrase and a ``Warning: 399 <agent> "<reason>"``
    (RFC 3261 §20.43) say what is wrong.  The readable Via, From, To, Call-ID and CSeq are
    echoed; To gets a tag derived from the request so retransmissions get the same one.
    """
    if error.reply_headers is None:
        return None
    phrase = _safe_phrase(error.reason)
    lines = [f"SIP/2.0 {error.status} {phrase}"]
    for name, value in error.reply_headers:
        if name == "To" and not _has_tag(value):
            seed = "\n".join(v for _, v in error.reply_headers).encode(_ENC, _ERRORS)
            value = f"{value};tag=sg{hashlib.sha1(seed).hexdigest()[:10]}"
        lines.append(f"{name}: {value}")
    lines.append(f"Warning: 399 {agent} {_quote(phrase)}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(_ENC, _ERRORS)
