"""Builds the decision steps and their stores from a configuration (one place, used at start
and on reload)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proxy.config import Config
from proxy.core.decision import RequestStep


@dataclass
class Components:
    """What a worker runs besides the core: the steps and the stores behind them."""

    source_steps: list[RequestStep] = field(default_factory=list)
    trunk_steps: list[RequestStep] = field(default_factory=list)

    async def fetch_certificate(self, url: str) -> None:
        """Fetch `url` into the verification cache."""
        raise LookupError(f"no verification configured to fetch {url}")

    def flush_audit(self) -> None:
        """Write queued audit records (blocking; run in a thread)."""

    def audit_backlog(self) -> int:
        """Audit records not yet written."""
        return 0

    def refresh_lists(self) -> None:
        """Pick up number-list changes made by the CLI or another worker (blocking)."""

    def signing_ready(self) -> bool:
        """True when signing is off, or on with its key loaded."""
        return True

    def audit_writable(self) -> bool:
        """True when the audit store accepts writes."""
        return True

    def close(self) -> None:
        """Flush and close the stores."""


def build_components(config: Config, config_path: Path | None, worker: int = 0) -> Components:
    """The steps for requests from sources and from trunks, per the configuration."""
    return Components()
