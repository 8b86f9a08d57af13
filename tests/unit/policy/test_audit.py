"""Audit log: batching, durability on flush/close, WAL mode, reports, CDR checks."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from proxy.policy.audit import AuditEntry, AuditLog, entries, format_report, read_report
from proxy.policy.commands import main

NOW = 1_773_662_400.0


def entry(i: int, verdict: str = "allow", rules: tuple[str, ...] = ()) -> AuditEntry:
    """A small entry."""
    return AuditEntry(
        time=NOW + i,
        method="INVITE",
        verdict=verdict,
        call_id=f"c{i}",
        source="dialer",
        customer="callco",
        from_raw="sip:+33162000001@pbx",
        from_e164="+33162000001",
        caller_e164="+33162000001" if verdict == "allow" else "+33612345678",
        rules=rules,
        firings=tuple((r, "reject" if verdict == "reject" else "monitor", "why") for r in rules),
    )


def rows(path: Path) -> int:
    """Rows in the decisions table."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
    finally:
        conn.close()


def test_record_does_no_io_and_flush_batches(tmp_path: Path):
    """record() only queues; flush() writes every entry in batch_size transactions."""
    path = tmp_path / "audit.sqlite3"
    log = AuditLog(path, batch_size=3)
    commits: list[str] = []
    assert log._conn is not None
    log._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    for i in range(10):
        log.record(entry(i))
    assert rows(path) == 0 and log.pending == 10
    assert log.flush() == 10
    assert len(commits) == 4  # 3 + 3 + 3 + 1
    assert rows(path) == 10 and log.pending == 0
    log.close()


def test_close_flushes_everything(tmp_path: Path):
    """A clean shutdown loses nothing."""
    path = tmp_path / "audit.sqlite3"
    log = AuditLog(path, batch_size=7)
    for i in range(50):
        log.record(entry(i))
    log.close()
    assert rows(path) == 50
    assert [e["call_id"] for e in entries(path)][:3] == ["c0", "c1", "c2"]


def test_bounded_queue_drops_oldest_and_counts(tmp_path: Path):
    """A full queue drops its oldest entries and counts them."""
    log = AuditLog(tmp_path / "audit.sqlite3", queue_max=5)
    for i in range(8):
        log.record(entry(i))
    assert log.dropped == 3 and log.pending == 5
    log.close()
    assert [e["call_id"] for e in entries(tmp_path / "audit.sqlite3")] == [
        f"c{i}" for i in range(3, 8)
    ]


