"""Caller-ID policy through the running proxy with real SIPp peers (issue 3 §9).

SIPp UAC (the source, 127.0.0.1) -> sipguard -> SIPp UAS or a recording sink (the trunk).
Number lists are filled with the `numbers` CLI before the proxy starts; the audit is read
after a clean stop (SIGTERM with a short drain flushes it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.policy.audit import entries
from tests.integration.conftest import quick_config
from tests.integration.harness import (
    ProxyProcess,
    SipSink,
    free_port,
    header_values,
    received_messages,
    run_cli,
    running,
    scenario_variant,
    start_sipp,
    wait_until,
)

pytestmark = pytest.mark.sipp

MOBILE = "+33612345678"
NPV = "+33162000001"  # 0162: numéro polyvalent vérifié, allowed to automated systems
GEOGRAPHIC = "+33123456789"
UNLISTED = "+33123450000"
SIPP_TIMEOUT = 10.0

Factory = Callable[..., ProxyProcess]


def _config(tmp_path: Path, ports: Callable[[], int], **source_policy: Any) -> dict[str, Any]:
    return quick_config(
        tmp_path, proxy_port=ports(), trunk_port=ports(), source_policy=source_policy
    )


def _ports(config: dict[str, Any]) -> tuple[int, int]:
    return int(config["listen"][0]["port"]), int(config["trunks"][0]["port"])


def _numbers(tmp_path: Path, config: dict[str, Any], *args: str) -> None:
    """`sipguard numbers add ARGS` against the config's number-list database."""
    path = tmp_path / "numbers-cli.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_cli("numbers", "add", *args, "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def _audit(proxy: ProxyProcess, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Stop the proxy cleanly and return every audited decision."""
    assert proxy.stop() == 0, proxy.log_text()
    return list(entries(config["policy"]["audit"]["database"]))


def _call_through(
    tmp_path: Path, proxy_factory: Factory, config: dict[str, Any], number: str
) -> tuple[str, ProxyProcess]:
    """A full call from `number`; asserts it reached the trunk and returns the INVITE there."""
    proxy_port, trunk_port = _ports(config)
    uas = start_sipp(tmp_path, "uas_call.xml", local_port=trunk_port, timeout=SIPP_TIMEOUT)
    with running(uas):
        proxy = proxy_factory(config)
        uac = start_sipp(
            tmp_path, "uac_call.xml", local_port=free_port(),
            remote=("127.0.0.1", proxy_port), keys={"from_user": number, "pai_user": number},
            timeout=SIPP_TIMEOUT,
        )
        with running(uac):
            uac_rc = uac.wait(SIPP_TIMEOUT + 5)
            uas_rc = uas.wait(SIPP_TIMEOUT + 5)
    assert uac_rc == 0, uac.report() + proxy.log_text()
    assert uas_rc == 0, uas.report() + proxy.log_text()
    invites = received_messages(uas.messages(), "INVITE ")
    assert len(invites) == 1, uas.messages()
    assert f"<sip:{number}@" in header_values(invites[0], "From")[0]
    return invites[0], proxy


def _rejected(
    tmp_path: Path,
    proxy_factory: Factory,
    config: dict[str, Any],
    number: str,
    *,
    scenario: str = "uac_rejected.xml",
    status: int = 403,
) -> tuple[str, ProxyProcess]:
    """Send from `number`; asserts the refusal (status, Reason, Warning checked by SIPp too) and
    that nothing but OPTIONS reached the trunk. Returns the final response as received."""
    proxy_port, trunk_port = _ports(config)
    if status != 403:
        scenario = scenario_variant(tmp_path, scenario, {"403": str(status)})
    sink = SipSink("127.0.0.1", trunk_port)
    try:
        proxy = proxy_factory(config)
        uac = start_sipp(
            tmp_path, scenario, local_port=free_port(),
            remote=("127.0.0.1", proxy_port), keys={"from_user": number, "pai_user": number},
            timeout=SIPP_TIMEOUT,
        )
        with running(uac):
            uac_rc = uac.wait(SIPP_TIMEOUT + 5)
        assert uac_rc == 0, uac.report() + proxy.log_text()
        # The step decides before forwarding: had the request been let through, the trunk
        # would have it by now; a short grace covers a slow scheduler.
        assert not wait_until(
            lambda: sink.requests("INVITE") or sink.requests("MESSAGE"), 0.3
        ), sink.received
        forwarded = [d for d in sink.received if not d.startswith(b"OPTIONS ")]
        assert forwarded == [], forwarded
    finally:
        sink.close()
    finals = received_messages(uac.messages(), f"SIP/2.0 {status} ")
    assert len(finals) >= 1, uac.messages()
    return finals[0], proxy


def _reason_rule(response: str, status: int) -> str:
    """The rule id named by Reason (and the same text in Warning)."""
    (reason,) = header_values(response, "Reason")
    (warning,) = header_values(response, "Warning")
    prefix = f'SIP;cause={status};text="'
    assert reason.startswith(prefix), reason
    text = reason[len(prefix):].rstrip('"')
    assert warning.startswith("399 ") and warning.endswith(f'"{text}"'), (reason, warning)
    return text.split(":", 1)[0]


def test_automated_mobile_caller_rejected_with_403(
    tmp_path: Path, proxy_factory: Factory, ports: Callable[[], int]
) -> None:
    """Automated source, 06 caller: 403 naming mobile-number, nothing forwarded, audited."""
    config = _config(tmp_path, ports, kind="automated", reject_status=403)
    response, proxy = _rejected(tmp_path, proxy_factory, config, MOBILE)
    assert response.startswith("SIP/2.0 403 Forbidden")
    assert _reason_rule(response, 403) == "mobile-number"
    records = _audit(proxy, config)
    assert [(r["verdict"], r["status"], r["method"]) for r in records] == [
        ("reject", 403, "INVITE")
    ]
    assert records[0]["rules"].split()[0] == "mobile-number"
    assert records[0]["from_e164"] == MOBILE
    assert records[0]["source"] == "pbx" and records[0]["customer"] == "acme-contact"
    report = run_cli("audit", "report", "--format", "json", "--config", str(proxy.config_path))
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["verdicts"] == {"reject": 1}
    assert summary["rules"]["mobile-number"] == {"reject": 1}


def test_automated_mobile_caller_rejected_with_configured_603(
    tmp_path: Path, proxy_factory: Factory, ports: Callable[[], int]
) -> None:
    """The source's reject_status (603) is the status and the Reason cause."""
    config = _config(tmp_path, ports, kind="automated", reject_status=603)
    response, proxy = _rejected(tmp_path, proxy_factory, config, MOBILE, status=603)
    assert response.startswith("SIP/2.0 603 Decline")
    assert _reason_rule(response, 603) == "mobile-number"
    records = _audit(proxy, config)
    assert [(r["verdict"], r["status"]) for r in records] == [("reject", 603)]


def test_listed_npv_reaches_trunk_from_automated_source(
    tmp_path: Path, proxy_factory: Factory, ports: Callable[[], int]
) -> None:
    """NPV 0162... held by the customer (numbers CLI) crosses an automated source's policy."""
    config = _config(tmp_path, ports, kind="automated")
    _numbers(tmp_path, config, "0162000001", "--holder", "acme-contact")
    invite, proxy = _call_through(tmp_path, proxy_factory, config, NPV)
    assert header_values(invite, "P-Asserted-Identity")
    records = _audit(proxy, config)
    assert [(r["verdict"], r["number_status"], r["rules"]) for r in records] == [
        ("allow", "own", "")
    ]


def test_interpersonal_delegated_geographic_reaches_trunk(
    tmp_path: Path, proxy_factory: Factory, ports: Callable[[], int]
) -> None:
    """Interpersonal source, 01 delegated by its principal today: reaches the trunk."""
    config = _config(tmp_path, ports, kind="interpersonal")
    now = time.time()
    _numbers(
        tmp_path, config, "01 23 45 67 89", "--customer", "acme-contact",
        "--principal", "acme-energy", "--from", str(now - 3600), "--until", str(now + 30 * 86400),
    )
    _, proxy = _call_through(tmp_path, proxy_factory, config, GEOGRAPHIC)
    records = _audit(proxy, config)
    assert [(r["verdict"], r["number_status"]) for r in records] == [("allow", "delegated")]


def test_unlisted_number_rejected(
    tmp_path: Path, proxy_factory: Factory, ports: Callable[[], int]
) -> None:
    """Interpersonal source, 01 neither held nor delegated: 403 naming not-on-list."""
    config = _config(tmp_path, ports, kind="interpersonal")
    _numbers(tmp_path, config, "0123456789", "--holder", "acme-contact")
    response, proxy = _rejected(tmp_path, proxy_factory, config, UNLISTED)
    assert _reason_rule(response, 403) == "not-on-list"
    assert UNLISTED in header_values(response, "Reason")[0]
    records = _audit(proxy, config)
    assert [(r["verdict"], r["rules"]) for r in records] == [("reject", "not-on-list")]


def test_monitored_rule_reaches_trunk_and_is_audited(
    tmp_path: Path, proxy_factory: Factory, ports: Callable[[], int]
) -> None:
    """not-on-list in monitor: the unlisted call reaches the trunk, audited as monitored."""
    config = _config(tmp_path, ports, kind="interpersonal", rules={"not-on-list": "monitor"})
    _, proxy = _call_through(tmp_path, proxy_factory, config, UNLISTED)
    records = _audit(proxy, config)
    assert [(r["verdict"], r["status"], r["rules"]) for r in records] == [
        ("monitor", None, "not-on-list")
    ]
    assert json.loads(records[0]["detail"])[0][:2] == ["not-on-list", "monitor"]
    report = run_cli("audit", "report", "--format", "json", "--config", str(proxy.config_path))
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["rules"] == {"not-on-list": {"monitor": 1}}


def test_sms_platform_message_with_mobile_sender_rejected(
    tmp_path: Path, proxy_factory: Factory, ports: Callable[[], int]
) -> None:
    """MESSAGE from an SMS platform with a 06 sender: 403 naming mobile-number, audited."""
    config = _config(tmp_path, ports, kind="automated", sms_platform=True)
    response, proxy = _rejected(
        tmp_path, proxy_factory, config, MOBILE, scenario="uac_message.xml"
    )
    assert response.startswith("SIP/2.0 403 ")
    assert _reason_rule(response, 403) == "mobile-number"
    records = _audit(proxy, config)
    assert [(r["verdict"], r["method"], r["status"]) for r in records] == [
        ("reject", "MESSAGE", 403)
    ]


def test_audit_flush_interval_is_honoured(
    tmp_path: Path, proxy_factory: Factory, ports: Callable[[], int]
) -> None:
    """policy.audit.flush_interval_s (and reload_interval_s) set the writer's pace; stop flushes."""
    config = _config(tmp_path, ports, kind="automated")
    config["policy"]["audit"]["flush_interval_s"] = 30
    config["policy"]["reload_interval_s"] = 30
    database = config["policy"]["audit"]["database"]
    _, proxy = _rejected(tmp_path, proxy_factory, config, MOBILE)
    # A writer running every 0.5 s whatever the setting would have written within 1.5 s.
    assert not wait_until(lambda: entries(database), 1.5), entries(database)
    records = _audit(proxy, config)
    assert [(r["verdict"], r["status"]) for r in records] == [("reject", 403)]


def test_list_change_applies_without_restart(
    tmp_path: Path, proxy_factory: Factory, ports: Callable[[], int]
) -> None:
    """A number added with the CLI while the proxy runs is accepted within seconds."""
    config = _config(tmp_path, ports, kind="interpersonal")
    config["policy"]["reload_interval_s"] = 0.2
    proxy_port, trunk_port = _ports(config)
    uas = start_sipp(tmp_path, "uas_call.xml", local_port=trunk_port, timeout=SIPP_TIMEOUT)
    with running(uas):
        proxy = proxy_factory(config)
        refused = start_sipp(
            tmp_path, "uac_rejected.xml", local_port=free_port(),
            remote=("127.0.0.1", proxy_port),
            keys={"from_user": UNLISTED, "pai_user": UNLISTED}, timeout=SIPP_TIMEOUT,
        )
        with running(refused):
            assert refused.wait(SIPP_TIMEOUT + 5) == 0, refused.report() + proxy.log_text()
        _numbers(tmp_path, config, UNLISTED, "--holder", "acme-contact")
        # Until the worker polls the store, uac_call.xml fails fast on the unexpected 403.
        deadline = time.monotonic() + 5.0
        attempts = 0
        while True:
            attempts += 1
            uac = start_sipp(
                tmp_path, "uac_call.xml", local_port=free_port(),
                remote=("127.0.0.1", proxy_port),
                keys={"from_user": UNLISTED, "pai_user": UNLISTED}, timeout=SIPP_TIMEOUT,
            )
            with running(uac):
                uac_rc = uac.wait(SIPP_TIMEOUT + 5)
            if uac_rc == 0 or time.monotonic() > deadline:
                break
        assert uac_rc == 0, uac.report() + proxy.log_text()
        assert uas.wait(SIPP_TIMEOUT + 5) == 0, uas.report()
    records = _audit(proxy, config)
    verdicts = [r["verdict"] for r in records]
    assert verdicts[0] == "reject" and verdicts[-1] == "allow", verdicts
    assert len(verdicts) == attempts + 1, (verdicts, attempts)
