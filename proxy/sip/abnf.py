"""Regular expressions for the SIP grammar, compiled once at import.

Each pattern cites the ABNF rule of RFC 3261 §25.1 (or RFC 3966 / RFC 3581) it
implements.  Patterns on ``bytes`` are used on the raw message before decoding; the
others on ``str`` values decoded as UTF-8 with ``surrogateescape``.
"""

from __future__ import annotations

import re

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = rf"[{TOKEN_CHARS}]+"
TOKEN_RE = re.compile(TOKEN)
TOKEN_BYTES_RE = re.compile(TOKEN.encode())

# Request-Line = Method SP Request-URI SP SIP-Version CRLF   (RFC 3261 §7.1, §25.1)
# Exactly one SP between elements: RFC 4475 §3.1.2.{7,8} (lwsstart, trws) are invalid.
REQUEST_LINE_RE = re.compile(rb"(" + TOKEN.encode() + rb") ([^ ]+) ([Ss][Ii][Pp]/[0-9]+\.[0-9]+)")
# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT  (ABNF literals are case-insensitive)
SIP_VERSION_RE = re.compile(r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+")
# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF; Status-Code = 3DIGIT
# The final SP is required by the ABNF, but "SIP/2.0 100" without it is accepted leniently.
STATUS_LINE_RE = re.compile(rb"([Ss][Ii][Pp]/[0-9]+\.[0-9]+) ([1-6][0-9][0-9])(?: ([^\r\n]*))?")
# A leading token followed by SP: enough to know the method of a broken Request-Line.
METHOD_PREFIX_RE = re.compile(rb"(" + TOKEN.encode() + rb") ")

# message-header = field-name HCOLON field-value; HCOLON = *( SP / HTAB ) ":" SWS
HEADER_NAME_RE = re.compile(rb"[" + TOKEN_CHARS.encode() + rb"]+")
# LWS = [*WSP CRLF] 1*WSP: a folded line is equivalent to a single SP (RFC 3261 §7.3.1).
FOLD_RE = re.compile(rb"[ \t]*\r\n[ \t]+")

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F); qdtext excludes DQUOTE and "\".
QUOTED = r'"(?:[^"\\\r\n]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
QUOTED_RE = re.compile(QUOTED)
QUOTED_PAIR_RE = re.compile(r"\\([\x00-\x09\x0b\x0c\x0e-\x7f])")

# hostname = *( domainlabel "." ) toplabel [ "." ]; IPv4address; IPv6reference
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*\.?"
HOSTNAME_RE = re.compile(HOSTNAME)
IPV6_REFERENCE = r"\[[0-9A-Fa-f:.]+\]"
HOST = rf"(?:{IPV6_REFERENCE}|{HOSTNAME})"
HOST_RE = re.compile(HOST)
IPV4_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")

# generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string
# SEMI and EQUAL allow SWS around them (RFC 3261 §25.1).
# via-received allows a bare IPv6address (RFC 3261 §20.42), which is not a token.
IPV6_ADDRESS = r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]+"
_GEN_VALUE = rf"{IPV6_ADDRESS}|{TOKEN}|{QUOTED}|{IPV6_REFERENCE}"
GENERIC_PARAM = rf"[ \t]*;[ \t]*({TOKEN})(?:[ \t]*=[ \t]*({_GEN_VALUE}))?[ \t]*"
GENERIC_PARAM_RE = re.compile(GENERIC_PARAM)
_GENERIC_PARAM_NC = rf"[ \t]*;[ \t]*{TOKEN}(?:[ \t]*=[ \t]*(?:{_GEN_VALUE}))?[ \t]*"
GENERIC_PARAMS_RE = re.compile(rf"(?:{_GENERIC_PARAM_NC})*")

# Via = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport; SLASH = SWS "/" SWS
# sent-by = host [ COLON port ]
VIA_RE = re.compile(
    rf"[ \t]*({TOKEN})[ \t]*/[ \t]*({TOKEN})[ \t]*/[ \t]*({TOKEN})[ \t]+({HOST})"
    rf"(?:[ \t]*:[ \t]*([0-9]{{1,5}}))?[ \t]*((?:{_GENERIC_PARAM_NC})*)"
)

# CSeq = 1*DIGIT LWS Method; the digit run is bounded so int() never sees huge input.
CSEQ_RE = re.compile(rf"[ \t]*([0-9]+)[ \t]+({TOKEN})[ \t]*")
# Max-Forwards = 1*DIGIT; Content-Length = 1*DIGIT (leading zeros allowed)
DIGITS_RE = re.compile(r"[ \t]*([0-9]{1,12})[ \t]*")
DIGITS_BYTES_RE = re.compile(rb"[ \t]*([0-9]{1,12})[ \t]*")

# callid = word [ "@" word ]
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
CALLID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?")

# --- URIs (RFC 3261 §19.1.1, §25.1) -------------------------------------------------
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# user = 1*( unreserved / escaped / user-unreserved ); user-unreserved = & = + $ , ; ? /
_USER = rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})+"
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
_PASSWORD = rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*"
# paramchar = param-unreserved / unreserved / escaped; param-unreserved = [ ] / : & + $
_PARAMCHAR = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})"
# hname = 1*( hnv-unreserved / unreserved / escaped ); hnv-unreserved = [ ] / ? : + $
_HNV = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})"
_URI_HEADER = rf"{_HNV}+={_HNV}*"
SIP_URI_RE = re.compile(
    rf"(?:(?P<user>{_USER})(?::(?P<password>{_PASSWORD}))?@)?"
    rf"(?P<host>{HOST})(?::(?P<port>[0-9]{{1,5}}))?"
    rf"(?P<params>(?:;{_PARAMCHAR}+(?:={_PARAMCHAR}+)?)*)"
    rf"(?:\?(?P<headers>{_URI_HEADER}(?:&{_URI_HEADER})*))?"
)
ESCAPE_RE = re.compile(rb"%([0-9A-Fa-f]{2})")
# absoluteURI = scheme ":" ( hier-part / opaque-part ); scheme = ALPHA *( ALPHA / DIGIT / + - . )
SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")
# uric: visible ASCII except DQUOTE, "<", ">" (and never SP or CTL)
ABSOLUTE_REST_RE = re.compile(r"[\x21\x23-\x3b\x3d\x3f-\x7e]+")

# RFC 3966: global-number-digits / local-number-digits, then *( ";" par )
TEL_NUMBER_RE = re.compile(
    r"\+[0-9\-.()]*[0-9][0-9\-.()]*|[0-9A-Fa-f*#\-.()]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()]*"
)
TEL_PARAMS_RE = re.compile(rf"(?:;[A-Za-z0-9\-]+(?:={_PARAMCHAR}+)?)*")

# rfc1123-date = wkday "," SP date1 SP time SP "GMT"  (RFC 3261 §20.17)
DATE_RE = re.compile(
    r"[ \t]*(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT[ \t]*"
)
