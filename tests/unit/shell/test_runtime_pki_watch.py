"""A worker reloads when a certificate, key or CRL file its config names changes on disk."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace

from proxy.config import Config, parse_config
from proxy.runtime import Worker, file_stamps, pki_files


def _config(tmp_path: Path) -> Config:
    return parse_config(
        {
            "listen": [{"transport": "udp", "host": "127.0.0.1", "port": 5060}],
            "trunks": [
                {
                    "name": "op1",
                    "host": "127.0.0.1",
                    "port": 5070,
                    "verification": {
                        "enabled": True,
                        "trust_anchors": [{"file": str(tmp_path / "root.pem")}],
                        "crls": [
                            {"file": str(tmp_path / "pa.crl"), "signer": str(tmp_path / "pa.pem")}
                        ],
                    },
                },
                {"name": "op2", "host": "127.0.0.2", "port": 5070},
            ],
            "sources": [{"name": "pbx", "addresses": ["10.0.0.0/24"], "trunk": "op1"}],
        }
    )


def test_pki_files_are_those_of_enabled_steps(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert pki_files(config) == (tmp_path / "root.pem", tmp_path / "pa.crl", tmp_path / "pa.pem")


def test_a_rewritten_crl_triggers_one_reload(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for name in ("root.pem", "pa.crl", "pa.pem"):
        (tmp_path / name).write_bytes(b"v1")
    reloads: list[int] = []

    async def reload() -> bool:
        reloads.append(1)
        return True

    worker = SimpleNamespace(
        config=config, index=0, reload=reload, _pki_stamps=file_stamps(pki_files(config))
    )
    watch = Worker._watch_pki_files

    async def scenario() -> None:
        await watch(worker)  # type: ignore[arg-type]
        assert reloads == []  # nothing changed
        crl = tmp_path / "pa.crl"
        crl.write_bytes(b"v2, a longer CRL")
        os.utime(crl, ns=(crl.stat().st_atime_ns, crl.stat().st_mtime_ns + 1_000_000_000))
        await watch(worker)  # type: ignore[arg-type]
        await watch(worker)  # type: ignore[arg-type]
        assert reloads == [1]  # once per change
        crl.unlink()
        await watch(worker)  # type: ignore[arg-type]
        assert reloads == [1, 1]  # a vanished file is a change too (the reload says why)

    asyncio.run(scenario())
