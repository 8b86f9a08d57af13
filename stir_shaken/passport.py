"""PASSporT claims and JOSE header (RFC 8225, RFC 8588 `shaken`, RFC 8946 `div`).

Everything here is pure: canonical telephone numbers, the claim sets, and their deterministic
JSON serialisation. Signing lives in `signer.py`, checking in `verifier.py`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

Attest = Literal["A", "B", "C"]
ATTEST_LEVELS: frozenset[str] = frozenset({"A", "B", "C"})

PPT_SHAKEN = "shaken"
PPT_DIV = "div"
ALG_ES256 = "ES256"
TYP_PASSPORT = "passport"

# RFC 8224 §8.3 / RFC 8225 §5.2.1: the canonical TN is the digit string of the international
# number, no '+', no visual separators. We remove only separators RFC 3966 calls "visual".
_VISUAL_SEPARATORS = re.compile(r"[-.() ]")
_DIGITS = re.compile(r"[0-9]{1,20}")
# E.164 numbers are at most 15 digits; French national numbers have 9 after the 33.
_MAX_TN_DIGITS = 15


class TnError(ValueError):
    """A string could not be turned into a canonical telephone number."""


def canonical_tn(value: str) -> str:
    """Return the canonical TN form of an international number (RFC 8224 §8.3).

    Accepts `+33 1 62 00 00 01`, `+33-162000001` or `33162000001`; rejects anything that is not
    an international digit string afterwards (letters, '*', '#', an empty string).
    """
    text = _VISUAL_SEPARATORS.sub("", value.strip())
    if text.startswith("+"):
        text = text[1:]
    if not _DIGITS.fullmatch(text) or len(text) > _MAX_TN_DIGITS:
        raise TnError(f"not an international telephone number: {value!r}")
    return text


def is_canonical_tn(value: object) -> bool:
    """True when `value` is already a canonical TN string (digits only, no '+')."""
    return (
        isinstance(value, str)
        and _DIGITS.fullmatch(value) is not None
        and len(value) <= _MAX_TN_DIGITS
    )


def canonical_json(obj: object) -> bytes:
    """Serialise with keys sorted and no whitespace (RFC 8225 §9, checklist §1).

    OpenSIPS rebuilds the JSON this way before verifying, so the bytes we sign must be exactly
    these: any other ordering or spacing makes OpenSIPS peers answer 438.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def b64url_encode(data: bytes) -> str:
    """Base64url without '=' padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_decode(text: str) -> bytes:
    """Strict base64url decoding: URL-safe alphabet, no padding, no whitespace (RFC 7515 §2).

    Raises ValueError for padded or otherwise non-canonical input, which secsipidx and PyJWT
    tolerate but a MAN verifier must refuse (checklist §10).
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - regex already filters
        raise ValueError("not base64url") from exc
    # Reject non-canonical trailing bits so each token has exactly one encoding.
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data


@dataclass(frozen=True, slots=True)
class JoseHeader:
    """The protected header of a PASSporT: exactly alg, ppt, typ, x5u (RFC 8225 §4)."""

    x5u: str
    ppt: str = PPT_SHAKEN
    alg: str = ALG_ES256
    typ: str = TYP_PASSPORT

    def to_dict(self) -> dict[str, str]:
        """The header as a JSON object."""
        return {"alg": self.alg, "ppt": self.ppt, "typ": self.typ, "x5u": self.x5u}

    def to_json(self) -> bytes:
        """Deterministic JSON bytes of the header."""
        return canonical_json(self.to_dict())


@dataclass(frozen=True, slots=True)
class ShakenClaims:
    """SHAKEN PASSporT claims (RFC 8588 §4): attest, dest, iat, orig, origid — nothing else.

    `orig` and every `dest` entry are canonical TNs; `dest` is serialised as a one-element
    array (RFC 8225 §5.2.1), the form OpenSIPS rebuilds (checklist §1).
    """

    orig: str
    dest: str
    attest: Attest
    iat: int
    origid: str

    def __post_init__(self) -> None:
        if not is_canonical_tn(self.orig) or not is_canonical_tn(self.dest):
            raise TnError("orig and dest must be canonical TNs (digits only, no '+')")
        if self.attest not in ATTEST_LEVELS:
            raise ValueError(f"attest must be A, B or C, not {self.attest!r}")
        if isinstance(self.iat, bool) or not isinstance(self.iat, int):
            raise ValueError("iat must be an integer NumericDate")
        if not self.origid:
            raise ValueError("origid must not be empty")

    def to_dict(self) -> dict[str, Any]:
        """The claims as a JSON object."""
        return {
            "attest": self.attest,
            "dest": {"tn": [self.dest]},
            "iat": self.iat,
            "orig": {"tn": self.orig},
            "origid": self.origid,
        }

    def to_json(self) -> bytes:
        """Deterministic JSON bytes of the claims."""
        return canonical_json(self.to_dict())


@dataclass(frozen=True, slots=True)
class DivClaims:
    """A `div` PASSporT (RFC 8946 §3): orig, the diverting number `div`, the new `dest`, iat."""

    orig: str
    div: str
    dest: str
    iat: int

    def __post_init__(self) -> None:
        if not all(is_canonical_tn(v) for v in (self.orig, self.div, self.dest)):
            raise TnError("orig, div and dest must be canonical TNs (digits only, no '+')")
        if isinstance(self.iat, bool) or not isinstance(self.iat, int):
            raise ValueError("iat must be an integer NumericDate")

    def to_dict(self) -> dict[str, Any]:
        """The claims as a JSON object."""
        return {
            "dest": {"tn": [self.dest]},
            "div": {"tn": self.div},
            "iat": self.iat,
            "orig": {"tn": self.orig},
        }

    def to_json(self) -> bytes:
        """Deterministic JSON bytes of the claims."""
        return canonical_json(self.to_dict())


class DuplicateKeyError(ValueError):
    """A JSON object repeated a key (checklist §3 step 4)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON (RFC 8259 §6); Python accepts them by default.
    raise ValueError(f"invalid JSON constant {name}")


def parse_json_object(data: bytes) -> dict[str, Any]:
    """Parse a JWS segment as a JSON object, refusing duplicate keys and non-objects."""
    value = json.loads(
        data.decode("utf-8"),
        object_pairs_hook=_no_duplicates,
        parse_constant=_reject_constant,
    )
    if not isinstance(value, dict):
        raise ValueError("JSON value is not an object")
    return value
