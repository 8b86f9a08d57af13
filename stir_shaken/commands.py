"""`sipguard identity sign|verify` and `sipguard pki init` (docs/design.md, "CLI").

`register(subparsers)` adds the commands to the proxy's argparse root; each handler returns an
exit code. For local use without the proxy: `python -m stir_shaken.commands identity ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from stir_shaken.cache import CertCache
from stir_shaken.certs import CertificateError, TrustStore, load_certificate_files
from stir_shaken.identity import IdentityParseError, parse_identity, split_identity_values
from stir_shaken.keys import KeyLoadError, check_key_permissions, load_credentials
from stir_shaken.passport import TnError, b64url_decode, canonical_tn, parse_json_object
from stir_shaken.pki import DEFAULT_SPC, init_pki
from stir_shaken.signer import Signer
from stir_shaken.verifier import Verifier


def _load_key(key_file: Path, cert_file: Path | None) -> Signer | str:
    """Load the signing key (checking it against `cert_file` when given)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if cert_file is not None:
            return Signer(load_credentials(key_file, cert_file).key, "")
        check_key_permissions(key_file)
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except KeyLoadError as exc:
        return str(exc)
    except (OSError, ValueError, TypeError):
        return f"{key_file}: not a readable unencrypted PEM private key"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        return f"{key_file}: signing key must be EC P-256"
    return Signer(key, "")


