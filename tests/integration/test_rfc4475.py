"""Every RFC 4475 torture message through the running proxy, over UDP and over TCP (issue 2 §1, §7).

`../shared/testdata/rfc4475/index.json` says, per message, which outcomes count as handled
(`handled_if`: forwarded to the trunk, answered with some status, or dropped) and what must or
must not reach the trunk. The messages carry fixed Via sent-by values, so they are sent from a
dedicated loopback address (127.0.0.x) with a UDP socket bound at the Via's port: the proxy
answers to the packet's source address at that port (RFC 3261 §18.2.2) and the answer lands
on the very socket that sent the message. A plain socket plays the trunk and records what is
forwarded.

After each message a barrier proves the proxy has processed it, so outcomes are read without
guessing at delays: over UDP an OPTIONS to the proxy itself from the same socket (answered in
order), over TCP a CRLF keepalive on the same connection (answered after what precedes it).
Only when nothing at all came back does the test wait out a short window for late effects.
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import base_config
from tests.integration.harness import (
    SHARED,
    ProxyProcess,
    free_port,
    log_events,
    sip_options,
    start_proxy,
)

TESTDATA = SHARED / "testdata" / "rfc4475"
INDEX = TESTDATA / "index.json"
TRANSPORTS = ("udp", "tcp")
PROXY_HOST = "127.0.0.1"
BARRIER_TIMEOUT = 3.0  # the proxy must have processed a message within this
LATE_WINDOW = 1.0  # when nothing came back, how long to wait for a late effect ("dropped")

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(not INDEX.exists(), reason=f"RFC 4475 test data not found at {TESTDATA}"),
]


def _messages() -> list[dict[str, Any]]:
    if not INDEX.exists():
        return []
    return list(json.loads(INDEX.read_text(encoding="utf-8"))["messages"])


MESSAGES = _messages()


def _top_via(raw: bytes) -> tuple[str, str, int, str | None]:
    """(transport, host, port, branch) of the first Via, unfolded; (UDP, '', 5060, None) when
    there is none readable. Written here, independent of the proxy's parser."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    unfolded = re.sub(r"\r\n[ \t]+", " ", head)
    match = re.search(r"(?mi)^(?:via|v)[ \t]*:[ \t]*(.*)$", unfolded)
    if match is None:
        return "UDP", "", 5060, None
    value = match.group(1)
    sent = re.match(r"\s*SIP\s*/\s*[\d.]+\s*/\s*(\w+)\s+([^\s;:,]+)(?:\s*:\s*(\d+))?", value)
    branch = re.search(r";\s*branch\s*=\s*([^;,\s]+)", value)
    if sent is None:
        return "UDP", "", 5060, branch.group(1) if branch else None
    port = int(sent.group(3)) if sent.group(3) else 5060
    return sent.group(1).upper(), sent.group(2).lower(), port, branch.group(1) if branch else None


def _transaction_key(raw: bytes) -> tuple[str, ...] | None:
    """What RFC 3261 §17.2.3 matches a server transaction on: branch, sent-by and method."""
    start = raw.split(b"\r\n", 1)[0].decode("latin-1")
    method = start.split(" ", 1)[0]
    _, host, port, branch = _top_via(raw)
    if branch is None or not branch.startswith("z9hG4bK") or method.startswith("SIP/"):
        return None
    return (branch, host, str(port), "INVITE" if method == "ACK" else method)


VIA_PORTS = sorted({_top_via((TESTDATA / m["file"]).read_bytes())[2] for m in MESSAGES} | {5060})


