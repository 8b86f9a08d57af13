"""Typed parse errors for the SIP syntax layer.

Modelled on h11's ``ProtocolError(msg, error_status_hint)``: every problem found in
bytes that came off the wire is a :class:`SipParseError`.  Any other exception leaving
:func:`proxy.sip.parser.parse_message` or :meth:`StreamFramer.feed` is a bug.
"""

from __future__ import annotations

__all__ = [
    "BadContentLength",
    "BadHeader",
    "BadStartLine",
    "BadUri",
    "MessageTooLarge",
    "MissingHeader",
    "SipParseError",
    "VersionNotSupported",
]


class SipParseError(Exception):
    """A message (or part of one) that does not follow the SIP grammar.

    ``reason`` is human text that goes into the reason phrase and a ``Warning`` header;
    ``status`` the response code to answer with; ``reply_headers`` the Via, From, To,
    Call-ID and CSeq header (name, value) pairs when a stateless reply is possible
    (request, all five readable), else ``None`` (drop); ``method`` the request method when
    the start line could be read.
    """

    default_status = 400

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        reply_headers: list[tuple[str, str]] | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason: str = reason
        self.status: int = self.default_status if status is None else status
        self.reply_headers: list[tuple[str, str]] | None = reply_headers
        self.method: str | None = method

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status={self.status})"


class BadStartLine(SipParseError):
    """The Request-Line or Status-Line is malformed (RFC 3261 §7.1, §7.2)."""


class MissingHeader(SipParseError):
    """A mandatory header field is absent (RFC 3261 §8.1.1)."""


class BadHeader(SipParseError):
    """A header field line or value does not follow its ABNF (RFC 3261 §25.1)."""


class BadContentLength(SipParseError):
    """Content-Length is malformed, duplicated with other values, or disagrees with the body."""


class MessageTooLarge(SipParseError):
    """The message exceeds the configured maximum size (513 Message Too Large)."""

    default_status = 513


class VersionNotSupported(SipParseError):
    """The SIP-Version is not SIP/2.0 (505 Version Not Supported, RFC 3261 §21.5.7)."""

    default_status = 505


class BadUri(SipParseError):
    """A URI is malformed (400), or its scheme is unsupported where used (416)."""
