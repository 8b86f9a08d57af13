"""x5u fetching against a local HTTPS server with a lab TLS certificate (checklist §3 step 7).

These use real sockets on 127.0.0.1 (so `allow_private` is on, as for a lab), a revoked
certificate, an unreachable x5u, and the SSRF guard.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from stir_lab import Lab

from proxy.core.decision import Assessment, Continue, Defer, Origin, Reject
from stir_shaken import pki
from stir_shaken.cache import CertCache
from stir_shaken.crl import CrlSet, load_crl
from stir_shaken.fetch import FetchRefused, X5uFetcher, _GuardedResolver, check_url
from stir_shaken.settings import TrunkVerification
from stir_shaken.steps import VerificationStep
from stir_shaken.verifier import CertUnavailable

TRUNK = Origin(kind="trunk", name="op1", transport="tls", remote=("127.0.0.1", 5061))


@asynccontextmanager
async def https_server(lab: Lab, tmp_path: Path, routes: dict[str, Any]) -> AsyncIterator[str]:
    """Serve `routes` {path: bytes | (bytes, headers) | handler} over HTTPS on 127.0.0.1."""
    tls = pki.make_tls_server(lab.root)
    cert_file, key_file = tmp_path / "tls.pem", tmp_path / "tls.key"
    cert_file.write_bytes(pki.pem(tls.cert))
    pki.write_private_key(key_file, tls.key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    app = web.Application()
    hits: dict[str, int] = {}

    def make(path: str, spec: Any) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            hits[path] = hits.get(path, 0) + 1
            if callable(spec):
                result: web.StreamResponse = await spec(request)
                return result
            body, headers = spec if isinstance(spec, tuple) else (spec, {})
            return web.Response(body=body, headers=headers)

        return handler

    for path, spec in routes.items():
        app.router.add_get(path, make(path, spec))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def client_context(lab: Lab) -> ssl.SSLContext:
    """Client TLS context trusting the lab root."""
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=pki.pem(lab.root.cert).decode())
    return context


def fetcher(lab: Lab, cache: CertCache, **kwargs: Any) -> X5uFetcher:
    """A lab fetcher: private addresses allowed, lab TLS trusted, short timeouts."""
    options: dict[str, Any] = {
        "allow_private": True,
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
        "ssl_context": client_context(lab),
    }
    options.update(kwargs)
    return X5uFetcher(cache, **options)


def step_for(lab: Lab, **kwargs: Any) -> VerificationStep:
    """Verification step for op1 in enforce mode over the lab PKI."""
    settings = TrunkVerification.model_validate(
        {"enabled": True, "mode": "enforce", "trust_anchors": ["unused.pem"]}
    )
    return VerificationStep({"op1": settings}, trust_stores={"op1": lab.trust(**kwargs)})


def invite_with(value: str) -> Any:
    """An INVITE from the lab caller to the lab callee carrying `value`."""
    from test_stir_steps import invite

    return invite(extra=[f"Identity: {value}"])


async def run_with_fetch(
    step: VerificationStep, request: Any, now: float, fetch: X5uFetcher
) -> Any:
    """Do what the core + shell do: Defer -> fetch into the cache -> re-run."""
    decision = step.decide(request, TRUNK, Assessment(), now)
    if isinstance(decision, Defer):
        await fetch.fetch(decision.url, now)
        decision = step.decide(request, TRUNK, Assessment(), now)
    return decision


def test_fetch_and_verify_over_https(lab: Lab, tmp_path: Path) -> None:
    """Defer, fetch the PEM over HTTPS, re-run: Continue and verstat Passed."""

    async def scenario() -> None:
        body = pki.pem(lab.operator.cert)
        async with https_server(
            lab, tmp_path, {"/c.cer": (body, {"Cache-Control": "max-age=600"})}
        ) as base:
            url = f"{base}/c.cer"
            value = lab.signer.__class__(lab.operator.key, url).sign_shaken(
                orig="33162000001", dest="33187654321", attest="A", iat=int(lab.now), origid="o"
            )
            step = step_for(lab)
            request = invite_with(value)
            async with fetcher(lab, step.cache) as fetch:
                decision = await run_with_fetch(step, request, lab.now, fetch)
                assert decision == Continue()
                assert "TN-Validation-Passed" in request.get("From")
                # Cached for max-age: gone after 600 s (and min TTL is below that).
                assert step.cache.get(url, lab.now + 599) is not None
                assert step.cache.get(url, lab.now + 601) is None

    asyncio.run(scenario())


def test_revoked_certificate_over_https_is_437(lab: Lab, tmp_path: Path) -> None:
    """The fetched certificate is on the PA's indirect CRL -> 437."""

    async def scenario() -> None:
        revoked = pki.make_operator(lab.inter, crl_issuer=lab.pa.cert.subject, now=lab.now - 5)
        crl = pki.make_crl(
            lab.pa, [(lab.inter.cert.subject, revoked.cert.serial_number)], now=lab.now
        )
        loaded = load_crl(crl.public_bytes(serialization.Encoding.PEM), lab.pa.cert)
        async with https_server(lab, tmp_path, {"/r.cer": pki.pem(revoked.cert)}) as base:
            url = f"{base}/r.cer"
            value = lab.signer.__class__(revoked.key, url).sign_shaken(
                orig="33162000001", dest="33187654321", attest="A", iat=int(lab.now), origid="o"
            )
            step = step_for(lab, crls=CrlSet((loaded,)))
            async with fetcher(lab, step.cache) as fetch:
                decision = await run_with_fetch(step, invite_with(value), lab.now, fetch)
        assert isinstance(decision, Reject) and decision.status == 437
        assert "revoked" in decision.text

    asyncio.run(scenario())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_unreachable_x5u_is_436(lab: Lab) -> None:
    """Nothing listens at the x5u -> the failure is cached and the re-run gives 436."""

    async def scenario() -> None:
        url = f"https://127.0.0.1:{_closed_port()}/c.cer"
        value = lab.signer.__class__(lab.operator.key, url).sign_shaken(
            orig="33162000001", dest="33187654321", attest="A", iat=int(lab.now), origid="o"
        )
        step = step_for(lab)
        async with fetcher(lab, step.cache) as fetch:
            decision = await run_with_fetch(step, invite_with(value), lab.now, fetch)
        assert isinstance(decision, Reject) and decision.status == 436

    asyncio.run(scenario())


