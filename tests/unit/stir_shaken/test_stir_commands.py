"""The identity and pki sub-commands, run in-process through `main`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from stir_shaken import commands


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab PKI written by `pki init`."""
    directory = tmp_path_factory.mktemp("lab")
    assert commands.main(["pki", "init", str(directory), "--spc", "TEST01"]) == 0
    return directory


def _sign(lab_dir: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code = commands.main(
        [
            "identity", "sign", "--key", str(lab_dir / "operator.key"),
            "--cert", str(lab_dir / "operator.pem"), "--x5u", "https://bpco.example/c.cer",
            "--orig", "+33162000001", "--dest", "+33187654321", *extra,
        ]
    )  # fmt: skip
    assert code == 0
    return capsys.readouterr().out.strip()


def _verify_args(lab_dir: Path, value: str, *extra: str) -> list[str]:
    return [
        "identity", "verify", value, "--from", "+33162000001", "--to", "33187654321",
        "--cert", str(lab_dir / "operator.pem"), "--trust-anchor", str(lab_dir / "root.pem"),
        "--intermediate", str(lab_dir / "intermediate.pem"), "--crl", str(lab_dir / "crl.pem"),
        "--crl-signer", str(lab_dir / "pa.pem"), *extra,
    ]  # fmt: skip


def test_pki_init_writes_files(lab_dir: Path) -> None:
    """pki init writes the chain, the PA, the CRL and 0600 keys."""
    names = {p.name for p in lab_dir.iterdir()}
    assert {"root.pem", "intermediate.pem", "pa.pem", "operator.pem", "crl.pem"} <= names
    assert (lab_dir / "operator.key").stat().st_mode & 0o077 == 0


def test_sign_then_verify_cli(lab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """identity sign output passes identity verify, which prints claims and the verdict."""
    value = _sign(lab_dir, capsys, "--attest", "B")
    assert value.endswith(";info=<https://bpco.example/c.cer>;alg=ES256;ppt=shaken")
    assert commands.main(_verify_args(lab_dir, value)) == 0
    out = capsys.readouterr().out
    assert '"attest": "B"' in out and "certificate SPC: TEST01" in out and "verdict: PASS" in out


def test_verify_cli_reports_failure_code(lab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stale PASSporT fails with exit 1 and prints 403 Stale Date."""
    value = _sign(lab_dir, capsys, "--iat", str(int(time.time()) - 3600))
    assert commands.main(_verify_args(lab_dir, value)) == 1
    assert "verdict: FAIL 403 Stale Date" in capsys.readouterr().out


def test_verify_cli_needs_trust_anchor(lab_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a trust anchor there is no verdict (exit 2)."""
    value = _sign(lab_dir, capsys)
    assert commands.main(["identity", "verify", value, "--from", "1", "--to", "2"]) == 2


def test_sign_cli_refuses_open_key(lab_dir: Path, tmp_path: Path) -> None:
    """A world-readable key is refused with exit 2."""
    key = tmp_path / "k.pem"
    key.write_bytes((lab_dir / "operator.key").read_bytes())
    key.chmod(0o644)
    args = [
        "identity",
        "sign",
        "--key",
        str(key),
        "--x5u",
        "https://a/c",
        "--orig",
        "1",
        "--dest",
        "2",
    ]
    assert commands.main(args) == 2


def test_register_adds_commands() -> None:
    """register() plugs identity and pki into another argparse root with handlers."""
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pki", "init", "/tmp/x"])
    assert args.handler is not None and args.spc == "LAB001"