def test_wal_mode(tmp_path: Path):
    """The audit database is in WAL mode."""
    path = tmp_path / "audit.sqlite3"
    AuditLog(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """An audit database with allowed, monitored and rejected decisions."""
    path = tmp_path / "audit.sqlite3"
    log = AuditLog(path)
    for i in range(3):
        log.record(entry(i))
    log.record(entry(10, "monitor", ("plan-conditional",)))
    log.record(entry(11, "reject", ("mobile-number", "not-on-list")))
    log.record(entry(12, "reject", ("mobile-number",)))
    log.close()
    return path


def test_report_counts(filled: Path):
    """Per verdict, rule, source and number."""
    report = read_report(filled)
    assert report.total == 6
    assert report.verdicts == {"allow": 3, "monitor": 1, "reject": 2}
    assert report.rules["mobile-number"] == {"reject": 2}
    assert report.rules["plan-conditional"] == {"monitor": 1}
    assert report.sources["dialer"] == {"allow": 3, "monitor": 1, "reject": 2}
    assert report.numbers["+33612345678"] == {"monitor": 1, "reject": 2}
    assert read_report(filled, since=NOW + 11).total == 2


def test_report_formats(filled: Path):
    """table, json and csv carry the same counts."""
    report = read_report(filled)
    table = format_report(report, "table")
    assert table.startswith("6 decisions since")
    assert "mobile-number" in table
    data = json.loads(format_report(report, "json"))
    assert data["verdicts"]["reject"] == 2
    parsed = list(csv.reader(io.StringIO(format_report(report, "csv"))))
    assert parsed[0] == ["section", "key", "allow", "monitor", "reject"]
    assert ["rule", "mobile-number", "0", "0", "2"] in parsed
    assert ["total", "all", "3", "1", "2"] in parsed


def test_audit_report_command(filled: Path, capsys: pytest.CaptureFixture[str]):
    """`audit report --format json` prints the report and exits 0."""
    code = main(["audit", "report", "--audit-database", str(filled), "--format", "json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["total"] == 6


def test_report_lists_numbers_presented_under_72_hours_then_dropped(tmp_path: Path):
    """Anti-rotation: a number let through over less than 72 h and not since is listed with its
    uses; one used longer, one still in use, a rejected one and one dropped before the report's
    period are not."""
    hour = 3600.0
    path = tmp_path / "audit.sqlite3"
    log = AuditLog(path)

    def use(number: str, at: float, verdict: str = "allow") -> None:
        log.record(
            AuditEntry(
                time=at, method="INVITE", verdict=verdict, customer="callco",
                from_raw=f"sip:{number}@pbx", caller_e164=number,
            )
        )

    use("+33162000001", NOW - 100 * hour)  # rotated: 10 h of use, dropped 90 h ago
    use("+33162000001", NOW - 95 * hour, "monitor")
    use("+33162000001", NOW - 90 * hour)
    use("+33162000002", NOW - 200 * hour)  # used over 110 h: kept long enough
    use("+33162000002", NOW - 90 * hour)
    use("+33162000003", NOW - 10 * hour)  # new: its 72 h are not over yet
    use("+33612345678", NOW - 100 * hour, "reject")  # never presented
    use("+33162000004", NOW - 400 * hour)  # rotated, but before the period asked for
    log.close()

    report = read_report(path, since=NOW - 300 * hour, now=NOW)
    assert report.short_use == {"callco +33162000001": {"allow": 2, "monitor": 1}}
    assert read_report(path, now=NOW).short_use.keys() == {
        "callco +33162000001",
        "callco +33162000004",
    }
    assert read_report(path).short_use == {}  # no `now`, no judgement
    table = format_report(report, "table")
    assert "short-use: 1 number(s)" in table and "callco +33162000001" in table
    parsed = list(csv.reader(io.StringIO(format_report(report, "csv"))))
    assert ["short-use", "callco +33162000001", "2", "1", "0"] in parsed


CDR = """time,source,method,From,PAI,Privacy,To
2026-03-16T10:00:00,dialer,INVITE,sip:+33162000001@pbx,,,sip:+33299000001@op
2026-03-16T10:01:00,dialer,INVITE,sip:0612345678@pbx,,,sip:+33299000002@op
2026-03-16T10:02:00,dialer,INVITE,sip:anonymous@anonymous.invalid,<sip:+33162000002@pbx>,id,sip:+33299000003@op
"""


def _lists(tmp_path: Path) -> Path:
    db = tmp_path / "lists.sqlite3"
    assert (
        main(
            [
                "numbers",
                "add",
                "--database",
                str(db),
                "--holder",
                "callco",
                "+33162000000-+33162000999",
            ]
        )
        == 0
    )
    return db


def _config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "sipguard.yaml"
    path.write_text(
        f"""
trunks: [{{name: op, host: 192.0.2.1}}]
sources:
  - name: dialer
    addresses: ["10.0.0.0/24"]
    trunk: op
    policy: {{customer: callco, kind: automated}}
policy:
  database: {db}
  allocation_database: {tmp_path / "alloc.sqlite3"}
  audit: {{database: {tmp_path / "audit.sqlite3"}}}
""",
        encoding="utf-8",
    )
    return path


def test_check_cdr_runs_the_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """The CDR checker rejects the mobile and the masked rows and exits 1."""
    config = _config(tmp_path, _lists(tmp_path))
    capsys.readouterr()
    cdr = tmp_path / "calls.csv"
    cdr.write_text(CDR, encoding="utf-8")
    code = main(["audit", "check-cdr", str(cdr), "--config", str(config), "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["counts"] == {"allow": 1, "monitor": 0, "reject": 2}
    assert [r["line"] for r in out["records"]] == [3, 4]
    assert out["records"][0]["rules"][0]["id"] == "mobile-number"
    assert out["records"][1]["rules"][0]["id"] == "masked-number"


def test_check_cdr_column_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """--map reads another layout; a clean file exits 0."""
    config = _config(tmp_path, _lists(tmp_path))
    cdr = tmp_path / "calls.csv"
    cdr.write_text("date,trunk,caller,callee\n2026-03-16T10:00:00,dialer,0162000001,0299000001\n")
    args = [
        "audit",
        "check-cdr",
        str(cdr),
        "--config",
        str(config),
        "--map",
        "time=date",
        "--map",
        "source=trunk",
        "--map",
        "From=caller",
        "--map",
        "To=callee",
    ]
    assert main(args) == 0
    assert "1 allowed" in capsys.readouterr().out


def test_check_cdr_missing_column_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Without the From column the command says which columns it found and exits 2."""
    config = _config(tmp_path, _lists(tmp_path))
    cdr = tmp_path / "calls.csv"
    cdr.write_text("time,source,caller\n2026-03-16T10:00:00,dialer,0162000001\n")
    assert main(["audit", "check-cdr", str(cdr), "--config", str(config)]) == 2
    assert "missing column(s) From" in capsys.readouterr().err


def test_record_decision_writes_the_row_audit_entry_of_writes(tmp_path: Path):
    """The hot path's flat tuple and `AuditEntry.of` give the same `decisions` rows."""
    from proxy.policy.engine import evaluate
    from proxy.policy.identity import identity_from_values
    from tests.unit.policy.policy_fixtures import NOW, data, source

    cases = [
        {"from_value": "<sip:+33162000001@pbx>", "pai": ["<tel:+33162000001>"]},
        {"from_value": "<sip:+33612345678@pbx>"},
        {"from_value": "<sip:anonymous@anonymous.invalid>", "pai": ["<sip:0162000001@x>"],
         "privacy": "id"},
        {"from_value": '"A \\"q\\"" <sip:ACME@pbx>', "pai": ["<sip:+33948000001@x>", "<tel:3010>"]},
        {"from_value": "<sip:+33162000001@pbx>", "diversion": ["<sip:+33170000000@x>"]},
    ]
    both = AuditLog(tmp_path / "a.sqlite3"), AuditLog(tmp_path / "b.sqlite3")
    for i, case in enumerate(cases):
        identity = identity_from_values(method="INVITE", call_id=f"c{i}", **case)  # type: ignore[arg-type]
        verdict = evaluate(identity, source(), data(), NOW)
        status = 403 if verdict.rejecting else None
        both[0].record(
            AuditEntry.of(identity, verdict, now=NOW, source="dialer", customer="c", status=status)
        )
        both[1].record_decision(identity, verdict, NOW, "dialer", "c", status)
    for log in both:
        log.close()
    first, second = (entries(log.path) for log in both)
    assert [dict(r, id=0) for r in first] == [dict(r, id=0) for r in second]
    assert any(r["rules"] for r in first) and any(not r["rules"] for r in first)


def test_queued_decisions_stay_out_of_the_garbage_collector(tmp_path: Path):
    """What the hot path queues is a flat tuple of atoms: untracked by the cyclic collector at
    its first collection, so a long queue adds nothing to the full collections' walk."""
    import gc

    from proxy.policy.engine import evaluate
    from proxy.policy.identity import identity_from_values
    from tests.unit.policy.policy_fixtures import NOW, data, source

    log = AuditLog(tmp_path / "a.sqlite3")
    for caller in ("+33162000001", "+33612345678", "+33948000001"):
        identity = identity_from_values(
            method="INVITE", from_value=f"<sip:{caller}@pbx>", pai=["<tel:+33162000001>"]
        )
        verdict = evaluate(identity, source(), data(), NOW)
        log.record_decision(identity, verdict, NOW, "dialer", "c", None)
    assert any(len(item) > 18 for item in log._queue)  # some carry firings
    gc.collect()
    assert not any(gc.is_tracked(item) for item in log._queue)
    log.close()
