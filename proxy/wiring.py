"""Builds the decision steps and the stores behind them from a configuration.

One place, used at start and on reload: requests from sources go through [policy, signing],
requests from trunks through [verification] (docs/design.md, "Decision steps").
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from proxy.config import Config
from proxy.core.decision import RequestStep
from proxy.policy.step import PolicyStep
from stir_shaken.fetch import X5uFetcher
from stir_shaken.settings import TrunkVerification
from stir_shaken.steps import SigningStep, VerificationStep


@dataclass
class Components:
    """What a worker runs besides the core: the steps and the stores behind them."""

    policy: PolicyStep
    signing: SigningStep
    verification: VerificationStep
    fetcher: X5uFetcher | None = None
    source_steps: list[RequestStep] = field(default_factory=list)
    trunk_steps: list[RequestStep] = field(default_factory=list)
    audit_ok: bool = True

    async def fetch_certificate(self, url: str) -> None:
        """Fetch `url` into the verification cache (failures are cached and give 436)."""
        if self.fetcher is None:
            raise LookupError(f"no trunk verifies identities; cannot fetch {url}")
        await self.fetcher.fetch(url)

    def flush_audit(self) -> None:
        """Write queued audit records and pick up list changes (blocking; run in a thread)."""
        try:
            self.policy.maintenance()
        except sqlite3.Error:
            # The records stay queued (AuditLog puts a failed batch back); readiness says so.
            self.audit_ok = False
            raise
        self.audit_ok = True

    def audit_backlog(self) -> int:
        """Audit records not yet written."""
        audit = self.policy.audit
        return audit.pending if audit is not None else 0

    def refresh_lists(self) -> None:
        """Pick up number-list changes made by the CLI or another worker (blocking)."""
        self.flush_audit()

    def signing_ready(self) -> bool:
        """True when signing is off, or on with its key loaded."""
        return not self.signing.settings.enabled or self.signing.outage_reason is None

    def audit_writable(self) -> bool:
        """True when the last audit flush succeeded."""
        return self.audit_ok

    async def aclose(self) -> None:
        """Close the certificate fetcher's HTTP session."""
        if self.fetcher is not None:
            await self.fetcher.close()

    def close(self) -> None:
        """Flush and close the stores; a clean shutdown loses no audit record."""
        self.policy.close()


def _fetch_settings(config: Config) -> TrunkVerification | None:
    """The fetch limits of the first trunk that verifies (x5u URLs do not say which trunk)."""
    for trunk in config.trunks:
        if trunk.verification.enabled:
            return trunk.verification
    return None


def build_components(config: Config, config_path: Path | None, worker: int = 0) -> Components:
    """The steps for requests from sources and from trunks, per the configuration."""
    policy = PolicyStep.from_config(config)
    signing = SigningStep.from_settings(config.signing)
    verification = VerificationStep({t.name: t.verification for t in config.trunks})
    fetch_settings = _fetch_settings(config)
    fetcher = (
        X5uFetcher.from_settings(fetch_settings, verification.cache)
        if fetch_settings is not None
        else None
    )
    components = Components(policy, signing, verification, fetcher)
    components.source_steps = [policy, signing]
    components.trunk_steps = [verification]
    return components