def _frame(buffer: bytearray) -> tuple[list[bytes], int]:
    """Whole messages at the start of a stream buffer (framed by Content-Length) and the
    number of bare CRLF keepalive answers skipped on the way; consumes what it returns."""
    messages: list[bytes] = []
    pongs = 0
    while True:
        while buffer.startswith(b"\r\n") and not buffer.startswith(b"\r\n\r\n"):
            del buffer[:2]
            pongs += 1
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return messages, pongs
        head = bytes(buffer[:end]).decode("latin-1")
        length = re.search(r"(?mi)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head)
        total = end + 4 + (int(length.group(1)) if length else 0)
        if len(buffer) < total:
            return messages, pongs
        messages.append(bytes(buffer[:total]))
        del buffer[:total]


@dataclass
class _Stream:
    kind: str  # "sink" (towards the trunk) or "sender" (answers to the torture sender)
    buffer: bytearray = field(default_factory=bytearray)
    pongs: int = 0
    closed: bool = False


class TortureLab:
    """The sender's sockets, the trunk sink and the proxies of one transport."""

    def __init__(self, workdir: Path, transport: str) -> None:
        self.workdir = workdir
        self.transport = transport
        self.selector = selectors.DefaultSelector()
        self.sink_messages: list[bytes] = []
        self.responses: list[bytes] = []
        self.streams: dict[socket.socket, _Stream] = {}
        self.sockets: list[socket.socket] = []
        self.sink_port = free_port()
        self._listen(PROXY_HOST, self.sink_port, "sink")
        self.sender, self.udp = self._sender_sockets()
        # Proxies ("lanes"): messages that would match a transaction an earlier message
        # opened (same branch, sent-by and method; RFC 4475 reuses a few) go to a fresh one.
        self.lanes: list[tuple[ProxyProcess, set[tuple[str, ...]]]] = []

    # -- sockets ------------------------------------------------------------------------

    def _listen(self, host: str, port: int, kind: str) -> None:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, port))
            tcp.listen(16)
        except OSError:
            udp.close()
            tcp.close()
            raise
        for sock, role in ((udp, f"{kind}-udp"), (tcp, f"{kind}-listen")):
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, role)
            self.sockets.append(sock)

    def _sender_sockets(self) -> tuple[str, dict[int, socket.socket]]:
        """A 127.0.0.x where every Via port is free for UDP and TCP; UDP there sends too."""
        for last in range(50 + (uuid.uuid4().int % 100), 254):
            address = f"127.0.0.{last}"
            registered = len(self.sockets)
            try:
                for port in VIA_PORTS:
                    self._listen(address, port, "sender")
            except OSError:
                for sock in self.sockets[registered:]:
                    self.selector.unregister(sock)
                    sock.close()
                del self.sockets[registered:]
                continue
            udp = {
                sock.getsockname()[1]: sock
                for sock in self.sockets[registered:]
                if sock.type == socket.SOCK_DGRAM
            }
            return address, udp
        raise RuntimeError("no loopback address with the Via ports free")

    def close(self) -> None:
        """Stop the proxies and close every socket."""
        for proxy, _ in self.lanes:
            proxy.stop()
        for sock in [*self.sockets, *self.streams]:
            with contextlib.suppress(Exception):
                self.selector.unregister(sock)
            sock.close()
        self.selector.close()

    # -- the proxy --------------------------------------------------------------------------

    def proxy_for(self, key: tuple[str, ...] | None) -> ProxyProcess:
        """The first proxy on which `key` opened no transaction yet (started when needed)."""
        for proxy, keys in self.lanes:
            if key is None or key not in keys:
                if key is not None:
                    keys.add(key)
                return proxy
        proxy_port = free_port()
        config = base_config(self.workdir, proxy_port=proxy_port, trunk_port=self.sink_port,
                             rules_off=True)
        config["sources"][0]["addresses"] = [f"{self.sender}/32"]
        config["trunks"][0]["options_interval"] = 3600
        config["routing"] = {"drain_seconds": 0.5}
        proxy = start_proxy(self.workdir, config)
        self.lanes.append((proxy, {key} if key is not None else set()))
        return proxy

    # -- I/O --------------------------------------------------------------------------------

    def poll(self, timeout: float) -> None:
        """Read whatever arrives within `timeout` seconds (0: only what is already there)."""
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            role = str(key.data)
            if role.endswith("-udp"):
                with contextlib.suppress(BlockingIOError):
                    data = sock.recv(65535)
                    self._record("sink" if role.startswith("sink") else "sender", data)
            elif role.endswith("-listen"):
                with contextlib.suppress(BlockingIOError):
                    conn, _ = sock.accept()
                    self._adopt(conn, role.split("-")[0])
            else:
                self._read_stream(sock)

    def _adopt(self, conn: socket.socket, kind: str) -> _Stream:
        conn.setblocking(False)
        stream = _Stream(kind)
        self.streams[conn] = stream
        self.selector.register(conn, selectors.EVENT_READ, "stream")
        return stream

    def _read_stream(self, conn: socket.socket) -> None:
        stream = self.streams[conn]
        try:
            data = conn.recv(65535)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            stream.closed = True
            self.selector.unregister(conn)
            return
        stream.buffer += data
        messages, pongs = _frame(stream.buffer)
        stream.pongs += pongs
        for message in messages:
            self._record(stream.kind, message)

    def _record(self, kind: str, data: bytes) -> None:
        if kind == "sink":
            self.sink_messages.append(data)
        elif data.startswith(b"SIP/2.0 "):
            self.responses.append(data)

    def drain(self) -> None:
        """Read everything already queued on every socket."""
        while self.selector.select(0):
            before = (len(self.sink_messages), len(self.responses))
            self.poll(0)
            if (len(self.sink_messages), len(self.responses)) == before:
                break

    # -- one message ------------------------------------------------------------------------

    def send(self, raw: bytes, proxy: ProxyProcess) -> Any:
        """Send `raw` to `proxy`; returns what the barrier needs (a UDP socket or a stream)."""
        target = (proxy.host, proxy.port)
        if self.transport == "udp":
            sock = self.udp[_top_via(raw)[2]]
            sock.sendto(raw, target)
            return sock
        conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        conn.bind((self.sender, 0))
        conn.settimeout(5)
        conn.connect(target)
        conn.sendall(raw)
        self._adopt(conn, "sender")
        return conn

    def barrier(self, handle: Any, proxy: ProxyProcess) -> bool:
        """True once the proxy has provably processed what `handle` sent before."""
        deadline = time.monotonic() + BARRIER_TIMEOUT
        if self.transport == "udp":
            sock: socket.socket = handle
            call_id = f"barrier-{uuid.uuid4().hex}"
            port = sock.getsockname()[1]
            probe = (
                f"OPTIONS sip:{proxy.host}:{proxy.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.sender}:{port};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                f"From: <sip:barrier@{self.sender}>;tag=b\r\nTo: <sip:{proxy.host}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
            sock.sendto(probe, (proxy.host, proxy.port))
            marker = call_id.encode()
            while time.monotonic() < deadline:
                if any(marker in response for response in self.responses):
                    self.drain()
                    return True
                self.poll(0.05)
            return False
        stream = self.streams[handle]
        if not stream.closed:
            pongs = stream.pongs
            with contextlib.suppress(OSError):
                handle.sendall(b"\r\n\r\n")
            deadline = time.monotonic() + LATE_WINDOW
            while time.monotonic() < deadline:
                if stream.closed or stream.pongs > pongs:
                    self.drain()
                    return True
                self.poll(0.05)
            return False
        self.drain()
        return True

    def wait_for(self, markers: list[bytes], since: tuple[int, int], window: float) -> None:
        """Keep reading until something carrying a marker arrives, or `window` ends."""
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            forwarded, responses = self.observed(markers, since)
            if forwarded or any(_status(r) >= 200 for r in responses):
                return
            self.poll(0.05)

    def observed(self, markers: list[bytes], since: tuple[int, int]
                 ) -> tuple[list[bytes], list[bytes]]:
        """(forwarded messages, responses) carrying one of `markers`, after `since`."""
        forwarded = [m for m in self.sink_messages[since[0]:] if any(k in m for k in markers)]
        answers = [r for r in self.responses[since[1]:] if any(k in r for k in markers)]
        return forwarded, answers


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _matches(spec: str, status: int) -> bool:
    """Does final status `status` satisfy a `responded:SPEC` of the index's grammar?"""
    if spec == "any":
        return True
    if spec.startswith("!"):
        return str(status) not in spec[1:].split(",")
    if spec.endswith("xx"):
        return status // 100 == int(spec[0])
    return status == int(spec)


@pytest.fixture(scope="module")
def labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, TortureLab]]:
    """One lab (sender address, trunk sink, proxies) per transport, for the whole module."""
    made: dict[str, TortureLab] = {}

    class Labs(dict[str, TortureLab]):
        def __missing__(self, transport: str) -> TortureLab:
            lab = TortureLab(tmp_path_factory.mktemp(f"rfc4475-{transport}"), transport)
            made[transport] = lab
            self[transport] = lab
            return lab

    yield Labs()
    for lab in made.values():
        lab.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("entry", MESSAGES, ids=[m["name"] for m in MESSAGES])
