"""SIPp scenarios through the running proxy beyond the basic call (issue 2 §7).

CANCEL before answer, 486 with the hop-by-hop ACK, re-INVITE in dialog, OPTIONS keepalive,
MESSAGE, UDP calls completing through scripted losses, trunk failover then 503, and a call whose
two legs are TLS (SIPp over TCP through stunnel4 on each side).
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import base_config
from tests.integration.harness import (
    ProxyProcess,
    Sipp,
    header_values,
    log_events,
    make_test_pki,
    received_messages,
    running,
    start_sipp,
    start_stunnel,
    wait_until,
)

pytestmark = pytest.mark.sipp

HOST = "127.0.0.1"
SIPP_TIMEOUT = 20.0


def _config(tmp_path: Path, proxy_port: int, trunk_port: int) -> dict[str, Any]:
    """base_config with the rules off, no trunk pings during a test and a short drain."""
    config = base_config(tmp_path, proxy_port=proxy_port, trunk_port=trunk_port, rules_off=True)
    config["trunks"][0]["options_interval"] = 3600
    config["routing"] = {"drain_seconds": 0.5}
    return config


def _finish(*peers: Sipp, proxy: ProxyProcess, timeout: float = SIPP_TIMEOUT + 10) -> None:
    """Wait for every SIPp (bounded) and assert each one passed its scenario."""
    with running(*peers):
        codes = [peer.wait(timeout) for peer in peers]
    for peer, code in zip(peers, codes, strict=True):
        assert code == 0, peer.report() + "\n--- proxy\n" + proxy.log_text()


def _pair(
    tmp_path: Path,
    proxy_factory: Callable[..., ProxyProcess],
    ports: Callable[[], int],
    uac: str,
    uas: str,
    *,
    calls: int = 1,
    uac_args: tuple[str, ...] = (),
    uas_args: tuple[str, ...] = (),
) -> tuple[Sipp, Sipp, ProxyProcess]:
    """Run scenario `uac` against `uas` (the trunk) over UDP through a fresh proxy."""
    proxy_port, trunk_port, uac_port = ports(), ports(), ports()
    config = _config(tmp_path, proxy_port, trunk_port)
    server = start_sipp(tmp_path, uas, local_port=trunk_port, calls=calls,
                        extra_args=uas_args, timeout=SIPP_TIMEOUT)
    with running(server):
        proxy = proxy_factory(config)
        client = start_sipp(tmp_path, uac, local_port=uac_port, remote=(HOST, proxy_port),
                            calls=calls, extra_args=uac_args, timeout=SIPP_TIMEOUT)
        _finish(client, server, proxy=proxy)
    return client, server, proxy


def _sent_messages(trace: str, start_line: str) -> list[str]:
    """The messages of a SIPp -trace_msg log that SIPp sent and that start with `start_line`."""
    found = []
    for block in trace.split("-----------------------------------------------"):
        head, _, message = block.partition("\n\n")
        message = message.lstrip("\r\n")
        if " message sent " in head and message.startswith(start_line):
            found.append(message)
    return found


def _branch(via: str) -> str:
    match = re.search(r";branch=([^;,\s]+)", via)
    assert match is not None, via
    return match.group(1)


def _sip_request(method: str, target: tuple[str, int], local: tuple[str, int], transport: str,
                 *, user: str | None = None, body: str = "") -> bytes:
    """A minimal request from `local` to `target`'s address (user part optional)."""
    uri_user = f"{user}@" if user else ""
    lines = [
        f"{method} sip:{uri_user}{target[0]}:{target[1]} SIP/2.0",
        f"Via: SIP/2.0/{transport} {local[0]}:{local[1]};branch=z9hG4bK{uuid.uuid4().hex};rport",
        f"From: <sip:+33162000001@{local[0]};user=phone>;tag={uuid.uuid4().hex[:8]}",
        f"To: <sip:{uri_user}{target[0]}:{target[1]}>",
        f"Call-ID: {uuid.uuid4().hex}@scenarios",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
        f"Contact: <sip:probe@{local[0]}:{local[1]}>",
        f"Content-Length: {len(body.encode())}",
        "",
        body,
    ]
    return "\r\n".join(lines).encode()


