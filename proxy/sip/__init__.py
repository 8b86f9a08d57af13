"""Sans-IO SIP syntax: parse and serialise messages, URIs and headers (RFC 3261 §7, §20, §25).

See docs/design.md, "proxy/sip public API (contract)".
"""

from proxy.sip.errors import (
    BadContentLength,
    BadHeader,
    BadStartLine,
    BadUri,
    MessageTooLarge,
    MissingHeader,
    SipParseError,
    VersionNotSupported,
)
from proxy.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    parse_name_addr,
    parse_via,
    split_values,
)
from proxy.sip.message import (
    Header,
    Request,
    Response,
    SipMessage,
    StreamFramer,
    build_reply_from_error,
    build_response,
    parse_message,
)
from proxy.sip.uri import AbsoluteUri, SipUri, TelUri, Uri, parse_uri
from proxy.sip.validate import check_request

__all__ = [
    "AbsoluteUri",
    "BadContentLength",
    "BadHeader",
    "BadStartLine",
    "BadUri",
    "CSeq",
    "Header",
    "MessageTooLarge",
    "MissingHeader",
    "NameAddr",
    "Request",
    "Response",
    "SipMessage",
    "SipParseError",
    "SipUri",
    "StreamFramer",
    "TelUri",
    "Uri",
    "VersionNotSupported",
    "Via",
    "build_reply_from_error",
    "build_response",
    "canonical_name",
    "check_request",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "split_values",
]
