"""Syntax-adjacent checks a proxy applies to a parsed request (RFC 3261 §8.2, §16.3).

:func:`check_request` finds what :func:`~proxy.sip.parser.parse_message` leaves for later
because the hot path parses typed headers lazily.  It does not do the checks that belong
to the proxy core (483 Max-Forwards, 482 loops, 420 Proxy-Require).
"""

from __future__ import annotations

from proxy.sip import abnf
from proxy.sip.errors import (
    BadContentLength,
    BadHeader,
    BadUri,
    MissingHeader,
    SipParseError,
    VersionNotSupported,
)
from proxy.sip.headers import check_name_addr_list
from proxy.sip.message import Request, reply_headers_of
from proxy.sip.uri import AbsoluteUri, SipUri

__all__ = ["MANDATORY_HEADERS", "SINGLE_HEADERS", "check_request"]

#: RFC 3261 §8.1.1: Max-Forwards is also mandatory but left out on purpose, so that
#: RFC 2543 requests (RFC 4475 §3.4.1) can still be relayed.
MANDATORY_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")
#: Headers that may appear once only (RFC 3261 §7.3.1, RFC 4475 §3.3.8 multi01).
SINGLE_HEADERS = ("To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length")
_MANDATORY_KEYS = frozenset(name.lower() for name in MANDATORY_HEADERS)
_NAME_ADDR_LISTS = frozenset(("contact", "route", "record-route"))
_SCANNED_KEYS = _NAME_ADDR_LISTS | {"date"}
#: RFC 3261 §8.1.1.7: a branch must start with the cookie and carry something after it.
_MAGIC_COOKIE = "z9hG4bK"


def check_request(request: Request) -> SipParseError | None:
    """Return the first problem found in ``request`` as an error (None when it is fine).

    The error carries ``method`` and, when Via, From, To, Call-ID and CSeq are present,
    ``reply_headers`` so the caller can answer statelessly with ``build_reply_from_error``.
    """
    try:
        _check(request)
    except SipParseError as error:
        error.method = request.method
        if error.reply_headers is None:
            error.reply_headers = reply_headers_of((h.name, h.value) for h in request.headers)
        return error
    return None


def _check(request: Request) -> None:
    # The checks run in the order they always did, so a message with several problems
    # still gets the same answer; each one is cheap when the message is well-formed.
    # RFC 3261 §8.2.2 / §21.5.7: a server answers 505 to a SIP-Version it does not support.
    version = request.version
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        raise VersionNotSupported(f"SIP version {version} not supported")

    headers = request.headers
    keys = [h.key for h in headers]
    present = set(keys)
    if not present >= _MANDATORY_KEYS:
        for name in MANDATORY_HEADERS:
            if name.lower() not in present:
                raise MissingHeader(f"Missing {name}")

    if len(present) != len(keys):
        # some header appears more than once: compare the single-instance ones
        for name in SINGLE_HEADERS:
            key = name.lower()
            if keys.count(key) > 1:
                values = {" ".join(h.value.split()) for h in headers if h.key == key}
                if len(values) > 1:
                    raise BadHeader(f"Conflicting {name} headers")

    vias = request.vias  # every Via must parse
    branch = vias[0].branch
    if branch == _MAGIC_COOKIE:
        # RFC 4475 §3.1.2.19 (badbranch): only the cookie cannot identify a transaction.
        raise BadHeader("Via branch is only the magic cookie")
    _ = request.from_, request.to, request.call_id
    cseq = request.cseq
    _ = request.max_forwards

    if not present.isdisjoint(_SCANNED_KEYS):
        for header in headers:
            key = header.key
            if key in _NAME_ADDR_LISTS:
                value = header.value
                if key == "contact" and value.strip() == "*":
                    continue  # REGISTER "Contact: *" (RFC 3261 §10.2.2)
                check_name_addr_list(value)
            elif key == "date" and abnf.DATE_RE.fullmatch(header.value) is None:
                raise BadHeader("Malformed Date header (RFC 3261 §20.17 wants GMT rfc1123-date)")

    # RFC 3261 §8.1.1.5: the CSeq method matches the request method (ACK and CANCEL
    # carry their own method there too, §17.1.1.3 and §9.1).
    if cseq.method != request.method:
        raise BadHeader("CSeq method does not match the request method")

    uri = request.uri
    if isinstance(uri, AbsoluteUri):
        raise BadUri(f"Unsupported URI scheme: {uri.scheme}", status=416)
    if isinstance(uri, SipUri) and uri.headers:
        # RFC 3261 §19.1.1 table 1: headers are not allowed in a Request-URI.
        raise BadUri("Request-URI must not contain headers")

    if "content-length" in present:
        length = request.get("Content-Length")
        assert length is not None
        if length != str(len(request.body)):
            match = abnf.DIGITS_RE.fullmatch(length)
            if match is None:
                raise BadContentLength("Malformed Content-Length")
            if int(match.group(1)) != len(request.body):
                raise BadContentLength("Content-Length does not match the body")
