"""Fetch x5u certificates over HTTPS (checklist §3 step 7) — the only I/O in stir_shaken.

Rules, because an x5u is an attacker-chosen URL that the verifier dereferences:
* https only (the BPCO is HTTPS-only, MAN CP §2.2) unless `allow_http` (labs);
* the host must not be, or resolve to, a private/loopback/link-local/reserved address unless
  `allow_private` (SSRF guard). The check is in the connector's resolver, so it also covers
  every redirect hop and DNS answers that change between hops;
* redirects are followed by hand (at most 3), each hop re-checked;
* connect and read timeouts (Asterisk and libstirshaken use about 2 s) and a body size cap;
* results, good or bad, go into the shared `CertCache`, honouring Cache-Control max-age;
* concurrent fetches of one URL share a single request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from cryptography import x509

from stir_shaken.cache import CertCache
from stir_shaken.settings import TrunkVerification
from stir_shaken.verifier import CertUnavailable

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 3


class FetchRefused(Exception):
    """The URL or the address it resolves to is not allowed."""


def _address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_url(url: str, *, allow_http: bool = False, allow_private: bool = False) -> None:
    """Raise FetchRefused unless `url` may be fetched under these rules."""
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme.lower() not in schemes:
        raise FetchRefused(f"x5u scheme {parts.scheme!r} not allowed (https only)")
    if not parts.hostname:
        raise FetchRefused("x5u has no host")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("x5u must not carry credentials")
    if not allow_private:
        try:
            ipaddress.ip_address(parts.hostname)
        except ValueError:
            return  # a name: checked at resolution time by _GuardedResolver
        if not _address_allowed(parts.hostname):
            raise FetchRefused(f"x5u host {parts.hostname} is a private/loopback address")


class _GuardedResolver(AbstractResolver):
    """DNS resolver that drops private/loopback answers (SSRF guard, checklist §3 step 7)."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if _address_allowed(a["host"])]
        if not allowed:
            raise OSError(f"x5u host {host} resolves only to private/loopback addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class X5uFetcher:
    """Async x5u fetcher writing into a `CertCache`; one per process (or per trunk profile)."""

    def __init__(
        self,
        cache: CertCache,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 3.0,
        max_bytes: int = 64 * 1024,
        allow_http: bool = False,
        allow_private: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.cache = cache
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_bytes = max_bytes
        self.allow_http = allow_http
        self.allow_private = allow_private
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None
        self._inflight: dict[str, asyncio.Future[Sequence[x509.Certificate] | CertUnavailable]]
        self._inflight = {}
        self.requests_made = 0

    @classmethod
    def from_settings(cls, settings: TrunkVerification, cache: CertCache) -> X5uFetcher:
        """Build a fetcher from a trunk's verification settings."""
        context = ssl.create_default_context(
            cafile=str(settings.x5u_tls_ca_file) if settings.x5u_tls_ca_file else None
        )
        return cls(
            cache,
            connect_timeout=settings.fetch_connect_timeout,
            read_timeout=settings.fetch_read_timeout,
            max_bytes=settings.fetch_max_bytes,
            allow_http=settings.allow_http_x5u,
            allow_private=settings.allow_private_x5u,
            ssl_context=context,
        )

    async def __aenter__(self) -> X5uFetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = None if self.allow_private else _GuardedResolver()
            connector = aiohttp.TCPConnector(
                ssl=self.ssl_context, resolver=resolver, limit=32, ttl_dns_cache=60
            )
            timeout = aiohttp.ClientTimeout(
                total=self.connect_timeout + self.read_timeout,
                sock_connect=self.connect_timeout,
                sock_read=self.read_timeout,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=False
            )
        return self._session

    async def fetch(
        self, url: str, now: float | None = None
    ) -> Sequence[x509.Certificate] | CertUnavailable:
        """Return the certificates at `url` from the cache, or fetch and cache them.

        Never raises for network or content problems: they come back as CertUnavailable (and are
        negatively cached), which the verifier turns into 436.
        """
        current = time.time() if now is None else now
        cached = self.cache.get(url, current)
        if cached is not None:
            return cached
        pending = self._inflight.get(url)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Sequence[x509.Certificate] | CertUnavailable]
        future = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            result = await self._fetch_and_store(url, current)
            future.set_result(result)
            return result
        except asyncio.CancelledError:
            future.cancel()  # waiters must not hang on a fetch nobody finishes
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: only the waiters care
            raise
        finally:
            del self._inflight[url]

    async def _fetch_and_store(
        self, url: str, now: float
    ) -> Sequence[x509.Certificate] | CertUnavailable:
        try:
            body, cache_control = await self._download(url)
        except FetchRefused as exc:
            return self.cache.put_failure(url, str(exc), now)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.info("x5u fetch failed", extra={"x5u": url, "error": type(exc).__name__})
            return self.cache.put_failure(url, f"fetch failed: {type(exc).__name__}: {exc}", now)
        return self.cache.put_bytes(url, body, now, cache_control=cache_control)

    async def _download(self, url: str) -> tuple[bytes, str | None]:
        session = self._get_session()
        target = url
        for _ in range(_MAX_REDIRECTS + 1):
            check_url(target, allow_http=self.allow_http, allow_private=self.allow_private)
            self.requests_made += 1
            async with session.get(target, allow_redirects=False) as response:
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchRefused("redirect without Location")
                    target = urljoin(target, location)
                    continue
                if response.status != 200:
                    raise FetchRefused(f"HTTP {response.status}")
                length = response.content_length
                if length is not None and length > self.max_bytes:
                    raise FetchRefused(f"certificate larger than {self.max_bytes} bytes")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(8192):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise FetchRefused(f"certificate larger than {self.max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks), response.headers.get("Cache-Control")
        raise FetchRefused("too many redirects")


def load_local_copy(cache: CertCache, mapping: dict[str, Path], now: float) -> None:
    """Preload certificates from a local BPCO mirror: {x5u URL: PEM file} (MAN CP §4.9)."""
    for url, path in mapping.items():
        cache.put_bytes(url, path.read_bytes(), now, cache_control=None)