def _read_response(sock: socket.socket, *, final: bool, timeout: float = 5.0) -> bytes:
    """The next (final, when asked) response on a UDP socket, within `timeout` seconds."""
    sock.settimeout(timeout)
    while True:
        data = sock.recv(65535)
        status = int(data.split(b" ", 2)[1])
        if not final or status >= 200:
            return data


# --- CANCEL, 486, re-INVITE, MESSAGE -------------------------------------------------------


def test_cancel_before_answer(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                              ports: Callable[[], int]) -> None:
    """CANCEL after 180: 200 for the CANCEL and 487 for the INVITE; the trunk got the CANCEL."""
    client, server, _ = _pair(tmp_path, proxy_factory, ports,
                              "scn_uac_cancel.xml", "scn_uas_cancel.xml", calls=2)
    trace = server.messages()
    invites = received_messages(trace, "INVITE ")
    cancels = received_messages(trace, "CANCEL ")
    acks = received_messages(trace, "ACK ")
    assert len(invites) == len(cancels) == len(acks) == 2, trace
    for cancel, ack in zip(cancels, acks, strict=True):
        # §16.10/§9.1: the proxy's own CANCEL and ACK, one Via each, with its INVITE's branch.
        for request in (cancel, ack):
            vias = header_values(request, "Via")
            assert len(vias) == 1, request
            assert any(_branch(vias[0]) == _branch(header_values(invite, "Via")[0])
                       for invite in invites), (request, invites)
    assert len(received_messages(client.messages(), "SIP/2.0 487")) == 2


def test_busy_486_is_acked_hop_by_hop(tmp_path: Path,
                                      proxy_factory: Callable[..., ProxyProcess],
                                      ports: Callable[[], int]) -> None:
    """A 486 reaches the source, and the proxy's own ACK (not the source's) reaches the trunk."""
    client, server, _ = _pair(tmp_path, proxy_factory, ports,
                              "scn_uac_busy.xml", "scn_uas_busy.xml", calls=2)
    trace = server.messages()
    invites = received_messages(trace, "INVITE ")
    acks = received_messages(trace, "ACK ")
    assert len(invites) == 2 and len(acks) == 2, trace
    for ack in acks:
        vias = header_values(ack, "Via")
        assert len(vias) == 1 and "z9hG4bK-busy-" not in ack, ack
        assert any(_branch(vias[0]) == _branch(header_values(invite, "Via")[0])
                   for invite in invites), ack
    assert len(received_messages(client.messages(), "SIP/2.0 486")) == 2


def test_reinvite_in_dialog(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                            ports: Callable[[], int]) -> None:
    """A re-INVITE, its ACK and the BYE follow the Record-Route through the proxy."""
    client, server, _ = _pair(tmp_path, proxy_factory, ports,
                              "scn_uac_reinvite.xml", "scn_uas_reinvite.xml")
    trace = server.messages()
    invites = received_messages(trace, "INVITE ")
    assert len(invites) == 2, trace
    initial, reinvite = invites
    assert header_values(initial, "Record-Route"), initial
    assert "Subject: re-invite" in reinvite and "CSeq: 2 INVITE" in reinvite
    # In dialog: addressed to the trunk's Contact, our Route entry consumed, our Via on top.
    assert reinvite.startswith(f"INVITE sip:{HOST}:"), reinvite
    assert not header_values(reinvite, "Route"), reinvite
    assert len(header_values(reinvite, "Via")) == 2, reinvite
    assert len(received_messages(trace, "ACK ")) == 2
    assert len(received_messages(trace, "BYE ")) == 1
    assert len(received_messages(client.messages(), "SIP/2.0 200")) == 3


def test_message_reaches_trunk(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                               ports: Callable[[], int]) -> None:
    """MESSAGE source -> trunk, body intact, and the trunk's 200 comes back."""
    client, server, _ = _pair(tmp_path, proxy_factory, ports,
                              "scn_uac_message.xml", "scn_uas_message.xml", calls=2)
    messages = received_messages(server.messages(), "MESSAGE ")
    assert len(messages) == 2
    assert all("sipguard message" in message for message in messages), messages
    assert all(len(header_values(message, "Via")) == 2 for message in messages), messages
    assert len(received_messages(client.messages(), "SIP/2.0 200")) == 2