def test_torture_message_is_handled(entry: dict[str, Any], transport: str,
                                    labs: dict[str, TortureLab]) -> None:
    """The message's outcome through the proxy is one its index entry counts as handled."""
    spec = dict(entry)
    if transport == "tcp":
        spec.update(entry.get("tcp") or {})
    raw = (TESTDATA / entry["file"]).read_bytes()
    lab = labs[transport]
    proxy = lab.proxy_for(_transaction_key(raw) if entry["kind"] == "request" else None)
    errors_before = len(log_events(proxy, "core.internal_error"))
    lab.drain()
    since = (len(lab.sink_messages), len(lab.responses))
    markers = [marker.encode() for marker in spec["markers"]]

    handle = lab.send(raw, proxy)
    processed = lab.barrier(handle, proxy)
    # Over TCP a message whose Content-Length runs past its end swallows the keepalive: the
    # proxy is right to keep waiting, so only UDP insists on the barrier; the proxy must
    # still answer a fresh OPTIONS.
    assert processed or transport == "tcp", "no answer to the barrier:\n" + proxy.log_text()
    forwarded, responses = lab.observed(markers, since)
    if not forwarded and not any(_status(r) >= 200 for r in responses):
        lab.wait_for(markers, since, LATE_WINDOW)
        forwarded, responses = lab.observed(markers, since)
    if handle in lab.streams:
        handle.close()
        with contextlib.suppress(Exception):
            lab.selector.unregister(handle)
        del lab.streams[handle]

    finals = [_status(r) for r in responses if _status(r) >= 200]
    outcomes = (["forwarded"] if forwarded else []) + [f"responded:{s}" for s in finals]
    if not outcomes:
        outcomes = ["provisional-only"] if responses else ["dropped"]
    seen = "; ".join(outcomes)
    report = (f"{entry['name']} over {transport}: got {seen}, handled_if {spec['handled_if']}"
              f"\nforwarded: {forwarded[:1]}\nresponses: {responses[:2]}")

    handled = False
    for wanted in spec["handled_if"]:
        if wanted == "forwarded":
            handled |= bool(forwarded)
        elif wanted == "dropped":
            handled |= outcomes == ["dropped"]
        elif wanted.startswith("responded:"):
            handled |= any(_matches(wanted.split(":", 1)[1], status) for status in finals)
    assert handled, report

    texts = [m.decode("latin-1") for m in forwarded]
    for pattern in spec.get("forbidden_in_forwarded") or ():
        assert not any(re.search(pattern, text) for text in texts), (pattern, report)
    if forwarded:
        for pattern in spec.get("required_in_forwarded") or ():
            assert any(re.search(pattern, text) for text in texts), (pattern, report)
    answered = [r.decode("latin-1") for r in responses if _status(r) >= 200]
    if answered and not forwarded:
        for pattern in spec.get("required_in_response") or ():
            assert any(re.search(pattern, text) for text in answered), (pattern, report)
    for marker in spec.get("must_not_reach_trunk") or ():
        assert not any(marker.encode() in m for m in lab.sink_messages[since[0]:]), (
            marker, report)
    assert proxy.process.poll() is None, proxy.log_text()[-3000:]
    assert sip_options(proxy.host, proxy.port, timeout=BARRIER_TIMEOUT) is not None
    assert len(log_events(proxy, "core.internal_error")) == errors_before, proxy.log_text()
