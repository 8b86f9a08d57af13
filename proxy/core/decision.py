"""The decision step between "request validated" and "request forwarded".

Policy, signing and verification plug into the core here (see docs/design.md). A step may edit
the request in place and answers with one of `Continue`, `Reject` or `Defer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from proxy.sip.message import Request

OriginKind = Literal["source", "trunk", "unknown"]
NumberStatus = Literal["own", "delegated", "unverified"]


@dataclass(frozen=True, slots=True)
class Origin:
    """Who sent the request, as identified from the configured sources and trunks."""

    kind: OriginKind
    name: str | None
    transport: str
    remote: tuple[str, int]
    tls_subject: str | None = None


@dataclass(frozen=True, slots=True)
class Continue:
    """Let the request go on to the next step, then to its target."""


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer the request with a final response that names the rule that refused it."""

    status: int
    reason_phrase: str
    text: str
    rule_id: str


@dataclass(frozen=True, slots=True)
class Defer:
    """The step needs the certificate at `url` before it can decide."""

    url: str


Decision = Continue | Reject | Defer


@dataclass(slots=True)
class Assessment:
    """What earlier steps learnt about a request, handed to every later step.

    `upstream_headers` are (name, value) pairs the core adds to every response it sends
    back towards the request's origin, relayed or generated, provisional or final (the 100
    Trying sent before the steps run excepted). The verification step puts its
    `Reason: SIP|STIR;cause=...` there in annotate mode (RFC 3326, RFC 9410 §3). A Reason
    whose protocol the response already carries is left out (RFC 3326 §2: one per protocol).
    """

    customer: str | None = None
    caller_e164: str | None = None
    number_status: NumberStatus | None = None
    gateway: bool = False
    diverted_from: str | None = None
    rules_fired: list[str] = field(default_factory=list)
    upstream_headers: list[tuple[str, str]] = field(default_factory=list)


class RequestStep(Protocol):
    """One stage of the decision: policy, signing or verification."""

    name: str

    def decide(
        self, request: Request, origin: Origin, assessment: Assessment, now: float
    ) -> Decision:
        """Inspect (and possibly edit) `request`; `now` is seconds since the epoch."""
        ...
