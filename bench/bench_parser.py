"""Micro-benchmark of the SIP parser: messages/s for parse and parse+to_bytes.

Run: ``python bench/bench_parser.py [seconds]``.  Prints numbers only; nothing is asserted.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from proxy.sip import parse_message

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


def _parse() -> None:
    parse_message(INVITE)


def _parse_access_serialise() -> None:
    msg = parse_message(INVITE)
    _ = msg.top_via.branch, msg.cseq, msg.call_id, msg.from_.tag, msg.max_forwards
    msg.to_bytes()


def _rate(func: Callable[[], None], seconds: float) -> float:
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            func()
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    """Print messages/s for both workloads."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    print(f"parse:                          {_rate(_parse, seconds):10.0f} msg/s")
    print(f"parse + typed access + to_bytes: {_rate(_parse_access_serialise, seconds):10.0f} msg/s")


if __name__ == "__main__":
    main()