def test_options_keepalive_answered_by_proxy(tmp_path: Path,
                                             proxy_factory: Callable[..., ProxyProcess],
                                             ports: Callable[[], int]) -> None:
    """OPTIONS to the proxy itself is answered 200 with Allow, over UDP and TCP."""
    proxy_port = ports()
    # The trunk port has no listener: a forwarded OPTIONS could never come back 200.
    proxy = proxy_factory(_config(tmp_path, proxy_port, ports()))
    target = (HOST, proxy_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((HOST, 0))
        udp.sendto(_sip_request("OPTIONS", target, udp.getsockname(), "UDP"), target)
        answer = _read_response(udp, final=True).decode()
    with socket.create_connection(target, timeout=5) as tcp:
        tcp.sendall(_sip_request("OPTIONS", target, tcp.getsockname(), "TCP"))
        tcp.settimeout(5)
        stream = b""
        while b"\r\n\r\n" not in stream:
            chunk = tcp.recv(65535)
            assert chunk, stream
            stream += chunk
    for response in (answer, stream.decode()):
        assert response.startswith("SIP/2.0 200"), response + proxy.log_text()
        assert "INVITE" in " ".join(header_values(response, "Allow")), response
        assert ";tag=sg" in header_values(response, "To")[0], response


# --- retransmissions under scripted loss -----------------------------------------------------


def test_udp_call_survives_lost_requests(tmp_path: Path,
                                         proxy_factory: Callable[..., ProxyProcess],
                                         ports: Callable[[], int]) -> None:
    """The trunk ignores the first INVITE and BYE; the proxy's Timer A/E retransmissions win."""
    _, server, _ = _pair(tmp_path, proxy_factory, ports, "uac_call.xml",
                         "scn_uas_drop_requests.xml", uas_args=("-nr",))
    trace = server.messages()
    invites = received_messages(trace, "INVITE ")
    byes = received_messages(trace, "BYE ")
    assert len(invites) == 2 and len(byes) == 2, trace
    # Retransmissions of one client transaction: same branch, same bytes.
    assert invites[0] == invites[1] and byes[0] == byes[1], trace


def test_udp_call_survives_lost_2xx(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                                    ports: Callable[[], int]) -> None:
    """The source ignores the first 200 OK; the trunk's 2xx retransmission crosses the proxy."""
    client, server, _ = _pair(tmp_path, proxy_factory, ports, "scn_uac_drop_2xx.xml",
                              "uas_call.xml", uac_args=("-nr",))
    oks = [m for m in received_messages(client.messages(), "SIP/2.0 200")
           if "INVITE" in header_values(m, "CSeq")[0]]
    assert len(oks) >= 2, client.messages()
    assert len(_sent_messages(server.messages(), "SIP/2.0 200")) >= 3  # 2 x INVITE + BYE


# --- trunk failover ------------------------------------------------------------------------


def _trunk_down(proxy: ProxyProcess, trunk: str) -> bool:
    return any(e.get("trunk") == trunk and e.get("up") is False
               for e in log_events(proxy, "trunk.state"))


def test_failover_to_backup_then_503(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                                     ports: Callable[[], int]) -> None:
    """Primary without listener goes down -> calls use the backup; both down -> 503 Retry-After."""
    proxy_port, dead_port, backup_port, uac_port = ports(), ports(), ports(), ports()
    config = _config(tmp_path, proxy_port, dead_port)
    # Short timers so an unanswered ping (Timer F = 64*T1 = 3.2 s) marks a trunk down fast.
    config["timers"] = {"t1": 0.05, "t2": 0.4, "t4": 0.5, "timer_c": 30}
    config["routing"]["retry_after"] = 17
    primary = config["trunks"][0]
    primary.update(options_interval=0.5, options_failures=1, backup="backup")
    config["trunks"].append({"name": "backup", "host": HOST, "port": backup_port,
                             "options_interval": 0.5, "options_failures": 1})
    # The backup answers the pings itself (-aa): each ping is a SIPp "call", so it runs until
    # stopped and the call is judged by the UAC and by what the backup received.
    backup = start_sipp(tmp_path, "uas_call.xml", local_port=backup_port, calls=100000,
                        extra_args=("-aa",), timeout=60)
    with running(backup):
        proxy = proxy_factory(config)
        assert wait_until(lambda: _trunk_down(proxy, "operator"), 15), proxy.log_text()
        assert not _trunk_down(proxy, "backup"), proxy.log_text()
        client = start_sipp(tmp_path, "uac_call.xml", local_port=uac_port,
                            remote=(HOST, proxy_port), timeout=SIPP_TIMEOUT)
        _finish(client, proxy=proxy)
        invites = received_messages(backup.messages(), "INVITE ")
        assert len(invites) == 1, backup.messages()
        assert len(received_messages(backup.messages(), "BYE ")) == 1
        backup.process.terminate()
        backup.wait(10)
    assert wait_until(lambda: _trunk_down(proxy, "backup"), 15), proxy.log_text()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((HOST, 0))
        target = (HOST, proxy_port)
        udp.sendto(_sip_request("INVITE", target, udp.getsockname(), "UDP", user="0162000002"),
                   target)
        answer = _read_response(udp, final=True).decode()
    assert answer.startswith("SIP/2.0 503"), answer
    assert header_values(answer, "Retry-After") == ["17"], answer


# --- TLS on both legs ----------------------------------------------------------------------


def test_call_over_tls_both_legs(tmp_path: Path, proxy_factory: Callable[..., ProxyProcess],
                                 ports: Callable[[], int]) -> None:
    """SIPp -> stunnel (client) -TLS-> proxy -TLS-> stunnel (server) -> SIPp: a full call."""
    pki = make_test_pki(tmp_path / "pki")
    proxy_port, tls_port, uas_tls_port, uas_port = ports(), ports(), ports(), ports()
    uac_tunnel_port, uac_port = ports(), ports()
    config = _config(tmp_path, proxy_port, uas_tls_port)
    config["listen"].append({"transport": "tls", "host": HOST, "port": tls_port,
                             "cert_file": str(pki.cert_file), "key_file": str(pki.key_file)})
    config["trunks"][0].update(transport="tls", tls_ca_file=str(pki.ca_file))
    server_tunnel = start_stunnel(tmp_path, accept=(HOST, uas_tls_port),
                                  connect=(HOST, uas_port), client=False, pki=pki)
    with running(server_tunnel):
        uas = start_sipp(tmp_path, "scn_uas_tls.xml", local_port=uas_port, transport="t1",
                         keys={"contact_port": str(uas_tls_port)}, timeout=SIPP_TIMEOUT)
        with running(uas):
            proxy = proxy_factory(config)
            client_tunnel = start_stunnel(tmp_path, accept=(HOST, uac_tunnel_port),
                                          connect=(HOST, tls_port), client=True, pki=pki)
            with running(client_tunnel):
                uac = start_sipp(tmp_path, "uac_call.xml", local_port=uac_port,
                                 remote=(HOST, uac_tunnel_port), transport="t1",
                                 timeout=SIPP_TIMEOUT)
                try:
                    _finish(uac, uas, proxy=proxy)
                except AssertionError as failure:
                    raise AssertionError(
                        f"{failure}\n--- stunnel client\n{client_tunnel.log_text()}"
                        f"\n--- stunnel server\n{server_tunnel.log_text()}"
                    ) from None
    trace = uas.messages()
    invites = received_messages(trace, "INVITE ")
    assert len(invites) == 1, trace
    assert header_values(invites[0], "Via")[0].startswith("SIP/2.0/TLS"), invites[0]
    record_route = header_values(invites[0], "Record-Route")
    assert record_route and "transport=tls" in record_route[0], invites[0]
    for method in ("ACK ", "BYE "):
        requests = received_messages(trace, method)
        assert len(requests) == 1, trace
        assert header_values(requests[0], "Via")[0].startswith("SIP/2.0/TLS"), requests[0]
    answer = received_messages(uac.messages(), "SIP/2.0 200")[0]
    assert f":{tls_port};transport=tls" in " ".join(header_values(answer, "Record-Route")), answer
