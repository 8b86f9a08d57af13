"""Every RFC 4475 torture message through the core, judged by the shared index's rules.

The wire-level runs (UDP and TCP through the running proxy) live in tests/integration; this
is the same judgement on the sans-IO core alone, so a regression shows up in milliseconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from proxy.core.actions import Action
from proxy.sip.message import Response
from tests.unit.core.core_helpers import Harness, make_config, make_harness, parse, sends

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "testdata" / "rfc4475"
SENDER = ("192.0.2.15", 5060)

# The corpus is read in place from the shared folder beside the checkout (CI has it there);
# without it these tests say why they do not run instead of passing on an empty set.
pytestmark = pytest.mark.skipif(
    not (CORPUS / "index.json").exists(),
    reason=f"RFC 4475 shared test data not found at {CORPUS}",
)
TRUNK = ("198.51.100.10", 5060)


def _messages() -> list[dict[str, Any]]:
    index = CORPUS / "index.json"
    if not index.exists():
        return []
    return list(json.loads(index.read_text())["messages"])


def _harness() -> Harness:
    config = make_config(
        listen=[{"transport": "udp", "host": "127.0.0.1", "port": 5060}],
        advertise="127.0.0.1",
        sources=[{"name": "lab", "addresses": ["192.0.2.0/24"], "trunk": "op1"}],
        trunks=[{"name": "op1", "host": "198.51.100.10", "port": 5060}],
    )
    return make_harness(config)


def _outcome(actions: list[Action]) -> tuple[str, list[int]]:
    finals = []
    provisional = False
    for send in sends(actions, SENDER):
        message = parse(send.data)
        if isinstance(message, Response):
            if message.status >= 200:
                finals.append(message.status)
            else:
                provisional = True
    if sends(actions, TRUNK):
        return "forwarded", finals
    if finals:
        return "responded", finals
    return ("provisional-only" if provisional else "dropped"), finals


def _matches(spec: str, outcome: str, finals: list[int]) -> bool:
    if spec in ("forwarded", "dropped", "provisional-only"):
        return outcome == spec
    if not spec.startswith("responded:") or outcome != "responded":
        return False
    rule = spec.split(":", 1)[1]
    status = finals[0]
    if rule == "any":
        return True
    if rule.startswith("!"):
        return str(status) not in rule[1:].split(",")
    if rule.endswith("xx"):
        return str(status)[0] == rule[0]
    return str(status) == rule


@pytest.mark.parametrize("entry", _messages(), ids=lambda e: e["name"])
def test_rfc4475_message_is_handled_as_the_index_says(entry: dict[str, Any]) -> None:
    """Each message is forwarded, answered or dropped as its index entry allows, with the
    required and forbidden content where the index names some."""
    data = (CORPUS / entry["file"]).read_bytes()
    h = _harness()
    actions = h.feed(data, SENDER, ("127.0.0.1", 5060))
    outcome, finals = _outcome(actions)
    assert any(_matches(spec, outcome, finals) for spec in entry["handled_if"]), (
        outcome,
        finals,
    )
    forwarded = b"".join(s.data for s in sends(actions, TRUNK))
    text = forwarded.decode("utf-8", "surrogateescape")
    for marker in entry["must_not_reach_trunk"]:
        assert marker.encode("utf-8", "surrogateescape") not in forwarded
    for pattern in entry["forbidden_in_forwarded"]:
        assert re.search(pattern, text) is None, pattern
    if outcome == "forwarded":
        for pattern in entry["required_in_forwarded"]:
            assert re.search(pattern, text) is not None, pattern
    replies = b"".join(s.data for s in sends(actions, SENDER)).decode("utf-8", "surrogateescape")
    for pattern in entry["required_in_response"]:
        assert re.search(pattern, replies) is not None, pattern
    if entry["body_must_be_intact"] and outcome == "forwarded":
        body = data.split(b"\r\n\r\n", 1)[1][: entry["body_octets"]]
        assert body in forwarded


def test_corpus_is_present() -> None:
    """The shared corpus is there, so the parametrised test above is not silently empty."""
    assert len(_messages()) == 50
