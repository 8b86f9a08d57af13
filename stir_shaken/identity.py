"""Format and parse the SIP Identity header (RFC 8224 §4).

    Identity: <jws>;info=<https://x5u>;alg=ES256;ppt=shaken

Parsing is deliberately tolerant of syntax that peers legitimately emit (quoted `ppt="shaken"`,
`info` with or without angle brackets, spaces around ';' and '=') and records what it saw; the
MAN rules on which parameters must be present are applied by `verifier.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.sip.headers import split_values
from stir_shaken.passport import ALG_ES256, PPT_SHAKEN


class IdentityParseError(ValueError):
    """The Identity header value is not syntactically an RFC 8224 Identity (-> 438)."""


@dataclass(frozen=True, slots=True)
class IdentityHeader:
    """One parsed Identity header value.

    `params` keeps every parameter in order, names lower-cased, values unquoted and with the
    angle brackets of `info` removed, so duplicates and extras stay visible to the verifier.
    """

    token: str
    params: tuple[tuple[str, str | None], ...]

    def param(self, name: str) -> str | None:
        """The value of the first parameter called `name` (None when absent or valueless)."""
        for key, value in self.params:
            if key == name:
                return value
        return None

    def has_param(self, name: str) -> bool:
        """True when a parameter of that name is present at all."""
        return any(key == name for key, _ in self.params)

    @property
    def ppt(self) -> str | None:
        """The `ppt` parameter value, unquoted."""
        return self.param("ppt")

    @property
    def info(self) -> str | None:
        """The `info` parameter URI without angle brackets."""
        return self.param("info")

    @property
    def alg(self) -> str | None:
        """The `alg` parameter value."""
        return self.param("alg")


def format_identity(token: str, info: str, *, alg: str = ALG_ES256, ppt: str = PPT_SHAKEN) -> str:
    """Build an Identity header value: `<token>;info=<info>;alg=ES256;ppt=shaken`.

    RFC 8224 §4 writes `ident-info = "info" EQUAL ident-info-uri` with the URI in angle
    brackets; `alg` and `ppt` are emitted unquoted (both forms are legal, checklist §2 item 7).
    """
    if any(c in info for c in '<>" \t\r\n'):
        raise ValueError("info URI must not contain brackets, quotes or whitespace")
    return f"{token};info=<{info}>;alg={alg};ppt={ppt}"


def split_identity_values(values: list[str]) -> list[str]:
    """Split header values that may hold several comma-joined Identity values.

    Commas inside quoted strings or angle brackets do not split (the SIP layer's list split);
    items are stripped of any whitespace (values also come from the command line) and empty
    items are dropped.
    """
    items = (item.strip() for value in values for item in split_values(value))
    return [item for item in items if item]


_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def _read_param_value(text: str, pos: int) -> tuple[str, int]:
    """Read a quoted-string, <URI> or token starting at `pos`; return (value, next pos)."""
    if pos < len(text) and text[pos] == '"':
        chars: list[str] = []
        pos += 1
        while pos < len(text):
            char = text[pos]
            if char == "\\" and pos + 1 < len(text):
                chars.append(text[pos + 1])
                pos += 2
                continue
            if char == '"':
                return "".join(chars), pos + 1
            chars.append(char)
            pos += 1
        raise IdentityParseError("unterminated quoted string")
    if pos < len(text) and text[pos] == "<":
        end = text.find(">", pos)
        if end < 0:
            raise IdentityParseError("unterminated <URI>")
        return text[pos + 1 : end], end + 1
    end = pos
    while end < len(text) and text[end] not in "; \t":
        end += 1
    if end == pos:
        raise IdentityParseError("empty parameter value")
    return text[pos:end], end


def parse_identity(value: str) -> IdentityHeader:
    """Parse one Identity header value into its token and parameters.

    Raises IdentityParseError for an empty token or malformed parameter syntax.
    """
    text = value.strip()
    semi = text.find(";")
    token = (text if semi < 0 else text[:semi]).strip()
    if not token or any(c in token for c in ' \t"<>,'):
        raise IdentityParseError("missing or malformed signed-identity-digest")
    params: list[tuple[str, str | None]] = []
    pos = len(text) if semi < 0 else semi
    while pos < len(text):
        # At a ';' (possibly surrounded by whitespace, RFC 3261 SEMI = SWS ";" SWS).
        if text[pos] != ";":
            raise IdentityParseError(f"unexpected {text[pos]!r} in parameters")
        pos += 1
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        start = pos
        while pos < len(text) and text[pos] in _TOKEN_CHARS:
            pos += 1
        name = text[start:pos].lower()
        if not name:
            raise IdentityParseError("empty parameter name")
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        param_value: str | None = None
        if pos < len(text) and text[pos] == "=":
            pos += 1
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            param_value, pos = _read_param_value(text, pos)
            while pos < len(text) and text[pos] in " \t":
                pos += 1
        params.append((name, param_value))
    return IdentityHeader(token=token, params=tuple(params))
