"""`sipguard check --message`: judge a whole request pasted from a trace (LF line ends)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.policy.commands import main

PASTED = """INVITE sip:+33187654321@trunk.example;user=phone SIP/2.0
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: <sip:+33187654321@trunk.example;user=phone>
From: "Dialer" <sip:{caller}@10.0.0.5;user=phone>;tag=1928301774
P-Asserted-Identity: <tel:+33162000001>
Call-ID: a84b4c76e66710@pc33.example
CSeq: 314159 INVITE
Content-Length: 0

"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """An automated dialer whose customer holds the NPV block 0162000xxx."""
    db = tmp_path / "lists.sqlite3"
    assert main(["numbers", "add", "--database", str(db), "--holder", "callco",
                 "+33162000000-+33162000999"]) == 0
    path = tmp_path / "sipguard.yaml"
    path.write_text(
        f"""
trunks: [{{name: op, host: 192.0.2.1}}]
sources:
  - {{name: dialer, addresses: ["10.0.0.0/24"], trunk: op,
     policy: {{customer: callco, kind: automated}}}}
policy:
  database: {db}
  allocation_database: {tmp_path / "alloc.sqlite3"}
  audit: {{database: {tmp_path / "audit.sqlite3"}}}
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("caller", "code", "expected"),
    [("+33162000042", 0, "verdict   ALLOW"), ("+33612345678", 1, "mobile-number [reject]")],
)
def test_pasted_invite_is_judged_like_the_proxy_would(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caller: str, code: int, expected: str,
) -> None:
    """From and PAI come from the pasted request; the exit code says allowed or refused."""
    message = tmp_path / "invite.txt"
    message.write_text(PASTED.format(caller=caller))
    assert main(["check", "--config", str(config), "--source", "dialer",
                 "--message", str(message)]) == code
    assert expected in capsys.readouterr().out


def test_pasted_garbage_is_a_usage_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Something that is not a SIP request gets exit 2 and says why."""
    message = tmp_path / "junk.txt"
    message.write_text("hello there\n\n")
    assert main(["check", "--config", str(config), "--source", "dialer",
                 "--message", str(message)]) == 2
    assert "not a SIP message" in capsys.readouterr().err
