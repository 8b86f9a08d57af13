"""The policy CLI: exit codes and what it prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.policy.commands import main


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A list database where callco holds an NPV block and acme delegated a geographic number."""
    path = tmp_path / "lists.sqlite3"
    assert (
        main(
            [
                "numbers",
                "add",
                "--database",
                str(path),
                "--holder",
                "callco",
                "01 62 00 00 00-01 62 00 09 99",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "numbers",
                "add",
                "--database",
                str(path),
                "--principal",
                "acme",
                "--customer",
                "callco",
                "--from",
                "2026-01-01",
                "--until",
                "2030-12-31",
                "+33144556677",
            ]
        )
        == 0
    )
    return path


@pytest.fixture
def config(tmp_path: Path, db: Path) -> Path:
    """A configuration with an automated dialer and a manual PBX for callco."""
    path = tmp_path / "sipguard.yaml"
    path.write_text(
        f"""
trunks: [{{name: op, host: 192.0.2.1}}]
sources:
  - {{name: dialer, addresses: ["10.0.0.0/24"], trunk: op,
     policy: {{customer: callco, kind: automated}}}}
  - {{name: agents, addresses: ["10.0.1.0/24"], trunk: op,
     policy: {{customer: callco, kind: interpersonal, rules: {{not-on-list: monitor}}}}}}
policy:
  database: {db}
  allocation_database: {tmp_path / "alloc.sqlite3"}
  audit: {{database: {tmp_path / "audit.sqlite3"}}}
""",
        encoding="utf-8",
    )
    return path


def test_check_allowed_exits_0(config: Path, capsys: pytest.CaptureFixture[str]):
    """An NPV on the list from the dialer is allowed."""
    code = main(
        [
            "check",
            "--config",
            str(config),
            "--source",
            "dialer",
            "--from",
            "sip:0162000001@pbx",
            "--pai",
            "<tel:+33162000001>",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "+33162000001" in out and "category npv" in out
    assert "list: own" in out and "verdict   ALLOW" in out


def test_check_rejected_explains_every_rule(config: Path, capsys: pytest.CaptureFixture[str]):
    """A mobile from the dialer: exit 1, each rule with its reason, and the Reason header."""
    code = main(
        [
            "check",
            "--config",
            str(config),
            "--source",
            "dialer",
            "--from",
            "sip:+33612345678@pbx;user=phone",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "mobile-number [reject]" in out
    assert "not-on-list [reject]" in out
    assert 'Reason: SIP;cause=403;text="mobile-number:' in out


def test_check_monitor_exits_0(config: Path, capsys: pytest.CaptureFixture[str]):
    """A monitored rule does not reject."""
    code = main(
        ["check", "--config", str(config), "--source", "agents", "--from", "sip:+33145000000@pbx"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "not-on-list [monitor]" in out and "verdict   MONITOR" in out


def test_check_at_judges_another_time(config: Path, capsys: pytest.CaptureFixture[str]):
    """--at before the delegation starts: the list rule fires and says why."""
    args = ["check", "--config", str(config), "--source", "agents", "--from", "0144556677"]
    assert main([*args, "--at", "2026-06-01T10:00"]) == 0
    assert "list: delegated" in capsys.readouterr().out
    assert main([*args, "--at", "2025-12-01T10:00"]) == 0  # monitor for this source
    out = capsys.readouterr().out
    assert "not-on-list [monitor]" in out and "starts later" in out


def test_check_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A broken configuration is a usage error."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("trunks: [{name: op, host: 192.0.2.1}]\npolicy: {timezone: Mars/Olympus}\n")
    assert main(["check", "--config", str(bad), "--source", "x", "--from", "0162000001"]) == 2
    assert "Mars/Olympus" in capsys.readouterr().err


def test_numbers_add_refusals_exit_1(db: Path, capsys: pytest.CaptureFixture[str]):
    """Mobile delegations and too-short ones are refused with exit 1."""
    base = ["numbers", "add", "--database", str(db), "--principal", "acme", "--customer", "callco"]
    assert main([*base, "--from", "2026-01-01", "--until", "2026-12-31", "0612345678"]) == 1
    assert "mobile" in capsys.readouterr().err
    assert main([*base, "--from", "2026-01-01", "--until", "2026-01-02", "0144556678"]) == 1
    assert "72" in capsys.readouterr().err
    assert main([*base[:4], "0144556678"]) == 2  # neither --holder nor --customer


def test_numbers_list_remove(db: Path, capsys: pytest.CaptureFixture[str]):
    """list shows holdings and delegations; remove deletes and exits 1 when nothing matched."""
    capsys.readouterr()
    assert main(["numbers", "list", "--database", str(db)]) == 0
    out = capsys.readouterr().out
    assert "+33162000000-+33162000999" in out and "acme -> callco" in out
    assert (
        main(["numbers", "remove", "--database", str(db), "--customer", "callco", "+33144556677"])
        == 0
    )
    assert (
        main(["numbers", "remove", "--database", str(db), "--customer", "callco", "+33144556677"])
        == 1
    )


def test_numbers_yaml_and_bnd_export_import(db: Path, tmp_path: Path):
    """YAML export re-imports into a new store; BND export re-imports with the period given."""
    yaml_file, bnd_file = tmp_path / "lists.yaml", tmp_path / "bnd.csv"
    assert main(["numbers", "export", "--database", str(db), "-o", str(yaml_file)]) == 0
    assert (
        main(
            [
                "numbers",
                "export",
                "--database",
                str(db),
                "--format",
                "bnd",
                "--spc",
                "OSP1",
                "-o",
                str(bnd_file),
            ]
        )
        == 0
    )
    assert bnd_file.read_text() == "33144556677;OSP1\n"
    copy = tmp_path / "copy.sqlite3"
    assert main(["numbers", "import", "--database", str(copy), str(yaml_file)]) == 0
    assert (
        main(["numbers", "import", "--database", str(copy), "--format", "bnd", str(bnd_file)]) == 2
    )  # BND needs customer, principal and period
    assert (
        main(
            [
                "numbers",
                "import",
                "--database",
                str(tmp_path / "b.sqlite3"),
                "--format",
                "bnd",
                "--customer",
                "callco",
                "--principal",
                "acme",
                "--from",
                "2026-01-01",
                "--until",
                "2026-12-31",
                str(bnd_file),
            ]
        )
        == 0
    )


def test_plan_import_and_range_holder(config: Path, capsys: pytest.CaptureFixture[str]):
    """After `plan import`, check names the range holder and unallocated numbers fail."""
    data = Path("/work/shared/testdata/fr-numbering")
    if not data.exists():
        pytest.skip("shared ARCEP test data not present")
    files = [str(data / n) for n in ("MAJNUM.csv", "GELNUM.csv", "identifiants_CE.csv")]
    assert main(["plan", "import", "--config", str(config), *files]) == 0
    capsys.readouterr()
    assert (
        main(["check", "--config", str(config), "--source", "dialer", "--from", "0162000001"]) == 0
    )
    assert "range holder Manifone" in capsys.readouterr().out
    # 0163 (NPV twin) has no allocated block in the April 2026 data
    main(["numbers", "add", "--config", str(config), "--holder", "callco", "0163000001"])
    assert (
        main(["check", "--config", str(config), "--source", "dialer", "--from", "0163000001"]) == 1
    )
    assert "unallocated-number [reject]" in capsys.readouterr().out


def test_registered_in_sipguard_cli():
    """The `sipguard` root parser carries the policy commands."""
    from proxy.cli import build_parser

    args = build_parser().parse_args(["numbers", "list", "--database", "x.sqlite3"])
    assert callable(args.handler)