def _cmd_sign(args: argparse.Namespace) -> int:
    loaded = _load_key(Path(args.key), Path(args.cert) if args.cert else None)
    if isinstance(loaded, str):
        print(f"error: {loaded}", file=sys.stderr)
        return 2
    signer = Signer(loaded.key, args.x5u)
    iat = int(args.iat if args.iat is not None else time.time())
    try:
        orig = canonical_tn(args.orig)
        dest = canonical_tn(args.dest)
        if args.div:
            value = signer.sign_div(orig=orig, div=canonical_tn(args.div), dest=dest, iat=iat)
        else:
            value = signer.sign_shaken(
                orig=orig, dest=dest, attest=args.attest, iat=iat, origid=args.origid
            )
    except (TnError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(value)
    return 0


def _decode(value: str) -> dict[str, Any]:
    """Best-effort decoding for display; never raises."""
    shown: dict[str, Any] = {}
    try:
        identity = parse_identity(value)
    except IdentityParseError as exc:
        return {"error": str(exc)}
    shown["params"] = {name: param for name, param in identity.params}
    parts = identity.token.split(".")
    for label, index in (("header", 0), ("claims", 1)):
        try:
            shown[label] = parse_json_object(b64url_decode(parts[index]))
        except (IndexError, ValueError, UnicodeDecodeError) as exc:
            shown[label] = f"<undecodable: {exc}>"
    return shown


def _fetch_all(urls: Sequence[str], cache: CertCache, args: argparse.Namespace, now: float) -> None:
    from stir_shaken.fetch import X5uFetcher

    async def run() -> None:
        context = ssl.create_default_context(cafile=args.tls_ca) if args.tls_ca else None
        async with X5uFetcher(
            cache,
            connect_timeout=args.timeout,
            read_timeout=args.timeout,
            allow_http=args.allow_http,
            allow_private=args.allow_private,
            ssl_context=context,
        ) as fetcher:
            for url in urls:
                await fetcher.fetch(url, now)

    asyncio.run(run())


def _cmd_verify(args: argparse.Namespace) -> int:
    values = split_identity_values(args.identity)
    now = float(args.now) if args.now is not None else time.time()
    for value in values:
        print(json.dumps(_decode(value), indent=2, sort_keys=True, ensure_ascii=False))
    if not args.trust_anchor:
        print("error: at least one --trust-anchor is needed for a verdict", file=sys.stderr)
        return 2
    if len(args.crl) != len(args.crl_signer):
        print("error: give one --crl-signer per --crl", file=sys.stderr)
        return 2
    try:
        trust = TrustStore.from_files(
            [(path, None) for path in args.trust_anchor],
            args.intermediate,
            list(zip(args.crl, args.crl_signer, strict=True)),
            tnauthlist_required=not args.no_tnauthlist,
            crl_fail_open=args.crl_fail_open,
        )
        given: list[x509.Certificate] | None = (
            load_certificate_files([args.cert]) if args.cert else None
        )
    except CertificateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = CertCache()
    verifier = Verifier(trust, freshness=args.freshness, allow_http_x5u=args.allow_http)

    def run_once() -> Any:
        return verifier.verify(
            values,
            orig_tn=args.from_tn,
            dest_tn=args.to_tn,
            target_tn=args.target,
            now=now,
            date=args.date,
            lookup=(lambda _url: given) if given is not None else cache.lookup(now),
        )

    result = run_once()
    for _ in range(4):  # one fetch per PASSporT (shaken, then each div)
        if result.pending_url is None:
            break
        _fetch_all([result.pending_url], cache, args, now)
        result = run_once()
    if result.pending_url is not None:  # pragma: no cover - cache always answers after fetch
        result = type(result)(ok=False, code=436, reason="certificate unobtainable")
    if result.spc:
        print(f"certificate SPC: {result.spc}")
    if result.ok:
        print(f"verdict: PASS (attest {result.attest}, verstat {result.verstat})")
        return 0
    print(f"verdict: FAIL {result.code} {result.phrase}: {result.reason}")
    return 1


def _cmd_pki_init(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    lab = init_pki(directory, spc=args.spc, x5u_base=args.x5u_base)
    print(f"lab MAN PKI written to {directory}")
    for label, path in (
        ("trust anchor", lab.root),
        ("intermediate", lab.intermediate),
        ("policy authority (CRL signer)", lab.policy_authority),
        ("operator certificate", lab.operator_cert),
        ("operator chain", lab.operator_chain),
        ("operator key (0600)", lab.operator_key),
        ("indirect CRL", lab.crl),
        ("lab TLS server cert", lab.tls_cert),
    ):
        print(f"  {label:32} {path}")
    print(f"  {'SPC':32} {lab.spc}")
    print(f"  {'suggested x5u':32} {lab.x5u}")
    return 0


def register(subparsers: Any) -> None:
    """Add `identity sign`, `identity verify` and `pki init` to an argparse sub-parser set."""
    identity = subparsers.add_parser("identity", help="sign or verify SIP Identity headers")
    isub = identity.add_subparsers(dest="identity_command", required=True, metavar="ACTION")

    sign = isub.add_parser("sign", help="print an Identity header value (ES256 PASSporT)")
    sign.add_argument("--key", required=True, help="PEM P-256 private key (mode 0600)")
    sign.add_argument("--cert", help="certificate to check the key against")
    sign.add_argument("--x5u", required=True, help="https URL of the certificate")
    sign.add_argument("--orig", required=True, help="calling number, E.164 (+ optional)")
    sign.add_argument("--dest", required=True, help="called number, E.164")
    sign.add_argument("--attest", choices=("A", "B", "C"), default="A")
    sign.add_argument("--origid", help="origination UUID (random when absent)")
    sign.add_argument("--iat", type=int, help="issued-at, seconds since the epoch (now)")
    sign.add_argument("--div", help="make a div PASSporT (RFC 8946) for this diverting number")
    sign.set_defaults(handler=_cmd_sign)

    verify = isub.add_parser("verify", help="decode and verify Identity header value(s)")
    verify.add_argument("identity", nargs="+", help="Identity header value(s)")
    verify.add_argument("--from", dest="from_tn", required=True, help="From/PAI number")
    verify.add_argument("--to", dest="to_tn", required=True, help="To number")
    verify.add_argument("--target", help="Request-URI number (for div PASSporTs)")
    verify.add_argument("--date", help="the request's Date header")
    verify.add_argument("--cert", help="use this certificate file instead of fetching x5u")
    verify.add_argument("--trust-anchor", action="append", default=[], help="trust anchor PEM")
    verify.add_argument("--intermediate", action="append", default=[], help="intermediate PEM")
    verify.add_argument("--crl", action="append", default=[], help="CRL file")
    verify.add_argument("--crl-signer", action="append", default=[], help="its signer cert")
    verify.add_argument("--crl-fail-open", action="store_true")
    verify.add_argument("--no-tnauthlist", action="store_true", help="accept no TNAuthList")
    verify.add_argument("--freshness", type=int, default=60, help="seconds (default 60)")
    verify.add_argument("--now", type=float, help="verification time (default: now)")
    verify.add_argument("--allow-http", action="store_true", help="lab: accept http x5u")
    verify.add_argument("--allow-private", action="store_true", help="lab: private x5u hosts")
    verify.add_argument("--tls-ca", help="CA bundle for the x5u HTTPS server")
    verify.add_argument("--timeout", type=float, default=3.0, help="fetch timeout, seconds")
    verify.set_defaults(handler=_cmd_verify)

    pki = subparsers.add_parser("pki", help="lab PKI shaped like the French MAN one")
    psub = pki.add_subparsers(dest="pki_command", required=True, metavar="ACTION")
    init = psub.add_parser("init", help="create root, intermediate, PA, operator cert, CRL")
    init.add_argument("directory")
    init.add_argument("--spc", default=DEFAULT_SPC, help="6-character APNF code")
    init.add_argument("--x5u-base", default="https://127.0.0.1:8443")
    init.set_defaults(handler=_cmd_pki_init)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: `python -m stir_shaken.commands ...`."""
    parser = argparse.ArgumentParser(prog="stir_shaken")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    handler = args.handler
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