def test_private_address_refused_without_lab_flag(lab: Lab, tmp_path: Path) -> None:
    """Without allow_private the loopback server is never contacted (SSRF guard)."""

    async def scenario() -> None:
        async with https_server(lab, tmp_path, {"/c.cer": pki.pem(lab.operator.cert)}) as base:
            cache = CertCache()
            async with fetcher(lab, cache, allow_private=False) as fetch:
                result = await fetch.fetch(f"{base}/c.cer", lab.now)
                assert isinstance(result, CertUnavailable) and "private" in result.reason
                assert fetch.requests_made == 0

    asyncio.run(scenario())


def test_concurrent_fetches_are_coalesced(lab: Lab, tmp_path: Path) -> None:
    """Ten simultaneous fetches of one URL make one HTTP request."""

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.2)
        return web.Response(body=pki.pem(lab.operator.cert))

    async def scenario() -> None:
        async with (
            https_server(lab, tmp_path, {"/slow.cer": slow}) as base,
            fetcher(lab, CertCache()) as fetch,
        ):
            results = await asyncio.gather(
                *(fetch.fetch(f"{base}/slow.cer", lab.now) for _ in range(10))
            )
            assert fetch.requests_made == 1
        assert all(not isinstance(r, CertUnavailable) for r in results)

    asyncio.run(scenario())


def test_size_cap_and_http_errors(lab: Lab, tmp_path: Path) -> None:
    """Bodies over the cap and non-200 answers are failures, not certificates."""

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404)

    async def scenario() -> None:
        routes = {"/big.cer": b"x" * 5000, "/missing.cer": missing}
        async with (
            https_server(lab, tmp_path, routes) as base,
            fetcher(lab, CertCache(), max_bytes=1024) as fetch,
        ):
            big = await fetch.fetch(f"{base}/big.cer", lab.now)
            gone = await fetch.fetch(f"{base}/missing.cer", lab.now)
        assert isinstance(big, CertUnavailable) and "larger" in big.reason
        assert isinstance(gone, CertUnavailable) and "404" in gone.reason

    asyncio.run(scenario())


def test_redirect_is_followed_and_rechecked(lab: Lab, tmp_path: Path) -> None:
    """A redirect is followed by hand; a redirect to http is refused (https only)."""

    async def to_ok(request: web.Request) -> web.Response:
        raise web.HTTPFound("/c.cer")

    async def to_http(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{request.url.port}/c.cer")

    async def scenario() -> None:
        routes = {"/c.cer": pki.pem(lab.operator.cert), "/moved": to_ok, "/downgrade": to_http}
        async with (
            https_server(lab, tmp_path, routes) as base,
            fetcher(lab, CertCache()) as fetch,
        ):
            moved = await fetch.fetch(f"{base}/moved", lab.now)
            downgrade = await fetch.fetch(f"{base}/downgrade", lab.now)
        assert not isinstance(moved, CertUnavailable)
        assert isinstance(downgrade, CertUnavailable) and "https" in downgrade.reason

    asyncio.run(scenario())


def test_untrusted_tls_certificate_fails(lab: Lab, tmp_path: Path) -> None:
    """The x5u server's TLS certificate must verify (system store by default)."""

    async def scenario() -> None:
        async with (
            https_server(lab, tmp_path, {"/c.cer": pki.pem(lab.operator.cert)}) as base,
            fetcher(lab, CertCache(), ssl_context=ssl.create_default_context()) as fetch,
        ):
            result = await fetch.fetch(f"{base}/c.cer", lab.now)
        assert isinstance(result, CertUnavailable)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("url", "kwargs"),
    [
        ("http://bpco.example/c.cer", {}),
        ("ftp://bpco.example/c.cer", {"allow_http": True}),
        ("https://10.0.0.1/c.cer", {}),
        ("https://[::1]/c.cer", {}),
        ("https://169.254.169.254/latest", {}),
        ("https://user:pw@bpco.example/c.cer", {}),
        ("https:///c.cer", {}),
    ],
)
def test_check_url_refuses(url: str, kwargs: dict[str, bool]) -> None:
    """Non-https, private/link-local literals, credentials and empty hosts are refused."""
    with pytest.raises(FetchRefused):
        check_url(url, **kwargs)


def test_check_url_accepts_public_https() -> None:
    """A public https URL (and http when allowed for labs) passes."""
    check_url("https://api.man-bpco.fr/certs/OPC000/01.cer")
    check_url("http://93.184.216.34/c.cer", allow_http=True)


def test_guarded_resolver_drops_loopback() -> None:
    """Names resolving only to loopback are refused at connection time."""

    async def scenario() -> None:
        resolver = _GuardedResolver()
        try:
            with pytest.raises(OSError, match="private"):
                await resolver.resolve("localhost", 443)
        finally:
            await resolver.close()

    asyncio.run(scenario())
