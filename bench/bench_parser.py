"""Micro-benchmark of the SIP layer: messages/s for parse, parse+to_bytes and what the
proxy does with a request (parse, check_request, typed reads, Via/Route/Max-Forwards edits,
to_bytes) and with a response (parse, top Via, CSeq, pop Via, to_bytes).

Run: ``python bench/bench_parser.py [seconds]``.  Prints numbers only; nothing is asserted.
CPU time (``time.process_time``) is counted, so other processes on a shared machine add
less noise than with wall time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from proxy.sip import Request, check_request, parse_message

INVITE = (
    b"INVITE sip:+33612345678@trunk.example.net;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f6;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:proxy.example.net;lr>\r\n"
    b"Record-Route: <sip:edge.example.net;lr>\r\n"
    b'From: "Alice" <sip:+33162000001@example.net;user=phone>;tag=9fxced76sl\r\n'
    b"To: <sip:+33612345678@example.net;user=phone>\r\n"
    b"Call-ID: 3848276298220188511@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE\r\n"
    b"Supported: timer, replaces\r\n"
    b"User-Agent: bench/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 126\r\n"
    b"\r\n"
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\na=sendrecv\r\n"
)


BYE = (
    b"BYE sip:uas@198.51.100.10:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-17-BYE;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Agent" <sip:+33100000001@10.0.0.5>;tag=f17\r\n'
    b"To: <sip:+33612345678@192.0.2.1>;tag=uas1\r\n"
    b"Call-ID: bench-17@10.0.0.5\r\n"
    b"CSeq: 2 BYE\r\n"
    b"Contact: <sip:pbx@10.0.0.5:5060>\r\n"
    b"Route: <sip:192.0.2.1:5060;transport=udp;lr>\r\n"
    b"User-Agent: bench\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

RESPONSE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-sg-0123456789abcdef\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-17-INVITE;rport=5060;received=10.0.0.5\r\n"
    b"Record-Route: <sip:192.0.2.1:5060;transport=udp;lr>\r\n"
    b'From: "Agent" <sip:+33100000001@10.0.0.5>;tag=f17\r\n'
    b"To: <sip:+33612345678@192.0.2.1>;tag=uas1\r\n"
    b"Call-ID: bench-17@10.0.0.5\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:uas@198.51.100.10:5060>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def _proxy_request(data: bytes) -> None:
    # what proxy/core does with a request it relays (RFC 3261 §16.3-16.6)
    msg = parse_message(data)
    assert isinstance(msg, Request)
    if check_request(msg) is not None:
        raise AssertionError("bench request rejected")
    via = msg.top_via
    _ = via.branch, via.has_rport, msg.call_id, msg.cseq.seq, msg.from_.tag, msg.to.tag
    msg.pop_first_value("Via")
    msg.add("Via", f"{via};received=10.0.0.5", first=True)
    _ = msg.max_forwards, msg.get("Route"), msg.get_all("Proxy-Require")
    if msg.get_all("Route"):
        msg.pop_first_value("Route")
    msg.replace("Max-Forwards", "69")
    msg.add("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-sg-1", first=True)
    _ = msg.from_.tag, msg.to.tag, msg.call_id, msg.cseq.seq
    msg.to_bytes()


def _proxy_invite() -> None:
    _proxy_request(INVITE)


def _proxy_bye() -> None:
    _proxy_request(BYE)


def _proxy_response() -> None:
    msg = parse_message(RESPONSE)
    _ = msg.top_via.branch, msg.cseq.method, msg.to.tag
    msg.pop_first_value("Via")
    _ = msg.get("Via"), msg.call_id, msg.from_.tag
    msg.to_bytes()


def _parse() -> None:
    parse_message(INVITE)


def _parse_access_serialise() -> None:
    msg = parse_message(INVITE)
    _ = msg.top_via.branch, msg.cseq, msg.call_id, msg.from_.tag, msg.max_forwards
    msg.to_bytes()


def _rate(func: Callable[[], None], seconds: float) -> float:
    count = 0
    start = time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(200):
            func()
        count += 200
        now = time.process_time()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    """Print messages/s for both workloads."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    print(f"parse:                           {_rate(_parse, seconds):10.0f} msg/s")
    print(f"parse + typed access + to_bytes: {_rate(_parse_access_serialise, seconds):10.0f} msg/s")
    print(f"proxy INVITE (check, edits):     {_rate(_proxy_invite, seconds):10.0f} msg/s")
    print(f"proxy BYE (check, edits):        {_rate(_proxy_bye, seconds):10.0f} msg/s")
    print(f"proxy 200 (top Via, pop):        {_rate(_proxy_response, seconds):10.0f} msg/s")


if __name__ == "__main__":
    main()
