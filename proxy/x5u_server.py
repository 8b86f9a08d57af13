"""A lab HTTPS server that publishes our signing certificate at the x5u URL's path.

Production certificates are published on the MAN public repository (BPCO, https only); a lab
has no such repository, so `signing.lab_x5u_server` lets the proxy serve its own certificate
and chain (issue 4 §4), and the lab CRL at `/crl`. Nothing secret is served: the private key
is never read here.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from aiohttp import web

from stir_shaken.settings import SigningSettings


def build_app(signing: SigningSettings) -> web.Application:
    """The aiohttp application serving the certificate chain (and CRL) named by `signing`."""
    server = signing.lab_x5u_server
    if server is None or signing.cert_file is None or signing.x5u is None:
        raise ValueError("signing.lab_x5u_server needs signing.cert_file and signing.x5u")
    chain = signing.cert_file.read_bytes() + b"".join(p.read_bytes() for p in signing.chain)
    cache_control = f"max-age={server.max_age}"
    crl = server.crl_file.read_bytes() if server.crl_file is not None else None

    async def certificate(_request: web.Request) -> web.Response:
        return web.Response(
            body=chain,
            headers={"Content-Type": "application/pem-certificate-chain",
                     "Cache-Control": cache_control},
        )

    async def revocation_list(_request: web.Request) -> web.Response:
        assert crl is not None
        return web.Response(
            body=crl, headers={"Content-Type": "application/pkix-crl",
                               "Cache-Control": cache_control},
        )

    app = web.Application()
    app.router.add_get(urlsplit(signing.x5u).path or "/", certificate)
    if crl is not None:
        app.router.add_get("/crl", revocation_list)
    return app


async def start_x5u_server(signing: SigningSettings) -> web.AppRunner:
    """Start the lab x5u server; the caller cleans the runner up at shutdown."""
    server = signing.lab_x5u_server
    assert server is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(server.tls_cert_file, server.tls_key_file)
    runner = web.AppRunner(build_app(signing), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, server.host, server.port, ssl_context=context).start()
    return runner
