"""Requests a client transaction builds itself: the hop-by-hop ACK and the CANCEL.

Both copy header values from the request the transaction sent, so they are assembled as
bytes directly instead of going through a parse/serialise round trip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.sip.message import Request, Response


def _common_lines(request: Request, method: str, to_value: str) -> list[str]:
    lines = [f"{method} {request.uri_text} SIP/2.0", f"Via: {request.top_via}"]
    lines.extend(f"Route: {route}" for route in request.get_all("Route"))
    lines.append("Max-Forwards: 70")
    lines.append(f"From: {request.get('From') or ''}")
    lines.append(f"To: {to_value}")
    lines.append(f"Call-ID: {request.call_id}")
    lines.append(f"CSeq: {request.cseq.seq} {method}")
    lines.append("Content-Length: 0")
    return lines


def build_ack(request: Request, response: Response) -> bytes:
    """The ACK for a non-2xx final to `request` (RFC 3261 §17.1.1.3).

    Request-URI, Call-ID, From, CSeq number and the single top Via (so the branch matches
    the INVITE's) come from the request; To, with its tag, from the response; the Route
    header fields of the request are kept.
    """
    lines = _common_lines(request, "ACK", response.get("To") or "")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def build_cancel(request: Request) -> bytes:
    """The CANCEL for a pending INVITE `request` (RFC 3261 §9.1).

    Request-URI, Call-ID, To, From, CSeq number and the single top Via (same branch) are
    the INVITE's, and so are its Route header fields; the method is CANCEL.
    """
    lines = _common_lines(request, "CANCEL", request.get("To") or "")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
